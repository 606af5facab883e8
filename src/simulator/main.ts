#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { SIMULATOR_DEFAULTS, SimulatorOptions, startSimulator } from './server';

/**
 * Runs one simulated replica: `node dist/src/simulator/main.js --port 9000 --model sim/tiny-chat`.
 * Every option in SimulatorOptions is a flag (kebab-case) and has a default.
 */
const flags: Record<string, { type: 'string' }> = {};
const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
for (const k of Object.keys(SIMULATOR_DEFAULTS)) flags[kebab(k)] = { type: 'string' };

const { values } = parseArgs({ options: flags, strict: true });
const opts: Record<string, unknown> = {};
for (const [k, def] of Object.entries(SIMULATOR_DEFAULTS)) {
  const v = values[kebab(k)];
  if (v === undefined) continue;
  if (typeof def === 'number') {
    const n = Number(v);
    if (!Number.isFinite(n)) {
      process.stderr.write(`--${kebab(k)}=${v}: must be a number\n`);
      process.exit(2);
    }
    opts[k] = n;
  } else opts[k] = v;
}

const line = (msg: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ time: Date.now(), ...msg })}\n`);

void (async () => {
  let sim: Awaited<ReturnType<typeof startSimulator>>;
  try {
    sim = await startSimulator(opts as Partial<SimulatorOptions>);
  } catch (err) {
    line({ level: 'error', msg: `simulator cannot start: ${(err as Error).message}` });
    process.exit(1);
  }
  line({ msg: 'simulator listening', url: sim.url });
  const r = await sim.ready;
  line({ msg: 'simulator ready', loadMs: r.coldStartMs, cached: r.cached });
  const stop = () => {
    void sim.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
})();
