import { ApplicationFailure, getExternalWorkflowHandle, log, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { PERMANENT_FAILURES } from '../src/domain/errors';
import {
  endScalerSignal,
  LifecycleInput,
  LifecycleKind,
  LifecycleProgress,
  lifecycleProgressQuery,
  pauseScalerSignal,
  ResumeScaler,
  resumeScalerSignal,
  scalerWorkflowId,
  SwapInput,
} from './messages';
import { failureMessage, Saga } from './saga';
import { startScaler } from './scaler';

const act = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '200ms', maximumInterval: '5s', maximumAttempts: 5, nonRetryableErrorTypes: [...PERMANENT_FAILURES] },
});

/** The waits (health, drain) heartbeat, so a dead worker is noticed fast; the timeouts bound them. */
function waiting(input: LifecycleInput) {
  return proxyActivities<Activities>({
    startToCloseTimeout: `${input.healthTimeoutSeconds + Math.ceil(input.drainTimeoutMs / 1000) + 60} seconds`,
    heartbeatTimeout: '15 seconds',
    retry: { initialInterval: '1s', maximumAttempts: 3, nonRetryableErrorTypes: [...PERMANENT_FAILURES] },
  });
}

/** Signals the deployment's scaler; false when it is not running (a deployment without one is fine). */
async function signalScaler(deploymentId: string, resume: ResumeScaler | null): Promise<boolean> {
  const h = getExternalWorkflowHandle(scalerWorkflowId(deploymentId));
  try {
    if (resume) await h.signal(resumeScalerSignal, resume);
    else await h.signal(pauseScalerSignal);
    return true;
  } catch (err) {
    log.info('scaler not signalled', { deploymentId, error: failureMessage(err) });
    return false;
  }
}

/**
 * The stop steps, shared by stop and delete: pause the scaler, STOPPING (the gateways refuse new
 * requests at once), drain and stop every replica. Each pushes its undo on the saga; the caller
 * marks STOPPED. False when the deployment was already STOPPED (nothing was done).
 */
async function stopSteps(input: LifecycleInput, saga: Saga, progress: LifecycleProgress): Promise<boolean> {
  const { deploymentId } = input;
  progress.step = 'pausing-scaler';
  // Undone with the replicas that still serve as its count (abortStop, the newer undo, runs first and counts them).
  let live = 0;
  const paused = await signalScaler(deploymentId, null);
  if (paused) saga.add('resume scaler', () => signalScaler(deploymentId, { current: live }));

  progress.step = 'stopping';
  saga.add('serve again', async () => {
    ({ live } = await act.abortStop({ deploymentId, reason: progress.error ?? 'stop failed' }));
  });
  const { alreadyStopped } = await act.beginStop({ deploymentId });
  if (alreadyStopped) return false;

  progress.step = 'draining';
  await waiting(input).stopReplicas({ deploymentId, drainTimeoutMs: input.drainTimeoutMs });
  return true;
}

/** Runs `body` as a saga: on failure the undos run newest first, then `fail` ends the operation FAILED. */
async function asSaga<T>(
  kind: LifecycleKind,
  body: (saga: Saga, progress: LifecycleProgress) => Promise<T>,
  fail: (reason: string) => Promise<unknown>,
): Promise<T> {
  const progress: LifecycleProgress = { kind, step: kind === 'START' ? 'provisioning' : 'pausing-scaler' };
  setHandler(lifecycleProgressQuery, () => progress);
  const saga = new Saga();
  try {
    const out = await body(saga, progress);
    progress.step = 'done';
    return out;
  } catch (err) {
    const reason = failureMessage(err);
    progress.step = 'compensating';
    progress.error = reason;
    await saga.compensate();
    await fail(reason);
    progress.step = 'failed';
    // STOP -> 'stop failed: ...', StopFailed; CHANGE_GPU -> 'change gpu failed: ...', ChangeGpuFailed.
    const words = kind.toLowerCase().split('_');
    throw ApplicationFailure.nonRetryable(
      `${words.join(' ')} failed: ${reason}`,
      `${words.map((w) => w[0].toUpperCase() + w.slice(1)).join('')}Failed`,
    );
  }
}

/**
 * op:<deploymentId>:<opId> (STOP) — pause the scaler, STOPPING (new requests get 503 at once), drain
 * what is in flight (up to the drain timeout), stop every replica, STOPPED. Nothing is billed while
 * stopped. On failure: the replicas still draining serve again, ACTIVE, the scaler resumes.
 */
export async function stopWorkflow(input: LifecycleInput): Promise<void> {
  const { deploymentId, operationId } = input;
  await asSaga(
    'STOP',
    async (saga, progress) => {
      await stopSteps(input, saga, progress);
      await act.finishStop({ deploymentId, operationId, endOp: true });
    },
    (reason) => act.failOperation({ deploymentId, operationId, reason }),
  );
}

