import { DomainError, ErrorCode } from './errors';
import { MODE_DEFAULTS } from './plans';
import type { Mode } from './targets';

// The scaling decision: pure, time an input, no I/O. Used by the scaler
// workflow and by the what-if simulator, so both decide exactly alike.
// State is plain JSON (it is carried across continue-as-new).

export interface ScalingPolicy {
  mode: Mode;
  minReplicas: number;
  maxReplicas: number;
  /** In-flight requests per replica the scaler aims for. */
  targetConcurrency: number;
  /** Demand must fit in fewer replicas for this long before scaling down (Flex 30 s, Active 120 s). */
  scaleDownWindowSeconds: number;
  /** Flex only: no traffic for this long allows zero replicas (default 300 s). */
  idleTimeoutSeconds: number;
  /** A request queued longer than this triggers a scale-up (default 2000 ms). */
  queueThresholdMs: number;
  /** A gateway silent for longer than this no longer counts (default 5000 ms). */
  reportTtlMs: number;
}

/** What one gateway process reports about one deployment. */
export interface LoadReport {
  gatewayId: string;
  inFlight: number;
  queued: number;
  /** Age of the oldest queued request, ms (0 when nothing is queued). */
  oldestQueuedMs: number;
  /** Epoch ms at the gateway when the report was taken. */
  at: number;
}

export interface ScalerState {
  /** Replica count last decided. */
  current: number;
  /** Latest report per gateway process. */
  reports: Record<string, LoadReport>;
  /** Since when demand has fit in fewer replicas than `current` (epoch ms), or null. */
  belowSince: number | null;
  /** Highest replica need seen since belowSince: the scale-down goes no lower. */
  belowPeakNeeded: number;
  /** Last time any request was in flight or queued (epoch ms); the idle timer runs from here. */
  lastActiveAt: number;
}

export interface Decision {
  desired: number;
  reason: string;
  /** True when no live report exists: the count is held, never read as zero load. */
  noData: boolean;
  nextState: ScalerState;
}

export const DEFAULT_QUEUE_THRESHOLD_MS = 2000;
export const DEFAULT_REPORT_TTL_MS = 5000;

export interface PolicyKnobs {
  mode: Mode;
  minReplicas?: number | null;
  maxReplicas: number;
  targetConcurrency: number;
  scaleDownWindowSeconds?: number | null;
  idleTimeoutSeconds?: number | null;
  queueThresholdMs?: number;
}

/** The knobs a user may leave out, as a deploy takes them. */
export interface OptionalKnobs {
  mode: Mode;
  minReplicas?: number | null;
  maxReplicas?: number | null;
  scaleDownWindowSeconds?: number | null;
  idleTimeoutSeconds?: number | null;
}

/**
 * What was left out, from the mode's defaults (reference values); maxReplicas defaults to
 * max(1, minReplicas). The api resolves them once, at deploy, and the row then holds them all.
 */
export function withModeDefaults(k: OptionalKnobs) {
  const d = MODE_DEFAULTS[k.mode];
  const minReplicas = k.minReplicas ?? d.minReplicas;
  return {
    mode: k.mode,
    minReplicas,
    maxReplicas: k.maxReplicas ?? Math.max(1, minReplicas),
    scaleDownWindowSeconds: k.scaleDownWindowSeconds ?? d.scaleDownWindowSeconds,
    idleTimeoutSeconds: k.idleTimeoutSeconds ?? d.idleTimeoutSeconds,
  };
}

/**
 * A full policy from the knobs a user set, the rest from withModeDefaults. A deployment row (checkPlan)
 * leaves nothing out: deploy resolved it; the what-if simulation does leave knobs out.
 */
export function scalingPolicy(k: PolicyKnobs): ScalingPolicy {
  const d = withModeDefaults(k);
  return {
    mode: d.mode,
    minReplicas: d.minReplicas,
    maxReplicas: d.maxReplicas,
    targetConcurrency: k.targetConcurrency,
    scaleDownWindowSeconds: d.scaleDownWindowSeconds,
    idleTimeoutSeconds: d.idleTimeoutSeconds,
    queueThresholdMs: k.queueThresholdMs ?? DEFAULT_QUEUE_THRESHOLD_MS,
    reportTtlMs: DEFAULT_REPORT_TTL_MS,
  };
}

