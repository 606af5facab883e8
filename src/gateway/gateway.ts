import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Dispatcher, errors, Pool } from 'undici';
import { Directory, KeyInfo, Route } from './directory';
import { Admission, Admitted } from './admission';
import { readJsonBody } from './body';
import { ClientGone } from './client-gone';
import { parseRequest, RequestKind } from './requests';
import { envelope, OpenAIError, sendError, sendJson } from './errors';
import type { DeploymentLoad } from './load';
import { Metrics } from './metrics';
import type { LoadReporter } from './reporter';
import type { LimitStore } from './limits';
import { Queue } from './queue';
import { Usage, UsageTap } from './usage-tap';
import type { UsageRecorder } from '../usage/recorder';
import { PriceTable, tokenCostUsd } from '../domain/pricing';

export interface GatewayOptions {
  directory: Directory;
  metrics: Metrics;
  log: Logger;
  /** A non-streamed request's whole time at the replica, ms. */
  requestTimeoutMs: number;
  /** A streamed request's time to its first byte, ms. */
  ttfbTimeoutMs: number;
  /** Longest silence between chunks once a response has begun, ms. */
  idleTimeoutMs: number;
  /** Decode ms per token assumed for a deployment not yet measured (the max_tokens check). */
  assumedMsPerToken: number;
  /** Where finished requests are rolled up; absent in tests of the data path alone. */
  usage?: UsageRecorder;
  prices: PriceTable;
  /** How long a request waits for headroom on busy replicas before a 503, ms. */
  queueTimeoutMs: number;
  /** How long a request that found zero ready replicas waits for the cold start, ms. */
  coldStartTimeoutMs: number;
  /** Tells the scalers; absent in a gateway without Temporal (tests of the data path alone). */
  reporter?: LoadReporter;
  /** Where rate and concurrency counts live: this process, or Redis shared by every gateway. */
  limits: LimitStore;
  /** A key's bucket holds this many seconds of its per-minute rate as a burst. */
  rateBurstSeconds: number;
  /** Largest request body accepted, bytes (413 past it). */
  bodyLimitBytes: number;
}

/**
 * The OpenAI-compatible data path, served ahead of Fastify and Nest (see
 * handle()): authenticate -> resolve the deployment -> pick the
 * ready replica with the most headroom -> stream the upstream response through.
 */
export class Gateway {
  private readonly pools = new Map<string, Pool>();
  private readonly admission: Admission;
  /** This process's load and queue per deployment. */
  readonly queue: Queue;

  constructor(private readonly o: GatewayOptions) {
    this.admission = new Admission(o.directory, o.limits, o.log, o.rateBurstSeconds);
    this.queue = new Queue(o.directory, o.queueTimeoutMs, o.coldStartTimeoutMs, o.reporter);
    o.metrics.observeLoads(() => this.queue.loads.values());
  }

