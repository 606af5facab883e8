import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { createApp } from '../src/app';
import { freePort } from '../src/common/net';
import { Config, loadConfig } from '../src/config/config';
import { createPrisma, PrismaClient } from '../src/database/prisma';
import { startWorker, WorkerRuntime } from '../src/temporal/worker-runtime';
import { WorkspacesService } from '../src/workspaces/workspaces.service';

let runtimeInstalled = false;
function quietRuntime() {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    /* already installed in this process */
  }
}

/** The workflow bundle the build shipped (dist/workflow-bundle.js): tests run what users run. */
function bundle(): { code: string } | undefined {
  // RECORD_WORKFLOW_BUNDLE: an older build's bundle, to record histories the current code must replay.
  const p = process.env.RECORD_WORKFLOW_BUNDLE ?? resolve(__dirname, '../dist/workflow-bundle.js');
  return existsSync(p) ? { code: readFileSync(p, 'utf8') } : undefined;
}

let seq = 0;



export interface Stack {
  config: Config;
  url: string;
  prisma: PrismaClient;
  temporal: Client;
  worker: WorkerRuntime;
  gql: <T = Record<string, unknown>>(query: string, token: string, variables?: Record<string, unknown>) => Promise<{ data: T; errors?: Array<{ message: string; extensions: { code: string } & Record<string, unknown> }> }>;
  workspace: (plan: 'STARTER' | 'PRO' | 'TEAM' | 'ENTERPRISE', name?: string) => Promise<{ id: string; token: string }>;
  close: () => Promise<void>;
}

/**
 * The real api and worker, in this process, on the run's Temporal server and
 * database, with their own task queue and data directory.
 */
export async function startStack(env: Record<string, string> = {}): Promise<Stack> {
  quietRuntime();
  const name = `t${process.pid}-${++seq}-${Date.now().toString(36)}`;
  const dataDir = join(process.env.DATA_DIR!, name);
  mkdirSync(dataDir, { recursive: true });
  const config = loadConfig({
    ...process.env,
    API_PORT: String(await freePort()),
    TEMPORAL_TASK_QUEUE: `deployments-${name}`,
    DATA_DIR: dataDir,
    SIM_COLD_START_MS: '300',
    SIM_WARM_START_MS: '100',
    SIM_TTFT_MS: '5',
    SIM_ITL_MS: '2',
    GATEWAY_CACHE_TTL_MS: '60000',
    ...env,
  });
  const log = pino({ level: process.env.LOG_LEVEL ?? 'warn' });
  const worker = await startWorker(config, log, { healthPollMs: 50, workflowBundle: bundle() });
  let app: Awaited<ReturnType<typeof createApp>>;
  try {
    app = await createApp(config, log);
  } catch (err) {
    await worker.shutdown();
    throw err;
  }
  const prisma = createPrisma(config.DATABASE_URL, 4);
  const temporal = new Client({ connection: await Connection.connect({ address: config.TEMPORAL_ADDRESS }) });
  const workspaces = new WorkspacesService(prisma);
  const created: string[] = [];
  return {
    config,
    url: app.url,
    prisma,
    temporal,
    worker,
    gql: async (query, token, variables) => {
      const res = await fetch(`${app.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      });
      return (await res.json()) as never;
    },
    workspace: async (plan, wsName = `${plan.toLowerCase()}-${name}`) => {
      const { workspace, token } = await workspaces.create(wsName, plan);
      created.push(workspace.id);
      return { id: workspace.id, token };
    },
    close: async () => {
      // Replicas this stack started do not outlive it (nor linger in the shared database as READY).
      const local = worker.providers.LOCAL;
      if (local) {
        const left = await local.listReplicas();
        for (const h of left) await local.stopReplica(h.replicaId);
        await prisma.replica.updateMany({ where: { id: { in: left.map((h) => h.replicaId) } }, data: { state: 'STOPPED', stoppedAt: new Date() } });
      }
      // Replicas a test killed are gone already; the shared database must not keep them as live.
      await prisma.replica.updateMany({
        where: { state: { in: ['STARTING', 'READY', 'DRAINING'] }, deployment: { workspaceId: { in: created } } },
        data: { state: 'STOPPED', stoppedAt: new Date() },
      });
      await worker.shutdown();
      await app.close();
      await temporal.connection.close();
      await prisma.$disconnect();
    },
  };
}

/** Polls fn until it returns a truthy value or timeoutMs passes. */
export async function eventually<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** True while a process with this pid exists. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