/** A new scaler: holds `current` until it has data; the idle timer starts now. */
export function initialScalerState(current: number, now: number): ScalerState {
  return { current, reports: {}, belowSince: null, belowPeakNeeded: 0, lastActiveAt: now };
}

const clamp = (n: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, n));

/** The policy's own floor: Active never below max(1, min); Flex may reach min, even 0. */
export function hardFloor(policy: ScalingPolicy): number {
  return policy.mode === 'ACTIVE' ? Math.max(1, policy.minReplicas) : policy.minReplicas;
}

/** How low a scale-down may go now: Flex reaches its min (maybe 0) only after the idle timeout. */
export function scaleDownFloor(policy: ScalingPolicy, idleMs: number): number {
  const floor = hardFloor(policy);
  return policy.mode === 'FLEX' && idleMs < policy.idleTimeoutSeconds * 1000 ? Math.max(1, floor) : floor;
}

export interface Observation {
  now: number;
  reports: LoadReport[];
  /** Replicas decided and still starting: capacity on the way, so a stuck queue waits for them. */
  starting?: number;
}

/**
 * decide(policy, state, observation) -> desired replica count with its reason.
 *
 * needed = ceil((in flight + queued) / targetConcurrency), clamped to [floor, max].
 * Up at once when the average in flight (queued included) per replica exceeds the target, when a
 * request has queued past the threshold (unless replicas are still starting), or when requests wait
 * on zero replicas.
 * Down only after demand has fit in fewer replicas for the whole window, and
 * then to the highest need seen in that window. Example with target 32, window
 * 30 s: 100 in flight on 2 replicas (avg 50 > 32) -> up to ceil(100/32) = 4 now;
 * load falls to 40 (needs 2) at t=0 -> still 4 until t=30 s, then 2.
 */
export function decide(policy: ScalingPolicy, state: ScalerState, obs: Observation): Decision {
  const { now } = obs;
  const reports: Record<string, LoadReport> = {};
  for (const r of [...Object.values(state.reports), ...obs.reports]) {
    const prev = reports[r.gatewayId];
    if (!prev || r.at >= prev.at) reports[r.gatewayId] = r;
  }
  // Reports from a gateway that went silent expire instead of being summed forever.
  for (const [id, r] of Object.entries(reports)) if (now - r.at > policy.reportTtlMs) delete reports[id];
  const live = Object.values(reports);
  const current = state.current;

  if (live.length === 0) {
    // No data is not zero load: hold, except to honour the policy's bounds.
    const floor = hardFloor(policy);
    const desired = clamp(current, floor, policy.maxReplicas);
    return {
      desired,
      noData: true,
      reason:
        desired === current
          ? `no load reports: holding ${current}`
          : `no load reports: ${current} -> ${desired} to respect min ${floor} / max ${policy.maxReplicas}`,
      nextState: { ...state, reports, current: desired, belowSince: null, belowPeakNeeded: 0 },
    };
  }

  const inFlight = live.reduce((s, r) => s + r.inFlight, 0);
  const queued = live.reduce((s, r) => s + r.queued, 0);
  const oldestQueuedMs = Math.max(...live.map((r) => r.oldestQueuedMs));
  const demand = inFlight + queued;
  const lastActiveAt = demand > 0 ? now : state.lastActiveAt;
  const floor = hardFloor(policy);
  const downFloor = scaleDownFloor(policy, now - lastActiveAt);
  const needed = Math.ceil(demand / policy.targetConcurrency);
  const load = `${inFlight} in flight, ${queued} queued`;
  const base = { ...state, reports, lastActiveAt };

  // Scale up at once. Queued requests count as in flight: they are, at the load
  // balancer, and a replica capped at the target could never exceed it otherwise.
  const avg = current > 0 ? demand / current : Infinity;
  const overTarget = current > 0 && avg > policy.targetConcurrency;
  // A queue stuck while replicas are still starting waits for them rather than adding one per report.
  const queueStuck = queued > 0 && oldestQueuedMs > policy.queueThresholdMs && !(obs.starting ?? 0);
  const coldStart = current === 0 && demand > 0;
  if (overTarget || queueStuck || coldStart) {
    const want = Math.max(needed, queueStuck ? current + 1 : 0, coldStart ? 1 : 0);
    const desired = clamp(want, floor, policy.maxReplicas);
    const why = coldStart
      ? `cold start: ${load} with 0 replicas`
      : overTarget
        ? `average ${avg.toFixed(1)} in flight or queued per replica exceeds target ${policy.targetConcurrency} (${load})`
        : `a request queued ${oldestQueuedMs} ms, past ${policy.queueThresholdMs} ms (${load})`;
    return {
      desired,
      noData: false,
      reason: desired > current ? `${why}: ${current} -> ${desired}` : `${why}, but max is ${policy.maxReplicas}: holding ${current}`,
      nextState: { ...base, current: desired, belowSince: null, belowPeakNeeded: 0 },
    };
  }

  // Scale down only after the window, never below the floor.
  const target = Math.max(needed, downFloor);
  if (target < current) {
    const belowSince = state.belowSince ?? now;
    const belowPeakNeeded = Math.max(state.belowSince === null ? 0 : state.belowPeakNeeded, target);
    // Going to zero: demand has been nil since lastActiveAt, longer than the idle timeout.
    const waited = target === 0 ? now - lastActiveAt : now - belowSince;
    if (waited >= policy.scaleDownWindowSeconds * 1000) {
      const desired = clamp(belowPeakNeeded, downFloor, policy.maxReplicas);
      const idle = desired === 0 ? `idle for ${Math.round((now - lastActiveAt) / 1000)} s, ` : '';
      return {
        desired,
        noData: false,
        reason: `${idle}demand fit in ${desired} replica(s) for ${Math.round(waited / 1000)} s (${load}): ${current} -> ${desired}`,
        nextState: { ...base, current: desired, belowSince: null, belowPeakNeeded: 0 },
      };
    }
    return {
      desired: current,
      noData: false,
      reason: `demand fits in ${target} replica(s) for ${Math.round(waited / 1000)} of ${policy.scaleDownWindowSeconds} s (${load}): holding ${current}`,
      nextState: { ...base, belowSince, belowPeakNeeded },
    };
  }

  // Demand rose back to what current serves (or the floor holds): the window restarts.
  const desired = clamp(current, floor, policy.maxReplicas);
  return {
    desired,
    noData: false,
    reason: desired === current ? `${load}: ${current} replica(s) fit` : `policy bounds: ${current} -> ${desired}`,
    nextState: { ...base, current: desired, belowSince: null, belowPeakNeeded: 0 },
  };
}

