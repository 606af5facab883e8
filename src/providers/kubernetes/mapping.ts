// Pure pieces of the Kubernetes adapter: object names, what a Deployment and its pods say about a pool, and the
// Kubernetes Status errors in the activity taxonomy (../shared/reference/providers-api.md §3.3, §3.4).
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { ProviderError, ProviderPermanentError } from '../errors';
import type { PoolStatus } from '../pool';

/** Labels that mark our objects: the bundle's managed-by value, and the deployment and revision they serve. */
export const MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_US = 'infer-control-plane';
export const DEPLOYMENT_LABEL = 'infercp.dev/deployment';
export const REVISION_LABEL = 'infercp.dev/revision';

/**
 * A DNS-1123 (and DNS-1035: Services start with a letter) name of at most 63 characters for a revision's pool. Our
 * ids are base64url, so case matters in them and lowercasing alone could merge two: a hash of the exact ids keeps
 * names distinct, the readable prefix keeps them recognisable (infercp-<deployment>-<revision>-<hash>).
 */
export function poolObjectName(prefix: string, deploymentId: string, revisionId: string | null): string {
  const clean = (s: string) =>
    s
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '');
  const hash = createHash('sha256')
    .update(`${deploymentId}\0${revisionId ?? ''}`)
    .digest('hex')
    .slice(0, 10);
  const head = clean(prefix) || 'infercp';
  const room = 63 - head.length - hash.length - 2;
  const body = clean(`${deploymentId}-${revisionId ?? 'r0'}`)
    .slice(0, Math.max(0, room))
    .replace(/-+$/, '');
  const name = body ? `${head}-${body}-${hash}` : `${head}-${hash}`;
  return /^[a-z]/.test(name) ? name : `p-${name}`.slice(0, 63);
}

/** Label values: at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends (our ids are). */
export const labelValue = (s: string): string =>
  s
    .replace(/[^A-Za-z0-9_.-]/g, '_')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');

/** The parts of a pod the status reads (client-node's V1Pod has them all). */
export interface PodView {
  metadata?: { name?: string; deletionTimestamp?: Date | string };
  status?: {
    phase?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    containerStatuses?: { ready?: boolean; state?: { waiting?: { reason?: string; message?: string } } }[];
  };
}

export interface DeploymentView {
  metadata?: { generation?: number };
  spec?: { replicas?: number };
  status?: {
    readyReplicas?: number;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}

/** Waiting reasons of a container that will not start by itself: a bad image, a crash loop, a bad spec. */
const FAILING = new Set(['ImagePullBackOff', 'ErrImagePull', 'InvalidImageName', 'CrashLoopBackOff', 'CreateContainerConfigError']);

/**
 * A pool's workers from its Deployment and pods: Ready pods serve; Pending pods the scheduler refused (no GPU left)
 * are throttled; pods whose container cannot start are unhealthy; the rest initialize. Terminating pods are not
 * counted (they leave). Each distinct reason is kept once with its pods' count, so the user reads the cluster's words.
 */
export function poolStatusOf(d: DeploymentView, pods: PodView[], inFlight: number | null): PoolStatus {
  const s: PoolStatus = { serviceable: 0, initializing: 0, throttled: 0, unhealthy: 0, inFlight, reasons: [] };
  const reasons = new Map<string, number>();
  const say = (r: string) => reasons.set(r, (reasons.get(r) ?? 0) + 1);
  for (const p of pods) {
    if (p.metadata?.deletionTimestamp) continue;
    const st = p.status ?? {};
    const cond = (t: string) => st.conditions?.find((c) => c.type === t);
    if (cond('Ready')?.status === 'True') {
      s.serviceable++;
      continue;
    }
    const sched = cond('PodScheduled');
    if (st.phase === 'Pending' && sched?.status === 'False' && sched.reason === 'Unschedulable') {
      s.throttled++;
      say(`Unschedulable: ${sched.message ?? 'no node fits the pod'}`);
      continue;
    }
    const waiting = st.containerStatuses?.map((c) => c.state?.waiting).find((w) => w?.reason && FAILING.has(w.reason));
    if (waiting || st.phase === 'Failed') {
      s.unhealthy++;
      say(waiting ? `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}` : 'pod Failed');
      continue;
    }
    s.initializing++;
  }
  const progressing = d.status?.conditions?.find((c) => c.type === 'Progressing');
  if (progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded') {
    // Past the deadline the Deployment has given up: pods still initializing will not be waited for.
    s.unhealthy += s.initializing;
    s.initializing = 0;
    say(`ProgressDeadlineExceeded: ${progressing.message ?? 'the rollout did not finish in time'}`);
  }
  s.reasons = [...reasons].map(([r, n]) => (n > 1 ? `${r} (${n} pods)` : r));
  return s;
}

/** A Kubernetes Status body (client-node gives it as a string, or undefined for a 401). */
export interface KubeStatus {
  kind?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; retryAfterSeconds?: number; causes?: { field?: string; message?: string }[] };
}

