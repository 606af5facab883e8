// The MODAL target: the user's own Modal account (a stored token), one replica = one Modal Sandbox running the
// serving image with the revision's GPU and an encrypted port 8000, whose tunnel is the replica's upstream
// (../shared/reference/providers-api.md §2.3). The real `modal` SDK, pinned to 0.11.1, makes every call; tests and
// demo credentials hand it an in-process fake control plane (./fake.ts) through ModalClientParams.cpClient.
import { AlreadyExistsError, InvalidError, ModalClient, NotFoundError, ResourceExhaustedError, SandboxTimeoutError } from 'modal';
import type { Sandbox } from 'modal';
import { ClientError, Status } from 'nice-grpc';
import type { Logger } from 'pino';
import type { PrismaClient } from '../../database/prisma';
import { ProviderError, ProviderPermanentError } from '../errors';
import type { ProviderAdapter, ProviderCapabilities, ReplicaHandle, ReplicaHealth, ReplicaSpec } from '../provider';
import { replicaHealth, replicaInFlight } from '../replica-http';
import { replicaKey } from '../../credentials/store';

/** What a MODAL credential holds (sealed as this JSON): a token pair and the environment its Sandboxes run in. */
export interface ModalAccount {
  tokenId: string;
  tokenSecret: string;
  /** Empty: the account's default environment. */
  environment: string;
}

/** How a client reaches a control plane: the real one (cpClient undefined) or an injected fake, whose tunnels are http. */
export interface ModalControlPlane {
  cpClient?: unknown;
  tunnelScheme: 'https' | 'http';
}

/** The sealed form of a Modal credential, and back; a blob that is not one is an error naming the credential. */
export const sealModalAccount = (a: ModalAccount): string => JSON.stringify(a);
export function parseModalAccount(secret: string, credentialId: string): ModalAccount {
  try {
    const a = JSON.parse(secret) as Partial<ModalAccount>;
    if (typeof a.tokenId === 'string' && typeof a.tokenSecret === 'string')
      return { tokenId: a.tokenId, tokenSecret: a.tokenSecret, environment: a.environment ?? '' };
  } catch {
    /* fall through */
  }
  throw new ProviderPermanentError(`provider credential ${credentialId} is not a Modal token (tokenId and tokenSecret)`);
}

/** The key a replica's server requires (vLLM --api-key, read from VLLM_API_KEY); see replicaKey. */
export const modalReplicaKey = replicaKey;

/** Modal's GPU names (modal.com/docs/guide/gpu), optionally TYPE:COUNT; a few of our spellings map onto them. */
export const MODAL_GPUS = [
  'T4',
  'L4',
  'A10',
  'L40S',
  'A100',
  'A100-40GB',
  'A100-80GB',
  'RTX-PRO-6000',
  'H100',
  'H100!',
  'H200',
  'B200',
  'B200+',
];
const ALIASES: Record<string, string> = { 'H100-80GB': 'H100', A10G: 'A10', 'A100-80G': 'A100-80GB', 'A100-40G': 'A100-40GB' };

/** The gpu option of a Sandbox for our GPU name; a permanent error listing Modal's names otherwise. */
export function modalGpu(gpu: string): string {
  const [rawType, rawCount, ...rest] = gpu.trim().toUpperCase().split(':');
  const type = ALIASES[rawType] ?? rawType;
  const count = rawCount === undefined ? 1 : Number(rawCount);
  if (!MODAL_GPUS.includes(type) || rest.length || !Number.isInteger(count) || count < 1 || count > 8) {
    throw new ProviderPermanentError(`GPU "${gpu}" is not a Modal GPU; one of ${MODAL_GPUS.join(', ')}, optionally :COUNT (1-8)`);
  }
  return count > 1 ? `${type}:${count}` : type;
}

/** A Sandbox name: unique per App and stable per replica, so a retried create finds the one it made. */
export const sandboxName = (replicaId: string) => `r-${replicaId.replace(/[^A-Za-z0-9._-]/g, '-')}`.slice(0, 63);

/**
 * Turns a Modal failure into the activity taxonomy (§5): capacity and outages are transient (Temporal retries; the
 * message says why), a refused token, a missing permission and invalid input are permanent and name what to fix.
 */
