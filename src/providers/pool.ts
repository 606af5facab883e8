// Pool providers: one URL in front of N workers the gateway cannot see (a RunPod endpoint, a Kubernetes Service).
// The scaler still decides the count and the activities still size a deployment in replica rows; here each row is
// one worker slot of its revision's pool, and the pool's worker count is held to the number of live rows. The
// count is a level read from Postgres, not a tally of calls, so a retried or replayed activity never counts twice.
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { PrismaClient } from '../database/prisma';
import type { Target } from '../domain/targets';
import type { ProviderAdapter, ProviderCapabilities, ReplicaHandle, ReplicaHealth, ReplicaSpec } from './provider';

/** What a pool runs: one revision of a deployment. */
export interface PoolSpec {
  /** Stable, unique per revision: the provider-side name, so a retried create finds the pool it made. */
  name: string;
  deploymentId: string;
  revisionId: string | null;
  /** Whose account: null is the platform's own (managed), else a stored credential. */
  credentialId: string | null;
  model: string;
  task: ReplicaSpec['task'];
  gpu: string;
  variantId: string;
  pipelineId: string;
  maxConcurrency: number;
  /** The variant's engine settings, when the replica spec carries them (a pool that runs the real engine's flags). */
  engine?: ReplicaSpec['engine'];
}

export interface PoolHandle {
  /** Provider-side id (a RunPod endpoint id). */
  poolId: string;
  /** OpenAI-compatible base URL of the pool (no trailing /v1). */
  address: string;
  /** The worker count the pool was created or found with, when it holds an exact count. */
  workers: number | null;
}

/** A pool's workers as the provider reports them. */
export interface PoolStatus {
  /** Workers that take requests now. */
  serviceable: number;
  initializing: number;
  /** Waiting for GPU capacity the provider does not have. */
  throttled: number;
  /** Failing health checks (a crash-looping container). */
  unhealthy: number;
  /** Requests running or queued at the pool, when the provider tells. */
  inFlight: number | null;
  /** The provider's own words for workers that do not serve (a scheduler's or kubelet's message), when it gives them. */
  reasons?: string[];
}

/** A pool the provider runs, for reconciliation and the drift check. */
export interface PoolListing {
  poolId: string;
  name: string;
  /** The bounds the provider holds now. */
  workersMin: number;
  workersMax: number;
}

/** What a pool provider implements; PooledReplicas turns it into a ProviderAdapter. */
export interface PoolAdapter {
  readonly target: Target;
  readonly capabilities: ProviderCapabilities;
  /** The name a pool gets: stable for a revision, and recognisably ours. */
  poolName(spec: Pick<PoolSpec, 'deploymentId' | 'revisionId'>): string;
  /** Creates the pool unless one of that name exists (adopted as it is); returns its handle either way. */
  ensurePool(spec: PoolSpec): Promise<PoolHandle>;
  /** Holds the pool at exactly `workers` (0 keeps the pool and its URL, and bills nothing). */
  resizePool(credentialId: string | null, poolId: string, workers: number): Promise<void>;
  /** null when the pool is gone. */
  poolStatus(credentialId: string | null, poolId: string): Promise<PoolStatus | null>;
  /** Deletes the pool; a pool already gone is fine. */
  deletePool(credentialId: string | null, poolId: string): Promise<void>;
  /** The pools of this target in one account. */
  listPools(credentialId: string | null): Promise<PoolListing[]>;
}

export interface PooledReplicasOptions {
  /** Fewest ms between two resizes of one pool; the changes in between are applied together. */
  minResizeIntervalMs: number;
  /** How long one status read serves every replica of the pool that asks, ms. */
  statusTtlMs?: number;
}

const LIVE = ['STARTING', 'READY', 'DRAINING'] as const;

/** Which replica rows are a pool's slots: the rows of one revision of one deployment. */
export interface PoolKey {
  deploymentId: string;
  revisionId: string | null;
}

const slotsOf = (k: PoolKey) => ({ deploymentId: k.deploymentId, ...(k.revisionId ? { revisionId: k.revisionId } : {}) });

interface PoolState {
  key: PoolKey;
  /** The resize loop in flight; every caller that changed the level meanwhile awaits it. */
  loop: Promise<void> | null;
  again: boolean;
  applied: number | null;
  lastResizeAt: number;
}

