import { Client as PgClient } from 'pg';
import type { Logger } from 'pino';
import { hashSecret } from '../common/secrets';
import type { PrismaClient } from '../database/prisma';
import { CHANNEL_KEYS, CHANNEL_ROUTES } from '../../activities';
import { PLANS, planMaxConcurrency } from '../domain/plans';

export interface KeyInfo {
  id: string;
  workspaceId: string;
  scope: 'WORKSPACE' | 'PIPELINE' | 'DEPLOYMENT';
  pipelineId: string | null;
  deploymentId: string | null;
  issuedAt: number | null;
  expiresAt: number | null;
  revokedAt: number | null;
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
  task: 'CHAT' | 'EMBEDDINGS' | 'IMAGE';
  replicas: RouteReplica[];
}

interface Cached<T> {
  value: T;
  until: number;
}

/**
 * What the gateway must know from Postgres: keys by hash and routes by
 * deployment. Both are cached; a LISTEN connection drops entries the moment a
 * key is revoked or a route changes, so every gateway process sees it within a
 * round trip, with no database read per request.
 */
export class Directory {
  private readonly keys = new Map<string, Cached<KeyInfo | null>>();
  private readonly routes = new Map<string, Cached<Route | null>>();
  private readonly byName = new Map<string, Cached<string | null>>();
  private readonly spend = new Map<string, Cached<number>>();
  private listener: PgClient | null = null;
  private closed = false;
  private readonly routeListeners: Array<(deploymentId: string) => void> = [];

  constructor(
    private readonly prisma: PrismaClient,
    private readonly databaseUrl: string,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

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

  dropAll() {
    this.keys.clear();
    this.routes.clear();
    this.byName.clear();
  }

  async close() {
    this.closed = true;
    await this.listener?.end().catch(() => {});
  }

  async key(plaintext: string): Promise<KeyInfo | null> {
    const hash = hashSecret(plaintext);
    const now = Date.now();
    const hit = this.keys.get(hash);
    if (hit && hit.until > now) return hit.value;
    const row = await this.prisma.apiKey.findUnique({ where: { hash }, include: { workspace: true } });
    const value: KeyInfo | null = row
      ? {
          id: row.id,
          workspaceId: row.workspaceId,
          scope: row.scope,
          pipelineId: row.pipelineId,
          deploymentId: row.deploymentId,
          issuedAt: row.issuedAt?.getTime() ?? null,
          expiresAt: row.expiresAt?.getTime() ?? null,
          revokedAt: row.revokedAt?.getTime() ?? null,
          ratePerMinute: row.rateLimitPerMinute ?? PLANS[row.workspace.plan].keyRateDefault,
          concurrencyBudget: planMaxConcurrency(row.workspace.plan, row.workspace.maxConcurrency),
          spendCapUsd: row.workspace.monthlySpendCapUsd === null ? null : Number(row.workspace.monthlySpendCapUsd),
        }
      : null;
    // Unknown keys are remembered briefly so a flood of bad keys costs no queries.
    this.keys.set(hash, { value, until: now + (value ? this.ttlMs : Math.min(this.ttlMs, 1000)) });
    return value;
  }

  async route(deploymentId: string): Promise<Route | null> {
    const now = Date.now();
    const hit = this.routes.get(deploymentId);
    if (hit && hit.until > now) return hit.value;
    const d = await this.prisma.deployment.findUnique({
      where: { id: deploymentId },
      include: { pipeline: true, replicas: { where: { state: 'READY' }, orderBy: { startedAt: 'asc' } } },
    });
    const value: Route | null = d
      ? {
          deploymentId: d.id,
          workspaceId: d.workspaceId,
          deploymentStatus: d.status,
          pipelineId: d.pipelineId,
          pipelineName: d.pipeline.name,
          model: d.pipeline.model,
          task: d.pipeline.task,
          replicas: d.replicas.filter((r) => r.address).map((r) => ({ id: r.id, address: r.address!, concurrency: r.concurrency })),
        }
      : null;
    this.routes.set(deploymentId, { value, until: now + this.ttlMs });
    return value;
  }

  /**
   * What a workspace has spent this calendar month (UTC), USD: tokens from the
   * usage rollups plus warm replica time from the capacity rollups. Cached for
   * the TTL: the cap is checked against a figure at most that old.
   */
  async monthSpendUsd(workspaceId: string): Promise<number> {
    const now = Date.now();
    const hit = this.spend.get(workspaceId);
    if (hit && hit.until > now) return hit.value;
    const d = new Date(now);
    const monthStart = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
    const [row] = await this.prisma.$queryRaw<Array<{ usd: string | null }>>`
      SELECT (
        COALESCE((SELECT SUM(u."costUsd") FROM "UsageRollup" u JOIN "Deployment" d ON d.id = u."deploymentId"
                  WHERE d."workspaceId" = ${workspaceId} AND u.minute >= ${monthStart}), 0)
      + COALESCE((SELECT SUM(c."costUsd") FROM "CapacityRollup" c JOIN "Deployment" d ON d.id = c."deploymentId"
                  WHERE d."workspaceId" = ${workspaceId} AND c.minute >= ${monthStart}), 0)
      )::text AS usd`;
    const value = Number(row?.usd ?? 0);
    this.spend.set(workspaceId, { value, until: now + this.ttlMs });
    return value;
  }

  /** The ACTIVE deployment a workspace or pipeline key means by `model` (a deployment id or pipeline name). */
  async resolveModel(workspaceId: string, model: string, pipelineId: string | null): Promise<string | null> {
    const cacheKey = `${workspaceId}\0${pipelineId ?? ''}\0${model}`;
    const now = Date.now();
    const hit = this.byName.get(cacheKey);
    if (hit && hit.until > now) return hit.value;
    const d = await this.prisma.deployment.findFirst({
      where: {
        workspaceId,
        status: 'ACTIVE',
        ...(pipelineId ? { pipelineId } : {}),
        OR: pipelineId && model === 'default' ? undefined : [{ id: model }, { pipeline: { name: model } }],
      },
      orderBy: { createdAt: 'desc' },
      select: { id: true },
    });
    const value = d?.id ?? null;
    this.byName.set(cacheKey, { value, until: now + this.ttlMs });
    return value;
  }

  /** Deployments a key can reach, for /v1/models. */
  async reachable(k: KeyInfo): Promise<Route[]> {
    const ids = k.deploymentId
      ? [k.deploymentId]
      : (
          await this.prisma.deployment.findMany({
            where: { workspaceId: k.workspaceId, status: 'ACTIVE', ...(k.pipelineId ? { pipelineId: k.pipelineId } : {}) },
            select: { id: true },
          })
        ).map((d) => d.id);
    const routes = await Promise.all(ids.map((id) => this.route(id)));
    return routes.filter((r): r is Route => r !== null);
  }
}