export function modalFailure(e: unknown, ctx: { tokenId: string; gpu?: string }): Error {
  if (e instanceof ProviderError || e instanceof ProviderPermanentError) return e;
  const gpu = ctx.gpu ? `${ctx.gpu} ` : '';
  if (e instanceof ResourceExhaustedError || (e instanceof ClientError && e.code === Status.RESOURCE_EXHAUSTED)) {
    return new ProviderError(`Modal capacity: no ${gpu}GPU available for a Sandbox right now (${detail(e)}); retrying`);
  }
  if (e instanceof ClientError) {
    switch (e.code) {
      case Status.UNAUTHENTICATED:
        return new ProviderPermanentError(
          `Modal refused token ${ctx.tokenId} (UNAUTHENTICATED: ${e.details}); rotate the credential with a valid token`,
        );
      case Status.PERMISSION_DENIED:
        return new ProviderPermanentError(
          `Modal token ${ctx.tokenId} may not do this (PERMISSION_DENIED: ${e.details}); use a token with Sandbox rights`,
        );
      case Status.INVALID_ARGUMENT:
      case Status.FAILED_PRECONDITION:
        return new ProviderPermanentError(`Modal refused the request: ${e.details}`);
      case Status.NOT_FOUND:
        return new ProviderPermanentError(`Modal: ${e.details}`);
      default:
        return new ProviderError(`Modal did not answer (${Status[e.code]}: ${e.details}); retrying`);
    }
  }
  if (e instanceof InvalidError) return new ProviderPermanentError(`Modal refused the request: ${e.message}`);
  if (e instanceof NotFoundError) return new ProviderPermanentError(`Modal: ${e.message}`);
  if (e instanceof SandboxTimeoutError) return new ProviderError(`Modal: the Sandbox's tunnel is not up yet; retrying`);
  return new ProviderError(`Modal: ${e instanceof Error ? e.message : String(e)}`);
}
const detail = (e: Error) => (e instanceof ClientError ? e.details : e.message);

export interface ModalProviderOptions {
  prisma: PrismaClient;
  log: Logger;
  /** The sealed secret of a credential (readCredentialSecret). */
  secretOf(credentialId: string): Promise<string>;
  /** The control plane an account's client talks to (the real one, or the fake for demo tokens). */
  controlPlane(account: ModalAccount): ModalControlPlane;
  /** The key a replica's server requires (modalReplicaKey in production). */
  replicaKey(replicaId: string): string;
  /** The serving image (a registry tag), e.g. vllm/vllm-openai:v0.11.0. */
  image: string;
  /** The App every Sandbox of this control plane runs in, per environment. */
  appName: string;
  /** Sandbox timeout, s: just under Modal's 24 h cap; the rotation replaces a replica before it. */
  sandboxTimeoutSeconds: number;
  /** How long ensureReplica waits for Modal to schedule a Sandbox before it retries (an activity has a minute). */
  scheduleWaitMs?: number;
}

interface AccountClient {
  secret: string;
  account: ModalAccount;
  client: ModalClient;
  scheme: 'https' | 'http';
}

/** Modal's own lifetime cap of a Sandbox, s (modal.com/docs/guide/sandboxes). */
export const MODAL_MAX_LIFETIME_SECONDS = 86_400;

/** One Sandbox per replica row, in the App `appName` of the credential's environment, tagged with its ids. */
export class ModalProvider implements ProviderAdapter {
  readonly target = 'MODAL' as const;
  readonly capabilities: ProviderCapabilities;
  private readonly clients = new Map<string, AccountClient>();
  /** Where each replica runs, learned from ensureReplica and listReplicas (stopReplica gets only the id). */
  private readonly known = new Map<string, { credentialId: string; sandboxId: string }>();

  constructor(private readonly o: ModalProviderOptions) {
    // A replica lives as long as its Sandbox's timeout (at most Modal's cap); the scaler rotates it out before.
    this.capabilities = {
      perReplicaUrls: true,
      exactReplicaControl: true,
      maxReplicaLifetimeSeconds: Math.min(o.sandboxTimeoutSeconds, MODAL_MAX_LIFETIME_SECONDS),
      coldStartFromZero: false,
    };
  }

