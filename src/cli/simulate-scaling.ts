import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { DEFAULT_QUEUE_THRESHOLD_MS, hardFloor, policyProblems, problemAsField, ScalingPolicy, scalingPolicy } from '../domain/scaling';
import {
  chartSvg,
  generateTrace,
  REFERENCE_CONFIGS,
  REFERENCE_PATTERN,
  REFERENCE_REPLICA,
  simulate,
  SUMMARY_HEADER,
  summaryRow,
  TraceRequest,
} from '../scaling/whatif';

/**
 * npm run simulate -- --trace trace.json --policy policy.json [--svg out/]
 * npm run simulate -- --reference [--svg out/]   (the reference's three configurations)
 *
 * trace.json: [{ "at": ms, "durationMs": ms }, ...] or a pattern
 *   { "avgRps": 5, "burstRps": 30, "burstEverySeconds": 300, "burstSeconds": 30, "durationSeconds": 3600, "meanDurationMs": 4000, "seed": 1 }
 * policy.json: { "mode": "FLEX", "minReplicas": 0, "maxReplicas": 4, ... , "coldStartMs": 1500, "concurrency": 30, "gpuHourlyUsd": 1 }
 */
const policyFile = z.object({
  mode: z.enum(['FLEX', 'ACTIVE']).default('FLEX'),
  // Types only: the knobs' rules are policyProblems (src/domain/scaling.ts), checked on the policy with its defaults.
  minReplicas: z.number().optional(),
  maxReplicas: z.number(),
  targetConcurrency: z.number().default(30),
  scaleDownWindowSeconds: z.number().optional(),
  idleTimeoutSeconds: z.number().optional(),
  queueThresholdMs: z.number().int().min(0).default(DEFAULT_QUEUE_THRESHOLD_MS),
  queueTimeoutMs: z.number().int().min(0).default(2000),
  tickMs: z.number().int().min(10).default(1000),
  coldStartMs: z.number().int().min(0).default(REFERENCE_REPLICA.coldStartMs),
  concurrency: z.number().int().min(1).default(REFERENCE_REPLICA.concurrency),
  gpuHourlyUsd: z.number().min(0).default(REFERENCE_REPLICA.gpuHourlyUsd),
});
const patternFile = z.object({
  avgRps: z.number().min(0),
  burstRps: z.number().min(0).default(0),
  burstEverySeconds: z.number().min(0).default(0),
  burstSeconds: z.number().min(0).default(0),
  durationSeconds: z.number().positive(),
  meanDurationMs: z.number().positive(),
  seed: z.number().int().default(1),
  quietFromSeconds: z.number().optional(),
  quietToSeconds: z.number().optional(),
});
const traceFile = z.array(z.object({ at: z.number().min(0), durationMs: z.number().positive() }));

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

function main() {
  const { values } = parseArgs({
    options: { trace: { type: 'string' }, policy: { type: 'string' }, svg: { type: 'string' }, reference: { type: 'boolean' } },
  });
  const runs: Array<{ name: string; trace: TraceRequest[]; policy: ScalingPolicy; opts: z.infer<typeof policyFile> }> = [];
  if (values.reference) {
    const trace = generateTrace(REFERENCE_PATTERN);
    for (const c of REFERENCE_CONFIGS) {
      runs.push({ name: c.name, trace, policy: c.policy, opts: policyFile.parse({ ...c.policy, queueTimeoutMs: 2000 }) });
    }
  } else {
    if (!values.trace || !values.policy) throw new Error('give --trace <file> and --policy <file>, or --reference');
    const rawTrace = readJson(values.trace);
    const trace = Array.isArray(rawTrace)
      ? traceFile.parse(rawTrace).sort((a, b) => a.at - b.at)
      : generateTrace(patternFile.parse(rawTrace));
    const opts = policyFile.parse(readJson(values.policy));
    const policy = scalingPolicy(opts);
    const problems = policyProblems(policy);
    if (problems.length) throw new Error(`${values.policy}: ${problems.map(problemAsField).join('; ')}`);
    runs.push({ name: `${policy.mode} min ${policy.minReplicas} max ${policy.maxReplicas}`, trace, policy, opts });
  }
  const rows: string[] = [];
  for (const run of runs) {
    process.stderr.write(`simulating ${run.name} over ${run.trace.length} requests...\n`);
    const r = simulate(run.trace, {
      policy: run.policy,
      replica: { coldStartMs: run.opts.coldStartMs, concurrency: run.opts.concurrency, gpuHourlyUsd: run.opts.gpuHourlyUsd },
      initialReplicas: hardFloor(run.policy),
      queueTimeoutMs: run.opts.queueTimeoutMs,
      tickMs: run.opts.tickMs,
    });
    rows.push(summaryRow(run.name, r));
    if (values.svg) {
      mkdirSync(values.svg, { recursive: true });
      const file = join(values.svg, `${run.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}.svg`);
      writeFileSync(file, chartSvg(r, run.name));
      process.stderr.write(`chart: ${file}\n`);
    }
  }
  process.stdout.write(`${SUMMARY_HEADER}\n${rows.join('\n')}\n`);
}

try {
  main();
} catch (e) {
  process.stderr.write(
    `simulate: ${e instanceof z.ZodError ? e.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : (e as Error).message}\n`,
  );
  process.exit(2);
}
