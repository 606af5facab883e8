// The RUNPOD target: managed RunPod (the platform's account, RUNPOD_API_KEY) and the user's own RunPod account (a
// stored credential), as a pool provider over RunPod Serverless endpoints.
import type { Logger } from 'pino';
import type { Config } from '../../config/config';
import { readCredentialSecret } from '../../credentials/store';
import { secretsKey } from '../../credentials/secrets-key';
import type { PrismaClient } from '../../database/prisma';
import { ProviderPermanentError } from '../errors';
import { PooledReplicas } from '../pool';
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
 * What RunPod changes behind our back (§1.5): it lowers workers.max on endpoints idle for days, crash-looping
 * workers stay UNHEALTHY, and a pool out of capacity leaves workers THROTTLED. Every interval each live endpoint is
 * compared with its rows: bounds that moved are restored (and said as a deployment event), unhealthy or throttled
 * workers are reported once per episode.
 */
export function startDriftCheck(adapter: PooledReplicas, pools: RunpodProvider, prisma: PrismaClient, log: Logger, intervalMs: number) {
  const reported = new Map<string, string>();
  const check = async () => {
    const rows = await prisma.replica.findMany({
      where: { deployment: { target: 'RUNPOD' }, state: { in: ['STARTING', 'READY', 'DRAINING'] }, providerId: { not: null } },
      distinct: ['providerId'],
      select: { providerId: true, deploymentId: true, revisionId: true, deployment: { select: { credentialId: true } } },
    });
    const byAccount = new Map<string | null, typeof rows>();
    for (const r of rows) byAccount.set(r.deployment.credentialId, [...(byAccount.get(r.deployment.credentialId) ?? []), r]);
    for (const [account, list] of byAccount) {
      const listed = new Map((await pools.listPools(account)).map((p) => [p.poolId, p]));
      for (const r of list) {
        const poolId = r.providerId!;
        const p = listed.get(poolId);
        const key = { deploymentId: r.deploymentId, revisionId: r.revisionId };
        const level = await adapter.level(key);
        if (p && (p.workersMin !== level || p.workersMax !== level)) {
          adapter.forgetApplied(poolId, key);
          await adapter.resize(account, poolId, key);
          await prisma.deploymentEvent.create({
            data: {
              deploymentId: r.deploymentId,
              kind: 'provider.drift',
              message: `RunPod endpoint ${poolId} had workers ${p.workersMin}-${p.workersMax}, the scaler's count is ${level}: restored`,
              data: { poolId, workersMin: p.workersMin, workersMax: p.workersMax, restored: level },
            },
          });
        }
        const s = await pools.poolStatus(account, poolId).catch(() => null);
        const state = !s ? 'ok' : s.unhealthy > 0 ? 'unhealthy' : s.throttled > 0 ? 'throttled' : 'ok';
        if (state !== (reported.get(poolId) ?? 'ok')) {
          reported.set(poolId, state);
          const message =
            state === 'unhealthy'
              ? `RunPod endpoint ${poolId}: ${s!.unhealthy} worker(s) fail their health checks (crash loop?)`
              : state === 'throttled'
                ? `RunPod endpoint ${poolId}: ${s!.throttled} worker(s) wait for GPU capacity (throttled)`
                : `RunPod endpoint ${poolId}: workers healthy again`;
          await prisma.deploymentEvent.create({
            data: { deploymentId: r.deploymentId, kind: `provider.${state}`, message, data: { poolId } },
          });
        }
      }
    }
  };
  const timer = setInterval(() => {
    check().catch((e) => log.warn({ err: (e as Error).message }, 'RunPod drift check failed; next interval retries'));
  }, intervalMs);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}

/**
 * At worker start: the replica rows are reconciled with the endpoints as for every provider, then every endpoint of
 * ours (by its name prefix) that no revision still needs is deleted: a create whose activity failed after RunPod
 * made it, a delete that never came. A revision that is SERVING (also of a stopped deployment) or STAGED keeps its
 * endpoint. Accounts are the managed one and every credential a live deployment runs on.
 */
export async function reconcileRunpod(prisma: PrismaClient, adapter: ProviderAdapter, log: Logger) {
  const counts = await reconcileReplicas(prisma, adapter, log);
  const pools = (adapter as PooledReplicas).pool;
  const revisions = await prisma.revision.findMany({
    where: { status: { in: ['SERVING', 'STAGED'] }, deployment: { target: 'RUNPOD', status: { not: 'DELETED' } } },
    select: { id: true, deploymentId: true, deployment: { select: { credentialId: true } } },
  });
  const legacy = await prisma.deployment.findMany({
    where: { target: 'RUNPOD', status: { not: 'DELETED' }, revisionId: null },
    select: { id: true, credentialId: true },
  });
  const wanted = new Set([
    ...revisions.map((r) => pools.poolName({ deploymentId: r.deploymentId, revisionId: r.id })),
    ...legacy.map((d) => pools.poolName({ deploymentId: d.id, revisionId: null })),
  ]);
  const accounts = new Set<string | null>([null, ...revisions.map((r) => r.deployment.credentialId), ...legacy.map((d) => d.credentialId)]);
  let orphans = 0;
  for (const account of accounts) {
    let listed;
    try {
      listed = await pools.listPools(account);
    } catch (e) {
      // A managed account that is not configured, or a user's key RunPod no longer takes: nothing to reap there.
      log.warn({ account: account ?? 'managed', err: (e as Error).message }, 'RunPod reconciliation skipped an account');
      continue;
    }
    for (const p of listed.filter((x) => !wanted.has(x.name))) {
      await pools.deletePool(account, p.poolId);
      orphans++;
      log.info({ poolId: p.poolId, name: p.name }, 'deleted a RunPod endpoint no revision needs');
    }
  }
  return { ...counts, orphans };
}

export const runpod: ProviderModule = {
  target: 'RUNPOD',
  create: (config, deps): ProviderAdapter => runpodProvider(config, deps),
  reconcile: reconcileRunpod,
};
