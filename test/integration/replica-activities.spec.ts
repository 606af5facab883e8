import { ReplicaUnhealthyError } from '../../src/domain/errors';
import { activityWorld } from '../support/activities';
import { pidAlive } from '../support/wait';

/**
 * The scaler's actuation activities on real Postgres and real local replicas (simulator processes),
 * run in Temporal's mock activity context: what the rows and the processes look like after each.
 */
describe('replica activities', () => {
  let world: Awaited<ReturnType<typeof activityWorld>>;
  beforeAll(async () => {
    world = await activityWorld('acts');
  });
  afterAll(async () => {
    await world.close();
  });

  /** A deployment row and activities over a local provider running `command` (default: the simulator). */
  const setup = (command = '') => world.deployment({ command });

  it('should start every missing replica at once and publish each as soon as it serves', async () => {
    const { deploymentId, run, rows, byState } = await setup();
    const r = await run('reconcileReplicaCount', { deploymentId, desired: 3, reason: 'burst' });
    expect(r.started).toHaveLength(3);
    expect(r.starting.sort()).toEqual([...r.started].sort());
    expect(await byState()).toEqual({ STARTING: 3 });
    // A retry of the same count starts nothing more.
    expect((await run('reconcileReplicaCount', { deploymentId, desired: 3, reason: 'retry' })).started).toEqual([]);
    expect(await Promise.all(r.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })))).toEqual([
      'ready',
      'ready',
      'ready',
    ]);
    const ready = await rows();
    expect(ready.every((x) => x.state === 'READY' && x.readyAt && x.coldStartMs !== null)).toBe(true);
    expect(ready.every((x) => pidAlive(Number(x.providerId)))).toBe(true);
  });

  it('should drain the newest replicas and stop them, and hand drained replicas back to a scale-up instead of starting new ones', async () => {
    const { deploymentId, run, rows, byState } = await setup();
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 3, reason: 'burst' });
    await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })));
    const down = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'quiet' });
    expect(down.draining).toHaveLength(2);
    expect(await byState()).toEqual({ READY: 1, DRAINING: 2 });
    // Load returns before the drains end: the draining replicas serve again, nothing is started.
    const back = await run('reconcileReplicaCount', { deploymentId, desired: 3, reason: 'burst again' });
    expect(back).toMatchObject({ started: [], draining: [] });
    expect(back.reused.sort()).toEqual([...down.draining].sort());
    expect(await byState()).toEqual({ READY: 3 });
    expect(
      await Promise.all(down.draining.map((id) => run('drainReplica', { deploymentId, replicaId: id, drainTimeoutMs: 5000 }))),
    ).toEqual(['reused', 'reused']);
    // Now a scale-down that ends: both drained replicas stop, processes and rows.
    const again = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'quiet' });
    expect(
      await Promise.all(again.draining.map((id) => run('drainReplica', { deploymentId, replicaId: id, drainTimeoutMs: 5000 }))),
    ).toEqual(['stopped', 'stopped']);
    const stopped = (await rows()).filter((x) => again.draining.includes(x.id));
    expect(stopped.every((x) => x.state === 'STOPPED' && !pidAlive(Number(x.providerId)))).toBe(true);
    expect(await byState()).toEqual({ READY: 1, STOPPED: 2 });
    // The newest went first: the one kept started no later than either stopped one (parallel starts may tie).
    const kept = (await rows()).find((x) => x.state === 'READY')!;
    expect(stopped.every((x) => x.startedAt.getTime() >= kept.startedAt.getTime())).toBe(true);
  });

  it('should stop a replica that never served at once when a scale-down takes it', async () => {
    const { deploymentId, run, byState } = await setup(`${process.execPath} -e "setInterval(() => {}, 1000)" -- {port}`);
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'burst' });
    const waiting = run('awaitReplicaReady', { deploymentId, replicaId: up.started[0] });
    const down = await run('reconcileReplicaCount', { deploymentId, desired: 0, reason: 'quiet' });
    expect(down.draining).toEqual(up.started);
    expect(await run('drainReplica', { deploymentId, replicaId: up.started[0], drainTimeoutMs: 60_000 })).toBe('stopped');
    expect(await waiting).toBe('cancelled');
    expect(await byState()).toEqual({ STOPPED: 1 });
  });

  it('should mark a replica that exits before serving FAILED and say why', async () => {
    const { deploymentId, run, byState } = await setup('/bin/false {port}');
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'burst' });
    await expect(run('awaitReplicaReady', { deploymentId, replicaId: up.started[0] })).rejects.toThrow(ReplicaUnhealthyError);
    expect(await byState()).toEqual({ FAILED: 1 });
    // The replacement is a new replica, not the failed one again.
    const retry = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'replace' });
    expect(retry.started).toHaveLength(1);
    expect(retry.started[0]).not.toBe(up.started[0]);
  });
});