/**
 * A ProviderAdapter over a pool provider. A replica row is a worker slot: starting one ensures its revision's pool
 * and raises the pool to the live rows; stopping one lowers it. Draining works on the live count: a draining slot
 * is done once what the pool runs fits the slots still serving (the gateway already stopped routing to it), so
 * the workers are lowered only after the in-flight requests fit.
 */
export class PooledReplicas implements ProviderAdapter {
  readonly target: Target;
  readonly capabilities: ProviderCapabilities;
  /** Management calls that changed a pool's size (resizes), for the bench's calls-per-decision figure. */
  resizes = 0;
  private readonly pools = new Map<string, Promise<PoolHandle>>();
  private readonly state = new Map<string, PoolState>();
  private readonly status = new Map<string, { at: number; v: Promise<PoolStatus | null> }>();
  /** Background work of the provider (its drift check), stopped by close(). */
  readonly closers: (() => void)[] = [];
  /** One pass of the provider's drift check, when it has one (tests and the bench run it on demand). */
  driftCheck?: () => Promise<void>;
  /** Replicas this process was asked to stop whose rows may still read live: not counted in the level. */
  private readonly stopping = new Set<string>();

  constructor(
    readonly pool: PoolAdapter,
    private readonly prisma: PrismaClient,
    private readonly log: Logger,
    private readonly o: PooledReplicasOptions,
  ) {
    this.target = pool.target;
    this.capabilities = pool.capabilities;
  }

  /** Deployments' accounts: a deployment's credential is set when it is made and never changes, so it is read once. */
  private readonly accounts = new LRUCache<string, { credentialId: string | null }>({ max: 10_000 });

  /** The account a deployment runs on (null: the managed one). Health and drain polls ask it every few ms. */
  private async account(deploymentId: string): Promise<string | null> {
    const hit = this.accounts.get(deploymentId);
    if (hit) return hit.credentialId;
    const d = await this.prisma.deployment.findUnique({ where: { id: deploymentId }, select: { credentialId: true } });
    if (d) this.accounts.set(deploymentId, { credentialId: d.credentialId });
    return d?.credentialId ?? null;
  }

  async ensureReplica(spec: ReplicaSpec): Promise<ReplicaHandle> {
    const credentialId = await this.account(spec.deploymentId);
    const base = { ...spec, credentialId };
    const name = this.pool.poolName(base);
    let pending = this.pools.get(name);
    if (!pending) {
      pending = this.pool.ensurePool({ ...base, name });
      this.pools.set(name, pending);
      // A failed create is retried by the activity: forget it so the retry calls again.
      pending.catch(() => this.pools.delete(name));
    }
    const h = await pending;
    const st = this.stateOf(h.poolId, spec);
    if (st.applied === null && h.workers !== null) st.applied = h.workers;
    await this.resize(credentialId, h.poolId);
    return { replicaId: spec.replicaId, deploymentId: spec.deploymentId, providerId: h.poolId, address: h.address };
  }

  private stateOf(poolId: string, key?: PoolKey): PoolState {
    let st = this.state.get(poolId);
    if (!st) {
      if (!key) throw new Error(`pool ${poolId}: its deployment and revision are not known to this process`);
      this.state.set(
        poolId,
        (st = {
          key: { deploymentId: key.deploymentId, revisionId: key.revisionId },
          loop: null,
          again: false,
          applied: null,
          lastResizeAt: 0,
        }),
      );
    }
    return st;
  }

  /**
   * The rows a pool must run: every live slot of its revision, less the ones this process is stopping. (By revision,
   * not by provider id: a slot's row names its pool only once ensureReplica returned.)
   */
  async level(key: PoolKey): Promise<number> {
    const rows = await this.prisma.replica.findMany({ where: { ...slotsOf(key), state: { in: [...LIVE] } }, select: { id: true } });
    const live = new Set(rows.map((r) => r.id));
    for (const id of this.stopping) if (!live.has(id)) this.stopping.delete(id);
    return rows.filter((r) => !this.stopping.has(r.id)).length;
  }

