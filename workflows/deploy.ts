import { ApplicationFailure, log, ParentClosePolicy, patched, proxyActivities, setHandler, startChild, WorkflowIdReusePolicy } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { DeployInput, DeployProgress, deployProgressQuery, scalerWorkflowId } from './messages';
import { scalerWorkflow } from './scaler';

// Short activities: database writes and provider calls.
const act = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '200ms', maximumInterval: '5s', maximumAttempts: 5, nonRetryableErrorTypes: ['PlanError', 'ProviderPermanentError', 'NotFoundError'] },
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
    retry: { initialInterval: '1s', maximumAttempts: 3, nonRetryableErrorTypes: ['ReplicaUnhealthyError'] },
  });

  const compensations: Array<{ name: string; run: () => Promise<void> }> = [];
  try {
    const plan = await act.checkPlan({ deploymentId });

    progress.step = 'provisioning';
    compensations.push({ name: 'release replicas', run: () => act.releaseReplicas({ deploymentId, reason: 'deploy failed' }) });
    await act.provisionReplicas({ deploymentId, count: plan.initialReplicas });

    progress.step = 'waiting-healthy';
    await waitAct.waitReplicasReady({ deploymentId, timeoutSeconds: input.healthTimeoutSeconds });

    progress.step = 'issuing-key';
    compensations.push({ name: 'revoke key', run: () => act.revokeDeploymentKeys({ deploymentId }) });
    await act.issueDeploymentKeys({ deploymentId });

    progress.step = 'publishing-routes';
    const { url } = await act.publishRoutes({ deploymentId, operationId });
    progress.step = 'active';

    // The scaler outlives this workflow: one per deployment, for its whole life.
    // patched(): deploys recorded before the scaler existed replay unchanged.
    if (patched('start-scaler') && plan.policy) {
      await startChild(scalerWorkflow, {
        workflowId: scalerWorkflowId(deploymentId),
        parentClosePolicy: ParentClosePolicy.ABANDON,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        args: [{
          deploymentId,
          policy: plan.policy,
          initialReplicas: plan.initialReplicas,
          planMaxReplicas: plan.planMaxReplicas,
          drainTimeoutMs: input.drainTimeoutMs ?? 300_000,
        }],
      });
    }
    return { url };
  } catch (err) {
    const reason = describe(err);
    progress.step = 'compensating';
    progress.error = reason;
    for (const c of compensations.reverse()) {
      try {
        await c.run();
      } catch (compErr) {
        log.error('compensation failed', { step: c.name, error: describe(compErr) });
      }
    }
    await act.markFailed({ deploymentId, operationId, reason });
    progress.step = 'failed';
    throw ApplicationFailure.nonRetryable(`deploy failed: ${reason}`, 'DeployFailed');
  }
}

/** The innermost message of a Temporal failure chain (ActivityFailure -> ApplicationFailure). */
function describe(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e?.cause) e = e.cause as typeof e;
  return e?.message ?? String(err);
}
