import { workerKills, WorkerKillsReport } from '../support/chaos';
import { Stack, startStack } from '../support/stack';

/**
 * Issue #20, scenario 1 (short version; bench/chaos.js runs the long one, with a restart of the Temporal dev server):
 * the worker runs in a child process SIGKILLed every 5 s, four times, while deployments on LOCAL and on RUNPOD (the
 * fake) are deployed, stopped, started, moved to another GPU, rolled back, deleted and scaled by bursts through the
 * gateway. Every deployment reaches the state its chain asked for, every operation ends SUCCEEDED, and afterwards the
 * providers run exactly the replicas the database holds as live: no duplicate, no orphan.
 */
describe('worker SIGKILLed every few seconds during deploys, lifecycle operations and scale events (real stack, LOCAL and the RunPod fake)', () => {
  let stack: Stack;
  let r: WorkerKillsReport;

  beforeAll(async () => {
    stack = await startStack({ runpod: true });
    const { token } = await stack.workspace('TEAM');
    r = await workerKills(stack, stack.as(token), {
      deployments: 5,
      runpodDeployments: 2,
      staggerMs: 1500,
      killEveryMs: 5000,
      kills: 4,
      operationBoundMs: 75_000,
    });
    if (process.env.CHAOS_DEBUG) process.stderr.write(`${JSON.stringify(r, null, 1)}\n`);
  }, 170_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('should have killed the worker four times while every kind of operation ran', () => {
    expect(r.kills).toBe(4);
    // The kills landed on work in progress: operations were RUNNING when at least one of them struck.
    expect(r.inFlightAtKills.some((n) => n > 0)).toBe(true);
    expect(new Set(r.outcomes.map((o) => o.kind))).toEqual(new Set(['DEPLOY', 'STOP', 'START', 'DELETE', 'CHANGE_GPU', 'ROLLBACK']));
  });

  it('should end every operation SUCCEEDED, none failed, refused or stuck', () => {
    expect(r.outcomes.length).toBeGreaterThanOrEqual(15);
    expect(r.outcomes.filter((o) => o.status !== 'SUCCEEDED')).toEqual([]);
  });

  it('should bring every deployment to the state its chain asked for', () => {
    expect(r.endStates).toHaveLength(7);
    expect(r.endStates.filter((e) => e.status !== e.wanted)).toEqual([]);
  });

  it('should scale up on a burst through the gateway despite the kills, and keep serving the load whole', () => {
    expect(r.scaleUpsAsked).toBe(1);
    expect(r.scaleUps).toBe(1);
    expect(r.load.sent).toBeGreaterThan(0);
    expect(r.load.failures).toEqual([]);
  });

  it('should leave no duplicate and no orphaned replica: processes and fake workers match the live rows', () => {
    expect(r.duplicates).toEqual([]);
    expect(r.orphaned).toEqual([]);
  });
});
