import {
  allHandlersFinished,
  ParentClosePolicy,
  startChild,
  WorkflowIdReusePolicy,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { PERMANENT_FAILURES } from '../src/domain/errors';
import {
  decide,
  Decision,
  initialScalerState,
  LoadReport,
  nextDecisionAt,
  policyProblems,
  problemAsAssignment,
  ScalerState,
  ScalingPolicy,
  startBackoffMs,
} from '../src/domain/scaling';
import {
  ActuationSnapshot,
  endScalerSignal,
  loadReportSignal,
  pauseScalerSignal,
  PolicyPatch,
  resumeScalerSignal,
  ScalerInput,
  ScalerStatus,
  scalerStatusQuery,
  scalerWorkflowId,
  ScalingDecisionRecord,
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

  constructor(
    private readonly input: ScalerInput,
    now: number,
  ) {
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

  /** Set by endScaler: the loop completes the workflow. */
  ended = false;

  pause(): void {
    this.paused = true;
  }

  end(): void {
    this.paused = true;
    this.ended = true;
    this.wake = true;
  }

  /**
   * `current`: the replicas now running (a lifecycle start or swap), taken as the count decisions start
   * from; `targetConcurrency`: the per-replica target of the variant a swap moved to.
   */
  resume(current?: number, targetConcurrency?: number): void {
    this.paused = false;
    if (current !== undefined) {
      this.state = { ...this.state, current };
      this.desired = current;
    }
    if (targetConcurrency !== undefined) this.policy = { ...this.policy, targetConcurrency };
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

  /** Runs the decision over the reports that arrived since the last one; `starting` replicas are on the way. */
  decide(now: number, starting = 0): Decision {
    const reports = Object.values(this.pending);
    this.pending = {};
    const d = decide(this.policy, this.state, { now, reports, starting });
    this.noData = d.noData;
    this.desired = d.desired;
    return d;
  }

  record(decision: ScalingDecisionRecord): void {
    this.decisions.push(decision);
    this.decisions.splice(0, Math.max(0, this.decisions.length - DECISIONS_KEPT));
  }

  status(actuation?: { starting: number; draining: number }): ScalerStatus {
    return {
      desired: this.desired,
      current: this.state.current,
      paused: this.paused,
      noData: this.noData,
      policy: this.policy,
      decisions: [...this.decisions],
      ...actuation,
    };
  }

  /** The next run's input: reports that arrived while handlers finished are carried in the state. */
  snapshot(actuation?: ActuationSnapshot): ScalerInput {
    const state = { ...this.state, reports: { ...this.state.reports, ...this.pending } };
    return {
      ...this.input,
      policy: this.policy,
      state,
      decisions: this.decisions,
      paused: this.paused,
      actuation,
      forceContinueAsNewAfterTurns: undefined,
    };
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
    scope
      .run(() => sleep(Math.max(1, at - Date.now())))
      .then(
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

type Acts = Pick<Activities, 'reconcileReplicaCount' | 'awaitReplicaReady' | 'drainReplica' | 'rotateAgedReplicas'>;

/**
 * Applies the decided count without ever blocking the decisions: one short activity brings the
 * replicas to the count (starting all missing ones in parallel, reusing draining ones first), and
 * every starting or draining replica is watched by its own activity, whose end wakes the loop. A
 * newer count simply reconciles again, overtaking whatever is still starting or draining. A replica
 * that fails to start is replaced after startBackoffMs(failures in a row).
 */
class Actuator {
  private target: number;
  private reason = 'scaler continued';
  private dirty: boolean;
  private failures: number;
  private retryAt = 0;
  private targetAtFailure = 0;
  readonly starting = new Set<string>();
  readonly draining = new Set<string>();
  /** Set when what runs changed (a replica came up, a lifecycle start resumed us): the rotation looks again. */
  private rotationPoke = false;

  constructor(
    private readonly run: ScalerRun,
    private readonly input: ScalerInput,
    private readonly short: Acts,
    private readonly long: Acts,
  ) {
    this.target = run.state.current;
    const carried = input.actuation;
    this.dirty = carried?.pending ?? false;
    this.failures = carried?.failures ?? 0;
    for (const id of carried?.starting ?? []) this.watchStart(id);
    for (const id of carried?.draining ?? []) this.watchDrain(id);
  }

  snapshot(): ActuationSnapshot {
    return { starting: [...this.starting], draining: [...this.draining], pending: this.dirty, failures: this.failures };
  }

  /** The count the loop decided; reconciled at once unless a failed start is backing off. */
  want(target: number, reason: string): void {
    if (target === this.target) return;
    this.target = target;
    this.reason = reason;
    this.dirty = true;
  }

  counts() {
    return { starting: this.starting.size, draining: this.draining.size };
  }

  /** After a lifecycle start: `current` replicas run, nothing is pending and nothing failed. */
  reset(current: number): void {
    this.target = current;
    this.dirty = false;
    this.failures = 0;
    this.retryAt = 0;
  }

  /** What runs may have changed under us (a lifecycle operation): the rotation looks again. */
  poke(): void {
    this.rotationPoke = true;
  }

  /**
   * Replaces each replica before the provider's lifetime cap ends it (Modal's Sandbox timeout): the activity starts a
   * replacement and, once it serves, marks the old one DRAINING; both are watched here like any other. It says when to
   * look again (the next replica's due time), or never for a provider without a cap; a replica coming up looks again.
   */
  async rotation(): Promise<never> {
    for (;;) {
      await condition(() => !this.run.paused);
      this.rotationPoke = false;
      let next: number | null;
      try {
        const r = await this.short.rotateAgedReplicas({ deploymentId: this.input.deploymentId });
        for (const id of r.starting) this.watchStart(id);
        for (const id of r.draining) this.watchDrain(id);
        next = r.nextCheckAt;
      } catch (err) {
        if (isCancellation(err)) throw err;
        next = Date.now() + 30_000;
      }
      if (next === null) await condition(() => this.rotationPoke);
      else await condition(() => this.rotationPoke, Math.max(50, next - Date.now()));
    }
  }

  private note(reason: string): void {
    const n = this.run.state.current;
    this.run.record({ at: Date.now(), from: n, to: n, reason });
    this.run.wake = true;
  }

  private failed(what: string, err: unknown): void {
    this.failures++;
    const backoff = startBackoffMs(this.failures);
    this.retryAt = Date.now() + backoff;
    this.targetAtFailure = this.target;
    this.dirty = true;
    this.note(`${what}: ${failureMessage(err)}; trying again in ${Math.round(backoff / 1000)} s`);
  }

  async loop(): Promise<never> {
    for (;;) {
      // A paused scaler changes nothing: a stop owns the replicas until it resumes.
      await condition(() => this.dirty && !this.run.paused);
      // After a failed start, wait out the backoff unless the count went down meanwhile.
      const wait = this.retryAt - Date.now();
      if (wait > 0) await condition(() => this.target < this.targetAtFailure, wait);
      this.dirty = false;
      const target = this.target;
      try {
        const r = await this.short.reconcileReplicaCount({ deploymentId: this.input.deploymentId, desired: target, reason: this.reason });
        if (r.reused.length)
          this.note(`scale-down cancelled: ${r.reused.length} draining replica(s) back to serving, ${r.started.length} new`);
        for (const id of r.starting) this.watchStart(id);
        for (const id of r.draining) this.watchDrain(id);
      } catch (err) {
        if (isCancellation(err)) throw err;
        this.failed(`could not apply ${target} replica(s)`, err);
      }
    }
  }

  private watchStart(id: string): void {
    if (this.starting.has(id)) return;
    this.starting.add(id);
    this.long.awaitReplicaReady({ deploymentId: this.input.deploymentId, replicaId: id }).then(
      (r) => {
        this.starting.delete(id);
        if (r === 'ready') this.failures = 0;
        this.run.wake = true;
        this.rotationPoke = true;
      },
      (err) => {
        this.starting.delete(id);
        if (isCancellation(err)) return;
        this.failed(`replica ${id} failed to start, replacing it`, err);
      },
    );
  }

  private watchDrain(id: string): void {
    if (this.draining.has(id)) return;
    this.draining.add(id);
    this.long.drainReplica({ deploymentId: this.input.deploymentId, replicaId: id, drainTimeoutMs: this.input.drainTimeoutMs }).then(
      () => {
        this.draining.delete(id);
        this.run.wake = true;
      },
      (err) => {
        this.draining.delete(id);
        if (isCancellation(err)) return;
        // Still DRAINING in the database: the next reconcile hands it back to be watched again.
        this.failed(`replica ${id} could not be drained`, err);
      },
    );
  }
}

/**
 * scaler:<deploymentId> — one per deployment, for its whole life. Gateways
 * signal load reports; the loop runs decide() on each report, and once more
 * when a scale-down window or idle timeout ends (one durable timer, kept
 * while its deadline stands: an idle deployment writes no history), and hands
 * a changed count to the Actuator, which applies it without blocking the loop.
 * Lifecycle operations pause and resume it.
 */
export async function scalerWorkflow(input: ScalerInput): Promise<void> {
  const run = new ScalerRun(input, Date.now());
  // Histories from before the deadline timer replay with the fixed tick
  // (patch 'scaler-deadline-timer'; deprecate it once no pre-patch scaler runs, and drop scaler-running-v1.pb).
  const deadlineTimer = patched('scaler-deadline-timer');
  // Scalers started before asynchronous actuation keep applying counts through one blocking activity
  // (patch 'scaler-async-actuation'; deprecate it once none of them runs).
  const asyncActuation = patched('scaler-async-actuation');
  // A Flex scaler stepping down to zero wakes for the next step at once (patch 'scaler-zero-step-wake'): before, an
  // idle deployment could stay one step above zero until the next report came.
  const stepToZero = patched('scaler-zero-step-wake');
  // Replicas are replaced before the provider's lifetime cap ends them (patch 'scaler-replica-rotation').
  const rotation = patched('scaler-replica-rotation');
  const timer = new DeadlineTimer();

  // Every scaler activity's retries are bounded; a permanent failure is not retried at all.
  const bounded = { maximumInterval: '10s', maximumAttempts: 5, nonRetryableErrorTypes: [...PERMANENT_FAILURES] };
  // Pre-patch scalers only: one blocking activity that waits for healthy replicas or drains (both heartbeat).
  const act = proxyActivities<Activities>({
    startToCloseTimeout: `${Math.ceil(input.drainTimeoutMs / 1000) + 600} seconds`,
    heartbeatTimeout: '30 seconds',
    retry: bounded,
  });

  // Stamped on receipt: a gateway's clock skew cannot expire its reports early or keep them alive.
  setHandler(loadReportSignal, (r) => run.report(r, deadlineTimer ? Date.now() : null));
  setHandler(pauseScalerSignal, () => run.pause());
  setHandler(endScalerSignal, () => run.end());
  setHandler(setPolicyUpdate, (patch) => run.setPolicy(patch), {
    validator: (patch) => {
      const problems = run.policyProblems(patch);
      if (problems.length) throw new Error(problems.join('; '));
    },
  });
  const actuator = asyncActuation
    ? new Actuator(
        run,
        input,
        proxyActivities<Activities>({ startToCloseTimeout: '1 minute', retry: { ...bounded, initialInterval: '200ms' } }),
        // The replica's own health deadline (DEPLOY_HEALTH_TIMEOUT_SECONDS) and the drain timeout bound these; the heartbeat finds a dead worker.
        proxyActivities<Activities>({
          startToCloseTimeout: `${Math.ceil(input.drainTimeoutMs / 1000) + 3600} seconds`,
          heartbeatTimeout: '30 seconds',
          retry: { ...bounded, maximumAttempts: 3 },
        }),
      )
    : null;
  if (actuator) void actuator.loop();
  if (actuator && rotation) void actuator.rotation();
  setHandler(resumeScalerSignal, (r) => {
    run.resume(r?.current, r?.targetConcurrency);
    if (r?.current !== undefined) actuator?.reset(r.current);
    actuator?.poke();
  });

  setHandler(scalerStatusQuery, () => run.status(actuator?.counts()));

  for (let turn = 1; ; turn++) {
    if (deadlineTimer) await condition(() => run.wake || timer.fired);
    else await condition(() => run.wake, input.tickMs ?? 1000);
    run.wake = false;
    timer.fired = false;
    if (run.ended) {
      await condition(allHandlersFinished);
      return;
    }
    if (!run.paused && actuator) {
      const from = run.state.current;
      const d = run.decide(Date.now(), actuator.starting.size);
      if (d.desired !== from) run.record({ at: Date.now(), from, to: d.desired, reason: d.reason });
      run.state = d.nextState;
      actuator.want(d.desired, d.reason);
    } else if (!run.paused) {
      const d = run.decide(Date.now());
      const from = run.state.current;
      let next = d.nextState;
      if (d.desired !== from) {
        const decidedAt = Date.now();
        try {
          await act.applyReplicaCount({
            deploymentId: input.deploymentId,
            desired: d.desired,
            reason: d.reason,
            drainTimeoutMs: input.drainTimeoutMs,
          });
          run.record({ at: decidedAt, from, to: d.desired, reason: d.reason });
        } catch (err) {
          if (isCancellation(err)) throw err;
          // The count stays where it was, so the next decision tries again; the scaler itself never fails.
          run.record({
            at: decidedAt,
            from,
            to: from,
            reason: `could not apply ${from} -> ${d.desired} (${d.reason}): ${failureMessage(err)}`,
          });
          next = { ...next, current: from };
        }
      }
      run.state = next;
    }
    if (deadlineTimer) timer.arm(run.paused ? null : nextDecisionAt(run.policy, run.state, Date.now(), { stepToZero }));
    if (
      workflowInfo().continueAsNewSuggested ||
      (input.forceContinueAsNewAfterTurns !== undefined && turn >= input.forceContinueAsNewAfterTurns)
    ) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof scalerWorkflow>(run.snapshot(actuator?.snapshot()));
    }
  }
}

/**
 * Starts scaler:<deploymentId> as a child that outlives its parent (deploy, or a start that found the
 * scaler gone): one scaler per deployment for its whole life.
 */
export async function startScaler(input: ScalerInput): Promise<void> {
  await startChild(scalerWorkflow, {
    workflowId: scalerWorkflowId(input.deploymentId),
    parentClosePolicy: ParentClosePolicy.ABANDON,
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    args: [input],
  });
}
