import { percentileOfSorted } from '../common/stats';
import { decide, initialScalerState, ScalingPolicy, scalingPolicy } from '../domain/scaling';
import { prng } from '../common/prng';

/**
 * What-if simulator: replays a traffic trace through the same decide() the
 * scaler workflow uses, over a model of replicas (cold start, per-replica
 * concurrency) and the gateway's queue (FIFO, timeout, then 503). Pure and
 * deterministic: the same trace and policy always give the same result.
 */
export interface TraceRequest {
  /** Arrival, ms from the start of the trace. */
  at: number;
  /** Service time on a replica, ms. */
  durationMs: number;
}

export interface Pattern {
  /** Mean arrivals per second outside bursts. */
  avgRps: number;
  /** Arrivals per second during a burst. */
  burstRps: number;
  /** A burst starts every this many seconds... */
  burstEverySeconds: number;
  /** ...and lasts this long. */
  burstSeconds: number;
  durationSeconds: number;
  /** Mean service time of one request, ms (exponential). */
  meanDurationMs: number;
  seed: number;
  /** Optional quiet period with no traffic at all, in seconds from the start. */
  quietFromSeconds?: number;
  quietToSeconds?: number;
}

export interface ReplicaModel {
  /** Time from "start a replica" to serving, ms (Instant Start: 1-3 s). */
  coldStartMs: number;
  /** Concurrent requests one replica serves. */
  concurrency: number;
  /** Price of one GPU-hour, USD, for the cost column. */
  gpuHourlyUsd: number;
}

export interface SimOptions {
  policy: ScalingPolicy;
  replica: ReplicaModel;
  /** Replicas at t=0 (ready). */
  initialReplicas: number;
  /** How long a request may wait in the gateway queue before a 503, ms. */
  queueTimeoutMs: number;
  /** How long a request that met zero ready replicas waits for a cold start, ms (gateway default 60000). */
  coldStartTimeoutMs?: number;
  /** Scaler tick, ms. */
  tickMs: number;
  /** Simulation step, ms. */
  stepMs?: number;
}

export interface SimResult {
  requests: number;
  served: number;
  rejected503: number;
  coldStarts: number;
  queueWaitP50Ms: number;
  queueWaitP99Ms: number;
  maxReplicas: number;
  gpuSeconds: number;
  costUsd: number;
  /** One sample per scaler tick. */
  series: Array<{ t: number; replicas: number; ready: number; inFlight: number; queued: number }>;
  decisions: Array<{ t: number; from: number; to: number; reason: string }>;
}

/** Poisson arrivals at avgRps, with bursts at burstRps; exponential service times. */
export function generateTrace(p: Pattern): TraceRequest[] {
  const r = prng(p.seed);
  const out: TraceRequest[] = [];
  let t = 0;
  const end = p.durationSeconds * 1000;
  while (t < end) {
    const inBurst = p.burstEverySeconds > 0 && (t / 1000) % p.burstEverySeconds < p.burstSeconds;
    const quiet =
      p.quietFromSeconds !== undefined && p.quietToSeconds !== undefined && t >= p.quietFromSeconds * 1000 && t < p.quietToSeconds * 1000;
    const rate = quiet ? 0 : inBurst ? p.burstRps : p.avgRps;
    if (rate <= 0) {
      t += 100;
      continue;
    }
    t += (-Math.log(1 - r()) / rate) * 1000;
    if (t >= end) break;
    out.push({ at: Math.round(t), durationMs: Math.max(1, Math.round(-Math.log(1 - r()) * p.meanDurationMs)) });
  }
  return out;
}

interface Replica {
  startedAt: number;
  readyAt: number;
  draining: boolean;
  /** End times of the requests it serves. */
  running: number[];
}

