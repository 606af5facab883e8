// The gateway's read model of Postgres, and the only gateway file that queries it: keys, routes, model names, month
// spend and replica counts, cached and dropped the moment a NOTIFY says they changed.
import { LRUCache } from 'lru-cache';
import { Client as PgClient } from 'pg';
import type { Logger } from 'pino';
import { hashSecret } from '../common/secrets';
import type { PrismaClient } from '../database/prisma';
import { CHANNEL_KEYS, CHANNEL_ROUTES } from '../database/notify';
import { PLANS, planMaxConcurrency } from '../domain/plans';
import { monthSpendUsd } from '../usage/spend';
import type { Mode, Target, Task } from '../domain/targets';
import type { ReplicaCount } from './metrics';

export interface KeyInfo {
  id: string;
  workspaceId: string;
  scope: 'WORKSPACE' | 'PIPELINE' | 'DEPLOYMENT';
  pipelineId: string | null;
  deploymentId: string | null;
  issuedAt: number | null;
  expiresAt: number | null;
  revokedAt: number | null;
  /** When rotateApiKey replaced it (it works until expiresAt), and the replacement's prefix. */
  rotatedAt: number | null;
  replacedByPrefix: string | null;
  /** Requests per minute: the key's own limit, else its plan's default; null means none. */
  ratePerMinute: number | null;
  /** Concurrent requests the workspace's plan allows across all its deployments. */
  concurrencyBudget: number;
  /** Monthly spend cap in USD; null means none. */
  spendCapUsd: number | null;
}

export interface RouteReplica {
  id: string;
  address: string;
  concurrency: number;
  /** The Authorization header this replica wants (a Modal Sandbox's own key); absent or null: the route's. */
  authorization?: string | null;
}

export interface Route {
  deploymentId: string;
  workspaceId: string;
  /** Deployment status (ACTIVE, STOPPED, ...). */
  deploymentStatus: string;
  pipelineId: string;
  pipelineName: string;
  /** Model name the replicas serve (what the upstream expects in `model`). */
  model: string;
  task: Task;
  /** What prices its usage. */
  target: Target;
  /** It runs on the user's own provider account (a credential): its usage is not metered. */
  ownAccount: boolean;
  mode: Mode;
  gpu: string;
  replicas: RouteReplica[];
  /** Replicas started and not yet serving: capacity on the way, so queued requests keep waiting for it. */
  starting: number;
  /** The scaler's per-replica target; the load reporter reports at once when demand grows by this much. */
  targetConcurrency: number | null;
  /** The Authorization header the upstream wants (a RunPod endpoint takes its account's key); null for none. */
  upstreamAuthorization: string | null;
}

/** The keys one deployment's upstreams take, resolved once per route load. */
export interface UpstreamKeys {
  /** The provider account's key for the whole route (RunPod's runtime checks one); null for none. */
  route: string | null;
  /** A replica's own key (a Modal Sandbox's; a CUSTOM box's, by its address); null: the route's. */
  replica(replicaId: string, address: string): string | null;
}

/**
 * The keys a deployment's upstreams take. Async once per deployment (a credential is read and opened once), then each
 * replica's is a lookup.
 */
export type UpstreamAuth = (d: { target: Target; credentialId: string | null }) => Promise<UpstreamKeys>;

const NO_UPSTREAM_AUTH: UpstreamAuth = async () => ({ route: null, replica: () => null });

/**
 * A read of Postgres the gateway could not make (refused, cut, or slower than its bound) and had no cached answer
 * recent enough to serve instead: the request gets a 503 naming the database, never a 500 or a hang.
 */
export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';
}

export interface LookupOptions {
  /**
   * How long past its TTL an entry is still served while Postgres cannot be read (a refresh fails), ms; past it a
   * request waits for a read and, if that fails too, gets DatabaseUnavailableError. Default: without bound.
   */
  staleServeMs?: number;
  /** The longest a read may take before it counts as failed, ms (default 5000). */
  readTimeoutMs?: number;
  now?: () => number;
}

