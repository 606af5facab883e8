// Optimization runs: which candidates a run measures, which concurrency levels it sweeps, where the knee is,
// which level becomes the scaler's target, whether a variant meets the run's hard constraints, and how the
// measured variants rank by the run's priority. Pure (no I/O, no clock), shared by the api, the activities and
// the optimize workflow.
import type { Task } from './targets';

export const PRIORITIES = ['LATENCY', 'THROUGHPUT', 'COST', 'QUALITY', 'BALANCED'] as const;
export type Priority = (typeof PRIORITIES)[number];

export const REDEPLOY_POLICIES = ['NEVER', 'IF_BETTER'] as const;
export type RedeployPolicy = (typeof REDEPLOY_POLICIES)[number];

/** Hard limits a variant must meet to be ranked; each optional. */
export interface Constraints {
  maxTtftP95Ms?: number | null;
  maxItlP95Ms?: number | null;
  minThroughputTps?: number | null;
  maxMonthlyCostUsd?: number | null;
  minQuality?: number | null;
}

/** A variant to build and measure. */
export interface Candidate {
  name: string;
  gpu: string;
  engine: string;
  quantization: string | null;
  engineConfig: Record<string, unknown> | null;
  maxConcurrency: number;
}

/** How a run measures, fixed when it starts (OptimizationRun.load). */
export interface RunSettings {
  target: 'LOCAL';
  promptTokens: number;
  outputTokens: number;
  /** How long each concurrency level runs. */
  levelSeconds: number;
  /** Arithmetic questions of the quality eval (text generation only). */
  evalQuestions: number;
  /** The candidates given; null builds the default set. */
  candidates: Candidate[] | null;
  maxConcurrency: number;
  draftModel: string;
  healthTimeoutSeconds: number;
  drainTimeoutMs: number;
}

/** One concurrency level as measured: `concurrency` streams back to back for the level's window. */
export interface SweepPoint {
  concurrency: number;
  requests: number;
  errors: number;
  /** Output tokens per second, all streams together. */
  throughputTps: number;
  ttftP50Ms: number;
  ttftP95Ms: number;
  /** Time between output tokens (per request: (last - first token) / (tokens - 1)). */
  itlP50Ms: number;
  itlP95Ms: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
}

/** What a variant measured at its target concurrency (that level's throughput and latencies), and what that costs. */
export interface VariantMetrics extends Omit<SweepPoint, 'concurrency' | 'requests' | 'errors'> {
  knee: number;
  targetConcurrency: number;
  errorRate: number;
  /** The GPU's hourly price over what one replica produces at the target. */
  costPerMillionTokensUsd: number;
  /** One replica running all month (730 h) at the GPU's price. */
  monthlyCostUsd: number;
  /** Fraction of the quality eval answered right; null when the task has no eval. */
  quality: number | null;
}

/** Errors above this fraction at a level make the level unusable, whatever the constraints. */
export const MAX_LEVEL_ERROR_RATE = 0.01;
export const HOURS_PER_MONTH = 730;

/** The coarse sweep: 1, 2, 4, ... and the replica's cap itself. */
export function sweepLevels(cap: number): number[] {
  const out: number[] = [];
  for (let c = 1; c < cap; c *= 2) out.push(c);
  out.push(cap);
  return out;
}

const usable = (p: SweepPoint) => p.requests > 0 && p.errors / p.requests <= MAX_LEVEL_ERROR_RATE;

/**
 * Levels within this fraction of the best throughput count as reaching it: the knee is the lowest of them. Near the
 * knee the curve is flat (a level below it makes 2-7 % less in the simulator's model), so a wider tolerance would put
 * the knee a level low (bench/optimize.ts: 3 % gave a mean error of 5.4 %, 1 % gives the numbers in bench/README.md).
 */
export const KNEE_TOLERANCE = 0.01;

/**
 * The knee: the lowest measured level whose throughput is within KNEE_TOLERANCE of the best (past it, more
 * concurrency buys next to no more tokens for more latency; a level that measured a hair higher by noise does not move
 * it). Null before any usable level.
 */
export function knee(points: SweepPoint[]): number | null {
  const ok = points.filter(usable);
  if (ok.length === 0) return null;
  const best = Math.max(...ok.map((p) => p.throughputTps));
  return Math.min(...ok.filter((p) => p.throughputTps >= best * (1 - KNEE_TOLERANCE)).map((p) => p.concurrency));
}