/**
 * op:<deploymentId>:<opId> (START) — provision max(1, minReplicas) replicas (a warm start from cached
 * weights), wait healthy, publish routes and mark ACTIVE in one transaction, resume the scaler with
 * the started replicas as its count (or start a new scaler when it is gone). On failure: the replicas
 * are released and the deployment ends FAILED with the reason.
 */
export async function startWorkflow(input: LifecycleInput): Promise<{ replicas: number }> {
  const { deploymentId, operationId } = input;
  return asSaga(
    'START',
    async (saga, progress) => {
      const plan = await act.checkPlan({ deploymentId });

      progress.step = 'provisioning';
      saga.add('release replicas', () => act.releaseReplicas({ deploymentId, reason: 'start failed' }));
      const { replicaIds } = await act.startReplicas({ deploymentId, count: plan.initialReplicas });

      progress.step = 'waiting-healthy';
      await waiting(input).waitReplicasReady({ deploymentId, timeoutSeconds: input.healthTimeoutSeconds });

      progress.step = 'publishing-routes';
      await act.publishRoutes({ deploymentId, operationId });

      progress.step = 'resuming-scaler';
      const current = replicaIds.length;
      if (!(await signalScaler(deploymentId, { current })) && plan.policy) {
        await startScaler({
          deploymentId,
          policy: plan.policy,
          initialReplicas: current,
          planMaxReplicas: plan.planMaxReplicas,
          drainTimeoutMs: input.drainTimeoutMs,
        });
      }
      return { replicas: current };
    },
    (reason) => act.markFailed({ deploymentId, operationId, reason }),
  );
}

/**
 * op:<deploymentId>:<opId> (DELETE) — stop as stopWorkflow does unless already STOPPED, revoke the
 * deployment's keys, end its scaler, DELETED. Rows stay for the usage history. A failure during the
 * stop is undone as a stop's; once STOPPED, a later failure leaves the deployment STOPPED.
 */
export async function deleteWorkflow(input: LifecycleInput): Promise<void> {
  const { deploymentId, operationId } = input;
  await asSaga(
    'DELETE',
    async (saga, progress) => {
      if (await stopSteps(input, saga, progress)) await act.finishStop({ deploymentId, operationId, endOp: false });
      // STOPPED now: nothing later is undone (a revoked key stays revoked).
      saga.commit();
      progress.step = 'revoking-keys';
      await act.revokeDeploymentKeys({ deploymentId });

      progress.step = 'ending-scaler';
      await getExternalWorkflowHandle(scalerWorkflowId(deploymentId))
        .signal(endScalerSignal)
        .catch((err: unknown) => log.info('scaler not ended (not running)', { deploymentId, error: failureMessage(err) }));

      await act.markDeleted({ deploymentId, operationId });
    },
    (reason) => act.failOperation({ deploymentId, operationId, reason }),
  );
}

/**
 * op:<deploymentId>:<opId> (CHANGE_GPU, ROLLBACK) — blue/green onto the staged revision: pause the
 * scaler, bring the new replicas up beside the serving ones (as many as serve now, at least one), wait
 * healthy, switch the routes in one transaction, drain the old replicas and stop them, resume the scaler
 * with the new replicas as its count. Before the switch, a failure releases the new replicas and the old
 * revision never stopped serving; from the switch on, the new revision serves and the rest only finishes.
 */
export async function swapWorkflow(input: SwapInput): Promise<{ replicas: number }> {
  const { deploymentId, operationId, revisionId } = input;
  return asSaga(
    input.kind,
    async (saga, progress) => {
      const paused = await signalScaler(deploymentId, null);
      // Nothing moved while paused: a plain resume keeps the scaler's own count.
      if (paused) saga.add('resume scaler', () => signalScaler(deploymentId, {}));

      progress.step = 'provisioning';
      saga.add('release the staged replicas', () =>
        act.abortRevision({ deploymentId, revisionId, reason: progress.error ?? 'swap failed' }),
      );
      const { count } = await act.stageRevision({ deploymentId, revisionId });

      progress.step = 'waiting-healthy';
      await waiting(input).waitRevisionReady({ deploymentId, revisionId, timeoutSeconds: input.healthTimeoutSeconds });

      progress.step = 'switching';
      const switched = await act.switchRevision({ deploymentId, revisionId });
      // The new revision serves from here on: nothing before is undone, but the scaler must run again whatever follows.
      saga.commit();
      const resume: ResumeScaler = {
        current: count,
        ...(switched.targetConcurrency !== null ? { targetConcurrency: switched.targetConcurrency } : {}),
      };
      if (paused) saga.add('resume scaler', () => signalScaler(deploymentId, resume));

      progress.step = 'draining';
      if (switched.previousRevisionId) {
        await waiting(input).retireRevision({
          deploymentId,
          revisionId: switched.previousRevisionId,
          drainTimeoutMs: input.drainTimeoutMs,
        });
      }

      progress.step = 'resuming-scaler';
      if (paused) await signalScaler(deploymentId, resume);
      await act.finishSwap({ deploymentId, operationId, revisionId });
      return { replicas: count };
    },
    (reason) => act.failOperation({ deploymentId, operationId, reason }),
  );
}
