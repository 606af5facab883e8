// The /v1 router (handle) and forwarding: route resolution, the queue, one retry on another replica, then pipe();
// the end of each piped response comes back here for release and accounting.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Dispatcher, errors, Pool } from 'undici';
import { DatabaseUnavailableError, Directory, KeyInfo, Route } from './directory';
import { Admission, Admitted } from './admission';
import { audioSeconds } from '../common/media';
import { encodeForm, Form } from '../common/multipart';
import type { Task } from '../domain/targets';
import { readFormBody, readJsonBody } from './body';
import { AudioTap } from './usage-tap';
import { ClientGone } from './client-gone';
import { parseRequest, RequestBody, RequestKind } from './requests';
import { ResponseRequest, responsesToChat, ResponsesTap } from './responses';
import { databaseUnavailable, modelNotFound, noReplica, OpenAIError, refused, sendError, sendJson } from './errors';
import type { DeploymentLoad } from './load';
import { Metrics } from './metrics';
import type { LoadReporter } from './reporter';
import type { LimitStore } from './limits';
import { Queue } from './queue';
import { pipe, PipeFinished, PipeOptions, Piped } from './pipe';
import type { Usage } from './usage-tap';
import type { UsageRecorder } from '../usage/recorder';
import type { LoadSampler } from '../monitoring/sampler';
import { PriceTable, tokenCostUsd, Units, unitCostUsd } from '../domain/pricing';

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
  /** Where finished and refused requests feed the per-minute load samples (the console); absent in tests of the data path alone. */
  samples?: LoadSampler;
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

/** The POST routes the gateway serves, by path. */
const POST_ROUTES = new Map<string, RequestKind>([
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
  ['/v1/responses', 'responses'],
  ['/v1/embeddings', 'embeddings'],
  ['/v1/images/generations', 'images'],
  ['/v1/audio/speech', 'speech'],
  ['/v1/audio/transcriptions', 'transcriptions'],
]);

const NO_UNITS: Units = { images: 0, audioSeconds: 0 };

/** The pipeline task each route needs. */
const TASK_OF: Record<RequestKind, Task> = {
  chat: 'CHAT',
  completions: 'CHAT',
  responses: 'CHAT',
  embeddings: 'EMBEDDINGS',
  images: 'IMAGE',
  speech: 'AUDIO',
  transcriptions: 'AUDIO',
};

/** Where each is sent on: a Response is a chat completion at the replica. */
const UPSTREAM_PATH: Record<RequestKind, string> = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
  responses: '/v1/chat/completions',
  embeddings: '/v1/embeddings',
  images: '/v1/images/generations',
  speech: '/v1/audio/speech',
  transcriptions: '/v1/audio/transcriptions',
};

/** A request a replica answers: what pipe() reads, and what the end of its response is accounted with. */
interface Served extends Piped {
  readonly load: DeploymentLoad;
  readonly admitted: Admitted;
  readonly route: Route;
  readonly key: KeyInfo;
  /** When it was handed to the upstream client (process.hrtime.bigint()): the replica's share of its latency starts here. */
  readonly sentHr: bigint;
  /** Images and audio seconds it is billed for (a spoken answer's seconds come from the tap). */
  readonly units: Units;
}

/** The OpenAI-compatible data path: admit -> resolve the deployment -> the ready replica with the most headroom -> pipe. */
export class Gateway {
  private readonly pools = new Map<string, { pool: Pool; prefix: string }>();
  private readonly admission: Admission;
  /** This process's load and queue per deployment. */
  readonly queue: Queue;
  private readonly piping: PipeOptions<Served>;
  private lastDatabaseErrorLogAt = 0;

