// RunPod Serverless as a pool provider: one queue endpoint per revision (blue/green across endpoints, so a change of
// GPU or a rollback switches atomically in our gateway), running RunPod's vLLM worker, held at exactly the scaler's
// count by setting workers.min = workers.max (../shared/reference/providers-api.md §1.3, §1.5).
import { ApplicationFailure } from '@temporalio/common';
import { ProviderError, ProviderPermanentError } from '../errors';
import type { PoolAdapter, PoolHandle, PoolListing, PoolSpec, PoolStatus } from '../pool';
import { RunpodClient, RunpodEndpoint, RunpodError, RunpodUrls } from './client';

/**
 * Our GPU names to RunPod's serverless pools (§1.5, runpod/docs references/gpu-types.mdx). A pool id itself
 * (ADA_80_PRO) is taken as it is.
 */
export const RUNPOD_POOLS: readonly { pool: string; match: RegExp; label: string }[] = [
  { pool: 'HOPPER_141', match: /^H200/, label: 'H200' },
  { pool: 'ADA_80_PRO', match: /^H100/, label: 'H100' },
  { pool: 'AMPERE_80', match: /^A100/, label: 'A100' },
  { pool: 'ADA_48_PRO', match: /^(L40S?|6000ADA|RTX6000ADA)/, label: 'L40S, L40, RTX 6000 Ada' },
  { pool: 'AMPERE_48', match: /^(A6000|A40(?!\d)|RTXA6000)/, label: 'A6000, A40' },
  { pool: 'ADA_24', match: /^(RTX)?4090/, label: 'RTX 4090' },
  { pool: 'AMPERE_24', match: /^(L4(?!\d)|A5000|RTXA5000|(RTX)?3090)/, label: 'L4, A5000, RTX 3090' },
  { pool: 'AMPERE_16', match: /^(A4000|A4500|RTXA4000|RTXA4500|RTX4000)/, label: 'A4000, A4500, RTX 4000' },
];

/** The pool a GPU name runs on; a permanent error naming the ones we know otherwise. */
export function runpodPool(gpu: string): string {
  if (RUNPOD_POOLS.some((p) => p.pool === gpu)) return gpu;
  // RunPod's own type ids read "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090": the vendor is not part of the name.
  const key = gpu
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, '')
    .replace(/^NVIDIA/, '')
    .replace(/^GEFORCE/, '');
  const hit = RUNPOD_POOLS.find((p) => p.match.test(key));
  if (!hit) {
    throw new ProviderPermanentError(
      `GPU "${gpu}" has no RunPod serverless pool; one of ${RUNPOD_POOLS.map((p) => p.label).join('; ')}, or a pool id`,
    );
  }
  return hit.pool;
}

/** Turns a RunPod failure into the activity taxonomy: permanent ones fail the operation with RunPod's detail. */
export function providerFailure(e: unknown): Error {
  if (!(e instanceof RunpodError)) return e instanceof Error ? e : new ProviderError(String(e));
  if (e.transient) {
    // A rate limit says when to come back: Temporal's next attempt waits that long instead of its own backoff.
    if (e.retryAfterSeconds !== undefined)
      return ApplicationFailure.create({
        type: 'ProviderError',
        message: e.message,
        nextRetryDelay: `${Math.max(1, e.retryAfterSeconds)}s`,
      });
    return new ProviderError(e.message);
  }
  return new ProviderPermanentError(e.message);
}

export interface RunpodProviderOptions extends RunpodUrls {
  /** The API key of an account: null is the platform's own (managed RunPod), else a stored credential's. */
  apiKeyFor(credentialId: string | null): Promise<string>;
  /** Worker image (RunPod's vLLM worker, a versioned tag). */
  image: string;
  /** Names start with this, so reconciliation tells our endpoints from the account's others. */
  namePrefix?: string;
  /** Tries of one step before a transient failure goes to Temporal's retry policy (default 4). */
  attempts?: number;
}

/** RunPod endpoints, one per revision, in the managed account or the user's own. */
export class RunpodProvider implements PoolAdapter {
  readonly target = 'RUNPOD' as const;
  readonly capabilities = { perReplicaUrls: false, exactReplicaControl: false, maxReplicaLifetimeSeconds: null, coldStartFromZero: true };
  private readonly clients = new Map<string, { key: string; client: RunpodClient }>();
  private readonly prefix: string;

  constructor(private readonly o: RunpodProviderOptions) {
    this.prefix = o.namePrefix ?? 'infercp';
  }

