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

/** A full policy from the knobs a user set; the rest from the mode's defaults (reference values). */
export function scalingPolicy(k: PolicyKnobs): ScalingPolicy {
  const d = MODE_DEFAULTS[k.mode];
  return {
    mode: k.mode,
    minReplicas: k.minReplicas ?? d.minReplicas,
    maxReplicas: k.maxReplicas,
    targetConcurrency: k.targetConcurrency,
    scaleDownWindowSeconds: k.scaleDownWindowSeconds ?? d.scaleDownWindowSeconds,
    idleTimeoutSeconds: k.idleTimeoutSeconds ?? d.idleTimeoutSeconds,
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
      reason: desired === current ? `no load reports: holding ${current}` : `no load reports: ${current} -> ${desired} to respect min ${floor} / max ${policy.maxReplicas}`,
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

/** Checks a policy change; returns the problems, each naming the knob, the value and the rule. */
export function policyProblems(p: ScalingPolicy, planMaxReplicas: number): string[] {
  const out: string[] = [];
  const int = (k: keyof ScalingPolicy, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) out.push(`${k}=${v}: must be an integer of at least ${min}`);
  };
  int('minReplicas', p.minReplicas, 0);
  int('maxReplicas', p.maxReplicas, 1);
  int('targetConcurrency', p.targetConcurrency, 1);
  int('scaleDownWindowSeconds', p.scaleDownWindowSeconds, 1);
  int('idleTimeoutSeconds', p.idleTimeoutSeconds, 1);
  if (p.minReplicas > p.maxReplicas) out.push(`minReplicas=${p.minReplicas}: must not exceed maxReplicas (${p.maxReplicas})`);
  if (p.mode === 'ACTIVE' && p.minReplicas < 1) out.push(`minReplicas=${p.minReplicas}: ACTIVE mode keeps at least 1 warm replica`);
  if (p.maxReplicas > planMaxReplicas) out.push(`maxReplicas=${p.maxReplicas}: exceeds the plan's ceiling of ${planMaxReplicas}`);
  return out;
}

/**
 * When decide() could next change its answer with no new report: the end of a
 * running scale-down window, or of the idle timeout. Null when only a report
 * can change it (the queue threshold and report expiry are seen through the
 * reports gateways keep sending). The scaler sleeps until then instead of
 * ticking, so an idle deployment writes no history.
 */
export function nextDecisionAt(policy: ScalingPolicy, state: ScalerState, now: number): number | null {
  const windowMs = policy.scaleDownWindowSeconds * 1000;
  const live = Object.values(state.reports);
  if (live.length === 0) return null;
  const candidates: number[] = [];
  if (state.belowSince !== null) candidates.push(state.belowSince + windowMs, state.lastActiveAt + windowMs);
  const demand = live.reduce((s, r) => s + r.inFlight + r.queued, 0);
  if (policy.mode === 'FLEX' && demand === 0 && state.current > hardFloor(policy)) {
    const idleMs = policy.idleTimeoutSeconds * 1000;
    candidates.push(state.lastActiveAt + idleMs, state.lastActiveAt + Math.max(idleMs, windowMs));
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
