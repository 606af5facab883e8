import { createLogger } from './common/logger';
import { loadConfigOrExit } from './config/config';
import { createApp } from './app';

async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config.LOG_LEVEL, 'api');
  const handle = await createApp(config, log);
  log.info({ url: handle.url, graphql: `${handle.url}/graphql`, gateway: `${config.PUBLIC_BASE_URL}/v1` }, 'api listening');
  const stop = async (signal: string) => {
    log.info({ signal }, 'api shutting down');
    await handle.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

void main().catch((err) => {
  process.stderr.write(`api failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
