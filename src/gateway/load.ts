// DeploymentLoad: what one gateway process knows about the load on one deployment (in flight per replica, its FIFO
// queue, measured rates). Pure bookkeeping; the timers and I/O around the queue are in queue.ts.
import type { RouteReplica } from './directory';

/** A request waiting for a replica with headroom. */
export interface Waiter {
  enqueuedAt: number;
  /** True when it arrived with no ready replica at all: it pays a cold start. */
  cold: boolean;
  /** Resolves with a replica already reserved for it, or null when it gave up. */
  resolve: (replica: RouteReplica | null) => void;
}

const RATE_WINDOW_S = 10;
/** How long a replica that failed a request gets nothing new from this process, ms. */
export const EJECT_MS = 10_000;
/** Completions shorter than this say little about decode speed. */
const MIN_TOKENS_FOR_DECODE = 8;

/**
 * What one gateway process knows about the load on one deployment: requests in
 * flight per replica, the FIFO queue of waiting requests, and what it has
 * measured (completions per second, how long a cold start took) to tell a
 * client when to retry. Pure bookkeeping: no timers, no I/O; time is an input.
 */
export class DeploymentLoad {
  readonly inFlightByReplica = new Map<string, number>();
  inFlight = 0;
  readonly queue: Waiter[] = [];
  /** Completions in each of the last RATE_WINDOW_S seconds (ring by epoch second). */
  private readonly done = new Array<number>(RATE_WINDOW_S).fill(0);
  private readonly doneSecond = new Array<number>(RATE_WINDOW_S).fill(-1);
  /** The scaler's per-replica target, from the route (the reporter sends a rise of this much at once). */
  targetConcurrency: number | null = null;
  /** Smoothed cold-start time measured here (ms), or null before the first. */
  coldStartMs: number | null = null;
  /** Smoothed decode time per completion token measured here (ms), or null before the first. */
  msPerToken: number | null = null;
  /** Replicas that failed a request, until when (epoch ms): they get nothing new meanwhile. */
  private readonly ejected = new Map<string, number>();

  constructor(readonly deploymentId: string) {}

  /**
   * Reserves a slot on the ready replica with the most headroom, excluding
   * `exclude` and replicas ejected at `now`, unless every one is ejected (then
   * ejection is ignored: a guess about health must not take the whole
   * deployment out, as in Envoy's panic threshold).
   */
  acquire(replicas: readonly RouteReplica[], now: number, exclude?: ReadonlySet<string>): RouteReplica | null {
    const healthy = this.ejected.size && replicas.some((r) => !this.isEjected(r.id, now));
    let best: RouteReplica | null = null;
    let bestFree = 0;
    for (const r of replicas) {
      if (exclude?.has(r.id)) continue;
      if (healthy && this.isEjected(r.id, now)) continue;
      const free = r.concurrency - (this.inFlightByReplica.get(r.id) ?? 0);
      if (free > bestFree) {
        best = r;
        bestFree = free;
      }
    }
    if (best) this.add(best.id, +1);
    return best;
  }

  /** The replica failed a request (connection lost, reset, stalled): route around it for EJECT_MS. */
  eject(replicaId: string, now: number) {
    this.ejected.set(replicaId, now + EJECT_MS);
  }

  private isEjected(replicaId: string, now: number): boolean {
    const until = this.ejected.get(replicaId);
    if (until === undefined) return false;
    if (until > now) return true;
    this.ejected.delete(replicaId);
    return false;
  }

  /** A completion of `tokens` tokens decoded in `ms`: feeds the estimate non-streamed requests are checked against. */
  observeDecode(tokens: number, ms: number) {
    if (tokens < MIN_TOKENS_FOR_DECODE || ms <= 0) return;
    const per = ms / tokens;
    this.msPerToken = this.msPerToken === null ? per : 0.8 * this.msPerToken + 0.2 * per;
  }

  /** Gives back a slot; `completed` counts towards the measured drain rate. */
  release(replicaId: string, now: number, completed: boolean) {
    this.add(replicaId, -1);
    if (!completed) return;
    const sec = Math.floor(now / 1000);
    const i = sec % RATE_WINDOW_S;
    if (this.doneSecond[i] !== sec) {
      this.doneSecond[i] = sec;
      this.done[i] = 0;
    }
    this.done[i]++;
  }

  private add(replicaId: string, delta: number) {
    const n = (this.inFlightByReplica.get(replicaId) ?? 0) + delta;
    if (n <= 0) this.inFlightByReplica.delete(replicaId);
    else this.inFlightByReplica.set(replicaId, n);
    this.inFlight += delta;
  }

  /** Completions per second over the last RATE_WINDOW_S seconds. */
  drainRate(now: number): number {
    const sec = Math.floor(now / 1000);
    let n = 0;
    for (let i = 0; i < RATE_WINDOW_S; i++) if (this.doneSecond[i] > sec - RATE_WINDOW_S) n += this.done[i];
    return n / RATE_WINDOW_S;
  }

  enqueue(w: Waiter) {
    this.queue.push(w);
  }

  /** Takes a waiter out (it gave up or its client left); true if it was still queued. */
  remove(w: Waiter): boolean {
    const i = this.queue.indexOf(w);
    if (i < 0) return false;
    this.queue.splice(i, 1);
    return true;
  }

  /** Hands reserved replicas to waiters, oldest first, while any replica has headroom. */
  dispatch(replicas: readonly RouteReplica[], now: number): number {
    let n = 0;
    while (this.queue.length) {
      const r = this.acquire(replicas, now);
      if (!r) break;
      const w = this.queue.shift()!;
      if (w.cold) this.observeColdStart(now - w.enqueuedAt);
      w.resolve(r);
      n++;
    }
    return n;
  }

  oldestQueuedMs(now: number): number {
    return this.queue.length ? now - this.queue[0].enqueuedAt : 0;
  }

  private observeColdStart(ms: number) {
    this.coldStartMs = this.coldStartMs === null ? ms : Math.round(0.7 * this.coldStartMs + 0.3 * ms);
  }

  /**
   * Seconds a client turned away now should wait: with no replica, the cold
   * start measured here; otherwise the queue ahead of it over the measured
   * drain rate. 1 s when nothing is measured yet; never more than a minute.
   */
  retryAfterSeconds(now: number, readyReplicas: number): number {
    let s = 1;
    if (readyReplicas === 0) {
      if (this.coldStartMs !== null) s = this.coldStartMs / 1000;
    } else {
      const rate = this.drainRate(now);
      if (rate > 0) s = (this.queue.length + 1) / rate;
    }
    return Math.min(60, Math.max(1, Math.ceil(s)));
  }

  idle(): boolean {
    return this.inFlight === 0 && this.queue.length === 0;
  }
}
