import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import pino from 'pino';
import { createApp } from '../../src/app';
import { freePort } from '../../src/common/net';
import { Config, loadConfig } from '../../src/config/config';
import { dropDatabase, ensureDatabase, migrate } from '../../src/database/migrate';
import { createPrisma, PrismaClient } from '../../src/database/prisma';
import type { PlanName } from '../../src/domain/plans';
import { localProvider } from '../../src/providers/local';
import { RunpodFake, RunpodFakeOptions, runpodFakeEnv, startRunpodFake } from '../../src/providers/runpod/fake';
import { DevServer, startDevServer, waitForPort } from '../../src/temporal/dev-server';
import { startWorker, WorkerRuntime } from '../../src/temporal/worker-runtime';
import { WorkspacesService } from '../../src/workspaces/workspaces.service';
import { createPipeline, deploy, DeployInput, Gql, GqlResult, must, PipelineInput } from './graphql';
import { stopAllLoads } from './load';

/** The repository root, from the source tree (tests) or from dist/ (benchmarks). */
export function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json')) || dir.endsWith('dist')) dir = dirname(dir);
  return dir;
}

/** A fast simulator, so that tests spend their time on behaviour rather than on model loading. */
const FAST_SIMULATOR = {
  SIM_COLD_START_MS: '300',
  SIM_WARM_START_MS: '100',
  SIM_TTFT_MS: '5',
  SIM_ITL_MS: '2',
  GATEWAY_CACHE_TTL_MS: '60000',
};

export interface StackOptions {
  /** Environment for this stack's config, over the process's. */
  env?: Record<string, string>;
  /**
   * Own scratch database and Temporal dev server, dropped and stopped on close (benchmarks). Without
   * it the stack uses the run's (test/global-setup.ts) with its own task queue and data directory.
   */
  isolated?: boolean;
  /** Start the api process in this process too (default true). */
  app?: boolean;
  /** Name used in the task queue, data directory and database. */
  name?: string;
  /** Write the api's and worker's log lines to this file instead of stdout (a test reads them). */
  logFile?: string;
  /**
   * Run the RunPod fake and point managed RunPod at it (its management, GraphQL and runtime URLs and a key it
   * accepts, RUNPOD_MANAGED_KEY); options over fast defaults.
   */
  runpod?: boolean | Partial<RunpodFakeOptions>;
  /** With isolated: the Temporal dev server keeps its state in a file of the data directory, so restartTemporal() loses nothing. */
  temporalDbFile?: boolean;
}

/** The managed account's key the stack's RunPod fake accepts. */
export const RUNPOD_MANAGED_KEY = 'rpa_managed_stack_key_0001';

/** A worker in a process of its own (`node dist/src/worker.js`), which a test may SIGKILL. */
export interface ChildWorker {
  pid: number;
  /** SIGKILL, as a crash or an OOM kill would: no drain, no shutdown; resolves once the process is gone. */
  kill(): Promise<void>;
}

export interface Stack {
  config: Config;
  /** The api's base URL ('' when started without it). */
  url: string;
  dataDir: string;
  prisma: PrismaClient;
  temporal: Client;
  worker: WorkerRuntime;
  app: Awaited<ReturnType<typeof createApp>> | null;
  server: DevServer | null;
  /** The RunPod fake managed RunPod points at, when the stack runs one. */
  runpod: RunpodFake | null;
  gql: <T = Record<string, unknown>>(query: string, token: string, variables?: Record<string, unknown>) => Promise<GqlResult<T>>;
  /** GraphQL calls with one management token. */
  as: (token: string) => Gql;
  workspace: (plan: PlanName, name?: string) => Promise<{ id: string; token: string }>;
  /** Creates a pipeline, deploys it and waits until it is ACTIVE (throws when the deploy fails). */
  deployed: (
    token: string,
    pipeline: PipelineInput,
    deployment: Omit<DeployInput, 'pipelineId'>,
  ) => Promise<{ pipelineId: string; deploymentId: string; apiKey: string }>;
  /**
   * Moves the worker out of this process: the first call shuts the in-process worker down; each call
   * starts a `node dist/src/worker.js` on the stack's task queue and config, resolving once it polls.
   */
  spawnWorker: () => Promise<ChildWorker>;
  /**
   * Another api process (`node dist/src/main.js`: GraphQL and the gateway) on the stack's database and Temporal, on a
   * port of its own, with `env` over the stack's; resolves once it listens. Several with REDIS_URL share their limits.
   */
  spawnApi: (env?: Record<string, string>) => Promise<{ url: string; pid: number; kill: () => Promise<void> }>;
  /** Stops the isolated Temporal dev server and starts it again on its port and database file (temporalDbFile). */
  restartTemporal: () => Promise<void>;
  close: () => Promise<void>;
}

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
function bundle(root: string): { code: string } | undefined {
  // RECORD_WORKFLOW_BUNDLE: an older build's bundle, to record histories the current code must replay.
  const p = process.env.RECORD_WORKFLOW_BUNDLE ?? resolve(root, 'dist/workflow-bundle.js');
  return existsSync(p) ? { code: readFileSync(p, 'utf8') } : undefined;
}