  /** The client of an account; a rotated key gets a new client. */
  async client(credentialId: string | null): Promise<RunpodClient> {
    const key = await this.o.apiKeyFor(credentialId);
    const k = credentialId ?? '';
    const hit = this.clients.get(k);
    if (hit && hit.key === key) return hit.client;
    const client = new RunpodClient({ apiUrl: this.o.apiUrl, graphqlUrl: this.o.graphqlUrl, runtimeUrl: this.o.runtimeUrl, apiKey: key });
    this.clients.set(k, { key, client });
    return client;
  }

  /** Management calls made by every account's client, by route. */
  calls(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const { client } of this.clients.values()) for (const [k, v] of client.calls) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  poolName(spec: Pick<PoolSpec, 'deploymentId' | 'revisionId'>): string {
    return `${this.prefix}-${spec.deploymentId}-${spec.revisionId ?? 'r0'}`;
  }

  /**
   * Runs one adapter step (each is safe to repeat: reads, a PATCH to a level, a DELETE, a create that lists first).
   * A transient failure is retried here a few times with jittered backoff, or after RunPod's Retry-After when it is
   * short, as RunPod's own SDKs do; past that it goes to Temporal, whose retry policy backs off further.
   */
  private async guard<T>(f: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await f();
      } catch (e) {
        if (e instanceof RunpodError && e.transient && attempt < (this.o.attempts ?? 4)) {
          const waitMs = e.retryAfterSeconds !== undefined ? e.retryAfterSeconds * 1000 : 200 * 2 ** (attempt - 1) * (0.5 + Math.random());
          if (waitMs <= 5000) {
            await new Promise((r) => setTimeout(r, waitMs));
            continue;
          }
        }
        throw providerFailure(e);
      }
    }
  }

  private handle(c: RunpodClient, e: RunpodEndpoint): PoolHandle {
    return { poolId: e.id, address: c.openaiBase(e.id), workers: e.workers.min === e.workers.max ? e.workers.min : null };
  }

  ensurePool(spec: PoolSpec): Promise<PoolHandle> {
    return this.guard(async () => {
      const pool = runpodPool(spec.gpu);
      const c = await this.client(spec.credentialId);
      // v2 has no idempotency key: the name is one, so a retried create adopts the endpoint it made (§5).
      const found = (await c.listEndpoints()).find((e) => e.name === spec.name);
      if (found) return this.handle(c, found);
      const created = await c.createEndpoint({
        name: spec.name,
        type: 'QUEUE',
        image: this.o.image,
        env: {
          MODEL_NAME: spec.model,
          MAX_CONCURRENCY: String(spec.maxConcurrency),
          INFERCP_TASK: spec.task,
          INFERCP_DEPLOYMENT_ID: spec.deploymentId,
          INFERCP_VARIANT_ID: spec.variantId,
        },
        gpu: { pools: [pool], count: 1 },
        // Our scaler sizes the endpoint (min = max); it starts at zero and the first resize raises it.
        workers: { min: 0, max: 0, idleTimeout: 5 },
        scaling: { type: 'QUEUE_DELAY', queueDelay: 4 },
        // FlashBoot is free and shortens revivals; the v2 default is OFF, so it is set explicitly (§1.9).
        flashboot: 'FLASHBOOT',
        timeout: 600_000,
      });
      return this.handle(c, created);
    });
  }

  resizePool(credentialId: string | null, poolId: string, workers: number): Promise<void> {
    return this.guard(async () => {
      const c = await this.client(credentialId);
      // workers/scaling/timeout apply promptly and make no release (§1.3 PATCH semantics).
      await c.updateEndpoint(poolId, { workers: { min: workers, max: workers } });
    });
  }

  poolStatus(credentialId: string | null, poolId: string): Promise<PoolStatus | null> {
    return this.guard(async () => {
      const h = await (await this.client(credentialId)).health(poolId);
      if (!h) return null;
      const w = h.workers ?? {};
      const j = h.jobs ?? {};
      return {
        // Readiness is idle + ready + running; throttled-only means at capacity, not unreachable (§1.8).
        serviceable: (w.idle ?? 0) + (w.ready ?? 0) + (w.running ?? 0),
        initializing: w.initializing ?? 0,
        throttled: w.throttled ?? 0,
        unhealthy: w.unhealthy ?? 0,
        inFlight: (j.inProgress ?? 0) + (j.inQueue ?? 0),
      };
    });
  }

  deletePool(credentialId: string | null, poolId: string): Promise<void> {
    return this.guard(async () => (await this.client(credentialId)).deleteEndpoint(poolId));
  }

  listPools(credentialId: string | null): Promise<PoolListing[]> {
    return this.guard(async () =>
      (await (await this.client(credentialId)).listEndpoints())
        .filter((e) => e.name.startsWith(`${this.prefix}-`))
        .map((e) => ({ poolId: e.id, name: e.name, workersMin: e.workers.min, workersMax: e.workers.max })),
    );
  }
}
