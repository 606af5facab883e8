import { WorkflowFailedError } from '@temporalio/client';
import type { Activities } from '../../activities';
import { NotFoundError, ProviderError, ReplicaUnhealthyError } from '../../src/domain/errors';
import { scalerStatusQuery, scalerWorkflowId } from '../../workflows/messages';
import { eventually } from '../support/wait';
import { recorder, runOperation, testPolicy, workflowEnv, WorkflowEnv } from '../support/workflows';

const policy = testPolicy();

/** Fake activities that log each call; `fail` names the activity that throws, with which failure. */
function fakes(
  log: string[],
  fail: Partial<Record<keyof Activities, Error>> = {},
  o: { alreadyStopped?: boolean } = {},
): Partial<Activities> {
  const step = recorder(log, fail);
  return {
    // The lifecycle's own steps.
    beginStop: step('beginStop', { alreadyStopped: o.alreadyStopped ?? false }),
    stopReplicas: step('stopReplicas', { stopped: 2 }),
    finishStop: step('finishStop', undefined),
    abortStop: step('abortStop', { live: 2 }),
    failOperation: step('failOperation', undefined),
    markDeleted: step('markDeleted', undefined),
    startReplicas: step('startReplicas', { replicaIds: ['r2'] }),
    // Shared with deploy.
    checkPlan: step('checkPlan', { initialReplicas: 1, planMaxReplicas: 8, policy }),
    waitReplicasReady: step('waitReplicasReady', undefined),
    publishRoutes: step('publishRoutes', { url: 'http://gw/v1' }),
    releaseReplicas: step('releaseReplicas', undefined),
    markFailed: step('markFailed', undefined),
    revokeDeploymentKeys: step('revokeDeploymentKeys', undefined),
  };
}

