// The RUNPOD target: managed RunPod (the platform's account, RUNPOD_API_KEY) and the user's own RunPod account (a
// stored credential), as a pool provider over RunPod Serverless endpoints.
import type { Logger } from 'pino';
import type { Config } from '../../config/config';
import { readCredentialSecret } from '../../credentials/store';
import { secretsKey } from '../../credentials/secrets-key';
import type { PrismaClient } from '../../database/prisma';
import { ProviderPermanentError } from '../errors';
import { PooledReplicas, PoolKey } from '../pool';
import type { ProviderAdapter, ProviderDeps, ProviderModule } from '../provider';
import { reconcileReplicas } from '../local/reconcile';
import { RunpodProvider } from './runpod.provider';

export { RunpodClient, RunpodError } from './client';
export { RunpodProvider, runpodPool } from './runpod.provider';

/** The RunPod adapter as configured: managed when RUNPOD_API_KEY is set, a user's account through their credential. */
export function runpodProvider(config: Config, deps: ProviderDeps): PooledReplicas {
  let key: Buffer | null = null;
  const pools = new RunpodProvider({
    apiUrl: config.RUNPOD_API_URL.replace(/\/+$/, ''),
    graphqlUrl: config.RUNPOD_GRAPHQL_URL,
    runtimeUrl: config.RUNPOD_RUNTIME_URL.replace(/\/+$/, ''),
    image: config.RUNPOD_WORKER_IMAGE,
    namePrefix: config.RUNPOD_ENDPOINT_PREFIX,
    apiKeyFor: async (credentialId) => {
      if (credentialId) return readCredentialSecret(deps.prisma, (key ??= secretsKey(config, deps.log)), credentialId);
      if (!config.RUNPOD_API_KEY) {
        throw new ProviderPermanentError(
          'managed RunPod is not configured on this worker: set RUNPOD_API_KEY, or deploy with a credentialId',
        );
      }
      return config.RUNPOD_API_KEY;
    },
  });
  const adapter = new PooledReplicas(pools, deps.prisma, deps.log, { minResizeIntervalMs: config.RUNPOD_MIN_PATCH_INTERVAL_MS });
  const drift = startDriftCheck(adapter, pools, deps.prisma, deps.log, config.RUNPOD_DRIFT_INTERVAL_MS);
  adapter.closers.push(drift.stop);
  adapter.driftCheck = drift.check;
  return adapter;
}

/**
 * Every revision that may have an endpoint of ours, by that endpoint's name: SERVING (also of a stopped deployment) or
 * STAGED, of a deployment not DELETED; and any revision whose slots still run (a retired one draining).
 */
async function wantedPools(prisma: PrismaClient, pools: RunpodProvider) {
  const revisions = await prisma.revision.findMany({
    where: {
      deployment: { target: 'RUNPOD' },
      OR: [
        { status: { in: ['SERVING', 'STAGED'] }, deployment: { status: { not: 'DELETED' } } },
        { replicas: { some: { state: { in: ['STARTING', 'READY', 'DRAINING'] } } } },
      ],
    },
    select: { id: true, deploymentId: true, deployment: { select: { credentialId: true } } },
  });
  const legacy = await prisma.deployment.findMany({
    where: { target: 'RUNPOD', status: { not: 'DELETED' }, revisionId: null },
    select: { id: true, credentialId: true },
  });
  const wanted = new Map<string, PoolKey & { credentialId: string | null }>();
  for (const r of revisions)
    wanted.set(pools.poolName({ deploymentId: r.deploymentId, revisionId: r.id }), {
      deploymentId: r.deploymentId,
      revisionId: r.id,
      credentialId: r.deployment.credentialId,
    });
  for (const d of legacy)
    wanted.set(pools.poolName({ deploymentId: d.id, revisionId: null }), {
      deploymentId: d.id,
      revisionId: null,
      credentialId: d.credentialId,
    });
  return wanted;
}

/**
 * One pass over every endpoint of ours in every account we use (the managed one and each credential a deployment
 * runs on), against Postgres:
 * - an endpoint whose bounds differ from its revision's live slots is set back to them, said as a deployment event
 *   (RunPod lowers workers.max on endpoints idle for days, §1.5; a resize lost to a crash or a race is caught too);
 * - an endpoint no revision needs (a create whose activity failed after RunPod made it, a delete that never came) is
 *   deleted, when `reap`;
 * - crash-looping (UNHEALTHY) or capacity-starved (THROTTLED) workers are reported once per episode.
 */
