import {
  allHandlersFinished, CancellationScope, condition, continueAsNew, isCancellation, patched, proxyActivities, setHandler, sleep, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { decide, initialScalerState, LoadReport, nextDecisionAt, policyProblems } from '../src/domain/scaling';
import {
  loadReportSignal, pauseScalerSignal, resumeScalerSignal, ScalerInput, scalerStatusQuery, setPolicyUpdate,
} from './messages';

const DECISIONS_KEPT = 20;

/**
 * scaler:<deploymentId> — one per deployment, for its whole life. Gateways
 * signal load reports; the loop runs decide() on each report, and once more
 * when a scale-down window or idle timeout ends (one durable timer, kept
 * while its deadline stands: an idle deployment writes no history), and
 * applies a changed count through one activity. Lifecycle operations pause
 * and resume it.
 */
export async function scalerWorkflow(input: ScalerInput): Promise<void> {
  let policy = input.policy;
  let state = input.state ?? initialScalerState(input.initialReplicas, Date.now());
  const decisions = input.decisions ?? [];
  let paused = input.paused ?? false;
  let noData = true;
  let desired = state.current;
  // Coalesced: only the newest report of each gateway waits for the loop.
  let pending: Record<string, LoadReport> = {};
  let wake = false;
  // Histories from before the deadline timer replay with the fixed tick.
  const deadlineTimer = patched('scaler-deadline-timer');
  let timerAt: number | null = null;
  let timerScope: CancellationScope | null = null;
  let timerFired = false;
  /** One timer for the next moment decide() could change its mind; kept while that moment stands. */
  const arm = (at: number | null) => {
    if (at === timerAt) return;
    timerScope?.cancel();
    timerScope = null;
    timerAt = at;
    if (at === null) return;
    const scope = new CancellationScope();
    timerScope = scope;
    scope.run(() => sleep(Math.max(1, at - Date.now()))).then(
      () => {
        if (timerScope !== scope) return;
        timerFired = true;
        timerScope = null;
        timerAt = null;
      },
      (err) => {
        if (!isCancellation(err)) throw err;
      },
    );
  };

  const act = proxyActivities<Activities>({
    // Scale-ups wait for healthy replicas and scale-downs for drains: both heartbeat.
    startToCloseTimeout: `${Math.ceil(input.drainTimeoutMs / 1000) + 600} seconds`,
    heartbeatTimeout: '30 seconds',
    retry: { maximumInterval: '10s', nonRetryableErrorTypes: ['NotFoundError', 'PlanError'] },
  });

  setHandler(loadReportSignal, (r) => {
    // Stamped on receipt: a gateway's clock skew cannot expire its reports early or keep them alive.
    if (deadlineTimer) pending[r.gatewayId] = { ...r, at: Date.now() };
    else {
      const prev = pending[r.gatewayId];
      if (!prev || r.at >= prev.at) pending[r.gatewayId] = r;
    }
    wake = true;
  });
  setHandler(pauseScalerSignal, () => {
    paused = true;
  });
  setHandler(resumeScalerSignal, () => {
    paused = false;
    wake = true;
  });
  setHandler(
    setPolicyUpdate,
    (patch) => {
      policy = { ...policy, ...patch };
      wake = true;
      return policy;
    },
    {
      validator: (patch) => {
        const problems = policyProblems({ ...policy, ...patch }, input.planMaxReplicas);
        if (problems.length) throw new Error(problems.join('; '));
      },
    },
  );
  setHandler(scalerStatusQuery, () => ({ desired, current: state.current, paused, noData, policy, decisions: [...decisions] }));

  for (let turn = 1; ; turn++) {
    if (deadlineTimer) await condition(() => wake || timerFired);
    else await condition(() => wake, input.tickMs ?? 1000);
    wake = false;
    timerFired = false;
    if (!paused) {
      const reports = Object.values(pending);
      pending = {};
      const d = decide(policy, state, { now: Date.now(), reports });
      noData = d.noData;
      desired = d.desired;
      if (d.desired !== state.current) {
        const decidedAt = Date.now();
        await act.applyReplicaCount({ deploymentId: input.deploymentId, desired: d.desired, reason: d.reason, drainTimeoutMs: input.drainTimeoutMs });
        decisions.push({ at: decidedAt, from: state.current, to: d.desired, reason: d.reason });
        decisions.splice(0, Math.max(0, decisions.length - DECISIONS_KEPT));
      }
      state = d.nextState;
    }
    if (deadlineTimer) arm(paused ? null : nextDecisionAt(policy, state, Date.now()));
    if (workflowInfo().continueAsNewSuggested || (input.forceContinueAsNewAfterTurns !== undefined && turn >= input.forceContinueAsNewAfterTurns)) {
      await condition(allHandlersFinished);
      // Reports that arrived while handlers finished are carried in the state.
      const carried = { ...state, reports: { ...state.reports, ...pending } };
      await continueAsNew<typeof scalerWorkflow>({ ...input, policy, state: carried, decisions, paused, forceContinueAsNewAfterTurns: undefined });
    }
  }
}