// ---- The knob rules ----
// Written once, here, and used by every door a policy comes in through: deploy and setScalingPolicy
// (src/deployments, src/scaling), the scaler's update validator (workflows/scaler.ts) and the what-if
// simulation (GraphQL and npm run simulate). Each formats the problems for its transport.

export const KNOBS = ['minReplicas', 'maxReplicas', 'targetConcurrency', 'scaleDownWindowSeconds', 'idleTimeoutSeconds'] as const;
export type Knob = (typeof KNOBS)[number];

/** Each knob's integer range; max null: unbounded. Windows: at most a day to scale down, a week to idle. */
export const KNOB_RANGES: Record<Knob, { min: number; max: number | null }> = {
  minReplicas: { min: 0, max: null },
  maxReplicas: { min: 1, max: null },
  targetConcurrency: { min: 1, max: null },
  scaleDownWindowSeconds: { min: 1, max: 86_400 },
  idleTimeoutSeconds: { min: 1, max: 7 * 86_400 },
};

/** One broken rule: the knob, its value, and the rule in words. */
export interface PolicyProblem {
  knob: Knob;
  value: number;
  rule: string;
}

/** The knobs to check: a whole policy, or one whose absent knobs are not checked (a deploy's targetConcurrency comes from the variant). */
export type CheckedKnobs = Pick<ScalingPolicy, 'mode' | 'minReplicas' | 'maxReplicas'> &
  Partial<Record<Exclude<Knob, 'minReplicas' | 'maxReplicas'>, number | null>>;

/**
 * Every rule the knobs break, in a fixed order: each knob's range, then min <= max, then ACTIVE's
 * warm floor, then the plan's ceiling when one is given. A rule between knobs is checked only on
 * knobs that are in range themselves, so one mistake is reported once. The ceiling is the number
 * checkPlan gave the scaler; the api reports a plan's ceiling through planViolation (plans.ts).
 */
