// The merge of load samples into a series: the gateway processes' rows of each minute, then the minutes of each step.
// Counts are summed, latency sketches merged (never percentiles averaged), in flight and queue depth summed second by
// second across processes before their peak and mean are taken.
import { DDSketch } from '@datadog/sketches-js';
import { newSketch } from './sampler';

/** One LoadSample row as read from Postgres. */
export interface SampleRow {
  minute: Date;
  gatewayId: string;
  inFlight: number[];
  queued: number[];
  requests: number;
  errors: Record<string, number>;
  promptTokens: bigint | number;
  completionTokens: bigint | number;
  costUsd: { toString(): string } | number;
  latency: Uint8Array;
  ttft: Uint8Array;
  replicasReady: number | null;
  replicasStarting: number | null;
  replicasDraining: number | null;
  desired: number | null;
}

export interface MetricsPoint {
  start: Date;
  requests: number;
  requestsPerSecond: number;
  errors: number;
  errorsByCode: Array<{ code: string; count: number }>;
  promptTokens: number;
  completionTokens: number;
  tokenCostUsd: number;
  capacityCostUsd: number;
  costUsd: number;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  latencyP99Ms: number | null;
  ttftP50Ms: number | null;
  ttftP95Ms: number | null;
  ttftP99Ms: number | null;
  inFlightPeak: number | null;
  inFlightMean: number | null;
  queuedPeak: number | null;
  queuedMean: number | null;
  replicasReady: number | null;
  replicasStarting: number | null;
  replicasDraining: number | null;
  desired: number | null;
}

const maxOrNull = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));
const quantile = (s: DDSketch, q: number) => (s.count > 0 ? s.getValueAtQuantile(q) : null);

class Bucket {
  requests = 0;
  errors: Record<string, number> = {};
  promptTokens = 0;
  completionTokens = 0;
  tokenCostUsd = 0;
  capacityCostUsd = 0;
  latency = newSketch();
  ttft = newSketch();
  /** Per sampled second: in flight and queued summed over processes. */
  inFlight = new Map<number, number>();
  queued = new Map<number, number>();
  replicasReady: number | null = null;
  replicasStarting: number | null = null;
  replicasDraining: number | null = null;
  desired: number | null = null;

  add(r: SampleRow) {
    this.requests += r.requests;
    for (const [code, n] of Object.entries(r.errors ?? {})) this.errors[code] = (this.errors[code] ?? 0) + n;
    this.promptTokens += Number(r.promptTokens);
    this.completionTokens += Number(r.completionTokens);
    this.tokenCostUsd += Number(r.costUsd.toString());
    this.latency.merge(DDSketch.fromProto(r.latency));
    this.ttft.merge(DDSketch.fromProto(r.ttft));
    const base = r.minute.getTime() / 1000;
    r.inFlight.forEach((v, i) => {
      if (v >= 0) this.inFlight.set(base + i, (this.inFlight.get(base + i) ?? 0) + v);
    });
    r.queued.forEach((v, i) => {
      if (v >= 0) this.queued.set(base + i, (this.queued.get(base + i) ?? 0) + v);
    });
    // Every process reads the same replica rows and scaler: the highest seen is the minute's peak.
    this.replicasReady = maxOrNull(this.replicasReady, r.replicasReady);
    this.replicasStarting = maxOrNull(this.replicasStarting, r.replicasStarting);
    this.replicasDraining = maxOrNull(this.replicasDraining, r.replicasDraining);
    this.desired = maxOrNull(this.desired, r.desired);
  }

  point(start: Date, stepSeconds: number): MetricsPoint {
    const errorsByCode = Object.entries(this.errors)
      .map(([code, count]) => ({ code, count }))
      .sort((a, b) => b.count - a.count || (a.code < b.code ? -1 : 1));
    const peak = (m: Map<number, number>) => (m.size ? Math.max(...m.values()) : null);
    const mean = (m: Map<number, number>) => (m.size ? [...m.values()].reduce((a, b) => a + b, 0) / m.size : null);
    return {
      start,
      requests: this.requests,
      requestsPerSecond: this.requests / stepSeconds,
      errors: errorsByCode.reduce((a, e) => a + e.count, 0),
      errorsByCode,
      promptTokens: this.promptTokens,
      completionTokens: this.completionTokens,
      tokenCostUsd: this.tokenCostUsd,
      capacityCostUsd: this.capacityCostUsd,
      costUsd: this.tokenCostUsd + this.capacityCostUsd,
      latencyP50Ms: quantile(this.latency, 0.5),
      latencyP95Ms: quantile(this.latency, 0.95),
      latencyP99Ms: quantile(this.latency, 0.99),
      ttftP50Ms: quantile(this.ttft, 0.5),
      ttftP95Ms: quantile(this.ttft, 0.95),
      ttftP99Ms: quantile(this.ttft, 0.99),
      inFlightPeak: peak(this.inFlight),
      inFlightMean: mean(this.inFlight),
      queuedPeak: peak(this.queued),
      queuedMean: mean(this.queued),
      replicasReady: this.replicasReady,
      replicasStarting: this.replicasStarting,
      replicasDraining: this.replicasDraining,
      desired: this.desired,
    };
  }
}

/**
 * The series from `from` (inclusive) to `to` (exclusive) in steps of `stepSeconds` (a multiple of 60): one point per
 * step, empty steps included (zero requests, null percentiles and gauges).
 */
export function mergeSeries(
  rows: readonly SampleRow[],
  capacity: ReadonlyArray<{ minute: Date; costUsd: { toString(): string } | number }>,
  from: Date,
  to: Date,
  stepSeconds: number,
): MetricsPoint[] {
  const stepMs = stepSeconds * 1000;
  const n = Math.ceil((to.getTime() - from.getTime()) / stepMs);
  const buckets = Array.from({ length: Math.max(0, n) }, () => new Bucket());
  const at = (minute: Date) => Math.floor((minute.getTime() - from.getTime()) / stepMs);
  for (const r of rows) buckets[at(r.minute)]?.add(r);
  for (const c of capacity) {
    const b = buckets[at(c.minute)];
    if (b) b.capacityCostUsd += Number(c.costUsd.toString());
  }
  return buckets.map((b, i) => b.point(new Date(from.getTime() + i * stepMs), stepSeconds));
}
