import { WorkflowFailedError } from '@temporalio/client';
import type { Activities } from '../../activities';
import { NotFoundError, PlanError, ProviderError, ReplicaUnhealthyError } from '../../src/domain/errors';
import { deployProgressQuery, deployWorkflowId, scalerWorkflowId } from '../../workflows/messages';
import { recorder, testPolicy, workflowEnv, WorkflowEnv } from '../support/workflows';

const policy = testPolicy({ maxReplicas: 2 });

/** Fake activities that log each call; `fail` names the activity that throws, with which failure type. */
function fakes(
  log: string[],
  fail: Partial<Record<keyof Activities, Error>> = {},
  failCompensation?: keyof Activities,
): Partial<Activities> {
  const step = recorder(log, failCompensation ? { [failCompensation]: new ProviderError(`${failCompensation} failed`), ...fail } : fail);
  return {
    checkPlan: step('checkPlan', { initialReplicas: 1, planMaxReplicas: 8, policy }),
    provisionReplicas: step('provisionReplicas', { replicaIds: ['r0'] }),
    waitReplicasReady: step('waitReplicasReady', undefined),
    issueDeploymentKeys: step('issueDeploymentKeys', undefined),
    publishRoutes: step('publishRoutes', { url: 'http://gw/v1' }),
    releaseReplicas: step('releaseReplicas', undefined),
    revokeDeploymentKeys: step('revokeDeploymentKeys', undefined),
    markFailed: step('markFailed', undefined),
    applyReplicaCount: step('applyReplicaCount', undefined),
  };
}

describe('deploy workflow (fake activities, real Temporal server)', () => {
  let env: WorkflowEnv;
  beforeAll(async () => {
    env = await workflowEnv();
  });
  afterAll(async () => {
    await env.close();
  });

  const run = (id: string, activities: Partial<Activities>) =>
    env.withWorker(activities, async (taskQueue) => {
      const handle = await env.client.workflow.start('deployWorkflow', {
        taskQueue,
        workflowId: deployWorkflowId(id),
        args: [{ deploymentId: id, operationId: `op-${id}`, healthTimeoutSeconds: 5, drainTimeoutMs: 1000 }],
      });
      try {
        return { result: await handle.result(), progress: await handle.query(deployProgressQuery) };
      } catch (err) {
        return { error: err as WorkflowFailedError, progress: await handle.query(deployProgressQuery) };
      } finally {
        await env.client.workflow
          .getHandle(scalerWorkflowId(id))
          .terminate('test over')
          .catch(() => {});
      }
    });

  it('should run the steps in order and start the scaler when every step succeeds', async () => {
    const log: string[] = [];
    const id = `dep-ok-${Date.now()}`;
    const r = await run(id, fakes(log));
    expect(r.result).toEqual({ url: 'http://gw/v1' });
    expect(r.progress.step).toBe('active');
    expect(log).toEqual(['checkPlan', 'provisionReplicas', 'waitReplicasReady', 'issueDeploymentKeys', 'publishRoutes']);
  });

  it('should release the replicas and end FAILED when the replicas never turn healthy', async () => {
    const log: string[] = [];
    const r = await run(
      `dep-unhealthy-${Date.now()}`,
      fakes(log, { waitReplicasReady: new ReplicaUnhealthyError('replica r0 exited before it became healthy') }),
    );
    expect(r.error).toBeInstanceOf(WorkflowFailedError);
    expect(r.progress).toEqual({ step: 'failed', error: 'replica r0 exited before it became healthy' });
    // A permanent failure is not retried: one attempt, then the undo.
    expect(log).toEqual(['checkPlan', 'provisionReplicas', 'waitReplicasReady', 'releaseReplicas', 'markFailed']);
  });

  it('should undo newest first: the key before the replicas, when publishing the routes fails', async () => {
    const log: string[] = [];
    const r = await run(`dep-publish-${Date.now()}`, fakes(log, { publishRoutes: new NotFoundError('deployment gone') }));
    expect(r.error).toBeInstanceOf(WorkflowFailedError);
    expect(log).toEqual([
      'checkPlan',
      'provisionReplicas',
      'waitReplicasReady',
      'issueDeploymentKeys',
      'publishRoutes',
      'revokeDeploymentKeys',
      'releaseReplicas',
      'markFailed',
    ]);
  });

  it('should still run the older undos and mark the deployment FAILED when one undo fails', async () => {
    const log: string[] = [];
    const r = await run(`dep-comp-${Date.now()}`, fakes(log, { publishRoutes: new PlanError('plan changed') }, 'revokeDeploymentKeys'));
    expect(r.error).toBeInstanceOf(WorkflowFailedError);
    // The failed undo was retried (it is not permanent), then given up; the release and the FAILED mark still ran.
    expect(log.filter((s) => s === 'revokeDeploymentKeys').length).toBe(5);
    expect(log.slice(-2)).toEqual(['releaseReplicas', 'markFailed']);
  });

  it('should not provision anything when the plan check refuses', async () => {
    const log: string[] = [];
    const r = await run(`dep-plan-${Date.now()}`, fakes(log, { checkPlan: new PlanError('ACTIVE mode needs the Team plan or higher') }));
    expect(r.progress.error).toBe('ACTIVE mode needs the Team plan or higher');
    expect(log).toEqual(['checkPlan', 'markFailed']);
  });

  it('should retry a transient provider failure and then succeed', async () => {
    const log: string[] = [];
    let calls = 0;
    const activities = fakes(log);
    activities.provisionReplicas = (async () => {
      log.push('provisionReplicas');
      if (++calls < 3) throw new ProviderError('provider 503');
      return { replicaIds: ['r0'] };
    }) as Activities['provisionReplicas'];
    const r = await run(`dep-retry-${Date.now()}`, activities);
    expect(r.result).toEqual({ url: 'http://gw/v1' });
    expect(log.filter((s) => s === 'provisionReplicas')).toHaveLength(3);
  });
});