export function simulate(trace: TraceRequest[], o: SimOptions): SimResult {
  const step = o.stepMs ?? 10;
  const replicas: Replica[] = Array.from({ length: o.initialReplicas }, () => ({ startedAt: 0, readyAt: 0, draining: false, running: [] }));
  const queue: Array<{ at: number; durationMs: number; cold: boolean }> = [];
  const coldTimeoutMs = o.coldStartTimeoutMs ?? 60_000;
  const waits: number[] = [];
  const res: SimResult = {
    requests: trace.length,
    served: 0,
    rejected503: 0,
    coldStarts: 0,
    queueWaitP50Ms: 0,
    queueWaitP99Ms: 0,
    maxReplicas: o.initialReplicas,
    gpuSeconds: 0,
    costUsd: 0,
    series: [],
    decisions: [],
  };
  let state = initialScalerState(o.initialReplicas, 0);
  let next = 0;
  const end = (trace.at(-1)?.at ?? 0) + Math.max(60_000, (o.policy.idleTimeoutSeconds + o.policy.scaleDownWindowSeconds) * 1000) + 10_000;
  let nextTick = 0;
  let gpuMs = 0;

  const live = () => replicas.filter((r) => !r.draining);
  const applyDesired = (t: number, desired: number, reason: string) => {
    const before = live().length;
    if (desired === before) return;
    res.decisions.push({ t, from: before, to: desired, reason });
    if (desired > before) {
      for (let i = before; i < desired; i++)
        replicas.push({ startedAt: t, readyAt: t + o.replica.coldStartMs, draining: false, running: [] });
      res.coldStarts += desired - before;
    } else {
      // Drain the least busy first; a draining replica finishes what it runs and takes nothing new.
      const victims = live()
        .sort((a, b) => a.running.length - b.running.length)
        .slice(0, before - desired);
      for (const v of victims) v.draining = true;
    }
    res.maxReplicas = Math.max(res.maxReplicas, live().length);
  };
  const observe = (t: number) => {
    const inFlight = replicas.reduce((s, r) => s + r.running.length, 0);
    return { gatewayId: 'sim', inFlight, queued: queue.length, oldestQueuedMs: queue.length ? t - queue[0].at : 0, at: t };
  };
  const tick = (t: number) => {
    const d = decide(o.policy, state, { now: t, reports: [observe(t)] });
    state = d.nextState;
    applyDesired(t, d.desired, d.reason);
  };

  for (let t = 0; t <= end; t += step) {
    // Completions, and drained replicas leave.
    for (const r of replicas) r.running = r.running.filter((e) => e > t);
    for (let i = replicas.length - 1; i >= 0; i--)
      if (replicas[i].draining && replicas[i].running.length === 0) {
        gpuMs += t - replicas[i].startedAt;
        replicas.splice(i, 1);
      }
    // Arrivals. A request meeting zero replicas wakes the scaler at once (the cold-start path).
    let woke = false;
    while (next < trace.length && trace[next].at <= t) {
      const cold = !replicas.some((r) => !r.draining && r.readyAt <= t);
      queue.push({ ...trace[next++], cold });
      if (live().length === 0) woke = true;
    }
    if (woke) tick(t);
    // Dispatch FIFO to the ready replica with the most headroom.
    while (queue.length) {
      let best: Replica | null = null;
      for (const r of replicas) {
        if (r.draining || r.readyAt > t || r.running.length >= o.replica.concurrency) continue;
        if (!best || r.running.length < best.running.length) best = r;
      }
      if (!best) break;
      const req = queue.shift()!;
      waits.push(t - req.at);
      best.running.push(t + req.durationMs);
      res.served++;
    }
    // Past the queue timeout (the cold-start timeout for requests that met no ready replica): 503.
    for (let i = queue.length - 1; i >= 0; i--) {
      if (t - queue[i].at > (queue[i].cold ? coldTimeoutMs : o.queueTimeoutMs)) {
        queue.splice(i, 1);
        res.rejected503++;
      }
    }
    if (t >= nextTick) {
      tick(t);
      const o2 = observe(t);
      res.series.push({
        t,
        replicas: live().length,
        ready: live().filter((r) => r.readyAt <= t).length,
        inFlight: o2.inFlight,
        queued: o2.queued,
      });
      nextTick += o.tickMs;
    }
  }
  for (const r of replicas) gpuMs += end - r.startedAt;
  waits.sort((a, b) => a - b);
  res.queueWaitP50Ms = percentileOfSorted(waits, 50);
  res.queueWaitP99Ms = percentileOfSorted(waits, 99);
  res.gpuSeconds = Math.round(gpuMs / 1000);
  res.costUsd = +((gpuMs / 3_600_000) * o.replica.gpuHourlyUsd).toFixed(2);
  return res;
}