interface Entry<V> {
  v: V;
  /** When it was read from Postgres. */
  at: number;
  ttl: number;
}

/** Rejects after ms (the read itself is left to finish or fail on its own). */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A bounded cache for one kind of lookup: a missing entry is loaded once however
 * many requests ask at the same moment, and an entry past its TTL keeps being
 * served while one background read refreshes it. NOTIFY deletes entries (and
 * cancels a read in flight, so a read from before the change is never stored);
 * the TTL only bounds staleness if a notification is missed. While Postgres
 * cannot be read, an entry is served up to staleServeMs past its TTL; past
 * that, and for an entry never loaded, get() throws DatabaseUnavailableError.
 */
export class Lookup<V> {
  private readonly cache: LRUCache<string, Entry<V>>;
  private readonly staleServeMs: number;
  private readonly now: () => number;
  /** The last failed read of each key, by read sequence (cleared by a read that succeeds). */
  private readonly failed = new Map<string, { seq: number; err: Error }>();
  private seq = 0;
  private readonly load: (k: string) => Promise<V>;
  private readonly readTimeoutMs: number;

  constructor(max: number, ttlMs: number, load: (k: string) => Promise<V>, ttlFor?: (v: V) => number, o: LookupOptions = {}) {
    this.staleServeMs = o.staleServeMs ?? Infinity;
    this.now = o.now ?? Date.now;
    const readTimeoutMs = o.readTimeoutMs ?? 5000;
    this.load = load;
    this.readTimeoutMs = readTimeoutMs;
    this.cache = new LRUCache<string, Entry<V>>({
      max,
      ttl: ttlMs,
      allowStale: true,
      noDeleteOnStaleGet: true,
      allowStaleOnFetchRejection: true,
      fetchMethod: async (k, _stale, { options }) => {
        const seq = ++this.seq;
        try {
          const v = await bounded(load(k), readTimeoutMs, 'a read of Postgres');
          this.failed.delete(k);
          const ttl = ttlFor ? ttlFor(v) : ttlMs;
          options.ttl = ttl;
          return { v, at: this.now(), ttl };
        } catch (err) {
          if (this.failed.size > max) this.failed.clear();
          this.failed.set(k, { seq, err: err as Error });
          throw err;
        }
      },
    });
  }

  /** Served: within its TTL, or past it by no more than staleServeMs. */
  private usable(e: Entry<V> | undefined): e is Entry<V> {
    return e !== undefined && this.now() - e.at <= e.ttl + this.staleServeMs;
  }

  private unavailable(k: string, since: number): DatabaseUnavailableError | null {
    const f = this.failed.get(k);
    if (!f || f.seq <= since) return null;
    return new DatabaseUnavailableError(`Postgres could not be read: ${f.err.message}`);
  }

  async get(k: string): Promise<V> {
    // A read cancelled because the entry was invalidated meanwhile is made again, now that the change
    // is in; a few times at most, so a row that changes without pause cannot hold a request forever: then one
    // read is served as it is, not stored (it began after the last change this process had heard of).
    for (let attempt = 1; ; attempt++) {
      const since = this.seq;
      let e: Entry<V> | undefined;
      try {
        e = await this.cache.fetch(k);
        if (this.usable(e)) return e.v;
        // Too old to serve (Postgres has been unreadable past the bound): only a fresh read will do.
        if (e) e = await this.cache.fetch(k, { allowStale: false, forceRefresh: true });
        if (this.usable(e)) return e.v;
      } catch (err) {
        if (!(err instanceof Error) || !/abort/i.test(`${err.name} ${err.message}`)) throw err;
        if (attempt >= 3) return this.readThrough(k);
        continue;
      }
      // Nothing servable: a read that failed (the database), or one cancelled by an invalidation (read again).
      const down = this.unavailable(k, since);
      if (down || e) throw down ?? new DatabaseUnavailableError('Postgres could not be read and the cached entry is too old to serve');
      if (attempt >= 3) return this.readThrough(k);
    }
  }

