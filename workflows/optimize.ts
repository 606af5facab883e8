import {
  ApplicationFailure,
  CancellationScope,
  executeChild,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunSettings } from '../src/domain/optimization';
import { PERMANENT_FAILURES } from '../src/domain/errors';
import {
  DriftCheckInput,
  OptimizeInput,
  OptimizeProgress,
  optimizeProgressQuery,
  optimizeWorkflowId,
  opWorkflowId,
  ScheduledOptimizeInput,
} from './messages';
import { failureMessage } from './saga';
import { swapWorkflow } from './lifecycle';

const retry = { initialInterval: '500ms', maximumInterval: '10s', maximumAttempts: 5, nonRetryableErrorTypes: [...PERMANENT_FAILURES] };
const act = proxyActivities<Activities>({ startToCloseTimeout: '1 minute', retry });

/** The waits and the sweep heartbeat (about once a second), so a dead worker is noticed in a minute, not at the timeout. */
function long(settings: Pick<RunSettings, 'healthTimeoutSeconds'>) {
  return proxyActivities<Activities>({
    startToCloseTimeout: `${settings.healthTimeoutSeconds + 60} seconds`,
    heartbeatTimeout: '1 minute',
    retry: { ...retry, maximumAttempts: 3 },
  });
}
const sweeping = proxyActivities<Activities>({
  startToCloseTimeout: '4 hours',
  heartbeatTimeout: '1 minute',
  retry: { ...retry, maximumAttempts: 3 },
});

/**
 * optimize:<pipelineId>:<runId> — build the candidates, and for each one start a replica on the run's target, wait
 * healthy, sweep concurrency and run the quality eval, and stop the replica whatever happened (a candidate that
 * fails is marked FAILED with the reason and the run goes on). Then rank, select the winner, and with redeploy
 * IF_BETTER move the pipeline's ACTIVE deployments onto it through the rollback swap (a child op:<dep>:<op>).
 */
export async function optimizeWorkflow(input: OptimizeInput): Promise<{ winnerVariantId: string | null; redeployed: number }> {
  const { runId } = input;
  const progress: OptimizeProgress = { step: 'planning', done: 0, of: 0 };
  setHandler(optimizeProgressQuery, () => progress);
  try {
    const { candidates, settings } = await act.planRun({ runId });
    const waits = long(settings);
    progress.step = 'measuring';
    progress.of = candidates.length;
    for (const c of candidates) {
      progress.candidate = c.name;
      try {
        await act.startCandidate({ runId, variantId: c.variantId });
        await waits.waitCandidateReady({ runId, variantId: c.variantId });
        await sweeping.measureCandidate({ runId, variantId: c.variantId });
      } catch (err) {
        if (isCancellation(err)) throw err;
        await act.failCandidate({ runId, variantId: c.variantId, reason: failureMessage(err) });
      } finally {
        await CancellationScope.nonCancellable(() => act.stopCandidate({ runId, variantId: c.variantId }));
      }
      progress.done++;
    }
    delete progress.candidate;
    await act.releaseRun({ runId });

    progress.step = 'ranking';
    const { winnerVariantId, redeploy, reason } = await act.finishRun({ runId });
    if (!winnerVariantId) throw ApplicationFailure.nonRetryable(reason ?? 'no winner', 'NoWinner');

    progress.step = 'redeploying';
    const redeployments: Array<{ deploymentId: string; outcome: string }> = [];
    for (const deploymentId of redeploy) {
      const { input: swap, skipped } = await act.claimRedeploy({ runId, deploymentId });
      if (!swap) {
        redeployments.push({ deploymentId, outcome: `skipped: ${skipped}` });
        continue;
      }
      try {
        await executeChild(swapWorkflow, {
          workflowId: opWorkflowId(deploymentId, swap.operationId),
          args: [swap],
          // A swap half done must finish (or undo itself) even if this run is terminated.
          parentClosePolicy: ParentClosePolicy.ABANDON,
        });
        redeployments.push({ deploymentId, outcome: `moved by ${opWorkflowId(deploymentId, swap.operationId)}` });
      } catch (err) {
        if (isCancellation(err)) throw err;
        redeployments.push({ deploymentId, outcome: `failed: ${failureMessage(err)}` });
      }
    }
    await act.endRun({ runId, error: null, redeployments });
    progress.step = 'done';
    return { winnerVariantId, redeployed: redeployments.filter((r) => r.outcome.startsWith('moved')).length };
  } catch (err) {
    const reason = failureMessage(err);
    progress.step = 'failed';
    progress.error = reason;
    await CancellationScope.nonCancellable(async () => {
      await act.releaseRun({ runId }).catch(() => undefined);
      await act.endRun({ runId, error: isCancellation(err) ? 'cancelled' : reason });
    });
    if (isCancellation(err)) throw err;
    throw ApplicationFailure.nonRetryable(`optimization run failed: ${reason}`, 'OptimizationRunFailed');
  }
}

/**
 * The action of a pipeline's Schedule reoptimize:<pipelineId> (and of a drift): make a run from the schedule as it
 * stands, then run it as the child optimize:<pipelineId>:<runId>. Waiting for the child makes the Schedule's
 * overlap policy (skip) apply to whole runs.
 */
export async function scheduledOptimizeWorkflow(input: ScheduledOptimizeInput): Promise<{ runId: string | null; skipped: string | null }> {
  const { runId, skipped } = await act.createScheduledRun({
    pipelineId: input.pipelineId,
    trigger: input.trigger,
    settings: input.settings as unknown as RunSettings,
  });
  if (!runId) return { runId: null, skipped };
  await executeChild(optimizeWorkflow, {
    workflowId: optimizeWorkflowId(input.pipelineId, runId),
    args: [{ runId, pipelineId: input.pipelineId }],
  }).catch(() => undefined); // the run records its own failure
  return { runId, skipped: null };
}

/** The Schedule infercp-traffic-drift-check: compare live traffic with what the runs measured; run early where a schedule asks. */
export async function driftCheckWorkflow(input: DriftCheckInput): Promise<{ drifted: string[]; started: string[] }> {
  const { drifted, runEarly } = await act.checkTrafficDrift({ windowSeconds: input.windowSeconds });
  const started: string[] = [];
  for (const { pipelineId, settings } of runEarly) {
    const workflowId = `reoptimize:${pipelineId}:drift-${workflowInfo().runId.slice(0, 8)}`;
    await startChild(scheduledOptimizeWorkflow, {
      workflowId,
      args: [{ pipelineId, trigger: 'DRIFT', settings }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
    started.push(workflowId);
  }
  return { drifted, started };
}
