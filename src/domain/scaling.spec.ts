import fc from 'fast-check';
import { DomainError, ErrorCode } from './errors';
import {
  decide,
  initialScalerState,
  LoadReport,
  nextDecisionAt,
  policyProblems,
  policyRefusal,
  problemAsAssignment,
  problemAsField,
  ScalerState,
  ScalingPolicy,
  scalingPolicy,
  startBackoffMs,
  withModeDefaults,
} from './scaling';

const flex: ScalingPolicy = {
  mode: 'FLEX',
  minReplicas: 0,
  maxReplicas: 8,
  targetConcurrency: 32,
  scaleDownWindowSeconds: 30,
  idleTimeoutSeconds: 300,
  queueThresholdMs: 2000,
  reportTtlMs: 5000,
};
const active: ScalingPolicy = { ...flex, mode: 'ACTIVE', minReplicas: 2, scaleDownWindowSeconds: 120 };

const T0 = 1_000_000;
const report = (at: number, inFlight: number, queued = 0, oldestQueuedMs = 0, gatewayId = 'g1'): LoadReport => ({
  gatewayId,
  inFlight,
  queued,
  oldestQueuedMs,
  at,
});
const state = (current: number, extra: Partial<ScalerState> = {}): ScalerState => ({ ...initialScalerState(current, T0), ...extra });

/** Drives decide() on a synthetic clock: one report per gateway every tickMs. */
function run(policy: ScalingPolicy, start: ScalerState, loadAt: (t: number) => number, untilMs: number, tickMs = 1000) {
  let s = start;
  const trace: Array<{ t: number; desired: number; reason: string }> = [];
  for (let t = 0; t <= untilMs; t += tickMs) {
    const d = decide(policy, s, { now: T0 + t, reports: [report(T0 + t, loadAt(t))] });
    if (d.desired !== s.current) trace.push({ t, desired: d.desired, reason: d.reason });
    s = d.nextState;
  }
  return { trace, final: s };
}

describe('decide: one row per rule', () => {
  it.each([
    // [what, policy, current, reports, expected desired]
    ['needed = ceil(in flight / target): 100 in flight on 2 replicas -> 4', flex, 2, [report(T0, 100)], 4],
    ['needed is clamped to max', flex, 2, [report(T0, 1000)], 8],
    ['at target exactly is not over it', flex, 2, [report(T0, 64)], 2],
    ['one request over the average target scales up at once', flex, 2, [report(T0, 65)], 3],
    ['a request queued past the threshold adds a replica even under target', flex, 2, [report(T0, 20, 1, 2500)], 3],
    // Replicas capped at the target (30 of 30) can never exceed it: queued requests count.
    [
      'queued requests count as demand: 30 running + 40 queued on 1 replica -> 3',
      { ...flex, targetConcurrency: 30 },
      1,
      [report(T0, 30, 40, 100)],
      3,
    ],
    ['a queue younger than the threshold does not', flex, 2, [report(T0, 20, 1, 1500)], 2],
    ['requests waiting on zero replicas wake one at once (cold start)', flex, 0, [report(T0, 0, 1, 10)], 1],
    ['reports of several gateways are summed', flex, 1, [report(T0, 40, 0, 0, 'a'), report(T0, 40, 0, 0, 'b')], 3],
    ['a report older than the TTL is dropped', flex, 1, [report(T0 - 6000, 500, 0, 0, 'silent'), report(T0, 10, 0, 0, 'live')], 1],
    ['Active never goes below max(1, min), even with no load', active, 1, [report(T0, 0)], 2],
    ['queue pressure at max holds max', flex, 8, [report(T0, 100, 50, 5000)], 8],
    // [..., replicas still starting]: capacity on the way is not started twice.
    ['a stuck queue while a replica is still starting waits for it', flex, 2, [report(T0, 20, 1, 2500)], 2, 1],
    ['a stuck queue with nothing starting adds one', flex, 2, [report(T0, 20, 1, 2500)], 3, 0],
    ['load over target still scales to what it needs while replicas start', flex, 2, [report(T0, 200)], 7, 3],
    ['a cold start with a replica already starting does not start another', flex, 1, [report(T0, 0, 5, 2500)], 1, 1],
  ] as const)('%s', (_what, policy, current, reports, expected, starting = 0) => {
    expect(decide(policy, state(current), { now: T0, reports: [...reports], starting }).desired).toBe(expected);
  });

  it('should say there is no data, and hold, when no live report exists', () => {
    const d = decide(flex, state(3), { now: T0, reports: [] });
    expect(d).toMatchObject({ desired: 3, noData: true, reason: 'no load reports: holding 3' });
    const expired = decide(flex, state(3), { now: T0 + 10_000, reports: [report(T0, 0)] });
    expect(expired).toMatchObject({ desired: 3, noData: true });
  });

  it('should explain an up-scale with the numbers that caused it', () => {
    expect(decide(flex, state(2), { now: T0, reports: [report(T0, 100)] }).reason).toBe(
      'average 50.0 in flight or queued per replica exceeds target 32 (100 in flight, 0 queued): 2 -> 4',
    );
  });
});

