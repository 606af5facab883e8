import type { Activities } from '../../activities';
import { planActuation } from '../../src/domain/actuation';
import { ReplicaUnhealthyError } from '../../src/domain/errors';
import type { LoadReport } from '../../src/domain/scaling';
import {
  loadReportSignal,
  pauseScalerSignal,
  resumeScalerSignal,
  ScalerInput,
  scalerStatusQuery,
  setPolicyUpdate,
} from '../../workflows/messages';
import { eventually } from '../support/wait';
import { testPolicy, workflowEnv, WorkflowEnv } from '../support/workflows';

const policy = testPolicy({ maxReplicas: 8 });
const report = (inFlight: number, queued = 0, oldestQueuedMs = 0): LoadReport => ({
  gatewayId: 'g1',
  inFlight,
  queued,
  oldestQueuedMs,
  at: Date.now(),
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type State = 'STARTING' | 'READY' | 'DRAINING' | 'STOPPED' | 'FAILED';

/**
 * A provider in memory behind the scaler's three actuation activities: replicas take startMs to
 * serve (or fail), and a drain takes drainMs unless a scale-up reuses the replica first. The plan
 * itself is the real pure planActuation(); what is under test is the workflow around it.
 */
class FakeReplicas {
  readonly replicas = new Map<string, { state: State; startedAt: number; readyAt?: number; replaces?: string }>();
  readonly reconciles: Array<{ at: number; desired: number; started: number; reused: number }> = [];
  readonly starts: number[] = [];
  private seq = 0;

  constructor(
    ready: number,
    private readonly o: {
      startMs: number;
      drainMs?: number;
      failStart?: (n: number) => boolean;
      /** The provider ends a replica this long after its start (Modal's Sandbox timeout); rotated rotateBeforeMs before. */
      lifetimeMs?: number;
      rotateBeforeMs?: number;
    } = { startMs: 200 },
  ) {
    // With a lifetime the replicas start now (they would be long dead otherwise); without, their age does not matter.
    const t = o.lifetimeMs !== undefined ? Date.now() : 0;
    for (let i = 0; i < ready; i++) this.replicas.set(`r${this.seq++}`, { state: 'READY', startedAt: t, readyAt: t });
  }

  count(state: State) {
    return [...this.replicas.values()].filter((r) => r.state === state).length;
  }

  activities(): Partial<Activities> {
    const reconcileReplicaCount = (async ({ desired }: { desired: number }) => {
      // As the real one: a replica whose replacement is on its way is leaving, not counted.
      const replaced = new Set([...this.replicas.values()].filter((r) => r.replaces && r.state !== 'DRAINING').map((r) => r.replaces));
      const views = [...this.replicas]
        .filter(([id, r]) => ['STARTING', 'READY', 'DRAINING'].includes(r.state) && !(replaced.has(id) && r.state === 'READY'))
        .map(([id, r]) => ({ id, state: r.state as 'STARTING' | 'READY' | 'DRAINING', startedAt: r.startedAt }));
      const plan = planActuation(desired, views);
      for (const id of plan.reuse) this.replicas.get(id)!.state = this.replicas.get(id)!.readyAt !== undefined ? 'READY' : 'STARTING';
      const started: string[] = [];
      for (let i = 0; i < plan.start; i++) {
        const id = `r${this.seq++}`;
        this.replicas.set(id, { state: 'STARTING', startedAt: Date.now() });
        this.starts.push(Date.now());
        started.push(id);
      }
      for (const id of plan.drain) this.replicas.get(id)!.state = 'DRAINING';
      this.reconciles.push({ at: Date.now(), desired, started: started.length, reused: plan.reuse.length });
      const ids = (s: State) => [...this.replicas].filter(([, r]) => r.state === s).map(([id]) => id);
      return { started, reused: [...plan.reuse], starting: ids('STARTING'), draining: ids('DRAINING') };
    }) as Activities['reconcileReplicaCount'];
    const awaitReplicaReady = (async ({ replicaId }: { replicaId: string }) => {
      const r = this.replicas.get(replicaId)!;
      const n = Number(replicaId.slice(1));
      while (Date.now() - r.startedAt < this.o.startMs) {
        if (r.state !== 'STARTING') return 'cancelled';
        await sleep(10);
      }
      if (this.o.failStart?.(n)) {
        r.state = 'FAILED';
        throw new ReplicaUnhealthyError(`replica ${replicaId} exited before it became healthy`);
      }
      r.state = 'READY';
      r.readyAt = Date.now();
      return 'ready';
    }) as Activities['awaitReplicaReady'];
    const drainReplica = (async ({ replicaId }: { replicaId: string }) => {
      const r = this.replicas.get(replicaId)!;
      const until = Date.now() + (this.o.drainMs ?? 0);
      while (Date.now() < until) {
        if (r.state !== 'DRAINING') return 'reused';
        await sleep(10);
      }
      if (r.state !== 'DRAINING') return 'reused';
      r.state = 'STOPPED';
      return 'stopped';
    }) as Activities['drainReplica'];
    const rotateAgedReplicas = (async () => {
      const { lifetimeMs, rotateBeforeMs = 0 } = this.o;
      if (lifetimeMs === undefined) return { starting: [], draining: [], nextCheckAt: null };
      const now = Date.now();
      const due = (r: { startedAt: number }) => r.startedAt + lifetimeMs - rotateBeforeMs;
      const starting: string[] = [];
      const draining: string[] = [];
      let busy = false;
      for (const [id, old] of [...this.replicas].filter(([, r]) => r.state === 'READY' && due(r) <= now)) {
        const next = [...this.replicas].find(([, r]) => r.replaces === id && (r.state === 'STARTING' || r.state === 'READY'));
        if (!next) {
          const nid = `r${this.seq++}`;
          this.replicas.set(nid, { state: 'STARTING', startedAt: now, replaces: id });
          this.starts.push(now);
          starting.push(nid);
          busy = true;
        } else if (next[1].state === 'STARTING') {
          starting.push(next[0]);
          busy = true;
        } else {
          old.state = 'DRAINING';
          draining.push(id);
        }
      }
      const live = [...this.replicas.values()].filter((r) => (r.state === 'READY' || r.state === 'STARTING') && due(r) > now);
      return { starting, draining, nextCheckAt: busy ? now + 50 : live.length ? Math.min(...live.map(due)) : null };
    }) as unknown as Activities['rotateAgedReplicas'];
    return { reconcileReplicaCount, awaitReplicaReady, drainReplica, rotateAgedReplicas };
  }

  /** The provider ending what outlived its lifetime: serving replicas it kills count as lost capacity. */
  expire(): number {
    let lost = 0;
    for (const r of this.replicas.values()) {
      if (
        this.o.lifetimeMs !== undefined &&
        (r.state === 'READY' || r.state === 'DRAINING') &&
        Date.now() - r.startedAt >= this.o.lifetimeMs
      ) {
        if (r.state === 'READY') lost++;
        r.state = 'FAILED';
      }
    }
    return lost;
  }
}

describe('scaler workflow (fake activities, real Temporal server)', () => {
  let env: WorkflowEnv;
  beforeAll(async () => {
    env = await workflowEnv();
  });
  afterAll(async () => {
    await env.close();
  });

  type Handle = ReturnType<WorkflowEnv['client']['workflow']['getHandle']>;
  /** Starts a scaler over these activities; hands the test its handle; terminates it after. */
  const withScaler = (activities: Partial<Activities>, input: Partial<ScalerInput>, fn: (h: Handle) => Promise<void>) =>
    env.withWorker(activities, async (taskQueue) => {
      const args: ScalerInput = {
        deploymentId: 'dep-test',
        policy,
        initialReplicas: 1,
        planMaxReplicas: 8,
        drainTimeoutMs: 30_000,
        ...input,
      };
      const handle = await env.client.workflow.start('scalerWorkflow', {
        taskQueue,
        workflowId: `scaler:test-${Date.now()}-${Math.random()}`,
        args: [args],
      });
      try {
        await fn(handle);
      } finally {
        await handle.terminate('test over').catch(() => {});
      }
    });

  it('should start every missing replica at once, and let a newer decision overtake one still starting', async () => {
    const world = new FakeReplicas(1, { startMs: 1500 });
    await withScaler(world.activities(), {}, async (h) => {
      await h.signal(loadReportSignal, report(8)); // needs 2
      await eventually(async () => world.count('STARTING') === 1);
      const t = Date.now();
      await h.signal(loadReportSignal, report(24)); // needs 6, while the first new replica still starts
      await eventually(async () => world.count('STARTING') === 5);
      // The second decision was applied well before the first replica could serve.
      expect(Date.now() - t).toBeLessThan(1000);
      expect(world.count('READY')).toBe(1);
      expect(await h.query(scalerStatusQuery)).toMatchObject({ current: 6, desired: 6, starting: 5 });
      await eventually(async () => world.count('READY') === 6);
      await eventually(async () => (await h.query(scalerStatusQuery)).starting === 0);
      expect(world.starts).toHaveLength(5);
    });
  });

  it('should keep deciding while replicas start: a stuck queue waits for the replica on its way', async () => {
    const world = new FakeReplicas(1, { startMs: 2000 });
    await withScaler(world.activities(), {}, async (h) => {
      await h.signal(loadReportSignal, report(4, 1, 2500)); // queue stuck: one more
      await eventually(async () => world.count('STARTING') === 1);
      for (let i = 0; i < 5; i++) {
        await h.signal(loadReportSignal, report(4, 1, 2600 + i * 100)); // still stuck while it starts
        await sleep(50);
      }
      const s = await h.query(scalerStatusQuery);
      expect(s).toMatchObject({ current: 2, starting: 1 });
      expect(world.starts).toHaveLength(1);
    });
  });

  it('should cancel a draining scale-down when load returns, reusing the draining replicas instead of starting new ones', async () => {
    const world = new FakeReplicas(3, { startMs: 200, drainMs: 20_000 });
    await withScaler(world.activities(), { initialReplicas: 3, policy: { ...policy, scaleDownWindowSeconds: 1 } }, async (h) => {
      await h.signal(loadReportSignal, report(2));
      await eventually(async () => world.count('DRAINING') === 2, 10_000);
      const t = Date.now();
      await h.signal(loadReportSignal, report(12)); // needs 3 again
      await eventually(async () => world.count('READY') === 3);
      expect(Date.now() - t).toBeLessThan(1000);
      expect(world.starts).toEqual([]);
      const s = await eventually(async () => {
        const q = await h.query(scalerStatusQuery);
        return q.draining === 0 ? q : null;
      });
      expect(s.decisions.map((d) => d.reason)).toContainEqual(
        expect.stringMatching(/^scale-down cancelled: 2 draining replica\(s\) back to serving, 0 new/),
      );
      expect(world.reconciles.at(-1)).toMatchObject({ desired: 3, started: 0, reused: 2 });
    });
  });

  it('should replace a replica that failed to start, after a backoff, and say so in the decision log', async () => {
    const world = new FakeReplicas(1, { startMs: 100, failStart: (n) => n === 1 });
    await withScaler(world.activities(), {}, async (h) => {
      await h.signal(loadReportSignal, report(8)); // needs 2: r1 fails, r2 replaces it
      await eventually(async () => world.count('READY') === 2, 10_000);
      expect(world.starts).toHaveLength(2);
      expect(world.starts[1] - world.starts[0]).toBeGreaterThanOrEqual(1000); // 100 ms to fail, then the 1 s backoff
      const s = await h.query(scalerStatusQuery);
      expect(s.decisions.map((d) => d.reason)).toContainEqual(
        expect.stringMatching(/^replica r1 failed to start, replacing it: replica r1 exited before it became healthy; trying again in 1 s/),
      );
      expect(s).toMatchObject({ current: 2, starting: 0 });
    });
  });

  it('should not let a crash-looping image start replicas in a tight loop', async () => {
    const world = new FakeReplicas(1, { startMs: 50, failStart: () => true });
    await withScaler(world.activities(), {}, async (h) => {
      await h.signal(loadReportSignal, report(8));
      await sleep(4000);
      // Backoffs of 1, 2, 4 s: the first start and at most two replacements in 4 s, not one per poll.
      expect(world.starts.length).toBeGreaterThanOrEqual(2);
      expect(world.starts.length).toBeLessThanOrEqual(3);
      expect((await h.describe()).status.name).toBe('RUNNING');
      expect(await h.query(scalerStatusQuery)).toMatchObject({ current: 2 });
    });
  });

  it('should decide nothing while paused and decide on the reports it kept once resumed', async () => {
    const world = new FakeReplicas(1, { startMs: 50 });
    await withScaler(world.activities(), {}, async (h) => {
      await h.signal(pauseScalerSignal);
      await h.signal(loadReportSignal, report(12));
      await sleep(500);
      expect(world.starts).toEqual([]);
      expect(await h.query(scalerStatusQuery)).toMatchObject({ paused: true, current: 1 });
      await h.signal(loadReportSignal, report(12));
      await h.signal(resumeScalerSignal);
      await eventually(async () => world.count('READY') === 3);
      expect(await h.query(scalerStatusQuery)).toMatchObject({ paused: false, current: 3, desired: 3 });
    });
  });

  it('should refuse a policy update that breaks a rule, naming the knob, and apply one that does not', async () => {
    await withScaler(new FakeReplicas(1).activities(), {}, async (h) => {
      await expect(h.executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 9 }] })).rejects.toMatchObject({
        cause: { message: "maxReplicas=9: exceeds the plan's ceiling of 8" },
      });
      const p = await h.executeUpdate(setPolicyUpdate, { args: [{ targetConcurrency: 2 }] });
      expect(p.targetConcurrency).toBe(2);
      expect((await h.query(scalerStatusQuery)).policy.targetConcurrency).toBe(2);
    });
  });

  it('should carry its count, policy and decision log across continue-as-new, and watch what still starts', async () => {
    const world = new FakeReplicas(1, { startMs: 1500 });
    // Turn 1 the burst, turn 2 the policy change, turn 3 a report: then it continues as new.
    await withScaler(world.activities(), { forceContinueAsNewAfterTurns: 3 }, async (h) => {
      const first = (await h.describe()).runId;
      await h.signal(loadReportSignal, report(10));
      await eventually(async () => (await h.query(scalerStatusQuery)).current === 3);
      await h.executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 6 }] });
      await h.signal(loadReportSignal, report(10));
      const next = await eventually(async () => {
        const d = await env.client.workflow.getHandle(h.workflowId).describe();
        return d.runId !== first ? d : null;
      });
      expect(next.status.name).toBe('RUNNING');
      const latest = env.client.workflow.getHandle(h.workflowId);
      const s = await latest.query(scalerStatusQuery);
      expect(s).toMatchObject({ current: 3, policy: { maxReplicas: 6 } });
      expect(s.decisions.map((d) => [d.from, d.to])).toEqual([[1, 3]]);
      // The new run found the replicas the old one had started and watches them to the end.
      await eventually(async () => (await latest.query(scalerStatusQuery)).starting === 0 && world.count('READY') === 3);
      expect(world.starts).toHaveLength(2);
    });
  });

  it('should replace each replica before the provider ends it, never serving fewer than its count', async () => {
    // Replicas live 4 s and are rotated 3 s before (a start takes 200 ms): a replacement is due when a replica is 1 s
    // old and has 3 s to serve before the old one ends, room enough on a loaded CI machine (at 1.5 s and 1 s before,
    // a busy run once missed it). Several rounds of rotation in 6 s.
    const world = new FakeReplicas(2, { startMs: 200, lifetimeMs: 4000, rotateBeforeMs: 3000 });
    await withScaler(world.activities(), { initialReplicas: 2 }, async () => {
      let lost = 0;
      let fewest = Infinity;
      const until = Date.now() + 6000;
      while (Date.now() < until) {
        lost += world.expire();
        fewest = Math.min(fewest, world.count('READY'));
        await sleep(20);
      }
      expect(lost).toBe(0);
      expect(fewest).toBeGreaterThanOrEqual(2);
      // Every replica that started served and was rotated out in turn: starts are replacements, two at a time.
      expect(world.starts.length).toBeGreaterThanOrEqual(4);
      expect(world.count('READY')).toBe(2);
    });
  });

  it('should hold its count when no gateway reports, never reading silence as zero load', async () => {
    const world = new FakeReplicas(2);
    await withScaler(world.activities(), { initialReplicas: 2 }, async (h) => {
      await h.signal(resumeScalerSignal); // a wake-up with no reports
      await eventually(async () => (await h.query(scalerStatusQuery)).noData);
      expect(world.starts).toEqual([]);
      expect(world.count('READY')).toBe(2);
      expect(await h.query(scalerStatusQuery)).toMatchObject({ current: 2, desired: 2 });
    });
  });
});
