/**
 * An optimization run on the local provider: the knee each candidate's sweep finds against the knee the simulator is
 * configured with (src/simulator/engine.ts: where the KV cache fills), and the run's wall time per candidate against
 * the time its levels alone take (levels x level seconds: the baseline, in the same run).
 *
 *   npm run build && node dist/bench/optimize.js [levelSeconds=1] [outputTokens=16]
 *
 * Candidates: bf16 at max-model-len 16384, 10923 and 6554 (knees 8, 11, 19), fp8 and int4 at 16384 (12, 16), and a
 * speculative one (8), each up to 24 concurrent sequences. Simulator: ttft 40 ms, itl 8 ms, 10 % per running sequence.
 */
import { simulatedEngine } from '../src/simulator/engine';
import { CREATE_PIPELINE } from '../test/support/graphql';
import { benchStack, progress } from './harness';

const levelSeconds = Number(process.argv[2] ?? 1);
const outputTokens = Number(process.argv[3] ?? 16);
const CAP = 24;

const CANDIDATES = [
  { name: 'bf16-16k', quantization: null, engineConfig: { 'max-model-len': 16384 } },
  { name: 'bf16-11k', quantization: null, engineConfig: { 'max-model-len': 10923 } },
  { name: 'bf16-6.5k', quantization: null, engineConfig: { 'max-model-len': 6554 } },
  { name: 'fp8-16k', quantization: 'fp8', engineConfig: { 'max-model-len': 16384 } },
  { name: 'int4-16k', quantization: 'awq-int4', engineConfig: { 'max-model-len': 16384 } },
  { name: 'spec-16k', quantization: null, engineConfig: { 'max-model-len': 16384, 'speculative-model': 'sim/tiny-draft' } },
].map((c) => ({ ...c, gpu: 'sim', maxConcurrency: CAP }));

async function main() {
  const s = await benchStack('optimize', { SIM_TTFT_MS: '40', SIM_ITL_MS: '8', SIM_SLOWDOWN_PER_SEQ: '0.1', SIM_COLD_START_MS: '300' });
  const { prisma, gql } = s;
  const pipelineId = (await gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline.id;
  const t0 = performance.now();
  const run = await gql<{ startOptimizationRun: { id: string } }>(
    `mutation($p: ID!, $input: StartOptimizationRunInput) { startOptimizationRun(pipelineId: $p, input: $input) { id } }`,
    {
      p: pipelineId,
      input: { priority: 'THROUGHPUT', candidates: CANDIDATES, load: { promptTokens: 32, outputTokens, levelSeconds, evalQuestions: 20 } },
    },
  );
  const runId = run.startOptimizationRun.id;
  // Each candidate's wall time: from MEASURING to its verdict, polled every 100 ms.
  const began = new Map<string, number>();
  const ended = new Map<string, number>();
  for (;;) {
    const vs = await prisma.variant.findMany({ where: { runId } });
    const now = performance.now();
    for (const v of vs) {
      if (v.status === 'MEASURING' && !began.has(v.id)) began.set(v.id, now);
      if (['MEASURED', 'REJECTED', 'FAILED'].includes(v.status) && !ended.has(v.id)) {
        ended.set(v.id, now);
        progress(`${v.name}: ${v.status}`);
      }
    }
    const r = await prisma.optimizationRun.findUniqueOrThrow({ where: { id: runId } });
    if (r.finishedAt) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const totalS = (performance.now() - t0) / 1000;
  const vs = await prisma.variant.findMany({ where: { runId }, orderBy: { createdAt: 'asc' } });
  console.log(`optimization run: ${CANDIDATES.length} candidates, level ${levelSeconds} s, ${outputTokens} output tokens, sweep to ${CAP}`);
  console.log('candidate  | configured knee | measured knee | error % | levels | wall s | levels alone s | wall / levels');
  let errSum = 0;
  for (const v of vs) {
    const configured = simulatedEngine({
      gpu: v.gpu,
      quantization: v.quantization,
      engineConfig: v.engineConfig as Record<string, unknown>,
      maxConcurrency: v.maxConcurrency,
    }).kneeConcurrency;
    const m = v.metrics as { knee: number } | null;
    const levels = ((v.sweep as unknown[] | null) ?? []).length;
    const wall = ((ended.get(v.id) ?? 0) - (began.get(v.id) ?? 0)) / 1000;
    const alone = levels * levelSeconds;
    const err = m ? (Math.abs(m.knee - configured) / configured) * 100 : NaN;
    errSum += err;
    console.log(
      `${v.name.replace(/^run\d+-/, '').padEnd(10)} | ${String(configured).padStart(15)} | ${String(m?.knee ?? '-').padStart(13)} | ${err.toFixed(1).padStart(7)} | ${String(levels).padStart(6)} | ${wall.toFixed(1).padStart(6)} | ${alone.toFixed(1).padStart(14)} | ${(wall / alone).toFixed(2).padStart(13)}`,
    );
  }
  console.log(
    `mean knee error: ${(errSum / vs.length).toFixed(1)} %; run wall time ${totalS.toFixed(1)} s, ${(totalS / vs.length).toFixed(1)} s per candidate`,
  );
  await s.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