  /**
   * Serves /v1/* straight from Node's HTTP server, ahead of Fastify and Nest:
   * the data path needs none of their routing, hooks or reply objects, and the
   * key and admission are checked before the body is read (Fastify parses it
   * first, up to the 16 MiB limit, for anyone). Returns false for any other
   * path, which the caller hands on to Fastify.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '';
    if (!(url.startsWith('/v1/') || url === '/v1' || url.startsWith('/v1?'))) return false;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    let served: Promise<unknown>;
    if (req.method === 'POST' && path === '/v1/chat/completions') served = this.proxy(req, res, 'chat');
    else if (req.method === 'POST' && path === '/v1/embeddings') served = this.proxy(req, res, 'embeddings');
    else if (req.method === 'GET' && path === '/v1/models') served = this.models(req, res);
    else {
      sendError(res, { status: 404, type: 'invalid_request_error', code: 'unknown_url', message: `Unknown request URL: ${req.method} ${url.slice(0, 200)}` });
      return true;
    }
    served.catch((err: unknown) => {
      this.o.log.error({ err }, 'gateway error');
      if (!res.headersSent) sendError(res, { status: 500, type: 'server_error', code: 'internal_error', message: 'internal error' });
      else res.destroy();
    });
    return true;
  }

  async close() {
    this.queue.close();
    await Promise.all([...this.pools.values()].map((p) => p.close().catch(() => {})));
  }

  private async models(req: IncomingMessage, res: ServerResponse) {
    const key = await this.admission.authenticate(req);
    if ('status' in key) return this.fail(res, 'models', key);
    const routes = await this.o.directory.reachable(key);
    const data = routes.flatMap((r) => {
      const created = 0;
      const entries = [{ id: r.deploymentId, object: 'model', created, owned_by: r.workspaceId, pipeline: r.pipelineName, task: r.task.toLowerCase() }];
      if (key.scope !== 'WORKSPACE') entries.unshift(Object.assign({}, entries[0], { id: 'default' }));
      else entries.push(Object.assign({}, entries[0], { id: r.pipelineName }));
      return entries;
    });
    this.o.metrics.requests.inc({ route: 'models', status: '200', code: '' });
    sendJson(res, 200, { object: 'list', data });
  }

  private async resolve(key: KeyInfo, model: string): Promise<Route | OpenAIError> {
    let deploymentId: string | null = null;
    if (key.deploymentId) {
      deploymentId = key.deploymentId;
    } else {
      deploymentId = await this.o.directory.resolveModel(key.workspaceId, model, key.pipelineId);
    }
    const route = deploymentId ? await this.o.directory.route(deploymentId) : null;
    if (!route || route.workspaceId !== key.workspaceId) {
      return { status: 404, type: 'invalid_request_error', code: 'model_not_found', param: 'model', message: `The model '${model}' does not exist or this key cannot reach it.` };
    }
    if (key.deploymentId && !['default', route.deploymentId, route.pipelineName, route.model].includes(model)) {
      return { status: 404, type: 'invalid_request_error', code: 'model_not_found', param: 'model', message: `The model '${model}' is not served by this key's deployment; use 'default'.` };
    }
    if (route.deploymentStatus !== 'ACTIVE') {
      return { status: 503, type: 'server_error', code: 'deployment_not_active', message: `Deployment ${route.deploymentId} is ${route.deploymentStatus}.`, headers: { 'retry-after': '5' } };
    }
    return route;
  }

  private pool(address: string): Pool {
    let p = this.pools.get(address);
    if (!p) {
      // No connection cap: admission already holds each replica to its concurrency, and a cap below
      // it (undici queues past it) would hide a queue inside the pool from the scaler.
      p = new Pool(address, { connections: null, pipelining: 1, keepAliveTimeout: 30_000 });
      this.pools.set(address, p);
    }
    return p;
  }

  private fail(res: ServerResponse, route: string, e: OpenAIError) {
    this.o.metrics.requests.inc({ route, status: String(e.status), code: e.code });
    sendError(res, e);
  }

  /** Key, then admission, then the body: a refused request costs no body read (Node drains what was not read). */
  private async proxy(req: IncomingMessage, res: ServerResponse, kind: RequestKind) {
    const started = process.hrtime.bigint();
    const key = await this.admission.authenticate(req);
    if ('status' in key) return this.fail(res, kind, key);
    const admitted = await this.admission.admit(key);
    if ('status' in admitted) return this.fail(res, kind, admitted);
    for (const k in admitted.headers) res.setHeader(k, admitted.headers[k]);
    const piped = { yes: false };
    try {
      const body = await readJsonBody(req, this.o.bodyLimitBytes);
      if ('status' in body) return this.fail(res, kind, body);
      return await this.forward(res, body.value, kind, key, admitted, started, piped);
    } finally {
      // A request that never reached the streaming stage gives its slot back here; pipe() does it otherwise.
      if (!piped.yes) admitted.release();
    }
  }

  /**
   * The reference's known limitation, made explicit: a non-streamed completion
   * whose max_tokens would take longer than the request timeout at this
   * deployment's measured decode speed is refused up front, advising streaming.
   */
  private tooLongUnstreamed(load: DeploymentLoad, maxTokens: number): OpenAIError | null {
    const per = load.msPerToken ?? this.o.assumedMsPerToken;
    const estimateMs = per * maxTokens;
    if (estimateMs <= this.o.requestTimeoutMs) return null;
    const basis = load.msPerToken === null ? 'assumed until this deployment has been measured' : 'as measured on this deployment';
    return {
      status: 400, type: 'invalid_request_error', code: 'stream_required', param: 'max_tokens',
      message: `max_tokens ${maxTokens} at about ${per.toFixed(1)} ms per token (${basis}) would take about ${Math.round(estimateMs / 1000)} s, `
        + `past the ${Math.round(this.o.requestTimeoutMs / 1000)} s limit on non-streamed requests; set "stream": true `
        + `(a stream has no total limit, only ${Math.round(this.o.idleTimeoutMs / 1000)} s of silence) or lower max_tokens.`,
    };
  }

