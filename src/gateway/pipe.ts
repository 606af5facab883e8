// Streaming one upstream response to its client: headers, chunks with backpressure, the usage tap, the first-byte
// and idle watchdog, and how it ended (done, broken, silent, client left or stopped reading), reported once to the caller.
import type { ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { ClientGone } from './client-gone';
import type { OpenAIError } from './errors';
import type { Metrics } from './metrics';
import { BodyTap, Usage, UsageTap } from './usage-tap';

/** How a piped response ended. */
export type PipeOutcome = 'ok' | 'upstream_broken' | 'upstream_timeout' | 'client_closed' | 'client_stalled';

/** What pipe() reads of the request whose response it streams. */
export interface Piped {
  /** The route label of its metrics: chat or embeddings. */
  readonly kind: string;
  readonly replicaId: string;
  /** Whether it paid a cold start, and how long it waited for a replica, ms: sent as response headers. */
  readonly cold: boolean;
  readonly queuedMs: number;
  /** The gateway asked the replica for stream usage the client did not ask for: take that event out. */
  readonly stripUsage: boolean;
  /** When it arrived (process.hrtime.bigint()). */
  readonly started: bigint;
  /** When it was sent to the replica, epoch ms. */
  readonly sentAt: number;
  readonly gone: ClientGone;
  /** The body's tap when it is not the usage tap: the Responses adapter, the audio counter of speech. */
  readonly translate?: (sse: boolean, status: number) => BodyTap;
}

/**
 * Called once per response, when it has ended: how, with which status, the usage read from it, its time to first
 * byte (ms; null when none came) and the replica's decode time (ms from a stream's first byte, else from sending).
 */
export type PipeFinished<R extends Piped> = (
  r: R,
  outcome: PipeOutcome,
  status: number,
  usage: Usage,
  ttftMs: number | null,
  decodeMs: number,
) => void;

/** One per gateway. */
export interface PipeOptions<R extends Piped> {
  /** A stream's time to its first byte, ms. */
  ttfbTimeoutMs: number;
  /**
   * Longest silence between chunks once a response has begun, ms; also the longest a client may leave what was written
   * to it unread (its socket full) before it is cut, as Envoy's stream idle timeout counts either side.
   */
  idleTimeoutMs: number;
  metrics: Pick<Metrics, 'ttft'>;
  finished: PipeFinished<R>;
}

/**
 * Streams the upstream body to the client as it comes (an SSE stream event by event), reading usage on the way;
 * watches for a replica that goes silent (time to first byte, then between chunks); calls `finished` exactly once.
 */
export function pipe<R extends Piped>(raw: ServerResponse, res: Dispatcher.ResponseData, r: R, o: PipeOptions<R>): void {
  const contentType = String(res.headers['content-type'] ?? 'application/json');
  const sse = contentType.startsWith('text/event-stream');
  const tap: BodyTap = r.translate ? r.translate(sse, res.statusCode) : new UsageTap(sse, r.stripUsage);
  // Admission's headers are already set on `raw`; writeHead adds these to them.
  const headers: Record<string, string> = {
    'content-type': contentType,
    'x-infercp-replica': r.replicaId,
    'x-infercp-cold-start': String(r.cold),
    'x-infercp-queue-ms': String(r.queuedMs),
  };
  if (sse) {
    headers['cache-control'] = 'no-cache';
    headers['x-accel-buffering'] = 'no';
  } else if (!tap.rewrites) {
    // A JSON body passes through unchanged: with its length Node sends headers and body in one write, unchunked.
    const length = res.headers['content-length'];
    if (typeof length === 'string' && /^\d+$/.test(length)) headers['content-length'] = length;
  }
  // Upstream errors keep their status: OpenAI-compatible engines already answer in the envelope.
  raw.writeHead(res.statusCode, headers);
  if (sse) raw.flushHeaders();
  let firstByteAt: number | null = null;
  let ttftMs: number | null = null;
  let lastChunkAt = Date.now();
  let silent: 'ttfb' | 'idle' | null = null;
  /** Since when the client has taken nothing of what was written (the upstream is paused for it); null while it reads. */
  let stalledSince: number | null = null;
  let done = false;

  const finish = (outcome: PipeOutcome) => {
    if (done) return;
    done = true;
    clearTimeout(watchdog);
    const decodeMs = Date.now() - (sse && firstByteAt !== null ? firstByteAt : r.sentAt);
    o.finished(r, outcome, res.statusCode, tap.result(), ttftMs, decodeMs);
  };

  // One timer per response, re-armed only when it fires: no timer work per chunk. A stream waits
  // for its first byte under the TTFB timeout; anything after that, and a JSON body, under the idle one.
  const watch = () => {
    const now = Date.now();
    if (stalledSince !== null) {
      if (now < stalledSince + o.idleTimeoutMs) {
        watchdog = setTimeout(watch, stalledSince + o.idleTimeoutMs - now);
        return;
      }
      // The client stopped reading, not the replica: the client is cut (its budget and replica slots come back, the
      // upstream request is cancelled), and the replica is not blamed for the silence the pause made.
      r.gone.abort();
      raw.destroy();
      res.body.destroy();
      finish('client_stalled');
      return;
    }
    const phase = sse && firstByteAt === null ? 'ttfb' : 'idle';
    const deadline = phase === 'ttfb' ? r.sentAt + o.ttfbTimeoutMs : lastChunkAt + o.idleTimeoutMs;
    if (now < deadline) {
      watchdog = setTimeout(watch, deadline - now);
      return;
    }
    silent = phase;
    res.body.destroy(new Error(silent === 'ttfb' ? `no first token within ${o.ttfbTimeoutMs} ms` : `silent for ${o.idleTimeoutMs} ms`));
  };
  let watchdog = setTimeout(watch, sse ? o.ttfbTimeoutMs : o.idleTimeoutMs);

  res.body.on('data', (chunk: Buffer) => {
    lastChunkAt = Date.now();
    if (firstByteAt === null) {
      firstByteAt = lastChunkAt;
      ttftMs = Number(process.hrtime.bigint() - r.started) / 1e6;
      o.metrics.ttft.observe({ route: r.kind }, ttftMs / 1000);
      // From here the idle timeout applies, not the (longer) time to first byte.
      clearTimeout(watchdog);
      watchdog = setTimeout(watch, o.idleTimeoutMs);
    }
    const out = tap.push(chunk);
    if (out.length && !raw.write(out)) {
      res.body.pause();
      stalledSince = Date.now();
      raw.once('drain', () => {
        // The replica's silence counts from here: while paused it could not be heard.
        stalledSince = null;
        lastChunkAt = Date.now();
        res.body.resume();
      });
    }
  });
  /**
   * Ends the response. A client that has stopped reading would hold the socket and what is buffered for it for good:
   * when it has not taken the rest within the idle timeout it is cut.
   */
  const end = (last: Buffer | string | undefined) => {
    raw.end(last);
    if (!raw.writableNeedDrain) return;
    const bound = setTimeout(() => raw.destroy(), o.idleTimeoutMs);
    bound.unref();
    raw.once('finish', () => clearTimeout(bound));
    raw.once('close', () => clearTimeout(bound));
  };
  res.body.on('end', () => {
    const rest = tap.flush();
    end(rest.length ? rest : undefined);
    finish('ok');
  });
  res.body.on('error', (err) => {
    if (r.gone.aborted) return; // the client left: handled on close
    if (sse) {
      // After the first byte the status is sent: end the stream with an error event.
      const e: OpenAIError = silent
        ? {
            ok: false,
            status: 504,
            type: 'server_error',
            code: 'upstream_timeout',
            message: `replica ${err.message} (GATEWAY_${silent === 'ttfb' ? 'TTFB' : 'IDLE'}_TIMEOUT_MS)`,
          }
        : { ok: false, status: 502, type: 'server_error', code: 'upstream_error', message: `replica failed mid-stream: ${err.message}` };
      end(tap.failure(e));
    } else {
      // A JSON body cut short must not look complete: the client sees the connection fail.
      raw.destroy();
    }
    finish(silent ? 'upstream_timeout' : 'upstream_broken');
  });
  raw.on('close', () => {
    if (!done) {
      r.gone.abort();
      res.body.destroy();
      finish('client_closed');
    }
  });
}