  constructor(private readonly o: GatewayOptions) {
    this.admission = new Admission(o.directory, o.limits, o.log, o.rateBurstSeconds, (d) => o.metrics.limitStoreDegraded.set(d ? 1 : 0));
    this.queue = new Queue(o.directory, o.queueTimeoutMs, o.coldStartTimeoutMs, o.reporter);
    o.metrics.observeLoads(() => this.queue.loads.values());
    this.piping = { ttfbTimeoutMs: o.ttfbTimeoutMs, idleTimeoutMs: o.idleTimeoutMs, metrics: o.metrics, finished: this.finished };
  }

  /**
   * Serves /v1/* from Node's HTTP server, ahead of Fastify (which would parse any body, up to 16 MiB, before the key
   * is checked) and Nest; false for any other path, which the caller hands on to Fastify.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '';
    if (!(url.startsWith('/v1/') || url === '/v1' || url.startsWith('/v1?'))) return false;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    // On every response, errors included (the OpenAI SDKs surface it as the request id); sent on to the replica too.
    const requestId = `req_${randomUUID().replaceAll('-', '')}`;
    res.setHeader('x-request-id', requestId);
    let served: Promise<unknown>;
    const kind = req.method === 'POST' ? POST_ROUTES.get(path) : undefined;
    if (kind) served = this.proxy(req, res, kind);
    else if (req.method === 'GET' && path === '/v1/models') served = this.models(req, res);
    else {
      sendError(res, {
        ok: false,
        status: 404,
        type: 'invalid_request_error',
        code: 'unknown_url',
        message: `Unknown request URL: ${req.method} ${url.slice(0, 200)}`,
      });
      return true;
    }
    served.catch((err: unknown) => {
      if (err instanceof DatabaseUnavailableError) {
        // Postgres unreachable and nothing cached recent enough: a clean 503, logged at most every 10 s.
        const now = Date.now();
        if (now - this.lastDatabaseErrorLogAt > 10_000) {
          this.lastDatabaseErrorLogAt = now;
          this.o.log.warn({ err: err.message, requestId }, 'gateway could not read Postgres; answering 503 database_unavailable');
        }
        if (!res.headersSent) return this.fail(res, kind ?? 'models', databaseUnavailable());
        return void res.destroy();
      }
      this.o.log.error({ err, requestId }, 'gateway error');
      if (!res.headersSent)
        sendError(res, { ok: false, status: 500, type: 'server_error', code: 'internal_error', message: 'internal error' });
      else res.destroy();
    });
    return true;
  }

  async close() {
    this.queue.close();
    await Promise.all([...this.pools.values()].map((p) => p.pool.close().catch(() => {})));
  }

  private async models(req: IncomingMessage, res: ServerResponse) {
    const key = await this.admission.authenticate(req);
    if (refused(key)) return this.fail(res, 'models', key);
    const routes = await this.o.directory.reachable(key);
    const data = routes.flatMap((r) => {
      const created = 0;
      const entries = [
        { id: r.deploymentId, object: 'model', created, owned_by: r.workspaceId, pipeline: r.pipelineName, task: r.task.toLowerCase() },
      ];
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
      if (key.deploymentId) return modelNotFound(`The model '${model}' does not exist or this key cannot reach it.`);
      // A workspace or pipeline key names its target: say which names it has.
      const names = await this.o.directory.choices(key);
      const hint =
        model === 'default' && key.scope === 'WORKSPACE'
          ? " A workspace key reaches several pipelines, so 'default' names none of them."
          : '';
      return modelNotFound(
        `The model '${model}' is not a deployment this key reaches.${hint} ` +
          (names.length ? `Name one by pipeline or deployment id: ${names.join(', ')}.` : 'This key reaches no ACTIVE deployment.'),
      );
    }
    if (key.deploymentId && !['default', route.deploymentId, route.pipelineName, route.model].includes(model)) {
      return modelNotFound(`The model '${model}' is not served by this key's deployment; use 'default'.`);
    }
    if (route.deploymentStatus === 'STOPPING' || route.deploymentStatus === 'STOPPED') {
      // No cold start: a stopped deployment serves again only through startDeployment.
      return {
        ok: false,
        status: 503,
        type: 'server_error',
        code: 'deployment_stopped',
        message: `Deployment ${route.deploymentId} is ${route.deploymentStatus}; start it (GraphQL startDeployment) to serve requests again.`,
      };
    }
    if (route.deploymentStatus !== 'ACTIVE') {
      return {
        ok: false,
        status: 503,
        type: 'server_error',
        code: 'deployment_not_active',
        message: `Deployment ${route.deploymentId} is ${route.deploymentStatus}.`,
        headers: { 'retry-after': '5' },
      };
    }
    return route;
  }

  /** The connection pool of an upstream, and the path its OpenAI routes sit under (a RunPod endpoint's /v2/<id>/openai). */
  private pool(address: string): { pool: Pool; prefix: string } {
    let p = this.pools.get(address);
    if (!p) {
      const url = new URL(address);
      // No connection cap: admission already holds each replica to its concurrency, and a cap below
      // it (undici queues past it) would hide a queue inside the pool from the scaler.
      p = {
        pool: new Pool(url.origin, { connections: null, pipelining: 1, keepAliveTimeout: 30_000 }),
        prefix: url.pathname.replace(/\/+$/, ''),
      };
      this.pools.set(address, p);
    }
    return p;
  }

