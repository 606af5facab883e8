import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createPrisma } from '../../src/database/prisma';
import { LocalProvider, reconcileReplicas } from '../../src/providers/local';
import { ReplicaSpec } from '../../src/providers/provider';
import { eventually, pidAlive } from '../support/wait';

const provider = (stateDir: string, cacheDir: string) =>
  new LocalProvider({ stateDir, cacheDir, command: '', simulatorArgs: ['--cold-start-ms 50', '--warm-start-ms 10'] });

const spec = (replicaId: string, deploymentId = 'dep_x'): ReplicaSpec => ({
  replicaId,
  deploymentId,
  pipelineId: 'pl_x',
  variantId: 'var_x',
  model: 'sim/tiny-chat',
  task: 'CHAT',
  gpu: 'sim',
  maxConcurrency: 30,
  revisionId: null,
});

describe('local provider', () => {
  let stateDir: string;
  let cacheDir: string;
  beforeEach(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'local-state-'));
    cacheDir = mkdtempSync(join(tmpdir(), 'local-cache-'));
  });
  afterEach(async () => {
    await provider(stateDir, cacheDir).stopAll();
  });

  it('should start a replica once however often it is asked, and serve OpenAI requests', async () => {
    const p = provider(stateDir, cacheDir);
    const [a, b] = await Promise.all([p.ensureReplica(spec('r1')), p.ensureReplica(spec('r1'))]);
    const c = await p.ensureReplica(spec('r1'));
    expect(b.providerId).toBe(a.providerId);
    expect(c.providerId).toBe(a.providerId);
    await eventually(async () => (await p.health(a)) === 'ready');
    const res = await fetch(`${a.address}/v1/models`);
    expect(((await res.json()) as { data: Array<{ id: string }> }).data[0].id).toBe('sim/tiny-chat');
    expect(await p.listReplicas()).toHaveLength(1);
  });

  it('should find its replicas again from a new process (a restarted worker) and stop them', async () => {
    const first = await provider(stateDir, cacheDir).ensureReplica(spec('r2'));
    const restarted = provider(stateDir, cacheDir);
    const found = await restarted.listReplicas();
    expect(found.map((r) => [r.replicaId, r.providerId])).toEqual([['r2', first.providerId]]);
    const again = await restarted.ensureReplica(spec('r2'));
    expect(again.providerId).toBe(first.providerId);
    await restarted.stopReplica('r2');
    expect(pidAlive(Number(first.providerId))).toBe(false);
    expect(await restarted.health(first)).toBe('gone');
    expect(await restarted.listReplicas()).toEqual([]);
    await restarted.stopReplica('r2'); // idempotent
  });

  it('should know its replica by pid and start time, also while the process does not show its environment yet, and not a reused pid', async () => {
    // A process whose environment does not name the replica: what a just-spawned child looks like between fork and exec.
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      mkdirSync(join(stateDir, 'replicas'), { recursive: true });
      const record = (id: string, startTicks: string) =>
        writeFileSync(
          join(stateDir, 'replicas', `${id}.json`),
          JSON.stringify({
            replicaId: id,
            deploymentId: 'dep_x',
            providerId: String(child.pid),
            address: 'http://127.0.0.1:1',
            pid: child.pid,
            port: 1,
            startedAt: new Date().toISOString(),
            startTicks,
          }),
        );
      record('r-early', ticks);
      record('r-reused', String(Number(ticks) + 1)); // the same pid, another process's start time
      const listed = (await provider(stateDir, cacheDir).listReplicas()).map((h) => h.replicaId);
      expect(listed).toEqual(['r-early']);
      expect(existsSync(join(stateDir, 'replicas', 'r-early.json'))).toBe(true);
      expect(existsSync(join(stateDir, 'replicas', 'r-reused.json'))).toBe(false);
    } finally {
      child.kill('SIGKILL');
      rmSync(join(stateDir, 'replicas', 'r-early.json'), { force: true });
    }
  });

  it('should stop every replica of its state directory at once (what a finished benchmark or test run does)', async () => {
    const p = provider(stateDir, cacheDir);
    const started = await Promise.all([p.ensureReplica(spec('r5')), p.ensureReplica(spec('r6'))]);
    expect(await provider(stateDir, cacheDir).stopAll()).toBe(2);
    for (const r of started) expect(pidAlive(Number(r.providerId))).toBe(false);
    expect(await p.listReplicas()).toEqual([]);
  });

  it('should report a replica whose process exited as gone', async () => {
    const p = new LocalProvider({ stateDir, cacheDir, command: '/bin/false {port}', simulatorArgs: [] });
    const h = await p.ensureReplica(spec('r3'));
    await eventually(async () => (await p.health(h)) === 'gone');
  });

  it('should fill the command template, so a real engine can replace the simulator', async () => {
    const out = join(stateDir, 'args.txt');
    const p = new LocalProvider({
      stateDir,
      cacheDir,
      command: `/bin/sh -c 'echo "$@" > ${out}; sleep 30' _ --model {model} --port {port} --max-num-seqs {maxConcurrency} --id {replicaId}`,
      simulatorArgs: [],
    });
    const h = await p.ensureReplica(spec('r4'));
    const args = await eventually(async () => require('node:fs').readFileSync(out, 'utf8').trim() as string);
    expect(args).toBe(`--model sim/tiny-chat --port ${new URL(h.address).port} --max-num-seqs 30 --id r4`);
  });
});

