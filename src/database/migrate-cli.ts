import { resolve } from 'node:path';
import { loadConfig } from '../config/config';
import { ensureDatabase, migrate } from './migrate';

/** `npm run db:migrate`: creates the database if needed and applies prisma/migrations. */
async function main() {
  const config = loadConfig();
  const created = await ensureDatabase(config.DATABASE_URL);
  if (created) process.stdout.write('created database\n');
  const r = await migrate(config.DATABASE_URL, resolve(__dirname, '../../../prisma/migrations'), (m) => process.stdout.write(`${m}\n`));
  process.stdout.write(`${r.applied.length} migration(s) applied, ${r.alreadyApplied.length} already applied\n`);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