/** The measured level with the highest throughput, where the search refines. */
function peak(points: SweepPoint[]): number | null {
  let best: SweepPoint | null = null;
  for (const p of points) if (usable(p) && (!best || p.throughputTps > best.throughputTps)) best = p;
  return best?.concurrency ?? null;
}

/**
 * The next level to measure, or null when the sweep is done: the coarse levels first, then a search around the
 * throughput peak (halving the gap to each neighbour) until both neighbours of the peak are one step away.
 */
export function nextLevel(points: SweepPoint[], cap: number): number | null {
  const measured = new Set(points.map((p) => p.concurrency));
  const coarse = sweepLevels(cap).find((c) => !measured.has(c));
  if (coarse !== undefined) return coarse;
  const k = peak(points);
  if (k === null) return null;
  const levels = [...measured].sort((a, b) => a - b);
  const i = levels.indexOf(k);
  const above = levels[i + 1];
  const below = levels[i - 1];
  if (above !== undefined && above - k > 1) return Math.floor((k + above) / 2);
  if (below !== undefined && k - below > 1) return Math.floor((below + k) / 2);
  return null;
}

/** Why a level breaks the per-level constraints (latency, errors), or null when it meets them. */
export function levelViolation(p: SweepPoint, c: Constraints): string | null {
  if (p.requests === 0) return `no request finished at concurrency ${p.concurrency}`;
  if (!usable(p)) return `${p.errors} of ${p.requests} requests failed at concurrency ${p.concurrency}`;
  if (c.maxTtftP95Ms != null && p.ttftP95Ms > c.maxTtftP95Ms) {
    return `TTFT p95 ${round(p.ttftP95Ms)} ms at concurrency ${p.concurrency} exceeds maxTtftP95Ms ${c.maxTtftP95Ms}`;
  }
  if (c.maxItlP95Ms != null && p.itlP95Ms > c.maxItlP95Ms) {
    return `inter-token latency p95 ${round(p.itlP95Ms)} ms at concurrency ${p.concurrency} exceeds maxItlP95Ms ${c.maxItlP95Ms}`;
  }
  return null;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

export interface Evaluation {
  metrics: VariantMetrics | null;
  /** Why the variant breaks a hard constraint; null when it is rankable. */
  reason: string | null;
}

/**
 * A measured variant against the run's constraints: its target concurrency is the highest level at or below the
 * knee that meets the per-level constraints (the knee when none binds); then throughput, cost and quality are
 * checked at that level.
 */
export function evaluate(points: SweepPoint[], c: Constraints, pricePerHourUsd: number, quality: number | null): Evaluation {
  const k = knee(points);
  if (k === null) return { metrics: null, reason: points.length ? levelViolation(points[0], {})! : 'no level was measured' };
  const candidates = points.filter((p) => p.concurrency <= k).sort((a, b) => b.concurrency - a.concurrency);
  const target = candidates.find((p) => levelViolation(p, c) === null);
  const lowest = candidates.at(-1)!;
  const at = target ?? lowest;
  const tokensPerHour = at.throughputTps * 3600;
  const { concurrency, requests, errors, ...measured } = at;
  const metrics: VariantMetrics = {
    ...measured,
    knee: k,
    targetConcurrency: concurrency,
    errorRate: requests ? errors / requests : 0,
    costPerMillionTokensUsd: tokensPerHour > 0 ? (pricePerHourUsd / tokensPerHour) * 1e6 : Number.POSITIVE_INFINITY,
    monthlyCostUsd: pricePerHourUsd * HOURS_PER_MONTH,
    quality,
  };
  if (!target) return { metrics, reason: levelViolation(lowest, c) };
  if (c.minThroughputTps != null && metrics.throughputTps < c.minThroughputTps) {
    return {
      metrics,
      reason: `throughput ${round(metrics.throughputTps)} tokens/s at concurrency ${at.concurrency} is below minThroughputTps ${c.minThroughputTps}`,
    };
  }
  if (c.maxMonthlyCostUsd != null && metrics.monthlyCostUsd > c.maxMonthlyCostUsd) {
    return {
      metrics,
      reason: `one replica costs ${round(metrics.monthlyCostUsd, 2)} USD a month, above maxMonthlyCostUsd ${c.maxMonthlyCostUsd}`,
    };
  }
  if (c.minQuality != null && quality !== null && quality < c.minQuality) {
    return { metrics, reason: `quality ${round(quality, 3)} is below minQuality ${c.minQuality}` };
  }
  return { metrics, reason: null };
}

/** How good a variant is by a priority: higher is better. BALANCED averages the four, each relative to the best of the run. */
function score(m: VariantMetrics, priority: Priority, best: Record<'tps' | 'latency' | 'cost' | 'quality', number>): number {
  const rel = {
    tps: m.throughputTps / best.tps,
    latency: best.latency / m.latencyP95Ms,
    cost: best.cost / m.costPerMillionTokensUsd,
    quality: (m.quality ?? 1) / best.quality,
  };
  switch (priority) {
    case 'THROUGHPUT':
      return rel.tps;
    case 'LATENCY':
      return rel.latency;
    case 'COST':
      return rel.cost;
    case 'QUALITY':
      // Quality first; cost breaks ties between equally good variants.
      return rel.quality + rel.cost * 1e-3;
    case 'BALANCED':
      return (rel.tps + rel.latency + rel.cost + rel.quality) / 4;
  }
}

/** The rankable variants (no reason) by the priority, best first: their ids in rank order. */
export function rank(variants: Array<{ id: string; metrics: VariantMetrics }>, priority: Priority): string[] {
  if (variants.length === 0) return [];
  const ms = variants.map((v) => v.metrics);
  const best = {
    tps: Math.max(...ms.map((m) => m.throughputTps)) || 1,
    latency: Math.min(...ms.map((m) => m.latencyP95Ms)) || 1,
    cost: Math.min(...ms.map((m) => m.costPerMillionTokensUsd)) || 1,
    quality: Math.max(...ms.map((m) => m.quality ?? 1)) || 1,
  };
  return variants
    .map((v) => ({ id: v.id, s: score(v.metrics, priority, best) }))
    .sort((a, b) => b.s - a.s || a.id.localeCompare(b.id))
    .map((v) => v.id);
}

/** The draft model a speculative-decoding candidate uses: the pipeline's own, else a small model of the same family. */
export const DRAFT_MODEL_SETTING = 'speculative-model';

/**
 * The candidates a run builds when none are given: for each GPU, the model as is, fp8 and int4 (AWQ) weights, and
 * for text generation a speculative-decoding variant with a draft model.
 */
export function defaultCandidates(task: Task, gpus: string[], maxConcurrency: number, draftModel: string): Candidate[] {
  const out: Candidate[] = [];
  for (const gpu of gpus) {
    const base = { gpu, engine: 'vllm', engineConfig: null, maxConcurrency };
    out.push({ ...base, name: `${gpu}-bf16`, quantization: null });
    out.push({ ...base, name: `${gpu}-fp8`, quantization: 'fp8' });
    out.push({ ...base, name: `${gpu}-awq-int4`, quantization: 'awq-int4' });
    if (task === 'CHAT') {
      out.push({
        ...base,
        name: `${gpu}-spec`,
        quantization: null,
        engineConfig: { [DRAFT_MODEL_SETTING]: draftModel, 'num-speculative-tokens': 4 },
      });
    }
  }
  return out;
}

/** What live traffic looks like over a window, from the usage rollups. */
export interface TrafficProfile {
  requests: number;
  /** Mean in flight over the window (total request time / window, Little's law). */
  concurrency: number;
  promptTokens: number;
  outputTokens: number;
}

/** Live traffic differs from what a run measured by more than this factor, either way: re-optimize. */
export const DRIFT_FACTOR = 2;
/** Below this many requests in the window, traffic says nothing. */
export const DRIFT_MIN_REQUESTS = 20;

/** Why live traffic has drifted from what the run measured, or null when it has not (or is too thin to tell). */
export function trafficDrift(
  measured: { concurrency: number; promptTokens: number; outputTokens: number },
  live: TrafficProfile,
): string | null {
  if (live.requests < DRIFT_MIN_REQUESTS) return null;
  const far = (a: number, b: number) => a > 0 && b > 0 && Math.max(a / b, b / a) >= DRIFT_FACTOR;
  const parts: string[] = [];
  if (far(live.concurrency, measured.concurrency)) {
    parts.push(`concurrency ${round(live.concurrency)} against the ${measured.concurrency} the run targeted`);
  }
  if (far(live.promptTokens, measured.promptTokens)) {
    parts.push(`prompts of ${Math.round(live.promptTokens)} tokens against ${measured.promptTokens} measured`);
  }
  if (far(live.outputTokens, measured.outputTokens)) {
    parts.push(`outputs of ${Math.round(live.outputTokens)} tokens against ${measured.outputTokens} measured`);
  }
  return parts.length ? parts.join('; ') : null;
}