describe('worker start-up reconciliation', () => {
  it('should adopt replicas the database wants, reap the ones it does not, and mark lost ones FAILED', async () => {
    const prisma = createPrisma(process.env.DATABASE_URL!, 2);
    const stateDir = mkdtempSync(join(tmpdir(), 'local-state-'));
    const cacheDir = mkdtempSync(join(tmpdir(), 'local-cache-'));
    const p = provider(stateDir, cacheDir);
    const tag = Date.now().toString(36);
    try {
      await prisma.workspace.create({ data: { id: `ws_${tag}`, name: 'r', plan: 'TEAM' } });
      await prisma.pipeline.create({
        data: { id: `pl_${tag}`, workspaceId: `ws_${tag}`, name: 'p', task: 'CHAT', model: 'sim/tiny-chat' },
      });
      await prisma.variant.create({ data: { id: `var_${tag}`, pipelineId: `pl_${tag}`, name: 'default', gpu: 'any', engine: 'vllm' } });
      const dep = (id: string, status: 'ACTIVE' | 'STOPPED') =>
        prisma.deployment.create({
          data: {
            id,
            workspaceId: `ws_${tag}`,
            pipelineId: `pl_${tag}`,
            variantId: `var_${tag}`,
            target: 'LOCAL',
            gpu: 'sim',
            mode: 'FLEX',
            minReplicas: 0,
            maxReplicas: 2,
            status,
          },
        });
      await dep(`live_${tag}`, 'ACTIVE');
      await dep(`gone_${tag}`, 'STOPPED');
      const wanted = await p.ensureReplica(spec(`live_${tag}-r0`, `live_${tag}`));
      const unwanted = await p.ensureReplica(spec(`gone_${tag}-r0`, `gone_${tag}`));
      const orphan = await p.ensureReplica(spec(`nobody_${tag}-r0`, `nobody_${tag}`));
      await prisma.replica.createMany({
        data: [
          {
            id: `live_${tag}-r0`,
            deploymentId: `live_${tag}`,
            state: 'READY',
            gpu: 'sim',
            providerId: wanted.providerId,
            address: wanted.address,
          },
          {
            id: `live_${tag}-r1`,
            deploymentId: `live_${tag}`,
            state: 'READY',
            gpu: 'sim',
            providerId: '999999',
            address: 'http://127.0.0.1:1',
          },
          {
            id: `gone_${tag}-r0`,
            deploymentId: `gone_${tag}`,
            state: 'READY',
            gpu: 'sim',
            providerId: unwanted.providerId,
            address: unwanted.address,
          },
        ],
      });

      const result = await reconcileReplicas(prisma, provider(stateDir, cacheDir), pino({ level: 'silent' }));
      expect(result).toEqual({ adopted: 1, reaped: 2, lost: 1 });
      expect(pidAlive(Number(wanted.providerId))).toBe(true);
      expect(pidAlive(Number(unwanted.providerId))).toBe(false);
      expect(pidAlive(Number(orphan.providerId))).toBe(false);
      const states = Object.fromEntries((await prisma.replica.findMany({ where: { id: { contains: tag } } })).map((r) => [r.id, r.state]));
      expect(states).toEqual({ [`live_${tag}-r0`]: 'READY', [`live_${tag}-r1`]: 'FAILED', [`gone_${tag}-r0`]: 'STOPPED' });
      const events = await prisma.deploymentEvent.findMany({ where: { deploymentId: `live_${tag}` } });
      expect(events.map((e) => e.kind)).toEqual(['replica.lost']);
    } finally {
      await p.stopAll();
      await prisma.$disconnect();
    }
  });
});