describe('stop, start and delete workflows (fake activities, real Temporal server)', () => {
  let env: WorkflowEnv;
  beforeAll(async () => {
    env = await workflowEnv();
  });
  afterAll(async () => {
    await env.close();
  });

  let seq = 0;
  const newId = (what: string) => `dep-${what}-${Date.now()}-${++seq}`;

  /** Runs one lifecycle workflow; with `scaler`, a real scaler workflow runs for the deployment first. */
  const run = (
    workflow: 'stopWorkflow' | 'startWorkflow' | 'deleteWorkflow',
    id: string,
    activities: Partial<Activities>,
    scaler: { paused?: boolean; current?: number } | null,
    after?: () => Promise<void>,
  ) =>
    runOperation(
      env,
      workflow,
      { deploymentId: id, operationId: 'op1', healthTimeoutSeconds: 5, drainTimeoutMs: 1000 },
      activities,
      scaler && { policy, ...scaler },
      after,
    );
  const scalerStatus = (id: string) => env.client.workflow.getHandle(scalerWorkflowId(id)).query(scalerStatusQuery);

  describe('stop', () => {
    it('should pause the scaler, go STOPPING, stop the replicas and end STOPPED', async () => {
      const log: string[] = [];
      const id = newId('stop');
      const r = await run('stopWorkflow', id, fakes(log), {}, async () => {
        expect(await scalerStatus(id)).toMatchObject({ paused: true });
      });
      expect(r.error).toBeUndefined();
      expect(r.progress).toEqual({ kind: 'STOP', step: 'done' });
      expect(log).toEqual(['beginStop', 'stopReplicas', 'finishStop']);
    });

    it('should stop a deployment that has no scaler', async () => {
      const log: string[] = [];
      const r = await run('stopWorkflow', newId('stop-noscaler'), fakes(log), null);
      expect(r.error).toBeUndefined();
      expect(log).toEqual(['beginStop', 'stopReplicas', 'finishStop']);
    });

    it('should undo newest first when the replicas cannot be stopped: serve again, resume the scaler with what serves, end FAILED', async () => {
      const log: string[] = [];
      const id = newId('stop-fail');
      const r = await run(
        'stopWorkflow',
        id,
        fakes(log, { stopReplicas: new NotFoundError('replica row gone') }),
        { current: 3 },
        async () => {
          // abortStop counted 2 replicas still serving: the scaler resumes from 2.
          await eventually(async () => {
            const s = await scalerStatus(id);
            return !s.paused && s.current === 2;
          }, 5000);
        },
      );
      expect(r.error).toBeInstanceOf(WorkflowFailedError);
      expect(r.error?.cause?.message).toBe('stop failed: replica row gone');
      expect(r.progress).toEqual({ kind: 'STOP', step: 'failed', error: 'replica row gone' });
      expect(log).toEqual(['beginStop', 'stopReplicas', 'abortStop', 'failOperation']);
    });
  });

  describe('start', () => {
    it('should provision, wait healthy, publish routes and resume the paused scaler with the started replicas', async () => {
      const log: string[] = [];
      const id = newId('start');
      const r = await run('startWorkflow', id, fakes(log), { paused: true, current: 3 }, async () => {
        await eventually(async () => {
          const s = await scalerStatus(id);
          return !s.paused && s.current === 1;
        }, 5000);
      });
      expect(r.result).toEqual({ replicas: 1 });
      expect(log).toEqual(['checkPlan', 'startReplicas', 'waitReplicasReady', 'publishRoutes']);
    });

    it('should start a new scaler when the deployment has none', async () => {
      const log: string[] = [];
      const id = newId('start-noscaler');
      const r = await run('startWorkflow', id, fakes(log), null, async () => {
        const s = await scalerStatus(id);
        expect(s).toMatchObject({ paused: false, current: 1 });
      });
      expect(r.result).toEqual({ replicas: 1 });
    });

    it('should release the replicas and end FAILED with the reason when they never turn healthy', async () => {
      const log: string[] = [];
      const r = await run(
        'startWorkflow',
        newId('start-unhealthy'),
        fakes(log, { waitReplicasReady: new ReplicaUnhealthyError('replica r2 exited before it became healthy') }),
        { paused: true },
      );
      expect(r.error).toBeInstanceOf(WorkflowFailedError);
      expect(r.progress).toEqual({ kind: 'START', step: 'failed', error: 'replica r2 exited before it became healthy' });
      expect(log).toEqual(['checkPlan', 'startReplicas', 'waitReplicasReady', 'releaseReplicas', 'markFailed']);
    });

    it('should release the replicas when publishing the routes fails, and leave the scaler paused', async () => {
      const log: string[] = [];
      const id = newId('start-publish');
      const r = await run(
        'startWorkflow',
        id,
        fakes(log, { publishRoutes: new NotFoundError('deployment gone') }),
        { paused: true },
        async () => {
          expect(await scalerStatus(id)).toMatchObject({ paused: true });
        },
      );
      expect(r.error).toBeInstanceOf(WorkflowFailedError);
      expect(log).toEqual(['checkPlan', 'startReplicas', 'waitReplicasReady', 'publishRoutes', 'releaseReplicas', 'markFailed']);
    });

    it('should retry a transient provider failure of the start and then succeed', async () => {
      const log: string[] = [];
      let calls = 0;
      const activities = fakes(log);
      activities.startReplicas = (async () => {
        log.push('startReplicas');
        if (++calls < 2) throw new ProviderError('provider 503');
        return { replicaIds: ['r2'] };
      }) as Activities['startReplicas'];
      const r = await run('startWorkflow', newId('start-retry'), activities, { paused: true });
      expect(r.result).toEqual({ replicas: 1 });
      expect(log.filter((s) => s === 'startReplicas')).toHaveLength(2);
    });
  });

  describe('delete', () => {
    it('should stop, revoke the keys, end the scaler and mark DELETED', async () => {
      const log: string[] = [];
      const id = newId('delete');
      const r = await run('deleteWorkflow', id, fakes(log), {}, async () => {
        const d = await eventually(async () => {
          const x = await env.client.workflow.getHandle(scalerWorkflowId(id)).describe();
          return x.status.name === 'COMPLETED' ? x : null;
        }, 5000);
        expect(d.status.name).toBe('COMPLETED');
      });
      expect(r.error).toBeUndefined();
      expect(log).toEqual(['beginStop', 'stopReplicas', 'finishStop', 'revokeDeploymentKeys', 'markDeleted']);
    });

    it('should skip the stop of a STOPPED deployment', async () => {
      const log: string[] = [];
      const r = await run('deleteWorkflow', newId('delete-stopped'), fakes(log, {}, { alreadyStopped: true }), { paused: true });
      expect(r.error).toBeUndefined();
      expect(log).toEqual(['beginStop', 'revokeDeploymentKeys', 'markDeleted']);
    });

    it('should undo the stop and keep the keys when the replicas cannot be stopped', async () => {
      const log: string[] = [];
      const id = newId('delete-stopfail');
      const r = await run('deleteWorkflow', id, fakes(log, { stopReplicas: new NotFoundError('replica row gone') }), {}, async () => {
        await eventually(async () => !(await scalerStatus(id)).paused, 5000);
      });
      expect(r.error?.cause?.message).toBe('delete failed: replica row gone');
      expect(log).toEqual(['beginStop', 'stopReplicas', 'abortStop', 'failOperation']);
    });

    it('should leave the deployment STOPPED (no undo of the stop) when a step after the stop fails', async () => {
      const log: string[] = [];
      const r = await run('deleteWorkflow', newId('delete-late'), fakes(log, { markDeleted: new NotFoundError('deployment gone') }), {});
      expect(r.error).toBeInstanceOf(WorkflowFailedError);
      expect(r.progress).toMatchObject({ kind: 'DELETE', step: 'failed', error: 'deployment gone' });
      expect(log).toEqual(['beginStop', 'stopReplicas', 'finishStop', 'revokeDeploymentKeys', 'markDeleted', 'failOperation']);
    });
  });
});