  /** Answers with a refusal; false: the response is not pipe()'s. */
  private fail(res: ServerResponse, route: string, e: OpenAIError): false {
    this.o.metrics.requests.inc({ route, status: String(e.status), code: e.code });
    sendError(res, e);
    return false;
  }

  /**
   * Key, spend cap and rate, then the body, then the concurrency slot: a request refused on its headers costs no body
   * read (Node drains what was not read), and a body still arriving (a slow or silent client) holds no budget slot.
   */
  private async proxy(req: IncomingMessage, res: ServerResponse, kind: RequestKind) {
    const started = process.hrtime.bigint();
    const key = await this.admission.authenticate(req);
    if (refused(key)) return this.fail(res, kind, key);
    const checked = await this.admission.check(key);
    if (refused(checked)) return this.fail(res, kind, checked);
    for (const k in checked.headers) res.setHeader(k, checked.headers[k]);
    const body =
      kind === 'transcriptions' ? await readFormBody(req, this.o.bodyLimitBytes) : await readJsonBody(req, this.o.bodyLimitBytes);
    if (refused(body)) return this.fail(res, kind, body);
    const admitted = await this.admission.slot(key, checked.headers);
    if (refused(admitted)) return this.fail(res, kind, admitted);
    let piped = false;
    try {
      piped = await this.forward(res, body.value, kind, key, admitted, started);
    } finally {
      // A request that never reached pipe() gives its slot back here; the end of its response does otherwise.
      if (!piped) admitted.release();
    }
  }

  /**
   * A non-streamed completion whose max_tokens would outlast the request timeout at this deployment's decode speed is
   * refused up front, advising streaming: the reference's known limitation, made explicit.
   */
  private tooLongUnstreamed(load: DeploymentLoad, maxTokens: number): OpenAIError | null {
    const per = load.msPerToken ?? this.o.assumedMsPerToken;
    const estimateMs = per * maxTokens;
    if (estimateMs <= this.o.requestTimeoutMs) return null;
    const basis = load.msPerToken === null ? 'assumed until this deployment has been measured' : 'as measured on this deployment';
    return {
      ok: false,
      status: 400,
      type: 'invalid_request_error',
      code: 'stream_required',
      param: 'max_tokens',
      message:
        `max_tokens ${maxTokens} at about ${per.toFixed(1)} ms per token (${basis}) would take about ${Math.round(estimateMs / 1000)} s, ` +
        `past the ${Math.round(this.o.requestTimeoutMs / 1000)} s limit on non-streamed requests; set "stream": true ` +
        `(a stream has no total limit, only ${Math.round(this.o.idleTimeoutMs / 1000)} s of silence) or lower max_tokens.`,
    };
  }

