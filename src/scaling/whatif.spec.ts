import { ScalingPolicy } from '../domain/scaling';
import { chartSvg, generateTrace, REFERENCE_CONFIGS, REFERENCE_PATTERN, REFERENCE_REPLICA, simulate } from './whatif';

const flex0: ScalingPolicy = {
  mode: 'FLEX',
  minReplicas: 0,
  maxReplicas: 4,
  targetConcurrency: 30,
  scaleDownWindowSeconds: 30,
  idleTimeoutSeconds: 60,
  queueThresholdMs: 2000,
  reportTtlMs: 5000,
};
const replica = { coldStartMs: 1000, concurrency: 30, gpuHourlyUsd: 3.6 };

describe('what-if simulator', () => {
  it('should serve a lone request through one cold start, then idle back to zero', () => {
    const r = simulate([{ at: 0, durationMs: 500 }], { policy: flex0, replica, initialReplicas: 0, queueTimeoutMs: 5000, tickMs: 1000 });
    expect(r).toMatchObject({ requests: 1, served: 1, rejected503: 0, coldStarts: 1, maxReplicas: 1, queueWaitP50Ms: 1000 });
    expect(r.decisions.map((d) => [d.t, d.from, d.to])).toEqual([
      [0, 0, 1],
      [61_000, 1, 0],
    ]);
    // Alive from 0 to 61 s: 61 GPU-seconds at $3.60/h.
    expect(r.gpuSeconds).toBe(61);
    expect(r.costUsd).toBe(0.06);
  });

  it('should let a request that met zero replicas wait out a cold start longer than the queue timeout, like the gateway', () => {
    const slow = { ...replica, coldStartMs: 4000 };
    const served = simulate([{ at: 0, durationMs: 500 }], {
      policy: flex0,
      replica: slow,
      initialReplicas: 0,
      queueTimeoutMs: 2000,
      tickMs: 1000,
    });
    expect(served).toMatchObject({ served: 1, rejected503: 0, queueWaitP50Ms: 4000 });
    const tooSlow = simulate([{ at: 0, durationMs: 500 }], {
      policy: flex0,
      replica: slow,
      initialReplicas: 0,
      queueTimeoutMs: 2000,
      coldStartTimeoutMs: 3000,
      tickMs: 1000,
    });
    expect(tooSlow).toMatchObject({ served: 0, rejected503: 1 });
  });

  it('should answer 503 to what waits past the queue timeout at the ceiling', () => {
    const one: ScalingPolicy = { ...flex0, minReplicas: 1, maxReplicas: 1 };
    const r = simulate(
      [
        { at: 0, durationMs: 5000 },
        { at: 0, durationMs: 5000 },
      ],
      { policy: one, replica: { ...replica, concurrency: 1 }, initialReplicas: 1, queueTimeoutMs: 2000, tickMs: 1000 },
    );
    expect(r).toMatchObject({ served: 1, rejected503: 1, maxReplicas: 1, coldStarts: 0 });
  });

  it('should scale a burst out to the ceiling and not past it', () => {
    const burst = Array.from({ length: 200 }, (_, i) => ({ at: i * 10, durationMs: 10_000 }));
    const r = simulate(burst, { policy: flex0, replica, initialReplicas: 1, queueTimeoutMs: 3000, tickMs: 1000 });
    expect(r.maxReplicas).toBe(4);
    expect(r.served).toBe(120); // 4 replicas x 30
    expect(r.rejected503).toBe(80);
  });

  it('should generate the same trace from the same seed, at about the asked rate', () => {
    const p = { avgRps: 5, burstRps: 0, burstEverySeconds: 0, burstSeconds: 0, durationSeconds: 600, meanDurationMs: 1000, seed: 7 };
    const a = generateTrace(p);
    expect(generateTrace(p)).toEqual(a);
    expect(a.length).toBeGreaterThan(2700);
    expect(a.length).toBeLessThan(3300);
    expect(generateTrace({ ...p, seed: 8 })).not.toEqual(a);
  });

  it("should reproduce the reference's trade-offs for 5 RPS with bursts to 30", () => {
    const trace = generateTrace(REFERENCE_PATTERN);
    const [f0, f1, a2] = REFERENCE_CONFIGS.map((c) =>
      simulate(trace, {
        policy: c.policy,
        replica: REFERENCE_REPLICA,
        initialReplicas: c.policy.mode === 'ACTIVE' ? 2 : c.policy.minReplicas,
        queueTimeoutMs: 2000,
        tickMs: 1000,
      }),
    );
    // Bursts scale Flex to its ceiling of 4 and queue from there.
    expect(f0.maxReplicas).toBe(4);
    expect(f1.maxReplicas).toBe(4);
    // Active with more headroom answers every request and pays for its warm floor.
    expect(a2.rejected503).toBe(0);
    expect(f0.rejected503).toBeGreaterThan(0);
    expect(a2.gpuSeconds).toBeGreaterThan(f1.gpuSeconds);
    // A warm replica 24/7 costs more than scaling to zero in the quiet hour.
    expect(f1.gpuSeconds).toBeGreaterThan(f0.gpuSeconds);
  });

  it('should draw replicas and load as SVG', () => {
    const r = simulate([{ at: 0, durationMs: 500 }], { policy: flex0, replica, initialReplicas: 0, queueTimeoutMs: 5000, tickMs: 1000 });
    const svg = chartSvg(r, 'lone <request>');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('replicas (max 1)');
    expect(svg).toContain('lone request');
  });
});
