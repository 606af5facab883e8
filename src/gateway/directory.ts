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

/**
 * The keys a deployment's upstreams take: its provider account's for the whole route (RunPod's runtime checks one),
 * and, per replica, a replica's own (a Modal Sandbox's public tunnel serves only a caller with its key).
 */
export interface UpstreamAuth {
  route(d: { target: Target; credentialId: string | null }): Promise<string | null>;
  replica(d: { target: Target }, replicaId: string): string | null;
}

const NO_UPSTREAM_AUTH: UpstreamAuth = { route: async () => null, replica: () => null };

/**
 * A bounded cache for one kind of lookup: a missing entry is loaded once however
 * many requests ask at the same moment, and an entry past its TTL keeps being
 * served while one background read refreshes it. NOTIFY deletes entries (and
 * cancels a read in flight, so a read from before the change is never stored);
 * the TTL only bounds staleness if a notification is missed.
 */
export class Lookup<V> {
  private readonly cache: LRUCache<string, { v: V }>;

  constructor(max: number, ttlMs: number, load: (k: string) => Promise<V>, ttlFor?: (v: V) => number) {
    this.cache = new LRUCache<string, { v: V }>({
      max,
      ttl: ttlMs,
      allowStale: true,
      noDeleteOnStaleGet: true,
      allowStaleOnFetchRejection: true,
      fetchMethod: async (k, _stale, { options }) => {
        const v = await load(k);
        if (ttlFor) options.ttl = ttlFor(v);
        return { v };
      },
    });
  }

  async get(k: string): Promise<V> {
    // A read cancelled because the entry was invalidated meanwhile is made again, now that the change
    // is in; a few times at most, so a row that changes without pause cannot hold a request forever.
    for (let attempt = 1; ; attempt++) {
      try {
        const e = await this.cache.fetch(k);
        if (e) return e.v;
        if (attempt >= 3) throw new Error(`lookup of ${k} was invalidated ${attempt} times while it loaded`);
      } catch (err) {
        if (attempt >= 3 || !(err instanceof Error) || !/abort/i.test(`${err.name} ${err.message}`)) throw err;
      }
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

  constructor(
    private readonly prisma: PrismaClient,
    private readonly databaseUrl: string,
    ttlMs: number,
    private readonly log: Logger,
    private readonly upstreamAuth: UpstreamAuth = NO_UPSTREAM_AUTH,
  ) {
    this.keys = new Lookup(
      100_000,
      ttlMs,
      (hash) => this.loadKey(hash),
      (v) => (v ? ttlMs : Math.min(ttlMs, 1000)),
    );
    this.routes = new Lookup(10_000, ttlMs, (id) => this.loadRoute(id));
    this.byName = new Lookup(10_000, ttlMs, (k) => {
      const [workspaceId, pipelineId, model] = k.split('\0');
      return this.loadModel(workspaceId, model, pipelineId || null);
    });
    this.spend = new Lookup(10_000, ttlMs, (ws) => monthSpendUsd(this.prisma, ws));
    this.choiceNames = new Lookup(10_000, ttlMs, async (k) => {
      const [workspaceId, pipelineId] = k.split('\0');
      const rows = await this.prisma.deployment.findMany({
        where: { workspaceId, status: 'ACTIVE', pipelineId: pipelineId || undefined },
        orderBy: { createdAt: 'desc' },
        take: 20,
        select: { id: true, pipeline: { select: { name: true } } },
      });
      return rows.map((d) => `${d.pipeline.name} (${d.id})`);
    });
  }

  async start(): Promise<void> {
    await this.listen();
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new PgClient({ connectionString: this.databaseUrl });
    client.on('notification', (n) => {
      if (n.channel === CHANNEL_KEYS) this.keys.clear();
      if (n.channel === CHANNEL_ROUTES) {
        this.routes.delete(n.payload ?? '');
        this.byName.clear();
        this.choiceNames.clear();
        for (const l of this.routeListeners) l(n.payload ?? '');
      }
    });
    client.on('error', (err) => {
      this.log.warn({ err }, 'directory LISTEN connection lost; reconnecting');
      this.dropAll();
      this.listener = null;
      setTimeout(() => void this.listen().catch(() => {}), 500).unref();
    });
    await client.connect();
    await client.query(`LISTEN ${CHANNEL_KEYS}`);
    await client.query(`LISTEN ${CHANNEL_ROUTES}`);
    this.listener = client;
    // Anything cached before LISTEN began may be stale.
    this.dropAll();
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
        .map((r) => {
          const key = this.upstreamAuth.replica(d, r.id);
          return { id: r.id, address: r.address!, concurrency: r.concurrency, authorization: key ? `Bearer ${key}` : null };
        }),
      starting: serving.filter((r) => r.state === 'STARTING').length,
      targetConcurrency: d.targetConcurrency,
      upstreamAuthorization: await this.upstreamAuth.route(d).then((k) => (k ? `Bearer ${k}` : null)),
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
          await this.prisma.deployment.findMany({
            where: { workspaceId: k.workspaceId, status: 'ACTIVE', pipelineId: k.pipelineId ?? undefined },
            select: { id: true },
          })
        ).map((d) => d.id);
    const routes = await Promise.all(ids.map((id) => this.route(id)));
    return routes.filter((r): r is Route => r !== null);
  }
}