  /** Resolves, queues and sends the request, retrying once on another replica; true once pipe() owns the response. */
  private async forward(
    res: ServerResponse,
    json: unknown,
    kind: RequestKind,
    key: KeyInfo,
    admitted: Admitted,
    started: bigint,
  ): Promise<boolean> {
    // /v1/responses is served as a chat completion and its answer rewritten on the way back.
    let body: RequestBody;
    let responses: ResponseRequest | null = null;
    // An upload (a transcription) is sent on as a form again, with the replica's model name in it.
    let form: Form | null = null;
    if (kind === 'responses') {
      const mapped = responsesToChat(json);
      if (refused(mapped)) return this.fail(res, kind, mapped);
      ({ chat: body, request: responses } = mapped);
    } else if (kind === 'transcriptions') {
      form = json as Form;
      const missing = !form.fields.model ? 'model' : !form.files.file ? 'file' : null;
      if (missing) {
        return this.fail(res, kind, {
          ok: false,
          status: 400,
          type: 'invalid_request_error',
          code: 'invalid_body',
          param: missing,
          message: missing === 'model' ? "'model' is required (a form field)" : "'file' is required: the audio to transcribe",
        });
      }
      body = { model: form.fields.model };
    } else {
      const parsed = parseRequest(kind, json);
      if (!parsed.success) return this.fail(res, kind, parsed.error);
      body = parsed.data;
    }
    const route = await this.resolve(key, body.model);
    if (refused(route)) return this.fail(res, kind, route);
    if (route.task !== TASK_OF[kind]) {
      return this.fail(res, kind, {
        ok: false,
        status: 400,
        type: 'invalid_request_error',
        code: 'unsupported_task',
        param: 'model',
        message: `Deployment ${route.deploymentId} serves ${route.task.toLowerCase()}, not ${kind}.`,
      });
    }
    const load = this.queue.loadOf(route.deploymentId);
    load.targetConcurrency = route.targetConcurrency;
    const stream = kind !== 'embeddings' && body.stream === true;
    const maxTokens = body.max_tokens ?? body.max_completion_tokens;
    if (kind !== 'embeddings' && !stream && maxTokens) {
      const tooLong = this.tooLongUnstreamed(load, maxTokens);
      if (tooLong) return this.fail(res, kind, tooLong);
    }

    // The upstream always comes from the route table; the request only picks among its replicas.
    // Streams always ask for usage; the usage chunk is taken out again if the client did not ask.
    // (The Responses adapter reads usage from the chat stream and never sends a chat event on.)
    const askUsage = stream && (responses !== null || body.stream_options?.include_usage !== true);
    const stripUsage = askUsage && responses === null;
    // What the replica gets: the request under the replica's model name, as JSON, or as a form again for an upload.
    let outgoing: { body: string | Buffer; contentType: string };
    if (form) outgoing = await encodeForm({ fields: Object.assign({}, form.fields, { model: route.model }), files: form.files });
    else {
      const upstreamRequest = Object.assign({}, body, { model: route.model });
      if (askUsage) upstreamRequest.stream_options = Object.assign({}, body.stream_options, { include_usage: true });
      outgoing = { body: JSON.stringify(upstreamRequest), contentType: 'application/json' };
    }
    const path = UPSTREAM_PATH[kind];
    // Billed per unit, not per token: images asked for, audio seconds uploaded (a spoken answer's are counted as it streams).
    const units: Units = {
      images: kind === 'images' ? (typeof body.n === 'number' ? body.n : 1) : 0,
      audioSeconds: form ? audioSeconds(form.files.file.data.subarray(0, 44), form.files.file.data.length) : 0,
    };
    const translate = responses
      ? (sse: boolean, status: number) => new ResponsesTap(sse, status, responses)
      : kind === 'speech'
        ? () => new AudioTap()
        : undefined;
    const gone = new ClientGone();
    const onClose = () => {
      if (!res.writableFinished) gone.abort();
    };
    res.on('close', onClose);
    const refuse = (e: OpenAIError) => {
      res.off('close', onClose);
      this.account(route, key, false, null, started, null, false, NO_UNITS, e.code ?? `http_${e.status}`);
      return this.fail(res, kind, e);
    };

    // FIFO: nobody overtakes a queued request.
    let handed = load.queue.length === 0 ? load.acquire(route.replicas, Date.now()) : null;
    let queuedMs = 0;
    let cold = false;
    if (!handed) {
      cold = route.replicas.length === 0;
      const t0 = Date.now();
      handed = await this.queue.wait(load, cold, gone);
      queuedMs = Date.now() - t0;
      if (gone.aborted) {
        if (handed) this.queue.release(load, handed.id, false);
        return false;
      }
      if (!handed) {
        const ready = (await this.o.directory.route(route.deploymentId))?.replicas.length ?? 0;
        return refuse(
          noReplica(
            ready === 0
              ? `Deployment ${route.deploymentId} has no ready replica after ${queuedMs} ms of cold start; retry shortly.`
              : `Every replica of deployment ${route.deploymentId} is busy and the queue timed out after ${queuedMs} ms; retry shortly.`,
            load.retryAfterSeconds(Date.now(), ready),
          ),
        );
      }
      if (cold) this.o.metrics.coldStarts.inc();
    }

    const tried = new Set<string>();
    // A replica that fails before the first byte is retried once on another.
    for (let attempt = 0; attempt < 2; attempt++) {
      const replica =
        attempt === 0 ? handed : load.acquire((await this.o.directory.route(route.deploymentId))?.replicas ?? [], Date.now(), tried);
      if (!replica) break;
      tried.add(replica.id);
      const sentAt = Date.now();
      const sentHr = process.hrtime.bigint();
      let upstream: Dispatcher.ResponseData;
      try {
        const upstreamPool = this.pool(replica.address);
        upstream = await upstreamPool.pool.request({
          path: upstreamPool.prefix + path,
          method: 'POST',
          headers: {
            'content-type': outgoing.contentType,
            'x-request-id': res.getHeader('x-request-id') as string,
            // A replica's own key (Modal), else the provider runtime's (RunPod); local replicas want none (undici skips undefined).
            authorization: replica.authorization ?? route.upstreamAuthorization ?? undefined,
          },
          body: outgoing.body,
          signal: gone,
          // A stream's headers come at once; a non-streamed answer's come with its body, at the end.
          headersTimeout: stream ? this.o.ttfbTimeoutMs : this.o.requestTimeoutMs,
          // Silence inside the body is watched by pipe(), which knows the first byte from the rest.
          bodyTimeout: 0,
        });
      } catch (err) {
        this.queue.release(load, replica.id, false);
        if (gone.aborted) return false;
        if (err instanceof errors.HeadersTimeoutError) {
          // Not retried: another replica would make the client wait as long again.
          return refuse({
            ok: false,
            status: 504,
            type: 'server_error',
            code: 'upstream_timeout',
            message: stream
              ? `The replica sent nothing within ${this.o.ttfbTimeoutMs} ms (GATEWAY_TTFB_TIMEOUT_MS).`
              : `The replica did not answer within ${this.o.requestTimeoutMs} ms (GATEWAY_REQUEST_TIMEOUT_MS); for long completions set "stream": true.`,
          });
        }
        load.eject(replica.id, Date.now());
        this.o.log.warn(
          { err: (err as Error).message, replica: replica.id, requestId: res.getHeader('x-request-id') },
          'upstream failed before the first byte',
        );
        continue;
      }
      if (upstream.statusCode >= 500 && attempt === 0 && route.replicas.length > 1) {
        await upstream.body.dump().catch(() => {});
        this.queue.release(load, replica.id, false);
        continue;
      }
      const served: Served = {
        kind,
        replicaId: replica.id,
        cold,
        queuedMs,
        stripUsage,
        started,
        sentAt,
        gone,
        load,
        admitted,
        route,
        key,
        sentHr,
        translate,
        units,
      };
      pipe(res, upstream, served, this.piping);
      return true;
    }
    return refuse(
      noReplica(
        `No replica of deployment ${route.deploymentId} could take this request; retry shortly.`,
        load.retryAfterSeconds(Date.now(), route.replicas.length),
      ),
    );
  }

