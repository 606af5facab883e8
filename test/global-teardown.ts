import { rmSync } from 'node:fs';
import { dropDatabase } from '../src/database/migrate';
import type { DevServer } from '../src/temporal/dev-server';
import { LocalProvider } from '../src/providers/local';
import { join } from 'node:path';

export default async function globalTeardown() {
  const server = (globalThis as Record<string, unknown>).__temporal as DevServer | undefined;
  await server?.stop();
  const dataDir = process.env.DATA_DIR;
  if (dataDir) {
    // Any replica a failed test left behind is stopped, never orphaned.
    const { readdirSync } = await import('node:fs');
    for (const dir of readdirSync(dataDir)) {
      await new LocalProvider({ stateDir: join(dataDir, dir, 'local'), cacheDir: '', command: '', simulatorArgs: [] }).stopAll();
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
  if (process.env.DATABASE_URL && !process.env.KEEP_TEST_DB) await dropDatabase(process.env.DATABASE_URL);
}