/** Replicas and load over time as a self-contained SVG. */
export function chartSvg(r: SimResult, title: string, width = 900, height = 260): string {
  const pad = 40;
  const tMax = r.series.at(-1)?.t ?? 1;
  const repMax = Math.max(1, ...r.series.map((s) => s.replicas));
  const loadMax = Math.max(1, ...r.series.map((s) => s.inFlight + s.queued));
  const x = (t: number) => pad + (t / tMax) * (width - 2 * pad);
  const yRep = (v: number) => height - pad - (v / repMax) * (height - 2 * pad);
  const yLoad = (v: number) => height - pad - (v / loadMax) * (height - 2 * pad);
  const path = (pts: Array<[number, number]>) => pts.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`).join('');
  const load = path(r.series.map((s) => [x(s.t), yLoad(s.inFlight + s.queued)]));
  const reps = path(
    r.series.flatMap(
      (s, i) =>
        (i
          ? [
              [x(s.t), yRep(r.series[i - 1].replicas)],
              [x(s.t), yRep(s.replicas)],
            ]
          : [[x(s.t), yRep(s.replicas)]]) as Array<[number, number]>,
    ),
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${pad}" y="16" font-size="13">${title.replace(/[<&>]/g, '')}</text>`,
    `<line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#999"/>`,
    `<path d="${load}" fill="none" stroke="#9bb8d3" stroke-width="1"/>`,
    `<path d="${reps}" fill="none" stroke="#c0392b" stroke-width="2"/>`,
    `<text x="${pad}" y="${height - 10}">0 s</text><text x="${width - pad - 40}" y="${height - 10}">${Math.round(tMax / 1000)} s</text>`,
    `<text x="${width - pad - 250}" y="16" fill="#c0392b">replicas (max ${repMax})</text>`,
    `<text x="${width - pad - 120}" y="16" fill="#5b88b0">load (max ${loadMax})</text>`,
    '</svg>',
  ].join('');
}

/** The reference's example: 5 RPS average with bursts to 30 RPS, and one quiet period. */
export const REFERENCE_PATTERN: Pattern = {
  avgRps: 5,
  burstRps: 30,
  burstEverySeconds: 300,
  burstSeconds: 30,
  durationSeconds: 3600,
  meanDurationMs: 4000,
  seed: 42,
  quietFromSeconds: 1800,
  quietToSeconds: 2400,
};

export const REFERENCE_REPLICA: ReplicaModel = { coldStartMs: 1500, concurrency: 30, gpuHourlyUsd: 1 };

/** The three configurations the reference compares for that traffic. */
export const REFERENCE_CONFIGS: Array<{ name: string; policy: ScalingPolicy }> = [
  { name: 'Flex min 0 max 4', policy: scalingPolicy({ mode: 'FLEX', minReplicas: 0, maxReplicas: 4, targetConcurrency: 30 }) },
  { name: 'Flex min 1 max 4', policy: scalingPolicy({ mode: 'FLEX', minReplicas: 1, maxReplicas: 4, targetConcurrency: 30 }) },
  { name: 'Active min 2 max 6', policy: scalingPolicy({ mode: 'ACTIVE', minReplicas: 2, maxReplicas: 6, targetConcurrency: 30 }) },
];

export function summaryRow(name: string, r: SimResult): string {
  const firstWait = r.queueWaitP99Ms;
  return `| ${name} | ${r.requests} | ${r.maxReplicas} | ${r.coldStarts} | ${r.queueWaitP50Ms} | ${firstWait} | ${r.rejected503} | ${r.gpuSeconds} | ${r.costUsd.toFixed(2)} |`;
}

export const SUMMARY_HEADER =
  '| config | requests | max replicas | cold starts | queue wait p50 ms | queue wait p99 ms | 503s | GPU-seconds | cost USD |\n|---|---|---|---|---|---|---|---|---|';
