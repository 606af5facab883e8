import { newId } from '../../src/common/secrets';
import type { PrismaClient } from '../../src/database/prisma';
import { activityWorld } from '../support/activities';
import { pidAlive } from '../support/wait';

/**
 * The stop, start and delete activities on real Postgres and real local replicas (simulator
 * processes), run in Temporal's mock activity context: what the rows and processes look like after each.
 */
describe('lifecycle activities', () => {
  let world: Awaited<ReturnType<typeof activityWorld>>;
  let prisma: PrismaClient;
  let workspaceId: string;

  beforeAll(async () => {
    world = await activityWorld('lc');
    ({ prisma, workspaceId } = world);
  });
  afterAll(async () => {
    await world.close();
  });

  /** An ACTIVE deployment with `replicas` serving simulators and a running operation holding its lock. */
  async function setup(replicas: number) {
    const operationId = newId('op');
    const { deploymentId, run, rows, byState } = await world.deployment({
      simulatorArgs: ['--cold-start-ms 100', '--warm-start-ms 50', '--itl-ms 10'],
      row: { minReplicas: 1, maxReplicas: 4, url: 'http://127.0.0.1/v1', activeOperationId: operationId },
    });
    await prisma.operation.create({
      data: { id: operationId, deploymentId, kind: 'STOP', workflowId: `op:${deploymentId}:${operationId}`, status: 'RUNNING' },
    });
    const deployment = () => prisma.deployment.findUniqueOrThrow({ where: { id: deploymentId } });
    const operation = () => prisma.operation.findUniqueOrThrow({ where: { id: operationId } });
    const events = async () =>
      (await prisma.deploymentEvent.findMany({ where: { deploymentId }, orderBy: { id: 'asc' } })).map((e) => e.kind);
    if (replicas) {
      const up = await run('reconcileReplicaCount', { deploymentId, desired: replicas, reason: 'setup' });
      await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })));
    }
    return { deploymentId, operationId, run, rows, byState, deployment, operation, events };
  }

  /** A chat completion straight to a replica, `tokens` long (10 ms each). */
  const request = (address: string, tokens: number) =>
    fetch(`${address}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sim/tiny-chat', max_tokens: tokens, messages: [{ role: 'user', content: 'hi' }] }),
    });

  it('should go STOPPING once, drain what is in flight, stop every replica and end STOPPED with the lock released', async () => {
    const s = await setup(2);
    const [r0] = await s.rows();
    const inFlight = request(r0.address!, 60); // about 600 ms
    await new Promise((r) => setTimeout(r, 100));

    expect(await s.run('beginStop', { deploymentId: s.deploymentId })).toEqual({ alreadyStopped: false });
    expect(await s.run('beginStop', { deploymentId: s.deploymentId })).toEqual({ alreadyStopped: false });
    expect((await s.deployment()).status).toBe('STOPPING');

    const t0 = Date.now();
    expect(await s.run('stopReplicas', { deploymentId: s.deploymentId, drainTimeoutMs: 10_000 })).toEqual({ stopped: 2 });
    // The drain waited for the request, which finished whole.
    expect(Date.now() - t0).toBeGreaterThan(200);
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(60);
    const stopped = await s.rows();
    expect(stopped.every((x) => x.state === 'STOPPED' && x.stoppedAt && !pidAlive(Number(x.providerId)))).toBe(true);

    await s.run('finishStop', { deploymentId: s.deploymentId, operationId: s.operationId, endOp: true });
    expect(await s.deployment()).toMatchObject({ status: 'STOPPED', activeOperationId: null });
    expect(await s.operation()).toMatchObject({ status: 'SUCCEEDED' });
    expect(await s.run('beginStop', { deploymentId: s.deploymentId })).toEqual({ alreadyStopped: true });
    expect((await s.events()).filter((k) => k.startsWith('deployment.') || k.startsWith('replicas.'))).toEqual([
      'deployment.stopping',
      'replicas.draining',
      'replicas.stopped',
      'deployment.stopped',
    ]);
  });

  it('should bound the drain by the drain timeout', async () => {
    const s = await setup(1);
    const [r0] = await s.rows();
    const long = request(r0.address!, 2000).catch(() => null); // 20 s: cut at the timeout
    await new Promise((r) => setTimeout(r, 100));
    await s.run('beginStop', { deploymentId: s.deploymentId });
    const t0 = Date.now();
    await s.run('stopReplicas', { deploymentId: s.deploymentId, drainTimeoutMs: 300 });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(await s.byState()).toEqual({ STOPPED: 1 });
    await long;
  });

  it('should start again with fresh replica ids (a retry starts nothing more) and go ACTIVE with the operation ended', async () => {
    const s = await setup(1);
    await s.run('beginStop', { deploymentId: s.deploymentId });
    await s.run('stopReplicas', { deploymentId: s.deploymentId, drainTimeoutMs: 1000 });
    await s.run('finishStop', { deploymentId: s.deploymentId, operationId: s.operationId, endOp: false });
    // While STOPPED, a scaler's late count changes nothing.
    expect(await s.run('reconcileReplicaCount', { deploymentId: s.deploymentId, desired: 2, reason: 'late' })).toMatchObject({
      started: [],
    });

    expect(await s.run('checkPlan', { deploymentId: s.deploymentId })).toMatchObject({ initialReplicas: 1 });
    expect((await s.deployment()).status).toBe('PROVISIONING');
    const first = await s.run('startReplicas', { deploymentId: s.deploymentId, count: 2 });
    expect([...first.replicaIds].sort()).toEqual([`${s.deploymentId}-r1`, `${s.deploymentId}-r2`]);
    expect((await s.run('startReplicas', { deploymentId: s.deploymentId, count: 2 })).replicaIds.sort()).toEqual(first.replicaIds.sort());
    await s.run('waitReplicasReady', { deploymentId: s.deploymentId, timeoutSeconds: 10 });
    await s.run('publishRoutes', { deploymentId: s.deploymentId, operationId: s.operationId });
    expect(await s.deployment()).toMatchObject({ status: 'ACTIVE', activeOperationId: null });
    expect(await s.operation()).toMatchObject({ status: 'SUCCEEDED' });
    expect(await s.byState()).toEqual({ STOPPED: 1, READY: 2 });
    const ready = (await s.rows()).filter((x) => x.state === 'READY');
    expect(ready.every((x) => pidAlive(Number(x.providerId)))).toBe(true);
    // The undo of a failed start releases them all.
    await s.run('releaseReplicas', { deploymentId: s.deploymentId, reason: 'start failed' });
    expect(await s.byState()).toEqual({ STOPPED: 3 });
  });

  it('should serve again from the replicas still draining when a stop is undone', async () => {
    const s = await setup(2);
    await s.run('beginStop', { deploymentId: s.deploymentId });
    await prisma.replica.updateMany({ where: { deploymentId: s.deploymentId }, data: { state: 'DRAINING' } });
    expect(await s.run('abortStop', { deploymentId: s.deploymentId, reason: 'drain failed' })).toEqual({ live: 2 });
    expect(await s.byState()).toEqual({ READY: 2 });
    expect(await s.deployment()).toMatchObject({ status: 'ACTIVE', statusReason: 'stop failed: drain failed' });
    await s.run('failOperation', { deploymentId: s.deploymentId, operationId: s.operationId, reason: 'drain failed' });
    expect(await s.operation()).toMatchObject({ status: 'FAILED', error: 'drain failed' });
    expect((await s.deployment()).activeOperationId).toBeNull();
  });

  it('should mark DELETED with the keys revoked and every row kept', async () => {
    const s = await setup(1);
    await prisma.apiKey.create({
      data: {
        id: newId('key'),
        workspaceId,
        scope: 'DEPLOYMENT',
        deploymentId: s.deploymentId,
        name: 'k',
        prefix: newId('p'),
        hash: newId('h'),
        issuedAt: new Date(),
      },
    });
    await s.run('beginStop', { deploymentId: s.deploymentId });
    await s.run('stopReplicas', { deploymentId: s.deploymentId, drainTimeoutMs: 1000 });
    await s.run('finishStop', { deploymentId: s.deploymentId, operationId: s.operationId, endOp: false });
    await s.run('revokeDeploymentKeys', { deploymentId: s.deploymentId });
    await s.run('markDeleted', { deploymentId: s.deploymentId, operationId: s.operationId });
    expect(await s.deployment()).toMatchObject({ status: 'DELETED', url: null, activeOperationId: null });
    expect(await s.operation()).toMatchObject({ status: 'SUCCEEDED' });
    expect((await prisma.apiKey.findMany({ where: { deploymentId: s.deploymentId } })).every((k) => k.revokedAt)).toBe(true);
    expect(await s.byState()).toEqual({ STOPPED: 1 });
    expect(await s.events()).toEqual(expect.arrayContaining(['deployment.stopped', 'key.revoked', 'deployment.deleted']));
  });
});
