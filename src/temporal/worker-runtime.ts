import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NativeConnection, Worker, WorkerOptions } from '@temporalio/worker';
import { temporalConnectionOptions } from './connection';
import type { Logger } from 'pino';
import { createActivities } from '../../activities';
import { Config } from '../config/config';
import { createPrisma, PrismaClient } from '../database/prisma';
import type { Providers } from '../providers/provider';
import { createProviders, reconcileProviders } from '../providers/registry';
import { loadPrices } from '../usage/prices';

/** Prebuilt bundle when present (production), else bundle from source at start. */
function workflowSource(config: Config): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const prebuilt = config.TEMPORAL_WORKFLOW_BUNDLE || resolve(__dirname, '../../workflow-bundle.js');
  if (existsSync(prebuilt)) return { workflowBundle: { codePath: prebuilt } };
  return { workflowsPath: require.resolve(join(__dirname, '../../workflows')) };
}

export interface WorkerRuntime {
  worker: Worker;
  prisma: PrismaClient;
  providers: Providers;
  run: Promise<void>;
  shutdown: () => Promise<void>;
}

export async function startWorker(
  config: Config,
  log: Logger,
  overrides: { providers?: Providers; healthPollMs?: number; workflowBundle?: { code: string } } = {},
): Promise<WorkerRuntime> {
  const prisma = createPrisma(config.DATABASE_URL);
  const providers = createProviders(config, { prisma, log }, overrides.providers);
  await reconcileProviders(prisma, providers, log);
  const connection = await NativeConnection.connect(temporalConnectionOptions(config));
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
      prices: loadPrices(config.PRICING_FILE),
      rotateBeforeSeconds: config.REPLICA_ROTATE_BEFORE_SECONDS,
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
      for (const p of Object.values(providers)) p?.close?.();
      await connection.close();
      await prisma.$disconnect();
    },
  };
}