  /** One read past the cache, for a key invalidated during each of its cached reads. */
  private async readThrough(k: string): Promise<V> {
    try {
      return await bounded(this.load(k), this.readTimeoutMs, 'a read of Postgres');
    } catch (err) {
      throw new DatabaseUnavailableError(`Postgres could not be read: ${(err as Error).message}`);
    }
  }

  delete(k: string) {
    this.cache.delete(k);
  }

  clear() {
    this.cache.clear();
  }
}

/**
 * What the gateway must know from Postgres: keys by hash and routes by
 * deployment. Both are cached; a LISTEN connection drops entries the moment a
 * key is revoked or a route changes, so every gateway process sees it within a
 * round trip, with no database read per request.
 */
export class Directory {
  /** By SHA-256 of the key; unknown keys are remembered briefly, so a flood of bad keys costs no queries (and no unbounded memory). */
  private readonly keys: Lookup<KeyInfo | null>;
  private readonly routes: Lookup<Route | null>;
  private readonly byName: Lookup<string | null>;
  /** What a workspace or pipeline key may name as `model`, for the 404 that lists them. */
  private readonly choiceNames: Lookup<string[]>;
  private readonly spend: Lookup<number>;
  private listener: PgClient | null = null;
  private closed = false;
  private readonly routeListeners: Array<(deploymentId: string) => void> = [];