let seq = 0;

/**
 * The real api and worker in this process, over real Postgres and a real Temporal server, with
 * their own task queue and data directory. One builder for the tests and the benchmarks.
 */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  quietRuntime();
  const root = repoRoot();
  const name = opts.name ?? `t${process.pid}-${++seq}-${Date.now().toString(36)}`;
  let server: DevServer | null = null;
  let restartServer: (() => Promise<void>) | null = null;
  let databaseUrl = process.env.DATABASE_URL;
  let dataDir: string;
  if (opts.isolated) {
    dataDir = mkdtempSync(join(tmpdir(), `infercp-${name}-`));
    const base = new URL(process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres');
    base.pathname = `/infercp_${name.replace(/\W/g, '_')}_${Date.now().toString(36)}`;
    databaseUrl = base.toString();
    await ensureDatabase(databaseUrl);
    await migrate(databaseUrl, resolve(root, 'prisma/migrations'));
    const cliPath =
      process.env.TEMPORAL_CLI_PATH ?? execFileSync('bash', [resolve(root, 'scripts/temporal-cli.sh')], { encoding: 'utf8' }).trim();
    const dbFile = opts.temporalDbFile ? join(dataDir, 'temporal.db') : undefined;
    const port = await freePort();
    server = await startDevServer({ cliPath, port, dbFile });
    restartServer = async () => {
      await server!.stop();
      server = await startDevServer({ cliPath, port, dbFile });
    };
  } else {
    dataDir = join(process.env.DATA_DIR!, name);
    mkdirSync(dataDir, { recursive: true });
  }
  const runpod = opts.runpod
    ? await startRunpodFake({
        keys: [{ key: RUNPOD_MANAGED_KEY, accountId: 'acct_managed' }],
        stateDir: join(dataDir, 'runpod-fake'),
        coldStartMs: 300,
        flashbootStartMs: 60,
        ttftMs: 5,
        itlMs: 2,
        ...(opts.runpod === true ? {} : opts.runpod),
      })
    : null;
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...(runpod
      ? {
          ...runpodFakeEnv(runpod, RUNPOD_MANAGED_KEY),
          RUNPOD_MIN_PATCH_INTERVAL_MS: '250',
        }
      : {}),
    ...(opts.isolated ? { LOG_LEVEL: 'error' } : FAST_SIMULATOR),
    DATABASE_URL: databaseUrl,
    ...(server ? { TEMPORAL_ADDRESS: server.address } : {}),
    API_PORT: String(await freePort()),
    TEMPORAL_TASK_QUEUE: `deployments-${name}`,
    // Shared playground deployments belong to one control plane: each stack has its own (they share the database).
    PLAYGROUND_WORKSPACE_ID: `ws_playground_${name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}`,
    DATA_DIR: dataDir,
    ...opts.env,
  };
  const config = loadConfig(env);
  const log = opts.logFile
    ? pino({ level: config.LOG_LEVEL }, pino.destination({ dest: opts.logFile, sync: true }))
    : pino({ level: config.LOG_LEVEL });
  const worker = await startWorker(config, log, { healthPollMs: 50, workflowBundle: bundle(root) });
  let inProcessWorker = true;
  const children = new Set<ChildProcess>();
  const spawnWorker = async (): Promise<ChildWorker> => {
    if (inProcessWorker) {
      inProcessWorker = false;
      await worker.shutdown();
    }
    const logFile = join(dataDir, `worker-${children.size + 1}.log`);
    const child = spawn(process.execPath, [resolve(root, 'dist/src/worker.js')], {
      env: { ...env, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', openSync(logFile, 'a')],
    });
    children.add(child);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await new Promise<void>((ok, fail) => {
      // Read to the end (a full pipe would block the worker); only the start line matters.
      let seen: string | null = '';
      child.stdout!.on('data', (b: Buffer) => {
        if (seen === null) return;
        seen += b.toString();
        if (seen.includes('"worker running"')) {
          seen = null;
          ok();
        }
      });
      void exited.then(() => fail(new Error(`worker process exited before it ran; see ${logFile}`)));
    });
    return {
      pid: child.pid!,
      kill: async () => {
        child.kill('SIGKILL');
        await exited;
        children.delete(child);
      },
    };
  };
  let app: Stack['app'] = null;
  try {
    if (opts.app !== false) app = await createApp(config, log);
  } catch (err) {
    await worker.shutdown();
    throw err;
  }
  const prisma = createPrisma(config.DATABASE_URL, 4);
  const temporal = new Client({ connection: await Connection.connect({ address: config.TEMPORAL_ADDRESS }) });
  const workspaces = new WorkspacesService(prisma);
  const created: string[] = [];
  const gql: Stack['gql'] = async (query, token, variables) => {
    const res = await fetch(`${app!.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
    return (await res.json()) as never;
  };
  const as =
    (token: string): Gql =>
    (query, variables) =>
      gql(query, token, variables);
  const spawnApi: Stack['spawnApi'] = async (extra = {}) => {
    const port = await freePort();
    const child = spawn(process.execPath, [resolve(root, 'dist/src/main.js')], {
      env: {
        ...env,
        LOG_LEVEL: 'error',
        GRAPHQL_SCHEMA_FILE: '',
        ...extra,
        API_PORT: String(port),
        PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.add(child);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await Promise.race([
      waitForPort('127.0.0.1', port, 30_000),
      exited.then(() => Promise.reject(new Error('api process exited before it listened'))),
    ]);
    return {
      url: `http://127.0.0.1:${port}`,
      pid: child.pid!,
      kill: async () => {
        child.kill('SIGTERM');
        await exited;
        children.delete(child);
      },
    };
  };
  return {
    config,
    url: app?.url ?? '',
    dataDir,
    prisma,
    temporal,
    worker,
    app,
    // A getter: restartTemporal() replaces the server (benchStack assigns it back, hence the setter).
    get server() {
      return server;
    },
    set server(v: DevServer | null) {
      server = v;
    },
    runpod,
    gql,
    as,
    deployed: async (token, pipeline, deployment) => {
      const pipelineId = await createPipeline(as(token), pipeline);
      const { deployPipeline } = await must(deploy(as(token), { pipelineId, ...deployment }));
      const deploymentId = deployPipeline.deployment.id;
      await temporal.workflow.getHandle(`deploy:${deploymentId}`).result();
      return { pipelineId, deploymentId, apiKey: deployPipeline.apiKey };
    },
    workspace: async (plan, wsName = `${plan.toLowerCase()}-${name}`) => {
      const { workspace, token } = await workspaces.create(wsName, plan);
      created.push(workspace.id);
      return { id: workspace.id, token };
    },
    spawnWorker,
    spawnApi,
    restartTemporal: async () => {
      if (!restartServer) throw new Error('restartTemporal needs an isolated stack with temporalDbFile');
      await restartServer();
    },
    close: async () => {
      // A test that failed mid-load leaves its load sending: stop it, or jest never exits.
      await stopAllLoads();
      for (const c of children) c.kill('SIGKILL');
      // Replicas this stack started do not outlive it (nor linger in the shared database as READY).
      const local = localProvider(config);
      const left = await local.listReplicas();
      await local.stopAll();
      await prisma.replica.updateMany({
        where: { id: { in: left.map((h) => h.replicaId) } },
        data: { state: 'STOPPED', stoppedAt: new Date() },
      });
      // Replicas a test killed are gone already; the shared database must not keep them as live.
      await prisma.replica.updateMany({
        where: { state: { in: ['STARTING', 'READY', 'DRAINING'] }, deployment: { workspaceId: { in: created } } },
        data: { state: 'STOPPED', stoppedAt: new Date() },
      });
      if (inProcessWorker) await worker.shutdown();
      await app?.close();
      await runpod?.stop();
      await temporal.connection.close();
      await prisma.$disconnect();
      if (server) {
        await server.stop();
        await dropDatabase(config.DATABASE_URL);
      }
    },
  };
}
