import { batchSlowdown, simulatedEngine } from '../simulator/engine';
import { Constraints, evaluate, knee, nextLevel, rank, SweepPoint, sweepLevels, trafficDrift, VariantMetrics } from './optimization';

/** What the simulator's model predicts a level measures (tokens of 16, ttft 40 ms, itl 8 ms, 1 % batching cost). */
function modelled(c: number, kneeAt: number, o: { ttft?: number; itl?: number } = {}): SweepPoint {
  const s = batchSlowdown(c, 0.01, kneeAt);
  const ttft = (o.ttft ?? 40) * s;
  const itl = (o.itl ?? 8) * s;
  const latency = ttft + itl * 15;
  return {
    concurrency: c,
    requests: 50,
    errors: 0,
    throughputTps: (c * 16 * 1000) / latency,
    ttftP50Ms: ttft,
    ttftP95Ms: ttft,
    itlP50Ms: itl,
    itlP95Ms: itl,
    latencyP50Ms: latency,
    latencyP95Ms: latency,
  };
}

/** Runs the sweep as an optimization run does: measure what nextLevel asks until it says done. */
function sweep(cap: number, measure: (c: number) => SweepPoint): SweepPoint[] {
  const points: SweepPoint[] = [];
  for (let c = nextLevel(points, cap); c !== null; c = nextLevel(points, cap)) points.push(measure(c));
  return points;
}

describe('optimization sweep', () => {
  it('should sweep 1, 2, 4, ... and the cap', () => {
    expect(sweepLevels(16)).toEqual([1, 2, 4, 8, 16]);
    expect(sweepLevels(30)).toEqual([1, 2, 4, 8, 16, 30]);
    expect(sweepLevels(1)).toEqual([1]);
  });

  it.each([8, 12, 13, 21])('should find a knee the model puts at %i, probing a handful of levels past the coarse ones', (at) => {
    const points = sweep(32, (c) => modelled(c, at));
    expect(knee(points)).toBe(at);
    // At most two probes per halving of the gap on each side of the peak (the gap is 16 wide here).
    expect(points.length).toBeLessThanOrEqual(sweepLevels(32).length + 2 * Math.log2(16) + 1);
  });

  it('should take the cap as the knee when throughput rises all the way', () => {
    expect(knee(sweep(16, (c) => modelled(c, 0)))).toBe(16);
  });

  it('should set the target at the knee when no constraint binds, and below it when one does', () => {
    const points = sweep(32, (c) => modelled(c, 8));
    expect(evaluate(points, {}, 1, null)).toMatchObject({ reason: null, metrics: { knee: 8, targetConcurrency: 8 } });
    // ttft 40 ms x (1 + 0.01 (c - 1)): 41.2 at 4, 42 at 6, 42.8 at 8.
    const c: Constraints = { maxTtftP95Ms: 42.5 };
    expect(evaluate(points, c, 1, null).metrics?.targetConcurrency).toBeLessThan(8);
    expect(evaluate(points, c, 1, null).reason).toBeNull();
  });

  it('should reject a variant, saying why, when even one stream breaks a constraint or its cost and quality do', () => {
    const points = sweep(16, (c) => modelled(c, 8));
    expect(evaluate(points, { maxTtftP95Ms: 10 }, 1, null).reason).toMatch(/TTFT p95 40 ms at concurrency 1 exceeds maxTtftP95Ms 10/);
    expect(evaluate(points, { maxItlP95Ms: 5 }, 1, null).reason).toMatch(
      /inter-token latency p95 8 ms at concurrency 1 exceeds maxItlP95Ms 5/,
    );
    expect(evaluate(points, { maxMonthlyCostUsd: 100 }, 1, null).reason).toMatch(/730 USD a month, above maxMonthlyCostUsd 100/);
    expect(evaluate(points, { minQuality: 0.99 }, 1, 0.94).reason).toMatch(/quality 0.94 is below minQuality 0.99/);
    expect(evaluate(points, { minThroughputTps: 1e6 }, 1, null).reason).toMatch(/below minThroughputTps 1000000/);
  });

  it('should not count a level whose requests failed', () => {
    const points = sweep(16, (c) => ({ ...modelled(c, 0), errors: c === 16 ? 10 : 0 }));
    expect(knee(points)).toBeLessThan(16);
  });

  it('should cost a million tokens at the GPU price over what one replica makes at its target', () => {
    const points = [modelled(1, 0)];
    const m = evaluate(points, {}, 3.6, null).metrics!;
    expect(m.costPerMillionTokensUsd).toBeCloseTo((3.6 / (points[0].throughputTps * 3600)) * 1e6, 9);
  });
});

