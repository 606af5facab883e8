import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Activities, createActivities } from '../../activities';
import { newId } from '../../src/common/secrets';
import { createPrisma, PrismaClient } from '../../src/database/prisma';
import { ReplicaUnhealthyError } from '../../src/domain/errors';
import { LocalProvider } from '../../src/providers/local';
import { WorkspacesService } from '../../src/workspaces/workspaces.service';
import { pidAlive } from '../support/wait';

/**
 * The scaler's actuation activities on real Postgres and real local replicas (simulator processes),
 * run in Temporal's mock activity context: what the rows and the processes look like after each.
 */
describe('replica activities', () => {
  let prisma: PrismaClient;
  let workspaceId: string;
  const providers: LocalProvider[] = [];

  beforeAll(async () => {
    prisma = createPrisma(process.env.DATABASE_URL!, 4);
    ({
      workspace: { id: workspaceId },
    } = await new WorkspacesService(prisma).create(`acts-${Date.now()}`, 'TEAM'));
  });
  afterAll(async () => {
    for (const p of providers) await p.stopAll();
    // The database is shared with the other tests: leave nothing that looks live.
    await prisma.replica.updateMany({ where: { deployment: { workspaceId } }, data: { state: 'STOPPED' } });
    await prisma.deployment.updateMany({ where: { workspaceId }, data: { status: 'DELETED' } });
    await prisma.$disconnect();
  });

  /** A deployment row and activities over a local provider running `command` (default: the simulator). */
  async function setup(command = '') {
    const local = new LocalProvider({
      stateDir: mkdtempSync(join(tmpdir(), 'acts-state-')),
      cacheDir: mkdtempSync(join(tmpdir(), 'acts-cache-')),
      command,
      simulatorArgs: ['--cold-start-ms 100', '--warm-start-ms 100'],
    });
    providers.push(local);
    const pipelineId = newId('pl');
    const variantId = newId('var');
    await prisma.pipeline.create({ data: { id: pipelineId, workspaceId, name: pipelineId, task: 'CHAT', model: 'sim/tiny-chat' } });
    await prisma.variant.create({ data: { id: variantId, pipelineId, name: 'default', gpu: 'sim', engine: 'sim', isDefault: true } });
    const deploymentId = newId('dep');
    await prisma.deployment.create({
      data: {
        id: deploymentId,
        workspaceId,
        pipelineId,
        variantId,
        target: 'LOCAL',
        gpu: 'sim',
        mode: 'FLEX',
        minReplicas: 0,
        maxReplicas: 8,
        status: 'ACTIVE',
      },
    });
    const acts = createActivities({
      prisma,
      providers: { LOCAL: local },
      publicBaseUrl: 'http://127.0.0.1',
      healthPollMs: 20,
      healthTimeoutSeconds: 10,
    });
    const env = new MockActivityEnvironment();
    const run = <K extends keyof Activities>(name: K, ...args: Parameters<Activities[K]>) =>
      env.run(acts[name] as (...a: Parameters<Activities[K]>) => ReturnType<Activities[K]>, ...args) as ReturnType<Activities[K]>;
    const rows = () => prisma.replica.findMany({ where: { deploymentId }, orderBy: { startedAt: 'asc' } });
    const byState = async () => {
      const out: Record<string, number> = {};
      for (const r of await rows()) out[r.state] = (out[r.state] ?? 0) + 1;
      return out;
    };
    return { deploymentId, run, rows, byState };
  }

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