  /** The end of a piped response: the replica's slot and the admission slot back, then accounting. */
  private readonly finished: PipeFinished<Served> = (r, outcome, status, usage, ttftMs, decodeMs) => {
    const ok = outcome === 'ok';
    const now = Date.now();
    // A replica that broke or stalled gets nothing new from this process for a while.
    if (outcome === 'upstream_broken' || outcome === 'upstream_timeout') {
      r.load.eject(r.replicaId, now);
      this.o.metrics.ejections.inc({ deployment: r.load.deploymentId });
    }
    this.queue.release(r.load, r.replicaId, ok);
    r.admitted.release();
    if (ok && usage.completionTokens) r.load.observeDecode(usage.completionTokens, decodeMs);
    // Tokens of a stream the client cancelled (or stopped reading) were served; those of a replica's failure are not
    // billed.
    const clientEnded = outcome === 'client_closed' || outcome === 'client_stalled';
    const served = ok || clientEnded;
    const upstreamMs = Number(process.hrtime.bigint() - r.sentHr) / 1e6;
    const units: Units = {
      images: served && status < 400 ? r.units.images : 0,
      audioSeconds: served && status < 400 ? r.units.audioSeconds + (usage.audioSeconds ?? 0) : 0,
    };
    // A client that cancels is not an error of the deployment's; an answer of 4xx or 5xx from the replica is.
    const errorCode = outcome === 'ok' || clientEnded ? (status >= 400 ? `http_${status}` : null) : outcome;
    const latencyMs = this.account(r.route, r.key, served && status < 400, usage, r.started, ttftMs, served, units, errorCode);
    this.o.metrics.requests.inc({ route: r.kind, status: String(status), code: ok ? '' : outcome });
    this.o.metrics.latency.observe({ route: r.kind }, latencyMs / 1000);
    // What the gateway itself added (Kong's "latency" beside its upstream latency). Time the event loop was busy
    // elsewhere while the replica's bytes waited is counted as the replica's.
    this.o.metrics.overhead.observe({ route: r.kind }, Math.max(0, latencyMs - upstreamMs - r.queuedMs) / 1000);
  };