  /** The client of a credential; a rotated token gets a new client. */
  async client(credentialId: string): Promise<AccountClient> {
    const secret = await this.o.secretOf(credentialId);
    const hit = this.clients.get(credentialId);
    if (hit && hit.secret === secret) return hit;
    const account = parseModalAccount(secret, credentialId);
    const plane = this.o.controlPlane(account);
    const client = new ModalClient({
      tokenId: account.tokenId,
      tokenSecret: account.tokenSecret,
      ...(account.environment ? { environment: account.environment } : {}),
      ...(plane.cpClient ? { cpClient: plane.cpClient as never } : {}),
    });
    const made = { secret, account, client, scheme: plane.tunnelScheme };
    this.clients.set(credentialId, made);
    return made;
  }

  private async credentialOf(deploymentId: string): Promise<string> {
    const d = await this.o.prisma.deployment.findUnique({ where: { id: deploymentId }, select: { credentialId: true } });
    if (!d) throw new ProviderPermanentError(`deployment ${deploymentId} not found`);
    if (!d.credentialId) {
      throw new ProviderPermanentError(
        'a MODAL deployment runs on your own Modal account: add a token with addProviderCredential(input: { target: MODAL, name, tokenId, tokenSecret }) and deploy with its credentialId',
      );
    }
    return d.credentialId;
  }

