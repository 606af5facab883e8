// LoadReporter: coalesced load reports from this process to each deployment's scaler, through a sink (in the api,
// scaler-sink.ts).
import type { Logger } from 'pino';
import type { LoadReport } from '../domain/scaling';
import type { DeploymentLoad } from './load';

/** Delivers one report to a deployment's scaler (a Temporal signal in the app). */
export type ReportSink = (deploymentId: string, report: LoadReport) => Promise<void>;

/** Thrown by a sink when the deployment has no scaler to report to. */
export class NoScalerError extends Error {
  override name = 'NoScalerError';
}

export interface LoadReporterOptions {
  gatewayId: string;
  /** At most one report per deployment per interval, ms. */
  intervalMs: number;
  /** An unchanged load is reported again after this long, so the scaler's copy never expires, ms. */
  heartbeatMs: number;
  sink: ReportSink;
  log: Logger;
  /** This process's load per deployment. */
  load: (deploymentId: string) => DeploymentLoad | undefined;
  /** Deployments with local load right now. */
  loaded: () => Iterable<string>;
  /** Deployments with ready replicas anywhere: they get heartbeats of zero so idle ones can scale down. */
  serving: () => Promise<string[]>;
  /** How often `serving` is re-read, ms. */
  servingRefreshMs?: number;
  /**
   * A rise in demand (in flight + queued) of at least one replica's target since the last report is
   * sent at once, not at the interval's end, at most once per this many ms (default 100).
   */
  urgentMs?: number;
  onSent?: (result: 'ok' | 'no_scaler' | 'error') => void;
  /**
   * A report not delivered within this many ms counts as failed and the next one is sent (default 5000): with Temporal
   * unreachable a signal can wait indefinitely, and a deployment whose report never settles would get no report again.
   */
  sinkTimeoutMs?: number;
}

interface Sent {
  key: string;
  at: number;
  /** In flight + queued in the last report. */
  demand: number;
  sending: boolean;
  /** After a NoScalerError, nothing is sent until then. */
  mutedUntil: number;
}

/**
 * Coalesced load reports from one gateway process to each deployment's scaler:
 * sent on change (at most once per interval, leading edge: the first change
 * after a quiet interval goes at once) plus a heartbeat while the deployment
 * has replicas, so "no traffic" is reported as such and never confused with
 * "no data". `poke` sends at once when allowed: the cold-start path. A burst
 * (demand up by a replica's target) and a wake (demand up from zero) are sent
 * within urgentMs, so the scaler sees them at once instead of one interval later.
 */
export class LoadReporter {
  private readonly sent = new Map<string, Sent>();
  private servingIds: string[] = [];
  private servingReadAt = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private lastErrorLogAt = 0;

  private readonly urgentMs: number;

  constructor(private readonly o: LoadReporterOptions) {
    this.urgentMs = o.urgentMs ?? 100;
  }

  start() {
    this.timer = setInterval(() => void this.tick(Date.now()), Math.min(this.o.intervalMs, this.urgentMs));
    this.timer.unref();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Reports now if this deployment's interval allows it (else the next tick does). */
  poke(deploymentId: string, now = Date.now()) {
    void this.maybeSend(deploymentId, now);
  }

  /** One pass over every deployment this process should report on. Returns the sends started. */
  async tick(now: number): Promise<Promise<void>[]> {
    if (now - this.servingReadAt >= (this.o.servingRefreshMs ?? 5000)) {
      this.servingReadAt = now;
      try {
        this.servingIds = await this.o.serving();
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'could not list serving deployments; keeping the last list');
      }
    }
    const ids = new Set<string>([...this.servingIds, ...this.o.loaded()]);
    const started: Promise<void>[] = [];
    for (const id of ids) {
      const p = this.maybeSend(id, now);
      if (p) started.push(p);
    }
    // Forget deployments that are neither loaded here nor serving anywhere.
    for (const id of this.sent.keys()) if (!ids.has(id)) this.sent.delete(id);
    return started;
  }

  private maybeSend(deploymentId: string, now: number): Promise<void> | null {
    const load = this.o.load(deploymentId);
    const inFlight = load?.inFlight ?? 0;
    const queued = load?.queue.length ?? 0;
    const oldestQueuedMs = load?.oldestQueuedMs(now) ?? 0;
    // The queue's age is part of the news (it crosses the scaler's threshold), at interval resolution.
    const key = `${inFlight}/${queued}/${Math.floor(oldestQueuedMs / this.o.intervalMs)}`;
    const s = this.sent.get(deploymentId) ?? { key: '', at: -Infinity, demand: 0, sending: false, mutedUntil: 0 };
    this.sent.set(deploymentId, s);
    if (s.sending || now < s.mutedUntil) return null;
    const demand = inFlight + queued;
    const step = load?.targetConcurrency ?? 0;
    // Urgent: demand up by a replica's target (a burst), or from zero to any (a wake: a heartbeat of zero sent just
    // before must not hold a cold start back for the rest of the interval).
    const rise = (step > 0 && demand - s.demand >= step) || (s.demand === 0 && demand > 0);
    const urgent = rise && now - s.at >= this.urgentMs;
    if (!urgent && now - s.at < this.o.intervalMs) return null;
    if (key === s.key && now - s.at < this.o.heartbeatMs) return null;
    s.sending = true;
    const report: LoadReport = { gatewayId: this.o.gatewayId, inFlight, queued, oldestQueuedMs, at: now };
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = this.o.sinkTimeoutMs ?? 5000;
    const delivered = Promise.race([
      this.o.sink(deploymentId, report),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`load report not delivered within ${timeoutMs} ms`)), timeoutMs);
        timer.unref();
      }),
    ]).finally(() => clearTimeout(timer));
    return delivered.then(
      () => {
        s.sending = false;
        s.key = key;
        s.at = now;
        s.demand = demand;
        this.o.onSent?.('ok');
      },
      (err: Error) => {
        s.sending = false;
        if (err instanceof NoScalerError) {
          s.mutedUntil = now + 30_000;
          this.o.onSent?.('no_scaler');
          return;
        }
        this.o.onSent?.('error');
        if (now - this.lastErrorLogAt > 10_000) {
          this.lastErrorLogAt = now;
          this.o.log.warn({ err: err.message, deploymentId }, 'load report not delivered; retrying next interval');
        }
      },
    );
  }
}
