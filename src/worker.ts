import { Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { createLogger } from './common/logger';
import { loadConfigOrExit } from './config/config';
import { describeTemporalConnection } from './temporal/connection';
import { startWorker } from './temporal/worker-runtime';

async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config.LOG_LEVEL, 'worker');
  Runtime.install({
    logger: {
      log: (level, message, meta) => log[level === 'TRACE' ? 'trace' : (level.toLowerCase() as 'info')]({ ...meta }, message),
      trace: (m, meta) => log.trace(meta ?? {}, m),
      debug: (m, meta) => log.debug(meta ?? {}, m),
      info: (m, meta) => log.info(meta ?? {}, m),
      warn: (m, meta) => log.warn(meta ?? {}, m),
      error: (m, meta) => log.error(meta ?? {}, m),
    },
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } },
  });
  // Temporal's Runtime handles SIGINT/SIGTERM: the worker drains and run() resolves.
  const rt = await startWorker(config, log);
  log.info({ taskQueue: config.TEMPORAL_TASK_QUEUE, temporal: describeTemporalConnection(config) }, 'worker running');
  await rt.run;
  await rt.shutdown();
  log.info('worker stopped');
}

void main().catch((err) => {
  process.stderr.write(`worker failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
