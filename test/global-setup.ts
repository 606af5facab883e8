import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../src/common/net';
import { ensureDatabase, migrate } from '../src/database/migrate';
import { startDevServer } from '../src/temporal/dev-server';

/**
 * One real Temporal dev server (in-memory SQLite) and one fresh Postgres
 * database for the whole run. TEMPORAL_ADDRESS points the tests at an existing
 * cluster instead; TEST_DATABASE_URL at another Postgres server.
 */
export default async function globalSetup() {
  const base = new URL(process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres');
  base.pathname = `/infercp_test_${process.pid}_${Date.now().toString(36)}`;
  const databaseUrl = base.toString();
  await ensureDatabase(databaseUrl);
  await migrate(databaseUrl, resolve(__dirname, '../prisma/migrations'));
  process.env.DATABASE_URL = databaseUrl;
  process.env.DATA_DIR = mkdtempSync(join(tmpdir(), 'infercp-test-'));
  process.env.LOG_LEVEL = process.env.LOG_LEVEL ?? 'warn';

  if (!process.env.TEMPORAL_ADDRESS) {
    const cliPath =
      process.env.TEMPORAL_CLI_PATH ??
      execFileSync('bash', [resolve(__dirname, '../scripts/temporal-cli.sh')], { encoding: 'utf8' }).trim();
    const server = await startDevServer({ cliPath, port: await freePort(), logFile: join(process.env.DATA_DIR, 'temporal.log') });
    process.env.TEMPORAL_ADDRESS = server.address;
    (globalThis as Record<string, unknown>).__temporal = server;
  }
}