  private async guard<T>(c: AccountClient, gpu: string | undefined, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw modalFailure(e, { tokenId: c.account.tokenId, gpu });
    }
  }

  private address(c: AccountClient, t: { host: string; port: number; url: string }) {
    return c.scheme === 'https' ? t.url : `http://${t.host}:${t.port}`;
  }

  async ensureReplica(spec: ReplicaSpec): Promise<ReplicaHandle> {
    const gpu = modalGpu(spec.gpu);
    const credentialId = await this.credentialOf(spec.deploymentId);
    const c = await this.client(credentialId);
    return this.guard(c, gpu, async () => {
      const app = await c.client.apps.fromName(this.o.appName, { createIfMissing: true });
      const name = sandboxName(spec.replicaId);
      const create = c.client.sandboxes.create(app, c.client.images.fromRegistry(this.o.image), {
        gpu,
        command: [
          'vllm',
          'serve',
          spec.model,
          '--host',
          '0.0.0.0',
          '--port',
          '8000',
          '--max-num-seqs',
          String(spec.maxConcurrency),
          ...(spec.task === 'EMBEDDINGS' ? ['--runner', 'pooling'] : []),
        ],
        encryptedPorts: [8000],
        timeoutMs: this.o.sandboxTimeoutSeconds * 1000,
        // An ephemeral Secret (the SDK merges env into one): the key is not on the command line Modal shows.
        env: { VLLM_API_KEY: this.o.replicaKey(spec.replicaId), INFERCP_TASK: spec.task },
        name,
        tags: {
          infercp: 'replica',
          infercp_deployment: spec.deploymentId,
          infercp_replica: spec.replicaId,
          infercp_pipeline: spec.pipelineId,
          infercp_variant: spec.variantId,
          infercp_revision: spec.revisionId ?? '',
        },
      });
      let sb: Sandbox;
      try {
        sb = await withDeadline(create, this.o.scheduleWaitMs ?? 40_000, () => {
          // The SDK keeps waiting (up to 21 min, then it terminates the Sandbox); the retry adopts it by name.
          create.catch(() => undefined);
          return new ProviderError(`Modal has not scheduled Sandbox ${name} (${gpu}) yet, waiting for capacity; retrying`);
        });
      } catch (e) {
        // A retried activity, or a second caller: the name is taken by the Sandbox made before, which is adopted.
        if (!(e instanceof AlreadyExistsError)) throw e;
        sb = await c.client.sandboxes.fromName(this.o.appName, name);
      }
      this.known.set(spec.replicaId, { credentialId, sandboxId: sb.sandboxId });
      const tunnel = (await sb.tunnels(15_000))[8000];
      if (!tunnel) throw new ProviderError(`Modal Sandbox ${sb.sandboxId} has no tunnel for port 8000 yet; retrying`);
      return { replicaId: spec.replicaId, deploymentId: spec.deploymentId, providerId: sb.sandboxId, address: this.address(c, tunnel) };
    });
  }

  async health(handle: ReplicaHandle): Promise<ReplicaHealth> {
    if (!handle.providerId || !handle.address) return 'starting';
    const c = await this.client(await this.credentialOf(handle.deploymentId));
    const exited = await this.guard(c, undefined, async () => {
      try {
        return (await (await c.client.sandboxes.fromId(handle.providerId)).poll()) !== null;
      } catch (e) {
        if (e instanceof NotFoundError || (e instanceof ClientError && e.code === Status.NOT_FOUND)) return true;
        throw e;
      }
    });
    if (exited) return 'gone';
    return replicaHealth(handle.address, `Bearer ${this.o.replicaKey(handle.replicaId)}`);
  }

  /** Running plus waiting requests, from the simulator's /stats or vLLM's Prometheus gauges; null when neither answers. */
  inFlight(handle: ReplicaHandle): Promise<number | null> {
    return replicaInFlight(handle.address, `Bearer ${this.o.replicaKey(handle.replicaId)}`);
  }

  async stopReplica(replicaId: string): Promise<void> {
    let where = this.known.get(replicaId);
    if (!where) {
      const row = await this.o.prisma.replica.findUnique({
        where: { id: replicaId },
        select: { providerId: true, deployment: { select: { credentialId: true } } },
      });
      const credentialId = row?.deployment.credentialId;
      if (!credentialId) return;
      const c = await this.client(credentialId);
      let sandboxId = row.providerId;
      if (!sandboxId) {
        // ensureReplica failed after the create: the Sandbox is found by its name.
        sandboxId = await this.guard(c, undefined, async () => {
          try {
            return (await c.client.sandboxes.fromName(this.o.appName, sandboxName(replicaId))).sandboxId;
          } catch (e) {
            if (e instanceof NotFoundError) return null;
            throw e;
          }
        });
        if (!sandboxId) return;
      }
      where = { credentialId, sandboxId };
    }
    const c = await this.client(where.credentialId);
    const { sandboxId } = where;
    await this.guard(c, undefined, async () => {
      try {
        await (await c.client.sandboxes.fromId(sandboxId)).terminate();
      } catch (e) {
        if (!(e instanceof NotFoundError || (e instanceof ClientError && e.code === Status.NOT_FOUND))) throw e;
      }
    });
    this.known.delete(replicaId);
  }

  /**
   * Our running Sandboxes in every Modal account a live credential names, found by their tags (SandboxList). An
   * account that cannot be listed now (an outage, a revoked token) is reported by its rows as they are, so a
   * reconciliation neither reaps nor marks lost what it could not see.
   */
  async listReplicas(): Promise<ReplicaHandle[]> {
    const creds = await this.o.prisma.providerCredential.findMany({ where: { target: 'MODAL', deletedAt: null }, select: { id: true } });
    const out: ReplicaHandle[] = [];
    for (const { id } of creds) {
      try {
        out.push(...(await this.listAccount(id)));
      } catch (e) {
        this.o.log.warn(
          { credentialId: id, err: (e as Error).message },
          'could not list Modal Sandboxes; keeping their replicas as they are',
        );
        const rows = await this.o.prisma.replica.findMany({
          where: { deployment: { credentialId: id }, state: { in: ['STARTING', 'READY', 'DRAINING'] } },
        });
        out.push(
          ...rows.map((r) => ({ replicaId: r.id, deploymentId: r.deploymentId, providerId: r.providerId ?? '', address: r.address ?? '' })),
        );
      }
    }
    return out;
  }

  private async listAccount(credentialId: string): Promise<ReplicaHandle[]> {
    const c = await this.client(credentialId);
    return this.guard(c, undefined, async () => {
      let appId: string;
      try {
        appId = (await c.client.apps.fromName(this.o.appName)).appId;
      } catch (e) {
        if (e instanceof NotFoundError) return [];
        throw e;
      }
      const out: ReplicaHandle[] = [];
      for await (const sb of c.client.sandboxes.list({ appId, tags: { infercp: 'replica' } })) {
        const tags = await sb.getTags();
        if (!tags.infercp_replica || !tags.infercp_deployment) continue;
        const tunnel = await sb.tunnels(5_000).then(
          (t) => t[8000],
          () => undefined,
        );
        this.known.set(tags.infercp_replica, { credentialId, sandboxId: sb.sandboxId });
        out.push({
          replicaId: tags.infercp_replica,
          deploymentId: tags.infercp_deployment,
          providerId: sb.sandboxId,
          address: tunnel ? this.address(c, tunnel) : '',
        });
      }
      return out;
    });
  }
}

/** `p`, or the error of `onTimeout` once `ms` pass first. */
function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(onTimeout()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
