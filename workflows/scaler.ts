import {
  allHandlersFinished, CancellationScope, condition, continueAsNew, isCancellation, patched, proxyActivities, setHandler, sleep, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { PERMANENT_FAILURES } from '../src/domain/errors';
import { decide, Decision, initialScalerState, LoadReport, nextDecisionAt, policyProblems, problemAsAssignment, ScalerState, ScalingPolicy } from '../src/domain/scaling';
import {
  loadReportSignal, pauseScalerSignal, PolicyPatch, resumeScalerSignal, ScalerInput, ScalerStatus, scalerStatusQuery, ScalingDecisionRecord,
  setPolicyUpdate,
} from './messages';
import { failureMessage } from './saga';

const DECISIONS_KEPT = 20;

/**
 * Everything a scaler knows, as one plain object: the handlers and the loop
 * change it only through these methods, and snapshot() is exactly what
 * continue-as-new carries to the next run.
 */
export class ScalerRun {
  policy: ScalingPolicy;
  state: ScalerState;
  readonly decisions: ScalingDecisionRecord[];
  paused: boolean;
  noData = true;
  desired: number;
  /** Set by anything that should make the loop decide again. */
  wake = false;
  /** Coalesced: only the newest report of each gateway waits for the loop. */
  private pending: Record<string, LoadReport> = {};

  constructor(private readonly input: ScalerInput, now: number) {
    this.policy = input.policy;
    this.state = input.state ?? initialScalerState(input.initialReplicas, now);
    this.decisions = input.decisions ?? [];
    this.paused = input.paused ?? false;
    this.desired = this.state.current;
  }

  /** A gateway's report; `receivedAt` (when given) replaces the gateway's clock. */
  report(r: LoadReport, receivedAt: number | null): void {
    if (receivedAt !== null) this.pending[r.gatewayId] = { ...r, at: receivedAt };
    else {
      const prev = this.pending[r.gatewayId];
      if (!prev || r.at >= prev.at) this.pending[r.gatewayId] = r;
    }
    this.wake = true;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.wake = true;
  }

  /** The problems the patch would cause, each naming the knob; empty when it is acceptable. */
  policyProblems(patch: PolicyPatch): string[] {
    return policyProblems({ ...this.policy, ...patch }, this.input.planMaxReplicas).map(problemAsAssignment);
  }

  setPolicy(patch: PolicyPatch): ScalingPolicy {
    this.policy = { ...this.policy, ...patch };
    this.wake = true;
    return this.policy;
  }

  /** Runs the decision over the reports that arrived since the last one. */
  decide(now: number): Decision {
    const reports = Object.values(this.pending);
    this.pending = {};
    const d = decide(this.policy, this.state, { now, reports });
    this.noData = d.noData;
    this.desired = d.desired;
    return d;
  }

  record(decision: ScalingDecisionRecord): void {
    this.decisions.push(decision);
    this.decisions.splice(0, Math.max(0, this.decisions.length - DECISIONS_KEPT));
  }

  status(): ScalerStatus {
    return { desired: this.desired, current: this.state.current, paused: this.paused, noData: this.noData, policy: this.policy, decisions: [...this.decisions] };
  }

  /** The next run's input: reports that arrived while handlers finished are carried in the state. */
  snapshot(): ScalerInput {
    const state = { ...this.state, reports: { ...this.state.reports, ...this.pending } };
    return { ...this.input, policy: this.policy, state, decisions: this.decisions, paused: this.paused, forceContinueAsNewAfterTurns: undefined };
  }
}

/** One durable timer for the next moment decide() could change its mind; kept while that moment stands. */
class DeadlineTimer {
  private at: number | null = null;
  private scope: CancellationScope | null = null;
  fired = false;

  arm(at: number | null): void {
    if (at === this.at) return;
    this.scope?.cancel();
    this.scope = null;
    this.at = at;
    if (at === null) return;
    const scope = new CancellationScope();
    this.scope = scope;
    scope.run(() => sleep(Math.max(1, at - Date.now()))).then(
      () => {
        if (this.scope !== scope) return;
        this.fired = true;
        this.scope = null;
        this.at = null;
      },
      (err) => {
        if (!isCancellation(err)) throw err;
      },
    );
  }
}

/**
 * scaler:<deploymentId> — one per deployment, for its whole life. Gateways
 * signal load reports; the loop runs decide() on each report, and once more
 * when a scale-down window or idle timeout ends (one durable timer, kept
 * while its deadline stands: an idle deployment writes no history), and
 * applies a changed count through one activity. Lifecycle operations pause
 * and resume it.
 */
export async function scalerWorkflow(input: ScalerInput): Promise<void> {
  const run = new ScalerRun(input, Date.now());
  // Histories from before the deadline timer replay with the fixed tick
  // (patch 'scaler-deadline-timer'; deprecate it once no pre-patch scaler runs, and drop scaler-running-v1.pb).
  const deadlineTimer = patched('scaler-deadline-timer');
  const timer = new DeadlineTimer();

  const act = proxyActivities<Activities>({
    // Scale-ups wait for healthy replicas and scale-downs for drains: both heartbeat.
    startToCloseTimeout: `${Math.ceil(input.drainTimeoutMs / 1000) + 600} seconds`,
    heartbeatTimeout: '30 seconds',
    retry: { maximumInterval: '10s', maximumAttempts: 5, nonRetryableErrorTypes: [...PERMANENT_FAILURES] },
  });

  // Stamped on receipt: a gateway's clock skew cannot expire its reports early or keep them alive.
  setHandler(loadReportSignal, (r) => run.report(r, deadlineTimer ? Date.now() : null));
  setHandler(pauseScalerSignal, () => run.pause());
  setHandler(resumeScalerSignal, () => run.resume());
  setHandler(setPolicyUpdate, (patch) => run.setPolicy(patch), {
    validator: (patch) => {
      const problems = run.policyProblems(patch);
      if (problems.length) throw new Error(problems.join('; '));
    },
  });
  setHandler(scalerStatusQuery, () => run.status());

  for (let turn = 1; ; turn++) {
    if (deadlineTimer) await condition(() => run.wake || timer.fired);
    else await condition(() => run.wake, input.tickMs ?? 1000);
    run.wake = false;
    timer.fired = false;
    if (!run.paused) {
      const d = run.decide(Date.now());
      const from = run.state.current;
      let next = d.nextState;
      if (d.desired !== from) {
        const decidedAt = Date.now();
        try {
          await act.applyReplicaCount({ deploymentId: input.deploymentId, desired: d.desired, reason: d.reason, drainTimeoutMs: input.drainTimeoutMs });
          run.record({ at: decidedAt, from, to: d.desired, reason: d.reason });
        } catch (err) {
          if (isCancellation(err)) throw err;
          // The count stays where it was, so the next decision tries again; the scaler itself never fails.
          run.record({ at: decidedAt, from, to: from, reason: `could not apply ${from} -> ${d.desired} (${d.reason}): ${failureMessage(err)}` });
          next = { ...next, current: from };
        }
      }
      run.state = next;
    }
    if (deadlineTimer) timer.arm(run.paused ? null : nextDecisionAt(run.policy, run.state, Date.now()));
    if (workflowInfo().continueAsNewSuggested || (input.forceContinueAsNewAfterTurns !== undefined && turn >= input.forceContinueAsNewAfterTurns)) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof scalerWorkflow>(run.snapshot());
    }
  }
}