  private async forward(res: ServerResponse, json: unknown, kind: RequestKind, key: KeyInfo, admitted: Admitted, started: bigint, piped: { yes: boolean }) {
    const parsed = parseRequest(kind, json);
    if (!parsed.success) return this.fail(res, kind, parsed.error);
    const body = parsed.data;
    const route = await this.resolve(key, body.model);
    if ('status' in route) return this.fail(res, kind, route);
    if ((kind === 'chat' && route.task !== 'CHAT') || (kind === 'embeddings' && route.task !== 'EMBEDDINGS')) {
      return this.fail(res, kind, { status: 400, type: 'invalid_request_error', code: 'unsupported_task', param: 'model', message: `Deployment ${route.deploymentId} serves ${route.task.toLowerCase()}, not ${kind}.` });
    }
    const load = this.queue.loadOf(route.deploymentId);
    const stream = kind === 'chat' && body.stream === true;
    const maxTokens = body.max_tokens ?? body.max_completion_tokens;
    if (kind === 'chat' && !stream && maxTokens) {
      const refused = this.tooLongUnstreamed(load, maxTokens);
      if (refused) return this.fail(res, kind, refused);
    }

    // The upstream always comes from the route table; the request only picks among its replicas.
    // Streams always ask for usage; the usage chunk is taken out again if the client did not ask.
    const stripUsage = stream && body.stream_options?.include_usage !== true;
    // Object.assign, not spread: Node 20 gives `{ ...a, newKey }` a new hidden class on every call (see pipe()).
    const upstreamRequest = Object.assign({}, body, { model: route.model });
    if (stripUsage) upstreamRequest.stream_options = Object.assign({}, body.stream_options, { include_usage: true });
    const upstreamBody = JSON.stringify(upstreamRequest);
    const path = kind === 'chat' ? '/v1/chat/completions' : '/v1/embeddings';
    const abort = new ClientGone();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on('close', onClose);
    const refuse = (e: OpenAIError) => {
      res.off('close', onClose);
      this.account(route, key, false, null, started, null);
      return this.fail(res, kind, e);
    };

    // FIFO: nobody overtakes a queued request.
    let handed = load.queue.length === 0 ? load.acquire(route.replicas, Date.now()) : null;
    let queuedMs = 0;
    let cold = false;
    if (!handed) {
      cold = route.replicas.length === 0;
      const t0 = Date.now();
      handed = await this.queue.wait(load, cold, abort);
      queuedMs = Date.now() - t0;
      if (abort.aborted) {
        if (handed) this.queue.release(load, handed.id, false);
        return;
      }
      if (!handed) {
        const ready = (await this.o.directory.route(route.deploymentId))?.replicas.length ?? 0;
        return refuse({
          status: 503,
          type: 'server_error',
          code: 'no_replica_available',
          message: ready === 0
            ? `Deployment ${route.deploymentId} has no ready replica after ${queuedMs} ms of cold start; retry shortly.`
            : `Every replica of deployment ${route.deploymentId} is busy and the queue timed out after ${queuedMs} ms; retry shortly.`,
          headers: { 'retry-after': String(load.retryAfterSeconds(Date.now(), ready)) },
        });
      }
      if (cold) this.o.metrics.coldStarts.inc();
    }

    const tried = new Set<string>();
    // A replica that fails before the first byte is retried once on another.
    for (let attempt = 0; attempt < 2; attempt++) {
      const replica = attempt === 0 ? handed : load.acquire((await this.o.directory.route(route.deploymentId))?.replicas ?? [], Date.now(), tried);
      if (!replica) break;
      tried.add(replica.id);
      const sentAt = Date.now();
      const sentHr = process.hrtime.bigint();
      let upstream: Dispatcher.ResponseData;
      try {
        upstream = await this.pool(replica.address).request({
          path,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: upstreamBody,
          signal: abort,
          // A stream's headers come at once; a non-streamed answer's come with its body, at the end.
          headersTimeout: stream ? this.o.ttfbTimeoutMs : this.o.requestTimeoutMs,
          // Silence inside the body is watched by pipe(), which knows the first byte from the rest.
          bodyTimeout: 0,
        });
      } catch (err) {
        this.queue.release(load, replica.id, false);
        if (abort.aborted) return;
        if (err instanceof errors.HeadersTimeoutError) {
          // Not retried: another replica would make the client wait as long again.
          return refuse({
            status: 504, type: 'server_error', code: 'upstream_timeout',
            message: stream
              ? `The replica sent nothing within ${this.o.ttfbTimeoutMs} ms (GATEWAY_TTFB_TIMEOUT_MS).`
              : `The replica did not answer within ${this.o.requestTimeoutMs} ms (GATEWAY_REQUEST_TIMEOUT_MS); for long completions set "stream": true.`,
          });
        }
        load.eject(replica.id, Date.now());
        this.o.log.warn({ err: (err as Error).message, replica: replica.id }, 'upstream failed before the first byte');
        continue;
      }
      if (upstream.statusCode >= 500 && attempt === 0 && route.replicas.length > 1) {
        await upstream.body.dump().catch(() => {});
        this.queue.release(load, replica.id, false);
        continue;
      }
      piped.yes = true;
      return this.pipe(res, upstream, { kind, replicaId: replica.id, load, started, sentAt, sentHr, abort, queuedMs, cold, admitted, route, key, stripUsage });
    }
    return refuse({
      status: 503,
      type: 'server_error',
      code: 'no_replica_available',
      message: `No replica of deployment ${route.deploymentId} could take this request; retry shortly.`,
      headers: { 'retry-after': String(load.retryAfterSeconds(Date.now(), route.replicas.length)) },
    });
  }

