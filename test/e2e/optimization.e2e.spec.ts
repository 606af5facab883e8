import { optimizeProgressQuery, reoptimizeScheduleId } from '../../workflows/messages';
import { Gql, must } from '../support/graphql';
import { chatLoad } from '../support/load';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

const START = `mutation($pipelineId: ID!, $input: StartOptimizationRunInput) {
  startOptimizationRun(pipelineId: $pipelineId, input: $input) { id status workflowId priority redeploy } }`;

const RUNS = `query($id: ID!) { pipeline(id: $id) {
  selectedVariantId
  reoptimizationSchedule { scheduleId everySeconds paused nextRunsAt }
  runs { id status trigger error winnerVariantId workflowId redeployments { deploymentId outcome }
    variants { id name status rank reason targetConcurrency
      metrics { knee targetConcurrency throughputTps ttftP95Ms itlP95Ms costPerMillionTokensUsd quality }
      sweep { concurrency requests errors throughputTps ttftP95Ms } } } } }`;

const SET_SCHEDULE = `mutation($pipelineId: ID!, $input: ReoptimizationScheduleInput!) {
  setReoptimizationSchedule(pipelineId: $pipelineId, input: $input) { scheduleId everySeconds paused nextRunsAt } }`;

interface RunView {
  id: string;
  status: string;
  trigger: string;
  error: string | null;
  winnerVariantId: string | null;
  workflowId: string;
  redeployments: Array<{ deploymentId: string; outcome: string }>;
  variants: Array<{
    id: string;
    name: string;
    status: string;
    rank: number | null;
    reason: string | null;
    targetConcurrency: number | null;
    metrics: { knee: number; targetConcurrency: number; throughputTps: number; ttftP95Ms: number; quality: number | null } | null;
    sweep: Array<{ concurrency: number; requests: number; errors: number; throughputTps: number; ttftP95Ms: number }>;
  }>;
}

/** Variants whose KV cache holds 8 sequences of 16k tokens (fp8 weights: 12); a sweep up to 16 finds the knee. */
const LONG = { 'max-model-len': 16384 };
const CANDIDATES = [
  { name: 'base', gpu: 'sim', engineConfig: LONG, maxConcurrency: 16 },
  { name: 'fp8', gpu: 'sim', quantization: 'fp8', engineConfig: LONG, maxConcurrency: 16 },
  {
    name: 'spec',
    gpu: 'sim',
    engineConfig: { ...LONG, 'speculative-model': 'sim/tiny-draft', 'num-speculative-tokens': 4 },
    maxConcurrency: 16,
  },
];
const LOAD = { promptTokens: 32, outputTokens: 16, levelSeconds: 1, evalQuestions: 50 };

/**
 * Optimization runs on the real stack: candidates measured on live simulator replicas whose engine settings change
 * their speed and knee as src/simulator/engine.ts documents, ranked, the winner redeployed under load, a schedule.
 */