describe('decide: scenarios on a synthetic clock', () => {
  it('should scale down only after the window, to the highest need seen in it', () => {
    // 4 replicas; load falls to 40 (needs 2) at t=0, with a blip to 70 (needs 3) at t=10 s.
    const { trace } = run(flex, state(4), (t) => (t === 10_000 ? 70 : 40), 60_000);
    expect(trace).toEqual([{ t: 30_000, desired: 3, reason: expect.stringContaining('for 30 s') }]);
  });

  it('should scale down within [window, window + one tick] after load stops', () => {
    const tick = 1000;
    const { trace } = run(flex, state(4), (t) => (t < 5000 ? 120 : 10), 60_000, tick);
    const down = trace.find((e) => e.desired < 4)!;
    expect(down.t - 5000).toBeGreaterThanOrEqual(30_000);
    expect(down.t - 5000).toBeLessThanOrEqual(30_000 + tick);
    expect(down.desired).toBe(1);
  });

  it('should not scale down on a square wave whose period is shorter than the window', () => {
    // 20 s high (120 in flight: needs 4), 20 s low (10: needs 1), for ten minutes.
    const { trace, final } = run(flex, state(4), (t) => (Math.floor(t / 20_000) % 2 === 0 ? 120 : 10), 600_000);
    expect(trace).toEqual([]);
    expect(final.current).toBe(4);
  });

  it('should hold the count after a restart until reports arrive (missing data is never zero load)', () => {
    let s = initialScalerState(5, T0);
    for (let t = 0; t <= 600_000; t += 1000) s = decide(flex, s, { now: T0 + t, reports: [] }).nextState;
    expect(s.current).toBe(5);
  });

  it('should take Flex to zero after the idle timeout, and not before', () => {
    const { trace } = run(flex, state(2), (t) => (t < 10_000 ? 20 : 0), 400_000);
    // 20 in flight fits one replica from t=0: 2 -> 1 when the 30 s window ends;
    // the last request is seen at t=9 s, so zero comes 300 s after that.
    expect(trace.map((e) => [e.t, e.desired])).toEqual([
      [30_000, 1],
      [309_000, 0],
    ]);
    expect(trace[1].reason).toMatch(/^idle for 300 s/);
  });

  it('should keep Active at its floor with no traffic for an hour', () => {
    const { final } = run(active, state(4), () => 0, 3_600_000, 5000);
    expect(final.current).toBe(2);
  });

  it('should not wake a Flex deployment at zero without demand', () => {
    const longIdle = { ...flex, idleTimeoutSeconds: 3600 };
    const { trace } = run(longIdle, state(0), () => 0, 120_000);
    expect(trace).toEqual([]);
  });

  it('should survive a JSON round trip of its state (continue-as-new)', () => {
    let s = state(4);
    let json = state(4);
    for (let t = 0; t <= 60_000; t += 1000) {
      const obs = { now: T0 + t, reports: [report(T0 + t, t < 20_000 ? 120 : 10)] };
      s = decide(flex, s, obs).nextState;
      json = JSON.parse(JSON.stringify(decide(flex, json, obs).nextState));
    }
    expect(json).toEqual(s);
  });
});