  /** Rolls a finished request into usage: tokens, latency, time to first byte and what it cost. Returns its latency, ms. */
  private account(
    route: Route,
    key: KeyInfo,
    ok: boolean,
    usage: Usage | null,
    started: bigint,
    ttftMs: number | null,
    billable = ok,
    units: Units = NO_UNITS,
    errorCode: string | null = ok ? null : 'error',
  ): number {
    const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
    const prompt = usage?.promptTokens ?? 0;
    const completion = usage?.completionTokens ?? 0;
    if (prompt) this.o.metrics.tokens.inc({ deployment: route.deploymentId, type: 'prompt' }, prompt);
    if (completion) this.o.metrics.tokens.inc({ deployment: route.deploymentId, type: 'completion' }, completion);
    const at = Date.now();
    const costUsd = billable ? tokenCostUsd(this.o.prices, route, prompt + completion) + unitCostUsd(this.o.prices, route, units) : 0;
    this.o.usage?.record({
      deploymentId: route.deploymentId,
      apiKeyId: key.id,
      at,
      ok,
      promptTokens: prompt,
      completionTokens: completion,
      latencyMs,
      ttftMs,
      images: units.images,
      audioSeconds: units.audioSeconds,
      costUsd,
    });
    this.o.samples?.record({
      deploymentId: route.deploymentId,
      at,
      errorCode,
      latencyMs,
      ttftMs,
      promptTokens: prompt,
      completionTokens: completion,
      costUsd,
    });
    return latencyMs;
  }
}
