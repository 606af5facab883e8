import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { createApp } from '../src/app';
import { freePort } from '../src/common/net';
import { percentileOfSorted } from '../src/common/stats';
import { Config, loadConfig } from '../src/config/config';
import { dropDatabase, ensureDatabase, migrate } from '../src/database/migrate';
import { createPrisma } from '../src/database/prisma';
import { DevServer, startDevServer } from '../src/temporal/dev-server';
import { localProvider } from '../src/providers/local';
import { startWorker } from '../src/temporal/worker-runtime';
import { WorkspacesService } from '../src/workspaces/workspaces.service';

export const progress = (m: string) => process.stderr.write(`${m}\n`);

export const median = (xs: number[]) => percentile(xs, 50);

export const percentile = (xs: number[], p: number) => percentileOfSorted([...xs].sort((a, b) => a - b), p);

/** Linux: CPU seconds a process has used (user + system), from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (100/s)
}

/**
 * The whole product for a benchmark: a scratch database, its own Temporal dev
 * server, the worker and the api in this process, and a Team workspace.
 * Needs Postgres (DATABASE_URL's server) and the Temporal CLI (TEMPORAL_CLI_PATH
 * or scripts/temporal-cli.sh).
 */
export async function benchStack(name: string, env: Record<string, string> = {}, opts: { app?: boolean } = {}) {
  const root = resolve(__dirname, '../..');
  const dataDir = mkdtempSync(join(tmpdir(), `bench-${name}-`));
  const base = new URL(process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres');
  base.pathname = `/infercp_bench_${name.replace(/\W/g, '_')}_${Date.now().toString(36)}`;
  const databaseUrl = base.toString();
  await ensureDatabase(databaseUrl);
  await migrate(databaseUrl, resolve(root, 'prisma/migrations'));
  const cliPath = process.env.TEMPORAL_CLI_PATH ?? execFileSync('bash', [resolve(root, 'scripts/temporal-cli.sh')], { encoding: 'utf8' }).trim();
  const server: DevServer = await startDevServer({ cliPath, port: await freePort() });
  const config: Config = loadConfig({
    ...process.env, DATABASE_URL: databaseUrl, TEMPORAL_ADDRESS: server.address, API_PORT: String(await freePort()),
    DATA_DIR: dataDir, LOG_LEVEL: 'error', TEMPORAL_TASK_QUEUE: 'bench', ...env,
  });
  const log = pino({ level: 'error' });
  const worker = await startWorker(config, log);
  const app = opts.app === false ? null : await createApp(config, log);
  const prisma = createPrisma(databaseUrl, 4);
  const temporal = new Client({ connection: await Connection.connect({ address: server.address }) });
  const { token } = await new WorkspacesService(prisma).create('bench', 'TEAM');
  const gql = async <T = Record<string, { id: string; deployment?: { id: string }; apiKey?: string }>>(query: string, variables: Record<string, unknown>) => {
    const r = await fetch(`${app!.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query, variables }) });
    const body = (await r.json()) as { data: T; errors?: unknown[] };
    if (body.errors) throw new Error(JSON.stringify(body.errors));
    return body.data;
  };
  return {
    config, dataDir, server, worker, app, prisma, temporal, token, gql,
    close: async () => {
      await app?.close().catch(() => {});
      await worker.shutdown();
      await temporal.connection.close();
      await prisma.$disconnect();
      await server.stop();
      // Local replicas are detached (a restarted worker adopts them): a finished benchmark stops its own.
      await localProvider(config).stopAll();
      await dropDatabase(databaseUrl);
    },
  };
}