  /**
   * Brings the pool to its level. Calls that arrive while a resize runs are folded into one more pass that re-reads
   * the level, so N replicas started together cost one or two resizes, never N; passes are at least
   * minResizeIntervalMs apart (the provider's rate limit).
   */
  resize(credentialId: string | null, poolId: string, key?: PoolKey): Promise<void> {
    const st = this.stateOf(poolId, key);
    st.again = true;
    if (!st.loop) {
      st.loop = (async () => {
        try {
          while (st.again) {
            st.again = false;
            const wait = st.lastResizeAt + this.o.minResizeIntervalMs - Date.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            const n = await this.level(st.key);
            if (n === st.applied) continue;
            await this.pool.resizePool(credentialId, poolId, n);
            this.resizes++;
            st.applied = n;
            st.lastResizeAt = Date.now();
            this.status.delete(poolId);
            this.log.debug({ target: this.target, poolId, workers: n }, 'pool resized');
          }
        } finally {
          st.loop = null;
        }
      })();
    }
    return st.loop;
  }

  close(): void {
    for (const c of this.closers.splice(0)) c();
  }

  /** Forgets what this process last applied, so the next resize sends the level whatever it was (the drift check). */
  forgetApplied(poolId: string, key: PoolKey): void {
    this.stateOf(poolId, key).applied = null;
  }

  private poolStatus(credentialId: string | null, poolId: string): Promise<PoolStatus | null> {
    const hit = this.status.get(poolId);
    if (hit && Date.now() - hit.at < (this.o.statusTtlMs ?? 50)) return hit.v;
    const v = this.pool.poolStatus(credentialId, poolId);
    this.status.set(poolId, { at: Date.now(), v });
    v.catch(() => this.status.delete(poolId));
    return v;
  }

  /** Ready once the pool serves as many workers as this slot's rank among its revision's live slots. */
  async health(handle: ReplicaHandle): Promise<ReplicaHealth> {
    const credentialId = await this.account(handle.deploymentId);
    let s: PoolStatus | null;
    try {
      s = await this.poolStatus(credentialId, handle.providerId);
    } catch {
      return 'starting';
    }
    if (!s) return 'gone';
    const row = await this.prisma.replica.findUnique({ where: { id: handle.replicaId }, select: { revisionId: true } });
    if (!row) return 'gone';
    const slots = await this.prisma.replica.findMany({
      where: { ...slotsOf({ deploymentId: handle.deploymentId, revisionId: row.revisionId }), state: { in: ['STARTING', 'READY'] } },
      orderBy: [{ readyAt: { sort: 'asc', nulls: 'last' } }, { startedAt: 'asc' }, { id: 'asc' }],
      select: { id: true },
    });
    const rank = slots.findIndex((r) => r.id === handle.replicaId) + 1;
    if (rank === 0) return 'gone';
    if (s.serviceable >= rank) return 'ready';
    // Workers that fail their health checks will not serve this slot: a crash loop, reported as the replica's exit.
    if (s.unhealthy > 0 && s.serviceable + s.initializing < rank) return 'gone';
    return 'starting';
  }

  async healthDetail(handle: ReplicaHandle): Promise<string | null> {
    const s = await this.poolStatus(await this.account(handle.deploymentId), handle.providerId).catch(() => null);
    if (!s) return null;
    const parts = [
      s.throttled ? `${s.throttled} worker(s) waiting for GPU capacity the provider does not have (throttled)` : '',
      s.unhealthy ? `${s.unhealthy} worker(s) failing their health checks` : '',
      s.initializing ? `${s.initializing} worker(s) still initializing` : '',
    ].filter(Boolean);
    if (!parts.length) return null;
    return `${this.target} endpoint ${handle.providerId}: ${parts.join(', ')}${s.reasons?.length ? ` (${s.reasons.join('; ')})` : ''}`;
  }

  /** A draining slot's share of what the pool runs: the requests that do not fit the slots still serving. */
  async inFlight(handle: ReplicaHandle): Promise<number | null> {
    const credentialId = await this.account(handle.deploymentId);
    this.status.delete(handle.providerId);
    const s = await this.poolStatus(credentialId, handle.providerId).catch(() => null);
    if (!s || s.inFlight === null) return null;
    const row = await this.prisma.replica.findUnique({ where: { id: handle.replicaId }, select: { revisionId: true } });
    const serving = await this.prisma.replica.findMany({
      where: { ...slotsOf({ deploymentId: handle.deploymentId, revisionId: row?.revisionId ?? null }), state: 'READY' },
      select: { concurrency: true },
    });
    return Math.max(0, s.inFlight - serving.reduce((n, r) => n + r.concurrency, 0));
  }

