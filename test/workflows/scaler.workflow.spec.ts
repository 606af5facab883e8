import type { Activities } from '../../activities';
import { ReplicaUnhealthyError } from '../../src/domain/errors';
import type { LoadReport, ScalingPolicy } from '../../src/domain/scaling';
import { loadReportSignal, pauseScalerSignal, resumeScalerSignal, ScalerInput, scalerStatusQuery, setPolicyUpdate } from '../../workflows/messages';
import { eventually } from '../support/wait';
import { WorkflowEnv, workflowEnv } from '../support/workflows';

const policy: ScalingPolicy = {
  mode: 'FLEX', minReplicas: 0, maxReplicas: 8, targetConcurrency: 4, scaleDownWindowSeconds: 30, idleTimeoutSeconds: 300, queueThresholdMs: 2000, reportTtlMs: 5000,
};
const report = (inFlight: number, queued = 0): LoadReport => ({ gatewayId: 'g1', inFlight, queued, oldestQueuedMs: 0, at: Date.now() });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('scaler workflow (fake activities, real Temporal server)', () => {
  let env: WorkflowEnv;
  beforeAll(async () => {
    env = await workflowEnv();
  });
  afterAll(async () => {
    await env.close();
  });

  /** Starts a scaler whose applyReplicaCount is `apply`; hands the test its handle; terminates it after. */
  const withScaler = (apply: Activities['applyReplicaCount'], input: Partial<ScalerInput>, fn: (h: ReturnType<WorkflowEnv['client']['workflow']['getHandle']>) => Promise<void>) =>
    env.withWorker({ applyReplicaCount: apply }, async (taskQueue) => {
      const args: ScalerInput = { deploymentId: 'dep-test', policy, initialReplicas: 1, planMaxReplicas: 8, drainTimeoutMs: 1000, ...input };
      const handle = await env.client.workflow.start('scalerWorkflow', { taskQueue, workflowId: `scaler:test-${Date.now()}-${Math.random()}`, args: [args] });
      try {
        await fn(handle);
      } finally {
        await handle.terminate('test over').catch(() => {});
      }
    });

  it('should start replicas once, not on every retry, when a new replica dies before serving (and keep running)', async () => {
    let calls = 0;
    const apply = (async () => {
      calls++;
      throw new ReplicaUnhealthyError('replica dep-test-r1 exited before it became healthy');
    }) as Activities['applyReplicaCount'];
    await withScaler(apply, {}, async (h) => {
      await h.signal(loadReportSignal, report(10));
      const status = await eventually(async () => {
        const s = await h.query(scalerStatusQuery);
        return s.decisions.length ? s : null;
      });
      // Past the 1 s and 2 s retry backoffs an unbounded retry policy would have used.
      await sleep(3500);
      expect(calls).toBe(1);
      expect(status.decisions[0]).toMatchObject({ from: 1, to: 1, reason: expect.stringMatching(/could not apply 1 -> 3 .*exited before it became healthy/) });
      expect(await h.query(scalerStatusQuery)).toMatchObject({ current: 1 });
      expect((await h.describe()).status.name).toBe('RUNNING');
    });
  });

  it('should decide nothing while paused and decide on the reports it kept once resumed', async () => {
    const applied: number[] = [];
    const apply = (async (i: { desired: number }) => {
      applied.push(i.desired);
    }) as Activities['applyReplicaCount'];
    await withScaler(apply, {}, async (h) => {
      await h.signal(pauseScalerSignal);
      await h.signal(loadReportSignal, report(12));
      await sleep(500);
      expect(applied).toEqual([]);
      expect(await h.query(scalerStatusQuery)).toMatchObject({ paused: true, current: 1 });
      await h.signal(loadReportSignal, report(12));
      await h.signal(resumeScalerSignal);
      await eventually(async () => applied.length > 0);
      expect(applied).toEqual([3]);
      expect(await h.query(scalerStatusQuery)).toMatchObject({ paused: false, current: 3, desired: 3 });
    });
  });

  it('should refuse a policy update that breaks a rule, naming the knob, and apply one that does not', async () => {
    const apply = (async () => {}) as Activities['applyReplicaCount'];
    await withScaler(apply, {}, async (h) => {
      await expect(h.executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 9 }] })).rejects.toMatchObject({ cause: { message: "maxReplicas=9: exceeds the plan's ceiling of 8" } });
      const p = await h.executeUpdate(setPolicyUpdate, { args: [{ targetConcurrency: 2 }] });
      expect(p.targetConcurrency).toBe(2);
      expect((await h.query(scalerStatusQuery)).policy.targetConcurrency).toBe(2);
    });
  });

  it('should carry its count, policy and decision log across continue-as-new', async () => {
    const apply = (async () => {}) as Activities['applyReplicaCount'];
    await withScaler(apply, { forceContinueAsNewAfterTurns: 2 }, async (h) => {
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
      const s = await env.client.workflow.getHandle(h.workflowId).query(scalerStatusQuery);
      expect(s).toMatchObject({ current: 3, policy: { maxReplicas: 6 } });
      expect(s.decisions.map((d) => [d.from, d.to])).toEqual([[1, 3]]);
    });
  });

  it('should hold its count when no gateway reports, never reading silence as zero load', async () => {
    const applied: number[] = [];
    const apply = (async (i: { desired: number }) => {
      applied.push(i.desired);
    }) as Activities['applyReplicaCount'];
    await withScaler(apply, { initialReplicas: 2 }, async (h) => {
      await h.signal(resumeScalerSignal); // a wake-up with no reports
      await eventually(async () => (await h.query(scalerStatusQuery)).noData);
      expect(applied).toEqual([]);
      expect(await h.query(scalerStatusQuery)).toMatchObject({ current: 2, desired: 2 });
    });
  });
});
