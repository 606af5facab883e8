import { countingFakeLog, providerChaos, ProviderChaosReport, READABLE_FAILURE } from '../support/chaos';
import { Stack, startStack } from '../support/stack';

/**
 * Issue #20, scenario 2 (short version; bench/chaos.js runs the long one): RunPod's management API failing 30 % of
 * calls transiently (429/500/503, and a few calls held until they time out) and the H100 pool without capacity for
 * the first part of the run, while deploys, stops, starts, GPU changes, rollbacks and deletes run concurrently on
 * several deployments. Every operation ends SUCCEEDED or FAILED with a reason naming RunPod or the capacity problem,
 * and afterwards RunPod runs exactly what the database says: no endpoint of a gone deployment, no worker of a stopped
 * one, as many workers per endpoint as live replica slots point at it.
 */
describe('provider faults: RunPod failing, timing out and out of capacity during concurrent operations (real stack, RunPod fake)', () => {
  let stack: Stack;
  const faultLog = countingFakeLog();
  let report: ProviderChaosReport;

  beforeAll(async () => {
    // A deploy waits 12 s for health here (300 s by default): long enough for every deploy the faults only slow, short
    // enough that the ones on the exhausted pool fail within the test.
    stack = await startStack({ runpod: { log: faultLog.log }, env: { DEPLOY_HEALTH_TIMEOUT_SECONDS: '12' } });
    const { token } = await stack.workspace('TEAM');
    report = await providerChaos(
      stack,
      stack.as(token),
      {
        deployments: 6,
        failureRate: 0.3,
        // One timeout (held 10 s, then dropped) in twenty faults keeps the run short.
        kinds: [...Array.from({ length: 19 }, (_, i) => (['429', '500', '503'] as const)[i % 3]), 'timeout'],
        exhaustedPool: 'ADA_80_PRO',
        // Out of capacity for the whole run: every H100 deploy must fail on it (a pool freed mid-run would let a deploy
        // slowed by the faults succeed, which is right but makes the assertion below a race).
        exhaustedForMs: 600_000,
        operationBoundMs: 60_000,
      },
      faultLog.counts,
    );
    if (process.env.CHAOS_DEBUG) process.stderr.write(`${JSON.stringify(report, null, 1)}\n`);
  }, 150_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('should end every operation SUCCEEDED or FAILED with a reason naming RunPod or the missing capacity, none stuck', () => {
    expect(report.outcomes.length).toBeGreaterThanOrEqual(10);
    const bad = report.outcomes.filter(
      (o) => !(o.status === 'SUCCEEDED' || (o.status === 'FAILED' && READABLE_FAILURE.test(o.reason ?? ''))),
    );
    expect(bad).toEqual([]);
    // The faults did happen, and every kind of operation ran.
    expect(report.faults['429'] + report.faults['500'] + report.faults['503']).toBeGreaterThan(10);
    expect(new Set(report.outcomes.map((o) => o.kind))).toEqual(new Set(['DEPLOY', 'STOP', 'START', 'DELETE', 'CHANGE_GPU', 'ROLLBACK']));
  });

  it('should fail a deploy onto the exhausted pool by naming the capacity problem, and deploy onto the other pools', () => {
    const h100 = report.outcomes.filter((o) => o.kind === 'DEPLOY' && o.gpu === 'H100');
    expect(h100.length).toBeGreaterThan(0);
    for (const o of h100) expect(o).toMatchObject({ status: 'FAILED', reason: expect.stringMatching(/capacity/) });
    const others = report.outcomes.filter((o) => o.kind === 'DEPLOY' && o.gpu !== 'H100');
    expect(others.filter((o) => o.status === 'SUCCEEDED').length).toBeGreaterThan(0);
  });

  it('should leave nothing running that the database does not hold: no orphaned endpoint or worker, slots matching workers', () => {
    expect(report.orphanedEndpoints).toEqual([]);
    expect(report.orphanedWorkers).toEqual([]);
    expect(report.slotMismatches).toEqual([]);
    // The deployments left serving still run their one worker each.
    expect(stack.runpod!.endpoints().length).toBeGreaterThan(0);
  });
});