export async function syncEndpoints(
  adapter: PooledReplicas,
  pools: RunpodProvider,
  prisma: PrismaClient,
  log: Logger,
  o: { reap: boolean; reported?: Map<string, string> },
): Promise<{ restored: number; reaped: number }> {
  const wanted = await wantedPools(prisma, pools);
  const accounts = new Set<string | null>([null, ...[...wanted.values()].map((w) => w.credentialId)]);
  let restored = 0;
  let reaped = 0;
  for (const account of accounts) {
    let listed;
    try {
      listed = await pools.listPools(account);
    } catch (e) {
      // A managed account that is not configured, or a user's key RunPod no longer takes: nothing to do there.
      log.warn({ account: account ?? 'managed', err: (e as Error).message }, 'RunPod endpoint sync skipped an account');
      continue;
    }
    for (const p of listed) {
      const key = wanted.get(p.name);
      if (!key) {
        if (!o.reap) continue;
        await pools.deletePool(account, p.poolId);
        reaped++;
        log.info({ poolId: p.poolId, name: p.name }, 'deleted a RunPod endpoint no revision needs');
        continue;
      }
      const level = await adapter.level(key);
      if (p.workersMin !== level || p.workersMax !== level) {
        adapter.forgetApplied(p.poolId, key);
        await adapter.resize(account, p.poolId, key);
        restored++;
        await prisma.deploymentEvent.create({
          data: {
            deploymentId: key.deploymentId,
            kind: 'provider.drift',
            message: `RunPod endpoint ${p.poolId} had workers ${p.workersMin}-${p.workersMax}, the scaler's count is ${level}: restored`,
            data: { poolId: p.poolId, workersMin: p.workersMin, workersMax: p.workersMax, restored: level },
          },
        });
      }
      if (!o.reported || level === 0) continue;
      const s = await pools.poolStatus(account, p.poolId).catch(() => null);
      const state = !s ? 'ok' : s.unhealthy > 0 ? 'unhealthy' : s.throttled > 0 ? 'throttled' : 'ok';
      if (state !== (o.reported.get(p.poolId) ?? 'ok')) {
        o.reported.set(p.poolId, state);
        const message =
          state === 'unhealthy'
            ? `RunPod endpoint ${p.poolId}: ${s!.unhealthy} worker(s) fail their health checks (crash loop?)`
            : state === 'throttled'
              ? `RunPod endpoint ${p.poolId}: ${s!.throttled} worker(s) wait for GPU capacity (throttled)`
              : `RunPod endpoint ${p.poolId}: workers healthy again`;
        await prisma.deploymentEvent.create({
          data: { deploymentId: key.deploymentId, kind: `provider.${state}`, message, data: { poolId: p.poolId } },
        });
      }
    }
  }
  return { restored, reaped };
}

/** The periodic drift check: syncEndpoints every interval, reaping too (an endpoint's revision row exists before the endpoint). */
export function startDriftCheck(adapter: PooledReplicas, pools: RunpodProvider, prisma: PrismaClient, log: Logger, intervalMs: number) {
  const reported = new Map<string, string>();
  const check = () => syncEndpoints(adapter, pools, prisma, log, { reap: true, reported }).then(() => undefined);
  const timer = setInterval(() => {
    check().catch((e) => log.warn({ err: (e as Error).message }, 'RunPod drift check failed; next interval retries'));
  }, intervalMs);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}

/** At worker start: the replica rows are reconciled with the endpoints as for every provider, then the endpoints are synced and reaped. */
export async function reconcileRunpod(prisma: PrismaClient, adapter: ProviderAdapter, log: Logger) {
  const counts = await reconcileReplicas(prisma, adapter, log);
  const pooled = adapter as PooledReplicas;
  const synced = await syncEndpoints(pooled, pooled.pool as RunpodProvider, prisma, log, { reap: true });
  return { ...counts, orphans: synced.reaped, restored: synced.restored };
}

export const runpod: ProviderModule = {
  target: 'RUNPOD',
  create: (config, deps): ProviderAdapter => runpodProvider(config, deps),
  reconcile: reconcileRunpod,
};