  /**
   * Lowers the slot's pool. The pool is found by the revision's name, not by the row's providerId: a row names its
   * pool only once ensureReplica returned, and a stop that comes in between (a scale-up cut short by a stop) must
   * still lower a pool that ensureReplica has already raised.
   */
  async stopReplica(replicaId: string): Promise<void> {
    const r = await this.prisma.replica.findUnique({
      where: { id: replicaId },
      select: { providerId: true, deploymentId: true, revisionId: true },
    });
    if (!r) return;
    this.stopping.add(replicaId);
    const credentialId = await this.account(r.deploymentId);
    const key = { deploymentId: r.deploymentId, revisionId: r.revisionId };
    const poolId = r.providerId ?? (await this.findPool(credentialId, key));
    if (!poolId) return;
    await this.resize(credentialId, poolId, key);
    await this.deleteIfDone(credentialId, poolId, key);
  }

  /** The pool of a revision: the one this process ensured, else the provider's of that name; null when none exists. */
  private async findPool(credentialId: string | null, key: PoolKey): Promise<string | null> {
    const name = this.pool.poolName(key);
    const mine = await this.pools.get(name)?.catch(() => null);
    if (mine) return mine.poolId;
    return (await this.pool.listPools(credentialId)).find((p) => p.name === name)?.poolId ?? null;
  }

  /**
   * A pool at zero whose revision will not serve again (retired, failed, or its deployment deleted) is deleted;
   * `done` says so without reading the statuses (the caller is retiring it).
   */
  private async deleteIfDone(credentialId: string | null, poolId: string, key: PoolKey, done = false): Promise<void> {
    const { deploymentId, revisionId } = key;
    if ((await this.level(key)) > 0) return;
    if (!done && !(await this.retired(deploymentId, revisionId))) return;
    await this.pool.deletePool(credentialId, poolId);
    for (const [name, p] of this.pools) if ((await p.catch(() => null))?.poolId === poolId) this.pools.delete(name);
    this.state.delete(poolId);
    this.log.info({ target: this.target, poolId, deploymentId }, 'pool deleted');
  }

  private async retired(deploymentId: string, revisionId: string | null): Promise<boolean> {
    const d = await this.prisma.deployment.findUnique({
      where: { id: deploymentId },
      select: { status: true, revisionId: true, revisions: { where: { id: revisionId ?? '' }, select: { status: true } } },
    });
    const rev = d?.revisions[0];
    return !d || d.status === 'DELETED' || rev?.status === 'RETIRED' || rev?.status === 'FAILED';
  }

  /** Deletes the pools of a revision (or of every revision) that will not serve again and runs no slot any more. */
  async release(deploymentId: string, revisionId: string | null): Promise<void> {
    const revisions = revisionId
      ? [revisionId]
      : (await this.prisma.revision.findMany({ where: { deploymentId }, select: { id: true } })).map((r) => r.id);
    const credentialId = await this.account(deploymentId);
    // One listing for every revision (a deployment that swapped often has many); one from before revisions has a pool of none.
    const listed = new Map((await this.pool.listPools(credentialId)).map((p) => [p.name, p.poolId]));
    for (const id of revisions.length ? revisions : [null]) {
      const key = { deploymentId, revisionId: id };
      const poolId = listed.get(this.pool.poolName(key));
      if (poolId) await this.deleteIfDone(credentialId, poolId, key, true);
    }
  }

  /** A handle for every live slot whose pool still exists (what reconciliation after a restart compares with). */
  async listReplicas(): Promise<ReplicaHandle[]> {
    const rows = await this.prisma.replica.findMany({
      where: { deployment: { target: this.target }, state: { in: [...LIVE] }, providerId: { not: null } },
      include: { deployment: { select: { credentialId: true } } },
    });
    const exists = new Map<string | null, Set<string>>();
    const out: ReplicaHandle[] = [];
    for (const r of rows) {
      const account = r.deployment.credentialId;
      if (!exists.has(account)) exists.set(account, new Set((await this.pool.listPools(account)).map((p) => p.poolId)));
      if (exists.get(account)!.has(r.providerId!))
        out.push({ replicaId: r.id, deploymentId: r.deploymentId, providerId: r.providerId!, address: r.address ?? '' });
    }
    return out;
  }
}
