import { readFileSync } from 'node:fs';
import pino from 'pino';
import { newId } from '../../src/common/secrets';
import { Directory } from '../../src/gateway/directory';
import type { PrismaClient } from '../../src/database/prisma';
import { activityWorld } from '../support/activities';
import { pidAlive } from '../support/wait';

/**
 * The swap activities of change GPU and rollback on real Postgres and real local replicas (simulator
 * processes), run in Temporal's mock activity context: the rows, routes and processes after each step.
 */
describe('swap activities', () => {
  let world: Awaited<ReturnType<typeof activityWorld>>;
  let prisma: PrismaClient;

  beforeAll(async () => {
    world = await activityWorld('swap');
    ({ prisma } = world);
  });
  afterAll(async () => {
    await world.close();
  });

  /** An ACTIVE deployment with 2 serving replicas on `sim`, and a staged revision of another variant on `sim-large`. */
  async function setup() {
    const operationId = newId('op');
    const d = await world.deployment({
      simulatorArgs: ['--cold-start-ms 100', '--warm-start-ms 50', '--itl-ms 10'],
      row: { minReplicas: 1, maxReplicas: 4, url: 'http://127.0.0.1/v1', activeOperationId: operationId, targetConcurrency: 24 },
    });
    const { deploymentId, run } = d;
    await prisma.operation.create({
      data: { id: operationId, deploymentId, kind: 'ROLLBACK', workflowId: `op:${deploymentId}:${operationId}`, status: 'RUNNING' },
    });
    const variantId = newId('var');
    await prisma.variant.create({
      data: { id: variantId, pipelineId: d.pipelineId, name: 'fp8', gpu: 'sim-large', engine: 'sim', maxConcurrency: 20 },
    });
    const revisionId = newId('rev');
    await prisma.revision.create({ data: { id: revisionId, deploymentId, variantId, gpu: 'sim-large', status: 'STAGED', operationId } });
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 2, reason: 'setup' });
    await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })));
    const deployment = () => prisma.deployment.findUniqueOrThrow({ where: { id: deploymentId } });
    const revision = (id: string) => prisma.revision.findUniqueOrThrow({ where: { id } });
    const ofRevision = (id: string) => prisma.replica.findMany({ where: { revisionId: id }, orderBy: { id: 'asc' } });
    return { ...d, operationId, staged: revisionId, stagedVariantId: variantId, deployment, revision, ofRevision };
  }

  /** A chat completion straight to a replica, `tokens` long (10 ms each on sim). */
  const request = (address: string, tokens: number) =>
    fetch(`${address}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sim/tiny-chat', max_tokens: tokens, messages: [{ role: 'user', content: 'hi' }] }),
    });

  it('should bring the staged revision up beside the serving one, switch in one step, and retire the old after its requests finish', async () => {
    const s = await setup();
    const { deploymentId, staged } = s;
    const old = s.revisionId;

    expect(await s.run('stageRevision', { deploymentId, revisionId: staged })).toEqual({ count: 2 });
    // A retry brings up nothing more.
    expect(await s.run('stageRevision', { deploymentId, revisionId: staged })).toEqual({ count: 2 });
    const stagedRows = await s.ofRevision(staged);
    expect(stagedRows.map((r) => [r.id, r.gpu, r.concurrency])).toEqual([
      [`${staged}-r0`, 'sim-large', 20],
      [`${staged}-r1`, 'sim-large', 20],
    ]);
    // The simulated sim-large runs at twice sim's speed.
    const cmdline = (pid: string) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline(stagedRows[0].providerId!).join(' ')).toContain('--speed 2');
    expect(cmdline((await s.ofRevision(old))[0].providerId!).join(' ')).toContain('--speed 1');

    // The scaler sizes the serving revision only: the staged replicas are not its.
    const scaled = await s.run('reconcileReplicaCount', { deploymentId, desired: 2, reason: 'a late count' });
    expect(scaled).toMatchObject({ started: [], starting: [] });

    await s.run('waitRevisionReady', { deploymentId, revisionId: staged, timeoutSeconds: 10 });
    expect((await s.ofRevision(staged)).every((r) => r.state === 'READY')).toBe(true);
    // Ready, and still not routed to: the gateway's route holds the serving revision's replicas only.
    const directory = new Directory(prisma, process.env.DATABASE_URL!, 60_000, pino({ level: 'silent' }));
    const routed = async () => (await directory.route(deploymentId))!.replicas.map((r) => r.id).sort();
    const oldIds = (await s.ofRevision(old)).map((r) => r.id).sort();
    expect(await routed()).toEqual(oldIds);

    // A request in flight on the old revision when the routes switch.
    const [o0] = await s.ofRevision(old);
    const inFlight = request(o0.address!, 60); // about 600 ms
    await new Promise((r) => setTimeout(r, 100));
    expect(await s.run('switchRevision', { deploymentId, revisionId: staged })).toEqual({ previousRevisionId: old, targetConcurrency: 20 });
    expect(await s.run('switchRevision', { deploymentId, revisionId: staged })).toEqual({ previousRevisionId: old, targetConcurrency: 20 });
    expect(await s.deployment()).toMatchObject({
      revisionId: staged,
      variantId: s.stagedVariantId,
      gpu: 'sim-large',
      targetConcurrency: 20,
    });
    expect(await s.revision(old)).toMatchObject({ status: 'RETIRED', servedTo: expect.any(Date) });
    expect(await s.revision(staged)).toMatchObject({ status: 'SERVING', servedFrom: expect.any(Date), previousRevisionId: old });
    expect((await s.ofRevision(old)).map((r) => r.state)).toEqual(['DRAINING', 'DRAINING']);
    directory.dropAll();
    expect(await routed()).toEqual(stagedRows.map((r) => r.id).sort());
    await directory.close();

    expect(await s.run('retireRevision', { deploymentId, revisionId: old, drainTimeoutMs: 10_000 })).toEqual({ stopped: 2 });
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(60);
    const retired = await s.ofRevision(old);
    expect(retired.every((r) => r.state === 'STOPPED' && !pidAlive(Number(r.providerId)))).toBe(true);
    // The serving revision cannot be retired.
    await expect(s.run('retireRevision', { deploymentId, revisionId: staged, drainTimeoutMs: 10 })).rejects.toThrow(
      /serves: it cannot be retired/,
    );

    await s.run('finishSwap', { deploymentId, operationId: s.operationId, revisionId: staged });
    expect(await s.deployment()).toMatchObject({ activeOperationId: null, status: 'ACTIVE' });
    expect(await prisma.operation.findUniqueOrThrow({ where: { id: s.operationId } })).toMatchObject({ status: 'SUCCEEDED' });
    // After the swap the scaler's counts land on the new revision.
    const after = await s.run('reconcileReplicaCount', { deploymentId, desired: 3, reason: 'more load' });
    expect(after.started).toHaveLength(1);
    expect((await prisma.replica.findUniqueOrThrow({ where: { id: after.started[0] } })).revisionId).toBe(staged);
  });

  it('should release the staged replicas and keep the old revision serving when the swap is undone before the switch', async () => {
    const s = await setup();
    const { deploymentId, staged } = s;
    await s.run('stageRevision', { deploymentId, revisionId: staged });
    const pids = (await s.ofRevision(staged)).map((r) => Number(r.providerId));

    await s.run('abortRevision', { deploymentId, revisionId: staged, reason: 'replica exited' });
    expect((await s.ofRevision(staged)).every((r) => r.state === 'STOPPED')).toBe(true);
    expect(pids.every((pid) => !pidAlive(pid))).toBe(true);
    expect(await s.revision(staged)).toMatchObject({ status: 'FAILED', reason: 'replica exited' });
    expect(await s.deployment()).toMatchObject({ revisionId: s.revisionId, gpu: 'sim', status: 'ACTIVE' });
    expect((await s.ofRevision(s.revisionId)).map((r) => r.state)).toEqual(['READY', 'READY']);
    // A failed revision is not brought up again.
    await expect(s.run('stageRevision', { deploymentId, revisionId: staged })).rejects.toThrow(/is FAILED, not STAGED/);
  });

  it('should start the process of a staged replica whose worker died between its row and its spawn', async () => {
    const s = await setup();
    const { deploymentId, staged } = s;
    // What a worker killed mid-stage leaves: the row, no process.
    await prisma.revision.update({ where: { id: staged }, data: { replicaCount: 1 } });
    await prisma.replica.create({
      data: { id: `${staged}-r0`, deploymentId, revisionId: staged, state: 'STARTING', gpu: 'sim-large', concurrency: 20 },
    });
    expect(await s.run('stageRevision', { deploymentId, revisionId: staged })).toEqual({ count: 1 });
    await s.run('waitRevisionReady', { deploymentId, revisionId: staged, timeoutSeconds: 10 });
    const [r0] = await s.ofRevision(staged);
    expect(r0).toMatchObject({ id: `${staged}-r0`, state: 'READY' });
    expect(pidAlive(Number(r0.providerId))).toBe(true);
  });
});