describe('ranking', () => {
  const m = (o: Partial<VariantMetrics>): VariantMetrics => ({
    knee: 8,
    targetConcurrency: 8,
    throughputTps: 1000,
    ttftP50Ms: 40,
    ttftP95Ms: 40,
    itlP50Ms: 8,
    itlP95Ms: 8,
    latencyP50Ms: 200,
    latencyP95Ms: 200,
    errorRate: 0,
    costPerMillionTokensUsd: 1,
    monthlyCostUsd: 100,
    quality: 1,
    ...o,
  });
  const vs = [
    { id: 'fast', metrics: m({ throughputTps: 2000, latencyP95Ms: 150, costPerMillionTokensUsd: 0.5, quality: 0.9 }) },
    { id: 'lean', metrics: m({ throughputTps: 1200, latencyP95Ms: 100, costPerMillionTokensUsd: 0.8, quality: 0.95 }) },
    { id: 'exact', metrics: m({ throughputTps: 800, latencyP95Ms: 250, costPerMillionTokensUsd: 1.2, quality: 1 }) },
  ];

  it.each([
    ['THROUGHPUT', ['fast', 'lean', 'exact']],
    ['LATENCY', ['lean', 'fast', 'exact']],
    ['COST', ['fast', 'lean', 'exact']],
    ['QUALITY', ['exact', 'lean', 'fast']],
    ['BALANCED', ['fast', 'lean', 'exact']],
  ] as const)('should rank by %s', (priority, order) => {
    expect(rank(vs, priority)).toEqual(order);
  });
});

describe('the simulated engine', () => {
  const v = (o: Partial<Parameters<typeof simulatedEngine>[0]>) =>
    simulatedEngine({ gpu: 'sim', quantization: null, engineConfig: null, maxConcurrency: 30, ...o });

  it('should leave a default variant without a knee inside its cap', () => {
    expect(v({}).kneeConcurrency).toBe(30);
  });

  it('should put the knee where the KV cache fills, wider with quantized weights and on the larger GPU', () => {
    const long = { 'max-model-len': 16384 };
    expect(v({ engineConfig: long }).kneeConcurrency).toBe(8);
    expect(v({ engineConfig: long, quantization: 'fp8' }).kneeConcurrency).toBe(12);
    expect(v({ engineConfig: long, quantization: 'awq-int4' }).kneeConcurrency).toBe(16);
    expect(v({ engineConfig: long, gpu: 'sim-large' })).toMatchObject({ kneeConcurrency: 16, speed: 2 });
  });

  it('should decode faster and prefill slower with a draft model, and cost quality only when quantized', () => {
    expect(v({ engineConfig: { 'speculative-model': 'sim/draft' } })).toMatchObject({
      decodeFactor: 0.6,
      prefillFactor: 1.25,
      qualityLoss: 0,
    });
    expect(v({ quantization: 'fp8' })).toMatchObject({ decodeFactor: 0.7, qualityLoss: 0.02 });
  });
});

describe('traffic drift', () => {
  const measured = { concurrency: 8, promptTokens: 100, outputTokens: 16 };
  it('should say what moved, by a factor of two either way', () => {
    expect(trafficDrift(measured, { requests: 100, concurrency: 20, promptTokens: 100, outputTokens: 16 })).toMatch(/concurrency 20/);
    expect(trafficDrift(measured, { requests: 100, concurrency: 8, promptTokens: 40, outputTokens: 64 })).toMatch(
      /prompts of 40.*outputs of 64/,
    );
    expect(trafficDrift(measured, { requests: 100, concurrency: 10, promptTokens: 150, outputTokens: 20 })).toBeNull();
  });
  it('should say nothing on thin traffic', () => {
    expect(trafficDrift(measured, { requests: 5, concurrency: 50, promptTokens: 100, outputTokens: 16 })).toBeNull();
  });
});