describe('optimization runs (real api, worker, Temporal, gateway and simulator replicas)', () => {
  let stack: Stack;
  let gql: Gql;
  let token: string;

  beforeAll(async () => {
    // The simulator's own latency (ttft 40 ms, itl 8 ms, 10 % slower per running sequence) so the knee and the
    // constraints sit well above timer noise.
    stack = await startStack({
      env: {
        SIM_TTFT_MS: '40',
        SIM_ITL_MS: '8',
        SIM_SLOWDOWN_PER_SEQ: '0.1',
        SIM_COLD_START_MS: '300',
        OPTIMIZE_SCHEDULE_MIN_SECONDS: '1',
        OPTIMIZE_DRIFT_CHECK_SECONDS: '2',
        OPTIMIZE_DRIFT_WINDOW_SECONDS: '600',
      },
    });
    ({ token } = await stack.workspace('TEAM'));
    gql = stack.as(token);
  });
  afterAll(async () => {
    await stack?.close();
  });

  const runs = async (pipelineId: string) =>
    (
      await must(
        gql<{ pipeline: { selectedVariantId: string; reoptimizationSchedule: unknown; runs: RunView[] } }>(RUNS, { id: pipelineId }),
      )
    ).pipeline;
  const finished = (pipelineId: string, runId: string) =>
    eventually(
      async () => {
        const r = (await runs(pipelineId)).runs.find((x) => x.id === runId);
        return r && (r.status === 'SUCCEEDED' || r.status === 'FAILED') ? r : null;
      },
      240_000,
      250,
    );
  const candidateReplicas = async (runId: string) =>
    (await stack.worker.providers.LOCAL!.listReplicas()).filter((h) => h.deploymentId === `run:${runId}`);

  it('should rank three variants as the engine model predicts, set each target at its knee, and move the deployment onto the winner with no failed request', async () => {
    const { pipelineId, deploymentId, apiKey } = await stack.deployed(
      token,
      { name: 'opt-chat' },
      { mode: 'FLEX', minReplicas: 1, maxReplicas: 2 },
    );
    const load = chatLoad(`${stack.url}`, apiKey, { rate: 8, maxTokens: 8 });
    const started = await must(
      gql<{ startOptimizationRun: { id: string; workflowId: string } }>(START, {
        pipelineId,
        input: { priority: 'THROUGHPUT', redeploy: 'IF_BETTER', candidates: CANDIDATES, load: LOAD },
      }),
    );
    const run = started.startOptimizationRun;
    expect(run.workflowId).toBe(`optimize:${pipelineId}:${run.id}`);
    // A second run of the same pipeline is refused while this one runs, naming it.
    const again = await gql(START, { pipelineId, input: { candidates: CANDIDATES.slice(0, 1) } });
    expect(again.errors?.[0]).toMatchObject({ extensions: { code: 'CONFLICT' } });
    expect(again.errors?.[0].message).toContain(run.id);
    // Its progress is a query on the workflow, as the Temporal UI shows it.
    const progress = await eventually(async () => {
      const p = await stack.temporal.workflow
        .getHandle(run.workflowId)
        .query(optimizeProgressQuery)
        .catch(() => null);
      return p?.step === 'measuring' ? p : null;
    });
    expect(progress.of).toBe(3);

    const done = await finished(pipelineId, run.id);
    const result = await load.stop();
    expect(done).toMatchObject({ status: 'SUCCEEDED', error: null });

    const byName = Object.fromEntries(done.variants.map((v) => [v.name.replace(/^run\d+-/, ''), v]));
    // Throughput at the knee, per the engine model (16 tokens, ttft 40 ms, itl 8 ms, 10 % per sequence):
    // fp8 decodes at 0.7x with room for 12 sequences (~770 tokens/s), spec decodes at 0.6x with 8 (~620), base 8 (~470).
    expect(done.variants.map((v) => v.name.replace(/^run\d+-/, ''))).toEqual(['fp8', 'spec', 'base']);
    expect([byName.fp8.rank, byName.spec.rank, byName.base.rank]).toEqual([1, 2, 3]);
    expect(byName.fp8.metrics!.throughputTps).toBeGreaterThan(byName.spec.metrics!.throughputTps);
    expect(byName.spec.metrics!.throughputTps).toBeGreaterThan(byName.base.metrics!.throughputTps);
    // The knee is where the KV cache fills (8, 12, 8): found within a level or two (bench/optimize.ts prints the error,
    // about 1 %; a loaded machine's timers can move the 5-10 % between neighbours); with no constraint the target is the knee.
    for (const [name, knee] of [
      ['base', 8],
      ['fp8', 12],
      ['spec', 8],
    ] as const) {
      const m = byName[name].metrics!;
      expect(Math.abs(m.knee - knee)).toBeLessThanOrEqual(2);
      expect(m.targetConcurrency).toBe(m.knee);
      expect(byName[name].targetConcurrency).toBe(m.knee);
      expect(byName[name].sweep.map((p) => p.concurrency).slice(0, 5)).toEqual([1, 2, 4, 8, 16]);
    }
    // The quality eval: fp8 weights answer 2 % of 50 questions wrong; the others are exact (a draft model is lossless).
    expect(byName.base.metrics!.quality).toBe(1);
    expect(byName.spec.metrics!.quality).toBe(1);
    expect(byName.fp8.metrics!.quality).toBeLessThan(1);

    // The winner is selected for later deploys, and the deployment moved onto it through the rollback swap.
    const p = await runs(pipelineId);
    expect(p.selectedVariantId).toBe(byName.fp8.id);
    expect(done.redeployments).toEqual([{ deploymentId, outcome: expect.stringMatching(/^moved by op:/) }]);
    const d = await stack.prisma.deployment.findUniqueOrThrow({ where: { id: deploymentId } });
    expect(d.variantId).toBe(byName.fp8.id);
    expect(d.targetConcurrency).toBe(byName.fp8.metrics!.targetConcurrency);
    expect(result.failures).toEqual([]);
    expect(result.ok).toBeGreaterThan(0);
    // No candidate replica is left running.
    expect(await candidateReplicas(run.id)).toEqual([]);
  });

  it('should hold the target below the knee when a constraint binds there, and reject, saying why, a variant that breaks one', async () => {
    const pipelineId = await must(
      gql<{ createPipeline: { id: string } }>(
        `mutation { createPipeline(input: { name: "opt-bound", task: CHAT, model: "sim/tiny-chat" }) { id } }`,
      ),
    ).then((r) => r.createPipeline.id);
    // Base: ttft 40 ms x (1 + 0.1 (c - 1)) is 44 ms at 2, 52 ms at 4 and 68 ms at 8 (the knee). The same variant on an H100 runs
    // as sim here but is priced as an H100 (0.00116 USD a second: 3048.48 USD a month).
    const r = await must(
      gql<{ startOptimizationRun: { id: string } }>(START, {
        pipelineId,
        input: {
          priority: 'LATENCY',
          constraints: { maxTtftP95Ms: 62, maxMonthlyCostUsd: 2000 },
          candidates: [CANDIDATES[0], { ...CANDIDATES[0], name: 'h100', gpu: 'H100-80GB' }],
          load: { ...LOAD, evalQuestions: 0 },
        },
      }),
    );
    const done = await finished(pipelineId, r.startOptimizationRun.id);
    expect(done.status).toBe('SUCCEEDED');
    const base = done.variants.find((v) => v.name.endsWith('-base'))!;
    // The constraint binds below the knee: the target is the highest measured level at or under it whose TTFT p95 is
    // within 62 ms, and the next level up breaks it. Which level that is depends on the machine's overhead on top of
    // the model's 44 ms at 2 and 52 ms at 4 (a loaded CI run measured over 62 ms at 2): what is asserted is the rule,
    // against the levels as measured.
    const { knee, targetConcurrency } = base.metrics!;
    expect(knee).toBeGreaterThanOrEqual(7);
    expect(targetConcurrency).toBeLessThan(knee);
    expect(targetConcurrency).toBeGreaterThanOrEqual(1);
    const levels = [...base.sweep].sort((x, y) => x.concurrency - y.concurrency).filter((p) => p.concurrency <= knee);
    const at = levels.findIndex((p) => p.concurrency === targetConcurrency);
    expect(levels[at].ttftP95Ms).toBeLessThanOrEqual(62);
    expect(levels[at + 1].ttftP95Ms).toBeGreaterThan(62);
    expect(base.rank).toBe(1);
    const h100 = done.variants.find((v) => v.name.endsWith('-h100'))!;
    expect(h100).toMatchObject({ status: 'REJECTED', rank: null });
    expect(h100.reason).toBe('one replica costs 3048.48 USD a month, above maxMonthlyCostUsd 2000');
  });

  it('should mark a candidate that cannot start FAILED with the reason, leave no replica of it, and still pick a winner', async () => {
    const pipelineId = await must(
      gql<{ createPipeline: { id: string } }>(
        `mutation { createPipeline(input: { name: "opt-broken", task: CHAT, model: "sim/tiny-chat" }) { id } }`,
      ),
    ).then((r) => r.createPipeline.id);
    // Tensor parallel over two GPUs on a one-GPU box: the engine exits at start, as vLLM does.
    const r = await must(
      gql<{ startOptimizationRun: { id: string } }>(START, {
        pipelineId,
        input: {
          candidates: [
            { name: 'broken', gpu: 'sim', engineConfig: { 'tensor-parallel-size': 2 }, maxConcurrency: 4 },
            { name: 'ok', gpu: 'sim', maxConcurrency: 4 },
          ],
          load: { ...LOAD, levelSeconds: 0.5, evalQuestions: 0 },
        },
      }),
    );
    const done = await finished(pipelineId, r.startOptimizationRun.id);
    const broken = done.variants.find((v) => v.name.endsWith('-broken'))!;
    expect(done.status).toBe('SUCCEEDED');
    expect(broken).toMatchObject({ status: 'FAILED', rank: null });
    expect(broken.reason).toMatch(/exited before it became healthy/);
    expect(done.winnerVariantId).toBe(done.variants.find((v) => v.name.endsWith('-ok'))!.id);
    expect(await candidateReplicas(r.startOptimizationRun.id)).toEqual([]);
  });

  it('should refuse bad input naming the field', async () => {
    const pipelineId = (await stack.prisma.pipeline.findFirstOrThrow({ where: { name: 'opt-broken' } })).id;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /gpus: name the GPUs/],
      [{ gpus: ['sim'], constraints: { minQuality: 2 } }, /constraints.minQuality: must be 0-1/],
      [{ gpus: ['sim'], load: { levelSeconds: 0 } }, /load.levelSeconds: must be at least 0.2/],
      [{ candidates: [CANDIDATES[0], CANDIDATES[0]] }, /two candidates are named base/],
    ];
    for (const [input, message] of cases) {
      const res = await gql(START, { pipelineId, input });
      expect(res.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
      expect(res.errors?.[0].message).toMatch(message);
    }
    const missing = await gql(START, { pipelineId: 'pl_nope', input: { gpus: ['sim'] } });
    expect(missing.errors?.[0]).toMatchObject({ extensions: { code: 'NOT_FOUND' } });
  });

  it('should run on a schedule, run early when live traffic drifts from what it measured, and stop firing once paused', async () => {
    const { pipelineId, deploymentId, apiKey } = await stack.deployed(
      token,
      { name: 'opt-sched' },
      { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
    );
    const set = await must(
      gql<{ setReoptimizationSchedule: { scheduleId: string; nextRunsAt: string[] } }>(SET_SCHEDULE, {
        pipelineId,
        input: {
          everySeconds: 2,
          gpus: ['sim'],
          priority: 'COST',
          redeploy: 'IF_BETTER',
          load: { ...LOAD, promptTokens: 1, levelSeconds: 0.3, evalQuestions: 0, maxConcurrency: 4 },
        },
      }),
    );
    expect(set.setReoptimizationSchedule.scheduleId).toBe(reoptimizeScheduleId(pipelineId));
    expect(set.setReoptimizationSchedule.nextRunsAt.length).toBeGreaterThan(0);
    const first = await eventually(
      async () => (await runs(pipelineId)).runs.find((r) => r.trigger === 'SCHEDULE' && r.status === 'SUCCEEDED') ?? null,
      180_000,
      250,
    );
    // Default candidates for sim: bf16, fp8, int4 and speculative; the cheapest per token wins and is deployed.
    expect(first.variants).toHaveLength(4);
    expect(first.redeployments[0]).toMatchObject({ deploymentId, outcome: expect.stringMatching(/^moved by/) });

    // Live traffic with outputs four times longer than the run measured (its prompts, "hi", as long): the drift check
    // says so on the deployment, and the schedule (runOnDrift) runs at once, measuring the traffic as it is now.
    await must(gql(SET_SCHEDULE, { pipelineId, input: { everySeconds: 3600 } }));
    await eventually(
      async () => (await runs(pipelineId)).runs.every((r) => r.status !== 'RUNNING' && r.status !== 'PENDING') || null,
      120_000,
      250,
    );
    const traffic = chatLoad(stack.url, apiKey, { rate: 10, maxTokens: LOAD.outputTokens * 4 });
    const drift = await eventually(
      async () => (await stack.prisma.deploymentEvent.findFirst({ where: { deploymentId, kind: 'optimization.drift' } })) ?? null,
      60_000,
      250,
    );
    expect(drift.message).toMatch(/outputs of \d+ tokens against 16 measured/);
    expect(drift.message).toMatch(/re-optimize/);
    const early = await eventually(
      async () => (await runs(pipelineId)).runs.find((r) => r.trigger === 'DRIFT' && r.status === 'SUCCEEDED') ?? null,
      180_000,
      250,
    );
    await traffic.stop();
    const measuredAt = (await stack.prisma.optimizationRun.findUniqueOrThrow({ where: { id: early.id } })).load as { outputTokens: number };
    expect(measuredAt.outputTokens).toBeGreaterThan(LOAD.outputTokens * 2);

    const paused = await must(
      gql<{ setReoptimizationSchedule: { paused: boolean; nextRunsAt: string[] } }>(SET_SCHEDULE, {
        pipelineId,
        input: { paused: true, everySeconds: 2 },
      }),
    );
    expect(paused.setReoptimizationSchedule).toMatchObject({ paused: true, nextRunsAt: [] });
    // Temporal applies the pause a moment after it is asked.
    await eventually(async () => (await stack.temporal.schedule.getHandle(reoptimizeScheduleId(pipelineId)).describe()).state.paused);
    // Whatever was already running ends; after that nothing new starts while paused, though it is due every 2 s.
    await eventually(
      async () => (await runs(pipelineId)).runs.every((r) => r.status !== 'RUNNING' && r.status !== 'PENDING') || null,
      120_000,
      250,
    );
    const count = (await runs(pipelineId)).runs.length;
    await new Promise((r) => setTimeout(r, 5000));
    expect((await runs(pipelineId)).runs.length).toBe(count);

    const del = await gql(`mutation($id: ID!) { deleteReoptimizationSchedule(pipelineId: $id) }`, { id: pipelineId });
    expect(del.data).toEqual({ deleteReoptimizationSchedule: true });
    await expect(stack.temporal.schedule.getHandle(reoptimizeScheduleId(pipelineId)).describe()).rejects.toThrow();
    expect((await runs(pipelineId)).reoptimizationSchedule).toBeNull();
  });
});
