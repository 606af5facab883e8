import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NativeConnection, Worker, WorkerOptions } from '@temporalio/worker';
import type { Logger } from 'pino';
import { createActivities } from '../../activities';
import { Config } from '../config/config';
import { createPrisma, PrismaClient } from '../database/prisma';
import { LocalProvider } from '../providers/local.provider';
import { ProviderAdapter } from '../providers/provider';

export function localProvider(config: Config): LocalProvider {
  return new LocalProvider({
    stateDir: resolve(config.DATA_DIR, 'local'),
    cacheDir: resolve(config.DATA_DIR, 'weights'),
    command: config.LOCAL_REPLICA_COMMAND,
    host: config.LOCAL_REPLICA_HOST,
    advertiseHost: config.LOCAL_REPLICA_ADVERTISE_HOST,
    simulatorArgs: [
      `--cold-start-ms ${config.SIM_COLD_START_MS}`,
      `--warm-start-ms ${config.SIM_WARM_START_MS}`,
      `--ttft-ms ${config.SIM_TTFT_MS}`,
      `--itl-ms ${config.SIM_ITL_MS}`,
    ],
  });
}

/** Prebuilt bundle when present (production), else bundle from source at start. */
function workflowSource(config: Config): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const prebuilt = config.TEMPORAL_WORKFLOW_BUNDLE || resolve(__dirname, '../../workflow-bundle.js');
  if (existsSync(prebuilt)) return { workflowBundle: { codePath: prebuilt } };
  return { workflowsPath: require.resolve(join(__dirname, '../../workflows')) };
}

/**
 * Replicas outlive a worker restart. At boot: replicas the database still wants
 * are adopted as they are; processes nobody wants are stopped; replicas that
 * died while the worker was away are marked FAILED (the scaler replaces them).
 */
export async function reconcileLocal(prisma: PrismaClient, provider: ProviderAdapter, log: Logger): Promise<{ adopted: number; reaped: number; lost: number }> {
  const running = await provider.listReplicas();
  const rows = await prisma.replica.findMany({
    where: { deployment: { target: 'LOCAL' }, state: { in: ['STARTING', 'READY', 'DRAINING'] } },
    include: { deployment: { select: { status: true } } },
  });
  const wanted = new Map(rows.filter((r) => ['PENDING', 'PROVISIONING', 'ACTIVE'].includes(r.deployment.status)).map((r) => [r.id, r]));
  let adopted = 0;
  let reaped = 0;
  let lost = 0;
  for (const h of running) {
    if (wanted.has(h.replicaId)) adopted++;
    else {
      await provider.stopReplica(h.replicaId);
      reaped++;
    }
  }
  const alive = new Set(running.map((h) => h.replicaId));
  for (const r of rows) {
    if (alive.has(r.id) && wanted.has(r.id)) continue;
    await prisma.replica.update({ where: { id: r.id }, data: { state: wanted.has(r.id) ? 'FAILED' : 'STOPPED', stoppedAt: new Date() } });
    if (wanted.has(r.id)) {
      lost++;
      await prisma.deploymentEvent.create({ data: { deploymentId: r.deploymentId, kind: 'replica.lost', message: `replica ${r.id} was gone when the worker started` } });
    }
  }
  if (adopted || reaped || lost) log.info({ adopted, reaped, lost }, 'reconciled local replicas');
  return { adopted, reaped, lost };
}

export interface WorkerRuntime {
  worker: Worker;
  prisma: PrismaClient;
  providers: Record<string, ProviderAdapter>;
  run: Promise<void>;
  shutdown: () => Promise<void>;
}

export async function startWorker(
  config: Config,
  log: Logger,
  overrides: { providers?: Partial<Record<'LOCAL' | 'RUNPOD' | 'MODAL' | 'CUSTOM', ProviderAdapter>>; healthPollMs?: number; workflowBundle?: { code: string } } = {},
): Promise<WorkerRuntime> {
  const prisma = createPrisma(config.DATABASE_URL);
  const local = localProvider(config);
  const providers = { LOCAL: local, ...overrides.providers };
  await reconcileLocal(prisma, providers.LOCAL, log);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const worker = await Worker.create({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    ...(overrides.workflowBundle ? { workflowBundle: overrides.workflowBundle } : workflowSource(config)),
    activities: createActivities({
      prisma,
      providers,
      publicBaseUrl: config.PUBLIC_BASE_URL,
      healthPollMs: overrides.healthPollMs,
      healthTimeoutSeconds: config.DEPLOY_HEALTH_TIMEOUT_SECONDS,
    }),
  });
  const run = worker.run();
  return {
    worker,
    prisma,
    providers,
    run,
    shutdown: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await run.catch(() => {});
      await connection.close();
      await prisma.$disconnect();
    },
  };
}