export function policyProblems(k: CheckedKnobs, planMaxReplicas?: number): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  for (const knob of KNOBS) {
    const value = k[knob];
    if (value === undefined || value === null) continue;
    const { min, max } = KNOB_RANGES[knob];
    if (!Number.isInteger(value) || value < min || (max !== null && value > max)) {
      out.push({ knob, value, rule: max === null ? `must be an integer of at least ${min}` : `must be an integer from ${min} to ${max}` });
    }
  }
  const ok = (knob: Knob) => !out.some((p) => p.knob === knob);
  if (ok('minReplicas') && ok('maxReplicas') && k.minReplicas > k.maxReplicas) {
    out.push({ knob: 'minReplicas', value: k.minReplicas, rule: `must not exceed maxReplicas (${k.maxReplicas})` });
  }
  if (ok('minReplicas') && k.mode === 'ACTIVE' && k.minReplicas < 1) {
    out.push({ knob: 'minReplicas', value: k.minReplicas, rule: 'ACTIVE mode keeps at least 1 warm replica' });
  }
  if (planMaxReplicas !== undefined && ok('maxReplicas') && k.maxReplicas > planMaxReplicas) {
    out.push({ knob: 'maxReplicas', value: k.maxReplicas, rule: `exceeds the plan's ceiling of ${planMaxReplicas}` });
  }
  return out;
}

/** As GraphQL input errors read, the shape of a zod message: "minReplicas: must not exceed maxReplicas (2)". */
export const problemAsField = (p: PolicyProblem): string => `${p.knob}: ${p.rule}`;

/** As the scaler's update validator answers, with the value: "minReplicas=5: must not exceed maxReplicas (4)". */
export const problemAsAssignment = (p: PolicyProblem): string => `${p.knob}=${p.value}: ${p.rule}`;

/** The api's refusal: BAD_USER_INPUT with every problem in the message and the first knob as `field`. */
export function policyRefusal(
  problems: PolicyProblem[],
  text: (p: PolicyProblem) => string = problemAsField,
  details: Record<string, unknown> = {},
): DomainError {
  return new DomainError(ErrorCode.BAD_USER_INPUT, problems.map(text).join('; '), { ...details, field: problems[0]?.knob });
}

/**
 * When decide() could next change its answer with no new report: the end of a
 * running scale-down window, or of the idle timeout. Null when only a report
 * can change it (the queue threshold and report expiry are seen through the
 * reports gateways keep sending). The scaler sleeps until then instead of
 * ticking, so an idle deployment writes no history.
 */
export function nextDecisionAt(
  policy: ScalingPolicy,
  state: ScalerState,
  now: number,
  o: { stepToZero?: boolean } = { stepToZero: true },
): number | null {
  const windowMs = policy.scaleDownWindowSeconds * 1000;
  const live = Object.values(state.reports);
  if (live.length === 0) return null;
  const candidates: number[] = [];
  if (state.belowSince !== null) candidates.push(state.belowSince + windowMs, state.lastActiveAt + windowMs);
  const demand = live.reduce((s, r) => s + r.inFlight + r.queued, 0);
  if (policy.mode === 'FLEX' && demand === 0 && state.current > hardFloor(policy)) {
    const idleMs = policy.idleTimeoutSeconds * 1000;
    const toZeroAt = state.lastActiveAt + Math.max(idleMs, windowMs);
    // Going to zero steps down through the peak need of the window first (2 -> 1, then 0): once idle long enough,
    // the next step is due at once, not at a moment already past.
    // (`stepToZero: false`: scalers recorded before this was found keep their old timers on replay.)
    candidates.push(state.lastActiveAt + idleMs, o.stepToZero && hardFloor(policy) === 0 ? Math.max(toZeroAt, now + 1) : toZeroAt);
  }
  const due = candidates.filter((t) => t > now);
  return due.length ? Math.min(...due) : null;
}

/** First wait before replacing a replica that failed to start, ms; doubles with each failure in a row. */
export const START_BACKOFF_INITIAL_MS = 1000;
/** Longest wait between start attempts of a crash-looping image, ms. */
export const START_BACKOFF_MAX_MS = 60_000;

/**
 * How long the actuator waits before starting a replacement after `failures` replicas in a row
 * failed to start: 0 with no failure, then 1 s, 2 s, 4 s ... up to 60 s. A replica that turns ready
 * resets the count. A crash-looping image therefore starts at most one replica a minute.
 */
export function startBackoffMs(failures: number): number {
  if (failures <= 0) return 0;
  return Math.min(START_BACKOFF_MAX_MS, START_BACKOFF_INITIAL_MS * 2 ** Math.min(failures - 1, 30));
}