  /** Rolls a finished request into usage: tokens, latency, time to first byte and what it cost. Returns its latency, ms. */
  private account(route: Route, key: KeyInfo, ok: boolean, usage: Usage | null, started: bigint, ttftMs: number | null, billable = ok): number {
    const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
    const prompt = usage?.promptTokens ?? 0;
    const completion = usage?.completionTokens ?? 0;
    if (prompt) this.o.metrics.tokens.inc({ deployment: route.deploymentId, type: 'prompt' }, prompt);
    if (completion) this.o.metrics.tokens.inc({ deployment: route.deploymentId, type: 'completion' }, completion);
    this.o.usage?.record({
      deploymentId: route.deploymentId,
      apiKeyId: key.id,
      at: Date.now(),
      ok,
      promptTokens: prompt,
      completionTokens: completion,
      latencyMs,
      ttftMs,
      costUsd: billable ? tokenCostUsd(this.o.prices, route, prompt + completion) : 0,
    });
    return latencyMs;
  }

  /**
   * Streams the upstream body to the client as it comes (an SSE stream event by
   * event), reading usage on the way; watches for a replica that goes silent
   * (time to first byte, then between chunks); gives every slot back exactly once.
   */
  private pipe(
    raw: ServerResponse,
    res: Dispatcher.ResponseData,
    x: {
      kind: string; replicaId: string; load: DeploymentLoad; started: bigint; sentAt: number; sentHr: bigint; abort: ClientGone;
      queuedMs: number; cold: boolean; admitted: Admitted; route: Route; key: KeyInfo; stripUsage: boolean;
    },
  ) {
    const { kind, replicaId, started, abort } = x;
    const contentType = String(res.headers['content-type'] ?? 'application/json');
    const sse = contentType.startsWith('text/event-stream');
    // Admission's headers are already set on `raw`; writeHead adds these to them. No `{ ...spread, more }` here:
    // Node 20's V8 gives an object built that way a new hidden class on every call (22's does not), made in the old
    // generation with its descriptors and Object.keys cache: half of what this function allocated outlived young
    // collections, against 6 % of the rest of the request path (sampling heap profile at 500 requests/s).
    const headers: Record<string, string> = {
      'content-type': contentType,
      'x-infercp-replica': replicaId,
      // Whether this request paid a cold start, and how long it waited for a replica.
      'x-infercp-cold-start': String(x.cold),
      'x-infercp-queue-ms': String(x.queuedMs),
    };
    if (sse) {
      headers['cache-control'] = 'no-cache';
      headers['x-accel-buffering'] = 'no';
    } else {
      // A JSON body passes through unchanged: its length lets the client read it without chunked framing, and
      // lets Node send headers and body in one write instead of adding a separate terminating chunk.
      const length = res.headers['content-length'];
      if (typeof length === 'string' && /^\d+$/.test(length)) headers['content-length'] = length;
    }
    // Upstream errors keep their status: OpenAI-compatible engines already answer in the envelope.
    raw.writeHead(res.statusCode, headers);
    if (sse) raw.flushHeaders();
    const tap = new UsageTap(sse, x.stripUsage);
    let firstByteAt: number | null = null;
    let ttftMs: number | null = null;
    let lastChunkAt = Date.now();
    let silent: 'ttfb' | 'idle' | null = null;
    let done = false;

    const finish = (outcome: 'ok' | 'upstream_broken' | 'upstream_timeout' | 'client_closed') => {
      if (done) return;
      done = true;
      clearTimeout(watchdog);
      const ok = outcome === 'ok';
      const now = Date.now();
      // A replica that broke or stalled gets nothing new from this process for a while.
      if (outcome === 'upstream_broken' || outcome === 'upstream_timeout') x.load.eject(replicaId, now);
      this.queue.release(x.load, replicaId, ok);
      x.admitted.release();
      const usage = tap.result();
      if (ok && usage.completionTokens) x.load.observeDecode(usage.completionTokens, now - (sse && firstByteAt !== null ? firstByteAt : x.sentAt));
      // Tokens of a stream the client cancelled were served; those of a replica's failure are not billed.
      // A client that cancels is not an error of the deployment's.
      const served = ok || outcome === 'client_closed';
      const upstreamMs = Number(process.hrtime.bigint() - x.sentHr) / 1e6;
      const latencyMs = this.account(x.route, x.key, served && res.statusCode < 400, usage, started, ttftMs, served);
      this.o.metrics.requests.inc({ route: kind, status: String(res.statusCode), code: ok ? '' : outcome });
      this.o.metrics.latency.observe({ route: kind }, latencyMs / 1000);
      // What the gateway itself added (Kong's "latency" beside its upstream latency): auth, admission, body, routing, and
      // the last write. Time the event loop was busy elsewhere while the replica's bytes waited is counted as the replica's.
      this.o.metrics.overhead.observe({ route: kind }, Math.max(0, latencyMs - upstreamMs - x.queuedMs) / 1000);
    };

    // One timer per response, re-armed only when it fires: no timer work per chunk. A stream waits
    // for its first byte under the TTFB timeout; anything after that, and a JSON body, under the idle one.
    const watch = () => {
      const phase = sse && firstByteAt === null ? 'ttfb' : 'idle';
      const deadline = phase === 'ttfb' ? x.sentAt + this.o.ttfbTimeoutMs : lastChunkAt + this.o.idleTimeoutMs;
      const now = Date.now();
      if (now < deadline) {
        watchdog = setTimeout(watch, deadline - now);
        return;
      }
      silent = phase;
      res.body.destroy(new Error(silent === 'ttfb' ? `no first token within ${this.o.ttfbTimeoutMs} ms` : `silent for ${this.o.idleTimeoutMs} ms`));
    };
    let watchdog = setTimeout(watch, sse ? this.o.ttfbTimeoutMs : this.o.idleTimeoutMs);

    res.body.on('data', (chunk: Buffer) => {
      lastChunkAt = Date.now();
      if (firstByteAt === null) {
        firstByteAt = lastChunkAt;
        ttftMs = Number(process.hrtime.bigint() - started) / 1e6;
        this.o.metrics.ttft.observe({ route: kind }, ttftMs / 1000);
        // From here the idle timeout applies, not the (longer) time to first byte.
        clearTimeout(watchdog);
        watchdog = setTimeout(watch, this.o.idleTimeoutMs);
      }
      const out = tap.push(chunk);
      if (out.length && !raw.write(out)) {
        res.body.pause();
        raw.once('drain', () => res.body.resume());
      }
    });
    res.body.on('end', () => {
      const rest = tap.flush();
      raw.end(rest.length ? rest : undefined);
      finish('ok');
    });
    res.body.on('error', (err) => {
      if (abort.aborted) return; // the client left: handled on close
      if (sse) {
        // After the first byte the status is sent: end the stream with an error event.
        const e: OpenAIError = silent
          ? { status: 504, type: 'server_error', code: 'upstream_timeout', message: `replica ${err.message} (GATEWAY_${silent === 'ttfb' ? 'TTFB' : 'IDLE'}_TIMEOUT_MS)` }
          : { status: 502, type: 'server_error', code: 'upstream_error', message: `replica failed mid-stream: ${err.message}` };
        raw.end(`${tap.flush().toString()}data: ${JSON.stringify(envelope(e))}\n\n`);
      } else {
        // A JSON body cut short must not look complete: the client sees the connection fail.
        raw.destroy();
      }
      finish(silent ? 'upstream_timeout' : 'upstream_broken');
    });
    raw.on('close', () => {
      if (!done) {
        abort.abort();
        res.body.destroy();
        finish('client_closed');
      }
    });
  }
}