describe('nextDecisionAt: the scaler sleeps until then instead of ticking', () => {
  it('should wake at the end of the scale-down window', () => {
    const d = decide(flex, state(4), { now: T0, reports: [report(T0, 40)] });
    expect(nextDecisionAt(flex, d.nextState, T0)).toBe(T0 + 30_000);
    // A heartbeat with the same load does not move the wake-up; at it, the scaler goes down.
    const hb = decide(flex, d.nextState, { now: T0 + 28_000, reports: [report(T0 + 28_000, 40)] });
    expect(nextDecisionAt(flex, hb.nextState, T0 + 28_000)).toBe(T0 + 30_000);
    expect(decide(flex, hb.nextState, { now: T0 + 30_000, reports: [] }).desired).toBe(2);
  });

  it('should wake at the idle timeout of a Flex deployment with no demand', () => {
    const d = decide(flex, state(1, { lastActiveAt: T0 - 1000 }), { now: T0, reports: [report(T0, 0)] });
    expect(nextDecisionAt(flex, d.nextState, T0)).toBe(T0 - 1000 + 300_000);
  });

  it('should not wake at all when only a report can change the answer', () => {
    expect(nextDecisionAt(active, decide(active, state(2), { now: T0, reports: [report(T0, 0)] }).nextState, T0)).toBeNull();
    expect(nextDecisionAt(flex, decide(flex, state(2), { now: T0, reports: [report(T0, 60)] }).nextState, T0)).toBeNull();
    expect(nextDecisionAt(flex, decide(flex, state(3), { now: T0, reports: [] }).nextState, T0)).toBeNull();
  });

  it('should wake at once for the next step down to zero once a Flex deployment has been idle long enough', () => {
    // Found by the property below (seed 1801266702): 2 replicas, need 1, then idle; the first step goes to the window's peak need of 1.
    const p: ScalingPolicy = {
      ...flex,
      minReplicas: 0,
      maxReplicas: 3,
      targetConcurrency: 1,
      scaleDownWindowSeconds: 1,
      idleTimeoutSeconds: 1,
    };
    let s = state(0);
    for (const [t, inFlight] of [
      [T0 + 1000, 2],
      [T0 + 2000, 1],
      [T0 + 3000, 0],
    ]) {
      s = decide(p, s, { now: t, reports: [report(t, inFlight)] }).nextState;
    }
    expect(s.current).toBe(1);
    expect(decide(p, s, { now: T0 + 3001, reports: [] }).desired).toBe(0);
    expect(nextDecisionAt(p, s, T0 + 3000)).toBe(T0 + 3001);
    // Scalers recorded before the fix keep their old timer on replay.
    expect(nextDecisionAt(p, s, T0 + 3000, { stepToZero: false })).toBeNull();
  });

  it('should never sleep past a change: no decision differs between a decision and its wake-up', () => {
    const policyArb = fc.record({
      mode: fc.constantFrom('FLEX' as const, 'ACTIVE' as const),
      minReplicas: fc.integer({ min: 0, max: 3 }),
      maxReplicas: fc.integer({ min: 3, max: 10 }),
      targetConcurrency: fc.integer({ min: 1, max: 40 }),
      scaleDownWindowSeconds: fc.integer({ min: 1, max: 120 }),
      idleTimeoutSeconds: fc.integer({ min: 1, max: 400 }),
      queueThresholdMs: fc.constant(2000),
      reportTtlMs: fc.constant(10_000_000),
    });
    // Reports every 1-20 s with random load; then silence while the state is probed.
    const stepsArb = fc.array(fc.record({ gapMs: fc.integer({ min: 1000, max: 20_000 }), inFlight: fc.integer({ min: 0, max: 300 }) }), {
      minLength: 1,
      maxLength: 40,
    });
    fc.assert(
      fc.property(
        policyArb,
        fc.integer({ min: 0, max: 10 }),
        stepsArb,
        fc.array(fc.integer({ min: 1, max: 600_000 }), { minLength: 5, maxLength: 20 }),
        (policy, start, steps, probes) => {
          let s = state(Math.min(start, policy.maxReplicas));
          let now = T0;
          for (const step of steps) {
            now += step.gapMs;
            s = decide(policy, s, { now, reports: [report(now, step.inFlight)] }).nextState;
          }
          const wake = nextDecisionAt(policy, s, now) ?? Infinity;
          for (const dt of probes) {
            const t = now + dt;
            if (t >= wake) continue;
            expect(decide(policy, s, { now: t, reports: [] }).desired).toBe(s.current);
          }
          if (wake !== Infinity) expect(wake).toBeGreaterThan(now);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('startBackoffMs: a crash-looping image cannot start replicas in a tight loop', () => {
  it.each([
    [0, 0],
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [6, 32_000],
    [7, 60_000],
    [1000, 60_000],
  ])('after %i failed start(s) in a row the next waits %i ms', (failures, ms) => {
    expect(startBackoffMs(failures)).toBe(ms);
  });
});

describe('policyProblems: the knob rules, one row per rule, in both formats', () => {
  it.each([
    // [rule, knobs changed from flex (min 0, max 8, target 32, window 30 s, idle 300 s), as GraphQL reads it, as the scaler answers]
    [
      'minReplicas is at least 0',
      { minReplicas: -1 },
      'minReplicas: must be an integer of at least 0',
      'minReplicas=-1: must be an integer of at least 0',
    ],
    [
      'maxReplicas is at least 1',
      { maxReplicas: 0 },
      'maxReplicas: must be an integer of at least 1',
      'maxReplicas=0: must be an integer of at least 1',
    ],
    [
      'targetConcurrency is at least 1',
      { targetConcurrency: 0 },
      'targetConcurrency: must be an integer of at least 1',
      'targetConcurrency=0: must be an integer of at least 1',
    ],
    [
      'a knob is an integer',
      { targetConcurrency: 1.5 },
      'targetConcurrency: must be an integer of at least 1',
      'targetConcurrency=1.5: must be an integer of at least 1',
    ],
    [
      'scaleDownWindowSeconds is at least 1',
      { scaleDownWindowSeconds: 0 },
      'scaleDownWindowSeconds: must be an integer from 1 to 86400',
      'scaleDownWindowSeconds=0: must be an integer from 1 to 86400',
    ],
    [
      'scaleDownWindowSeconds is at most a day',
      { scaleDownWindowSeconds: 86_401 },
      'scaleDownWindowSeconds: must be an integer from 1 to 86400',
      'scaleDownWindowSeconds=86401: must be an integer from 1 to 86400',
    ],
    [
      'idleTimeoutSeconds is at least 1',
      { idleTimeoutSeconds: 0 },
      'idleTimeoutSeconds: must be an integer from 1 to 604800',
      'idleTimeoutSeconds=0: must be an integer from 1 to 604800',
    ],
    [
      'idleTimeoutSeconds is at most a week',
      { idleTimeoutSeconds: 604_801 },
      'idleTimeoutSeconds: must be an integer from 1 to 604800',
      'idleTimeoutSeconds=604801: must be an integer from 1 to 604800',
    ],
    [
      'min <= max',
      { minReplicas: 3, maxReplicas: 2 },
      'minReplicas: must not exceed maxReplicas (2)',
      'minReplicas=3: must not exceed maxReplicas (2)',
    ],
    [
      'ACTIVE keeps a warm floor',
      { mode: 'ACTIVE', minReplicas: 0 },
      'minReplicas: ACTIVE mode keeps at least 1 warm replica',
      'minReplicas=0: ACTIVE mode keeps at least 1 warm replica',
    ],
    [
      "max <= the plan's ceiling",
      { maxReplicas: 40 },
      "maxReplicas: exceeds the plan's ceiling of 32",
      "maxReplicas=40: exceeds the plan's ceiling of 32",
    ],
  ] as const)('should refuse when %s', (_rule, change, field, assignment) => {
    const problems = policyProblems({ ...flex, ...change }, 32);
    expect(problems.map(problemAsField)).toEqual([field]);
    expect(problems.map(problemAsAssignment)).toEqual([assignment]);
  });

  it.each([
    ['the reference Flex policy', flex, 32],
    ['the reference Active policy', active, 32],
    ['min = max', { ...flex, minReplicas: 4, maxReplicas: 4 }, 32],
    ['max at the ceiling', { ...flex, maxReplicas: 32 }, 32],
    ['both windows at their longest', { ...flex, scaleDownWindowSeconds: 86_400, idleTimeoutSeconds: 604_800 }, 32],
    ['any max when no ceiling is given', { ...flex, maxReplicas: 1000 }, undefined],
  ] as const)('should accept %s', (_what, policy, ceiling) => {
    expect(policyProblems(policy, ceiling)).toEqual([]);
  });

  it('should skip a knob that is absent, as a deploy leaves targetConcurrency to the variant', () => {
    expect(policyProblems({ mode: 'FLEX', minReplicas: 0, maxReplicas: 1, targetConcurrency: null })).toEqual([]);
  });

  it('should report each mistake once: a rule between knobs waits for both to be in range', () => {
    // max 0 is out of range: min 1 > max 0 is not a second problem, nor is the ceiling.
    expect(policyProblems({ ...active, minReplicas: 1, maxReplicas: 0 }, 32).map(problemAsField)).toEqual([
      'maxReplicas: must be an integer of at least 1',
    ]);
    expect(policyProblems({ ...active, minReplicas: -1 }).map(problemAsField)).toEqual(['minReplicas: must be an integer of at least 0']);
  });

  it('should list every problem in a fixed order: ranges, min <= max, the ACTIVE floor, the ceiling', () => {
    const problems = policyProblems({ ...active, minReplicas: 0, maxReplicas: 40, targetConcurrency: 0, idleTimeoutSeconds: 0 }, 32);
    expect(problems.map(problemAsAssignment)).toEqual([
      'targetConcurrency=0: must be an integer of at least 1',
      'idleTimeoutSeconds=0: must be an integer from 1 to 604800',
      'minReplicas=0: ACTIVE mode keeps at least 1 warm replica',
      "maxReplicas=40: exceeds the plan's ceiling of 32",
    ]);
  });

  it('should make the api refusal BAD_USER_INPUT with every problem and the first knob as field', () => {
    const err = policyRefusal(policyProblems({ ...flex, minReplicas: 3, maxReplicas: 2, targetConcurrency: 0 }));
    expect(err).toBeInstanceOf(DomainError);
    expect(err).toMatchObject({
      code: ErrorCode.BAD_USER_INPUT,
      message: 'targetConcurrency: must be an integer of at least 1; minReplicas: must not exceed maxReplicas (2)',
      details: { field: 'targetConcurrency' },
    });
    const scaler = policyRefusal(policyProblems({ ...flex, minReplicas: 9 }), problemAsAssignment, { deploymentId: 'dep_1' });
    expect(scaler).toMatchObject({
      message: 'minReplicas=9: must not exceed maxReplicas (8)',
      details: { deploymentId: 'dep_1', field: 'minReplicas' },
    });
  });
});

describe('withModeDefaults: what a deploy leaves out', () => {
  it.each([
    ['FLEX', {}, { minReplicas: 0, maxReplicas: 1, scaleDownWindowSeconds: 30, idleTimeoutSeconds: 300 }],
    ['ACTIVE', {}, { minReplicas: 1, maxReplicas: 1, scaleDownWindowSeconds: 120, idleTimeoutSeconds: 300 }],
    ['FLEX', { minReplicas: 3 }, { minReplicas: 3, maxReplicas: 3 }],
    ['ACTIVE', { maxReplicas: 6 }, { minReplicas: 1, maxReplicas: 6 }],
    ['FLEX', { scaleDownWindowSeconds: 5, idleTimeoutSeconds: null }, { scaleDownWindowSeconds: 5, idleTimeoutSeconds: 300 }],
  ] as const)('should fill %s %j from the mode', (mode, given, expected) => {
    expect(withModeDefaults({ mode, ...given })).toMatchObject({ mode, ...expected });
  });

  it('should change nothing of a policy that sets every knob', () => {
    expect(scalingPolicy(flex)).toEqual(flex);
    expect(scalingPolicy(active)).toEqual(active);
  });
});