/** What a client-node error says: the HTTP code, the Status, and Retry-After; null when it is not an API answer. */
export function kubeErrorOf(e: unknown): { code: number; status: KubeStatus; retryAfterSeconds?: number } | null {
  const x = e as { code?: unknown; body?: unknown; headers?: Record<string, string> } | null;
  if (!x || typeof x.code !== 'number' || x.code < 100 || x.code > 599) return null;
  let status: KubeStatus = {};
  if (typeof x.body === 'string') {
    try {
      status = JSON.parse(x.body) as KubeStatus;
    } catch {
      status = { message: x.body.slice(0, 300) };
    }
  } else if (x.body && typeof x.body === 'object') status = x.body as KubeStatus;
  const header = x.headers?.['retry-after'] ?? x.headers?.['Retry-After'];
  const after = header !== undefined ? Number(header) : status.details?.retryAfterSeconds;
  return { code: x.code, status, ...(after !== undefined && Number.isFinite(after) ? { retryAfterSeconds: after } : {}) };
}

/** Connection failures worth another try (reset, refused while the API server restarts, a timeout). */
const TRANSIENT_NET = /ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|EAI_AGAIN|socket hang up|UND_ERR|other side closed|fetch failed/i;

/** Whether a failure is worth retrying here: 429, 5xx, a Conflict on a race, a connection that broke. */
export function transientKube(e: unknown): boolean {
  const k = kubeErrorOf(e);
  if (k) return k.code === 429 || k.code >= 500 || k.status.reason === 'Conflict';
  const err = e as { message?: string; code?: string; cause?: { code?: string; message?: string } } | null;
  return TRANSIENT_NET.test(`${err?.code ?? ''} ${err?.message ?? ''} ${err?.cause?.code ?? ''} ${err?.cause?.message ?? ''}`);
}

/**
 * A Kubernetes failure as an activity error. Permanent: Unauthorized (map on the code: client-node gives no body for
 * 401), Forbidden (the RBAC message names the verb and resource), Invalid, BadRequest, NotFound (of the namespace);
 * transient: 429 (with Retry-After as Temporal's next delay), 5xx, connection failures. `what` says which step.
 */
export function kubeFailure(e: unknown, what: string): Error {
  if (e instanceof ProviderError || e instanceof ProviderPermanentError || e instanceof ApplicationFailure) return e;
  const k = kubeErrorOf(e);
  if (!k) {
    const msg = (e as Error)?.message ?? String(e);
    return transientKube(e)
      ? new ProviderError(`Kubernetes API could not be reached to ${what}: ${msg}`)
      : new ProviderError(`Kubernetes ${what} failed: ${msg}`);
  }
  const said = k.status.message ?? `HTTP ${k.code}`;
  if (k.code === 401) {
    return new ProviderPermanentError(
      `Kubernetes refused the credential's token or certificate to ${what} (401 Unauthorized): replace the credential`,
    );
  }
  if (k.code === 429 || k.code >= 500) {
    const message = `Kubernetes API ${k.code} ${k.status.reason ?? ''} to ${what}: ${said}`.replace(/\s+/g, ' ');
    if (k.retryAfterSeconds !== undefined)
      return ApplicationFailure.create({ type: 'ProviderError', message, nextRetryDelay: `${Math.max(1, k.retryAfterSeconds)}s` });
    return new ProviderError(message);
  }
  if (k.status.reason === 'Conflict') return new ProviderError(`Kubernetes ${what}: ${said}`);
  const reason = k.status.reason ?? `HTTP ${k.code}`;
  return new ProviderPermanentError(`Kubernetes ${what}: ${reason}: ${said}`);
}
