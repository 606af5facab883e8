#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { startRunpodFake } from './index';

/**
 * Runs the RunPod fake on its own:
 * `node dist/src/providers/runpod/fake/main.js --management-port 8181 --runtime-port 8182 --api-key rpa_test`.
 */
const { values } = parseArgs({
  strict: true,
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    'management-port': { type: 'string', default: '0' },
    'runtime-port': { type: 'string', default: '0' },
    'api-key': { type: 'string', multiple: true },
    'read-only-key': { type: 'string', multiple: true },
    'state-dir': { type: 'string' },
    'cold-start-ms': { type: 'string' },
    'flashboot-start-ms': { type: 'string' },
    'rate-per-minute': { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});

const num = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`--${name}=${v}: must be a non-negative number\n`);
    process.exit(2);
  }
  return n;
};

void (async () => {
  const keys = [
    ...(values['api-key'] ?? []).map((key) => ({ key })),
    ...(values['read-only-key'] ?? []).map((key) => ({ key, access: 'READ_ONLY' as const })),
  ];
  if (keys.length === 0) keys.push({ key: 'rpa_test' });
  const fake = await startRunpodFake({
    host: values.host,
    managementPort: num('management-port', values['management-port']),
    runtimePort: num('runtime-port', values['runtime-port']),
    keys,
    stateDir: values['state-dir'],
    coldStartMs: num('cold-start-ms', values['cold-start-ms']),
    flashbootStartMs: num('flashboot-start-ms', values['flashboot-start-ms']),
    ratePerMinute: num('rate-per-minute', values['rate-per-minute']),
    log: values.verbose ? (msg, fields) => process.stderr.write(`${JSON.stringify({ time: Date.now(), msg, ...fields })}\n`) : undefined,
  });
  process.stdout.write(
    `${JSON.stringify({ managementUrl: fake.managementUrl, graphqlUrl: fake.graphqlUrl, runtimeUrl: fake.runtimeUrl })}\n`,
  );
  process.stdout.write(
    `point the control plane at it with:\n  RUNPOD_API_URL=${fake.managementUrl} RUNPOD_GRAPHQL_URL=${fake.graphqlUrl} ` +
      `RUNPOD_RUNTIME_URL=${fake.runtimeUrl} RUNPOD_API_KEY=${keys[0].key}\n`,
  );
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void fake.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
})();
