import { ApplicationFailure, patched, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { PERMANENT_FAILURES } from '../src/domain/errors';
import { DeployInput, DeployProgress, deployProgressQuery } from './messages';
import { failureMessage, Saga } from './saga';
import { startScaler } from './scaler';

/** DeployInput.drainTimeoutMs is absent in histories recorded before the scaler: the config default then. */
const REPLAY_DRAIN_TIMEOUT_MS = 300_000;

// Short activities: database writes and provider calls.
const act = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '200ms', maximumInterval: '5s', maximumAttempts: 5, nonRetryableErrorTypes: [...PERMANENT_FAILURES] },
});

/**
 * deploy:<deploymentId> — check plan, provision, wait healthy, issue the key,
 * publish routes, mark ACTIVE. A saga: each step pushes its undo right after it
 * succeeds; on failure the undos run newest first and the deployment ends FAILED
 * with the reason.
 */
export async function deployWorkflow(input: DeployInput): Promise<{ url: string }> {
  const { deploymentId, operationId } = input;
  const progress: DeployProgress = { step: 'checking-plan' };
  setHandler(deployProgressQuery, () => progress);

  // The health wait polls for minutes; it heartbeats so a dead worker is noticed fast.
  const waitAct = proxyActivities<Activities>({
    startToCloseTimeout: `${input.healthTimeoutSeconds + 30} seconds`,
    heartbeatTimeout: '15 seconds',
    retry: { initialInterval: '1s', maximumAttempts: 3, nonRetryableErrorTypes: [...PERMANENT_FAILURES] },
  });

  const saga = new Saga();
  try {
    const plan = await act.checkPlan({ deploymentId });

    progress.step = 'provisioning';
    saga.add('release replicas', () => act.releaseReplicas({ deploymentId, reason: 'deploy failed' }));
    await act.provisionReplicas({ deploymentId, count: plan.initialReplicas });

    progress.step = 'waiting-healthy';
    await waitAct.waitReplicasReady({ deploymentId, timeoutSeconds: input.healthTimeoutSeconds });

    progress.step = 'issuing-key';
    saga.add('revoke key', () => act.revokeDeploymentKeys({ deploymentId }));
    await act.issueDeploymentKeys({ deploymentId });

    progress.step = 'publishing-routes';
    const { url } = await act.publishRoutes({ deploymentId, operationId });
    progress.step = 'active';

    // The scaler outlives this workflow: one per deployment, for its whole life.
    // patched(): deploys recorded before the scaler existed replay unchanged.
    if (patched('start-scaler') && plan.policy) {
      await startScaler({
        deploymentId,
        policy: plan.policy,
        initialReplicas: plan.initialReplicas,
        planMaxReplicas: plan.planMaxReplicas,
        drainTimeoutMs: input.drainTimeoutMs ?? REPLAY_DRAIN_TIMEOUT_MS,
      });
    }
    return { url };
  } catch (err) {
    const reason = failureMessage(err);
    progress.step = 'compensating';
    progress.error = reason;
    await saga.compensate();
    await act.markFailed({ deploymentId, operationId, reason });
    progress.step = 'failed';
    throw ApplicationFailure.nonRetryable(`deploy failed: ${reason}`, 'DeployFailed');
  }
}
