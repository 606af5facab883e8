import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Config, loadConfig } from '../config/config';
import { ensureDatabase, migrate } from '../database/migrate';
import { createPrisma } from '../database/prisma';
import { ensureDefaultWorkspace } from '../workspaces/workspaces.service';

const MIGRATIONS = resolve(__dirname, '../../../prisma/migrations');

/**
 * Creates the database if needed, applies migrations, and makes sure the default
 * workspace has a management token: BOOTSTRAP_TOKEN, else the one saved in
 * tokenFile, else a new one (saved there).
 */
export async function bootstrap(config: Config, log: (msg: string) => void, tokenFile?: string): Promise<{ token: string }> {
  log(`preparing the database ${new URL(config.DATABASE_URL).pathname.slice(1)}`);
  if (await ensureDatabase(config.DATABASE_URL)) log('created the database');
  const m = await migrate(config.DATABASE_URL, MIGRATIONS, log);
  log(`migrations: ${m.applied.length} applied, ${m.alreadyApplied.length} already applied`);
  const saved =
    config.BOOTSTRAP_TOKEN ??
    (tokenFile
      ? await readFile(tokenFile, 'utf8').then(
          (s) => s.trim(),
          () => undefined,
        )
      : undefined);
  const prisma = createPrisma(config.DATABASE_URL, 2);
  try {
    const { token } = await ensureDefaultWorkspace(prisma, saved);
    if (tokenFile && !config.BOOTSTRAP_TOKEN) await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
    return { token };
  } finally {
    await prisma.$disconnect();
  }
}

// `node dist/src/cli/bootstrap.js`: the one-shot init of docker compose and Kubernetes jobs.
if (require.main === module) {
  const config = loadConfig();
  bootstrap(config, (m) => process.stderr.write(`${m}\n`))
    .then(({ token }) => {
      process.stderr.write(
        config.BOOTSTRAP_TOKEN ? 'default workspace ready (token from BOOTSTRAP_TOKEN)\n' : `default workspace token: ${token}\n`,
      );
    })
    .catch((err) => {
      process.stderr.write(`bootstrap failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
}
