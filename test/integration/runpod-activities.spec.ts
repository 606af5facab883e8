import pino from 'pino';
import { request } from 'undici';
import { ReplicaUnhealthyError } from '../../src/domain/errors';
import { loadConfig } from '../../src/config/config';
import { createPrisma } from '../../src/database/prisma';
import { PooledReplicas } from '../../src/providers/pool';
import { reconcileRunpod, runpodProvider } from '../../src/providers/runpod';
import { RunpodFake, runpodFakeEnv, startRunpodFake } from '../../src/providers/runpod/fake';
import { activityWorld } from '../support/activities';
import { eventually } from '../support/wait';

const KEY = 'rpa_integration_key_0001';

/**
 * The scaler's actuation activities on real Postgres over the RunPod adapter and the RunPod fake (its documented
 * v2 API and runtime, simulated workers): replica rows become worker slots of one endpoint per revision.
 */
describe('replica activities on RunPod endpoints (adapter against the RunPod fake)', () => {
  let world: Awaited<ReturnType<typeof activityWorld>>;
  let fake: RunpodFake;
  let adapter: PooledReplicas;
  const prisma = createPrisma(process.env.DATABASE_URL!, 2);

  beforeAll(async () => {
    world = await activityWorld('runpod');
    fake = await startRunpodFake({ keys: [{ key: KEY }], coldStartMs: 300, flashbootStartMs: 50, ttftMs: 5, itlMs: 5 });
    const config = loadConfig({
      ...process.env,
      ...runpodFakeEnv(fake, KEY),
      RUNPOD_MIN_PATCH_INTERVAL_MS: '200',
      RUNPOD_DRIFT_INTERVAL_MS: '3600000',
    });
    adapter = runpodProvider(config, { prisma, log: pino({ level: 'silent' }) });
  });
  afterAll(async () => {
    adapter?.close();
    await fake?.stop();
    await world?.close();
    await prisma.$disconnect();
  });

  const setup = () => world.deployment({ providers: { RUNPOD: adapter }, row: { target: 'RUNPOD', gpu: 'H100' } });
  const endpointOf = (deploymentId: string) =>
    (fake.endpoints() as Array<{ id: string; name: string; workers: { min: number; max: number } }>).find((e) =>
      e.name.includes(deploymentId),
    );
  const chat = (address: string, maxTokens: number) =>
    request(`${address}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sim/tiny-chat', max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
    });

  it('should run N replicas as N workers of one endpoint, resized in one PATCH, each ready as the endpoint serves that many', async () => {
    const { deploymentId, run, rows } = await setup();
    fake.resetCalls();
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 3, reason: 'burst' });
    expect(up.started).toHaveLength(3);
    // Three slots started together: one create, one resize (coalesced), never three.
    expect(fake.calls()).toMatchObject({ 'POST /v2/serverless': 1, 'PATCH /v2/serverless/{id}': 1 });
    expect(endpointOf(deploymentId)!.workers).toEqual(expect.objectContaining({ min: 3, max: 3 }));
    expect(await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })))).toEqual([
      'ready',
      'ready',
      'ready',
    ]);
    const ready = await rows();
    expect(new Set(ready.map((r) => r.providerId))).toEqual(new Set([endpointOf(deploymentId)!.id]));
    expect(fake.workers(endpointOf(deploymentId)!.id).filter((w) => w.status === 'IDLE' || w.status === 'RUNNING')).toHaveLength(3);
    // A retry of the same count changes nothing on RunPod.
    fake.resetCalls();
    expect((await run('reconcileReplicaCount', { deploymentId, desired: 3, reason: 'retry' })).started).toEqual([]);
    expect(fake.calls()['PATCH /v2/serverless/{id}'] ?? 0).toBe(0);
  });

  it('should lower the workers only once the in-flight requests fit the slots still serving (drain by live count)', async () => {
    const { deploymentId, run, rows } = await setup();
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 2, reason: 'burst' });
    await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })));
    const ep = endpointOf(deploymentId)!;
    const address = (await rows())[0].address!;
    // Enough long requests that one worker's 30 slots cannot hold them all: the drain must wait for them.
    const long = Array.from({ length: 40 }, () =>
      chat(address, 120).then(async (r) => ({ status: r.statusCode, body: await r.body.json() })),
    );
    await eventually(
      async () =>
        (
          (await (await request(`${fake.runtimeUrl}/v2/${ep.id}/health`, { headers: { authorization: KEY } })).body.json()) as {
            jobs: { inProgress: number };
          }
        ).jobs.inProgress >= 31,
    );
    const down = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'quiet' });
    expect(down.draining).toHaveLength(1);
    const drained = run('drainReplica', { deploymentId, replicaId: down.draining[0], drainTimeoutMs: 30_000 });
    // While more runs than one worker holds, the endpoint keeps both workers.
    await new Promise((r) => setTimeout(r, 300));
    expect(endpointOf(deploymentId)!.workers).toMatchObject({ min: 2, max: 2 });
    expect(await drained).toBe('stopped');
    const results = await Promise.all(long);
    expect(
      results.every((r) => r.status === 200 && (r.body as { usage: { completion_tokens: number } }).usage.completion_tokens === 120),
    ).toBe(true);
    expect(endpointOf(deploymentId)!.workers).toMatchObject({ min: 1, max: 1 });
  });

  it('should fail a slot whose workers crash-loop as an unhealthy replica', async () => {
    const { deploymentId, run } = await setup();
    const first = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'first' });
    const ep = endpointOf(deploymentId)!;
    fake.faults.crashLoop.add(ep.id);
    try {
      await expect(run('awaitReplicaReady', { deploymentId, replicaId: first.started[0], timeoutSeconds: 20 })).rejects.toThrow(
        ReplicaUnhealthyError,
      );
      await eventually(async () => endpointOf(deploymentId)!.workers.max === 0);
    } finally {
      fake.faults.crashLoop.delete(ep.id);
    }
  });

  it('should restore workers.max that RunPod lowered on an idle endpoint, and say so as a deployment event', async () => {
    const { deploymentId, run } = await setup();
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 3, reason: 'burst' });
    await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })));
    const ep = endpointOf(deploymentId)!;
    // RunPod's own rule: after 3 idle days workers.max drops to 2 (an injected clock would do; PATCH as RunPod did).
    await request(`${fake.managementUrl}/v2/serverless/${ep.id}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ workers: { min: 2, max: 2 } }),
    }).then((r) => r.body.dump());
    await adapter.driftCheck!();
    expect(endpointOf(deploymentId)!.workers).toMatchObject({ min: 3, max: 3 });
    const events = await world.prisma.deploymentEvent.findMany({ where: { deploymentId, kind: 'provider.drift' } });
    expect(events.map((e) => e.message)).toEqual([`RunPod endpoint ${ep.id} had workers 2-2, the scaler's count is 3: restored`]);
  });

  it('should lower the endpoint for a slot stopped before its row named the endpoint (a scale-up cut short by a stop)', async () => {
    const { deploymentId, revisionId } = await setup();
    const id = `${deploymentId}-r0`;
    await prisma.replica.create({ data: { id, deploymentId, revisionId, state: 'STARTING', gpu: 'H100', concurrency: 30 } });
    // ensureReplica raised the endpoint; the activity had not yet written the endpoint's id on the row when the stop came.
    await adapter.ensureReplica({
      replicaId: id,
      deploymentId,
      revisionId,
      pipelineId: 'pl',
      variantId: 'var',
      model: 'sim/tiny-chat',
      task: 'CHAT',
      gpu: 'H100',
      maxConcurrency: 30,
    });
    expect(endpointOf(deploymentId)!.workers).toMatchObject({ min: 1, max: 1 });
    await prisma.replica.update({ where: { id }, data: { state: 'STOPPED', stoppedAt: new Date() } });
    await adapter.stopReplica(id);
    expect(endpointOf(deploymentId)!.workers).toMatchObject({ min: 0, max: 0 });
  });

  it('should start, on a retry, the replica of a row an earlier attempt made but could not start', async () => {
    const { deploymentId, run, rows } = await setup();
    fake.faults.managementFailureRate = 1;
    fake.faults.kinds = ['503'];
    try {
      await expect(run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'first' })).rejects.toThrow(/RunPod answered 503/);
    } finally {
      fake.faults.managementFailureRate = 0;
    }
    expect(await rows()).toEqual([expect.objectContaining({ state: 'STARTING', address: null })]);
    // Temporal's retry of the same activity: the row is kept and its replica started now.
    const again = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'first' });
    expect(again.started).toEqual([]);
    expect(again.starting).toHaveLength(1);
    expect(await run('awaitReplicaReady', { deploymentId, replicaId: again.starting[0] })).toBe('ready');
    expect((await rows())[0].address).toMatch(/\/openai$/);
  });

  it('should delete, at worker start, the endpoints of ours that no revision needs, and keep the rest', async () => {
    const { deploymentId, run } = await setup();
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'first' });
    await run('awaitReplicaReady', { deploymentId, replicaId: up.started[0] });
    const create = (name: string) =>
      request(`${fake.managementUrl}/v2/serverless`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          name,
          type: 'QUEUE',
          image: 'x/y:1',
          gpu: { pools: ['ADA_24'] },
          scaling: { type: 'QUEUE_DELAY', queueDelay: 4 },
        }),
      }).then((r) => r.body.json() as Promise<{ id: string }>);
    // A create whose activity failed after RunPod made the endpoint, and an endpoint somebody else runs on the account.
    const orphan = await create('infercp-dep_gone-rev_gone');
    const foreign = await create('someone-elses-endpoint');
    await reconcileRunpod(prisma, adapter, pino({ level: 'silent' }));
    const ids = (fake.endpoints() as Array<{ id: string }>).map((e) => e.id);
    expect(ids).not.toContain(orphan.id);
    expect(ids).toContain(foreign.id);
    expect(ids).toContain(endpointOf(deploymentId)!.id);
  });

  it('should delete the endpoint of a deployment that is deleted, and keep the one of a stopped deployment at 0/0', async () => {
    const { deploymentId, run } = await setup();
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'first' });
    await run('awaitReplicaReady', { deploymentId, replicaId: up.started[0] });
    const ep = endpointOf(deploymentId)!;
    await run('stopReplicas', { deploymentId, drainTimeoutMs: 5000 });
    expect(endpointOf(deploymentId)).toMatchObject({ id: ep.id, workers: { min: 0, max: 0 } });
    await run('markDeleted', { deploymentId, operationId: 'op_none' });
    expect(endpointOf(deploymentId)).toBeUndefined();
  });
});