  private readonly readTimeoutMs: number;
  private reconnectDelayMs = 0;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly databaseUrl: string,
    ttlMs: number,
    private readonly log: Logger,
    private readonly upstreamAuth: UpstreamAuth = NO_UPSTREAM_AUTH,
    /** How long cached entries are served while Postgres cannot be read, and the bound on one read. */
    o: LookupOptions = {},
  ) {
    this.readTimeoutMs = o.readTimeoutMs ?? 5000;
    this.keys = new Lookup(
      100_000,
      ttlMs,
      (hash) => this.loadKey(hash),
      (v) => (v ? ttlMs : Math.min(ttlMs, 1000)),
      o,
    );
    this.routes = new Lookup(10_000, ttlMs, (id) => this.loadRoute(id), undefined, o);
    this.byName = new Lookup(
      10_000,
      ttlMs,
      (k) => {
        const [workspaceId, pipelineId, model] = k.split('\0');
        return this.loadModel(workspaceId, model, pipelineId || null);
      },
      undefined,
      o,
    );
    this.spend = new Lookup(10_000, ttlMs, (ws) => monthSpendUsd(this.prisma, ws), undefined, o);
    this.choiceNames = new Lookup(
      10_000,
      ttlMs,
      async (k) => {
        const [workspaceId, pipelineId] = k.split('\0');
        const rows = await this.prisma.deployment.findMany({
          where: { workspaceId, status: 'ACTIVE', pipelineId: pipelineId || undefined },
          orderBy: { createdAt: 'desc' },
          take: 20,
          select: { id: true, pipeline: { select: { name: true } } },
        });
        return rows.map((d) => `${d.pipeline.name} (${d.id})`);
      },
      undefined,
      o,
    );
  }

  async start(): Promise<void> {
    await this.listen();
  }

  /**
   * The LISTEN connection. Lost (Postgres restarted, the network cut): the caches are kept, so requests go on being
   * served from them within the stale bound, and it reconnects with a backoff until it is back; once it is, every
   * cache is dropped (a NOTIFY may have been missed meanwhile).
   */
  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new PgClient({ connectionString: this.databaseUrl, keepAlive: true, connectionTimeoutMillis: this.readTimeoutMs });
    let lost = false;
    const onLost = (err?: Error) => {
      if (lost) return;
      lost = true;
      if (this.listener === client) this.listener = null;
      client.end().catch(() => {});
      if (this.closed) return;
      this.log.warn({ err: err?.message }, 'directory LISTEN connection lost; serving from cache while it reconnects');
      this.reconnect();
    };
    client.on('notification', (n) => {
      if (n.channel === CHANNEL_KEYS) this.keys.clear();
      if (n.channel === CHANNEL_ROUTES) {
        this.routes.delete(n.payload ?? '');
        this.byName.clear();
        this.choiceNames.clear();
        for (const l of this.routeListeners) l(n.payload ?? '');
      }
    });
    client.on('error', (err) => onLost(err));
    client.on('end', () => onLost());
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL_KEYS}`);
      await client.query(`LISTEN ${CHANNEL_ROUTES}`);
    } catch (err) {
      lost = true;
      client.end().catch(() => {});
      throw err;
    }
    if (lost) throw new Error('directory LISTEN connection lost while it started');
    this.listener = client;
    this.reconnectDelayMs = 0;
    // Anything cached before LISTEN began may be stale.
    this.dropAll();
  }

  private reconnect() {
    this.reconnectDelayMs = Math.min(5000, Math.max(250, this.reconnectDelayMs * 2));
    setTimeout(() => {
      this.listen().then(
        () => this.log.warn('directory LISTEN connection back; caches dropped (a change may have been missed meanwhile)'),
        () => this.reconnect(),
      );
    }, this.reconnectDelayMs).unref();
  }

  /** Called with a deployment id whenever its routes change (replicas ready, draining, stopped). */
  onRouteChange(listener: (deploymentId: string) => void) {
    this.routeListeners.push(listener);
  }

  /** Forgets a cached route so the next read sees Postgres. */
  invalidateRoute(deploymentId: string) {
    this.routes.delete(deploymentId);
  }

  /** Active deployments with at least one ready replica (the ones whose scalers want heartbeats). */
  async servingDeployments(): Promise<string[]> {
    const rows = await this.prisma.replica.findMany({
      where: { state: 'READY', deployment: { status: 'ACTIVE' } },
      distinct: ['deploymentId'],
      select: { deploymentId: true },
    });
    return rows.map((r) => r.deploymentId);
  }

  /** Replicas per deployment and state, for the replica gauge (read at each scrape). */
  async replicaCounts(): Promise<ReplicaCount[]> {
    const rows = await this.prisma.replica.groupBy({
      by: ['deploymentId', 'state'],
      where: { state: { in: ['STARTING', 'READY', 'DRAINING'] } },
      _count: { _all: true },
    });
    return rows.map((r) => ({ deploymentId: r.deploymentId, state: r.state, count: r._count._all }));
  }

  dropAll() {
    this.keys.clear();
    this.routes.clear();
    this.byName.clear();
    this.choiceNames.clear();
  }

  async close() {
    this.closed = true;
    await this.listener?.end().catch(() => {});
  }

  key(plaintext: string): Promise<KeyInfo | null> {
    return this.keys.get(hashSecret(plaintext));
  }

  private async loadKey(hash: string): Promise<KeyInfo | null> {
    const row = await this.prisma.apiKey.findUnique({ where: { hash }, include: { workspace: true } });
    if (!row) return null;
    const replacement = row.replacedById
      ? await this.prisma.apiKey.findUnique({ where: { id: row.replacedById }, select: { prefix: true } })
      : null;
    return {
      id: row.id,
      workspaceId: row.workspaceId,
      scope: row.scope,
      pipelineId: row.pipelineId,
      deploymentId: row.deploymentId,
      issuedAt: row.issuedAt?.getTime() ?? null,
      expiresAt: row.expiresAt?.getTime() ?? null,
      revokedAt: row.revokedAt?.getTime() ?? null,
      rotatedAt: row.rotatedAt?.getTime() ?? null,
      replacedByPrefix: replacement?.prefix ?? null,
      ratePerMinute: row.rateLimitPerMinute ?? PLANS[row.workspace.plan].keyRateDefault,
      concurrencyBudget: planMaxConcurrency(row.workspace.plan, row.workspace.maxConcurrency),
      spendCapUsd: row.workspace.monthlySpendCapUsd === null ? null : Number(row.workspace.monthlySpendCapUsd),
    };
  }

  route(deploymentId: string): Promise<Route | null> {
    return this.routes.get(deploymentId);
  }

  private async loadRoute(deploymentId: string): Promise<Route | null> {
    const d = await this.prisma.deployment.findUnique({
      where: { id: deploymentId },
      include: { pipeline: true, replicas: { where: { state: { in: ['READY', 'STARTING'] } }, orderBy: { startedAt: 'asc' } } },
    });
    if (!d) return null;
    // Only the serving revision is routed to: a revision staged beside it (a swap) gets traffic from the switch on.
    const serving = d.replicas.filter((r) => !d.revisionId || r.revisionId === d.revisionId);
    const keys = await this.upstreamAuth(d);
    const bearer = (k: string | null) => (k ? `Bearer ${k}` : null);
    return {
      deploymentId: d.id,
      workspaceId: d.workspaceId,
      deploymentStatus: d.status,
      pipelineId: d.pipelineId,
      pipelineName: d.pipeline.name,
      model: d.pipeline.model,
      task: d.pipeline.task,
      target: d.target,
      ownAccount: d.credentialId !== null,
      mode: d.mode,
      gpu: d.gpu,
      replicas: serving
        .filter((r) => r.state === 'READY' && r.address)
        .map((r) => ({ id: r.id, address: r.address!, concurrency: r.concurrency, authorization: bearer(keys.replica(r.id, r.address!)) })),
      starting: serving.filter((r) => r.state === 'STARTING').length,
      targetConcurrency: d.targetConcurrency,
      upstreamAuthorization: bearer(keys.route),
    };
  }

  /**
   * What a workspace has spent this calendar month, USD (src/usage/spend.ts), cached: the cap is checked against a
   * figure at most a TTL old.
   */
  monthSpendUsd(workspaceId: string): Promise<number> {
    return this.spend.get(workspaceId);
  }

  /** The ACTIVE deployment a workspace or pipeline key means by `model` (a deployment id or pipeline name). */
  resolveModel(workspaceId: string, model: string, pipelineId: string | null): Promise<string | null> {
    return this.byName.get(`${workspaceId}\0${pipelineId ?? ''}\0${model}`);
  }

  private async loadModel(workspaceId: string, model: string, pipelineId: string | null): Promise<string | null> {
    const d = await this.prisma.deployment.findFirst({
      where: {
        workspaceId,
        status: 'ACTIVE',
        pipelineId: pipelineId ?? undefined, // undefined: any pipeline
        OR: pipelineId && model === 'default' ? undefined : [{ id: model }, { pipeline: { name: model } }],
      },
      orderBy: { createdAt: 'desc' },
      select: { id: true },
    });
    return d?.id ?? null;
  }

  /** The models a workspace or pipeline key may name: `pipeline (deployment id)` of its ACTIVE deployments, newest first, at most 20. */
  choices(k: KeyInfo): Promise<string[]> {
    return this.choiceNames.get(`${k.workspaceId}\0${k.pipelineId ?? ''}`);
  }

  /** Deployments a key can reach, for /v1/models. */
  async reachable(k: KeyInfo): Promise<Route[]> {
    const ids = k.deploymentId
      ? [k.deploymentId]
      : (
          await bounded(
            this.prisma.deployment.findMany({
              where: { workspaceId: k.workspaceId, status: 'ACTIVE', pipelineId: k.pipelineId ?? undefined },
              select: { id: true },
            }),
            this.readTimeoutMs,
            'a read of Postgres',
          ).catch((err: Error) => {
            throw new DatabaseUnavailableError(`Postgres could not be read: ${err.message}`);
          })
        ).map((d) => d.id);
    const routes = await Promise.all(ids.map((id) => this.route(id)));
    return routes.filter((r): r is Route => r !== null);
  }
}
