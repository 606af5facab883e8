import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Dispatcher, Pool } from 'undici';
import { z } from 'zod';
import { zodMessage } from '../common/graphql-errors';
import { Directory, KeyInfo, Route, RouteReplica } from './directory';
import { envelope, invalidKey, OpenAIError, sendError } from './errors';
import { Metrics } from './metrics';

const chatBody = z
  .object({
    model: z.string({ error: "'model' is required and must be a string" }).min(1),
    messages: z.array(z.unknown(), { error: "'messages' must be an array" }).min(1, "'messages' must not be empty"),
    stream: z.boolean({ error: "'stream' must be a boolean" }).optional(),
    max_tokens: z.number().int().positive().optional().nullable(),
  })
  .passthrough();

const embeddingsBody = z
  .object({
    model: z.string({ error: "'model' is required and must be a string" }).min(1),
    input: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number()), z.array(z.array(z.number()))], {
      error: "'input' must be a string, an array of strings, or token arrays",
    }),
  })
  .passthrough();

export interface GatewayOptions {
  directory: Directory;
  metrics: Metrics;
  log: Logger;
  upstreamTimeoutMs: number;
  /** Largest request body accepted, bytes. */
  bodyLimit?: number;
}

/**
 * The OpenAI-compatible data path, registered straight on Fastify (no Nest
 * pipeline per request): authenticate -> resolve the deployment -> pick the
 * ready replica with the most headroom -> stream the upstream response through.
 */
export class Gateway {
  private readonly pools = new Map<string, Pool>();
  /** In-flight requests this process has on each replica. */
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly o: GatewayOptions) {}

  register(app: FastifyInstance) {
    app.register(
      async (v1) => {
        v1.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
          const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
          if (status === 500) this.o.log.error({ err }, 'gateway error');
          const message = status === 500 ? 'internal error' : err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'Content-Type must be application/json' : `invalid request body: ${err.message}`;
          return sendError(reply, {
            status,
            type: status === 500 ? 'server_error' : 'invalid_request_error',
            code: status === 413 ? 'request_too_large' : status === 500 ? 'internal_error' : 'invalid_body',
            message,
          });
        });
        v1.setNotFoundHandler((req, reply) =>
          sendError(reply, { status: 404, type: 'invalid_request_error', code: 'unknown_url', message: `Unknown request URL: ${req.method} ${req.url}` }),
        );
        v1.get('/models', (req, reply) => this.models(req, reply));
        v1.post('/chat/completions', (req, reply) => this.proxy(req, reply, 'chat'));
        v1.post('/embeddings', (req, reply) => this.proxy(req, reply, 'embeddings'));
      },
      { prefix: '/v1' },
    );
  }

  async close() {
    await Promise.all([...this.pools.values()].map((p) => p.close().catch(() => {})));
  }

  private async authenticate(req: FastifyRequest): Promise<KeyInfo | OpenAIError> {
    const header = req.headers.authorization;
    const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!m) return invalidKey('Missing API key. Send Authorization: Bearer <key>.');
    const key = await this.o.directory.key(m[1]);
    const now = Date.now();
    if (!key || key.issuedAt === null) return invalidKey();
    if (key.revokedAt !== null) return invalidKey('This API key has been revoked.');
    if (key.expiresAt !== null && key.expiresAt <= now) return invalidKey('This API key has expired.');
    return key;
  }

  private async models(req: FastifyRequest, reply: FastifyReply) {
    const key = await this.authenticate(req);
    if ('status' in key) return this.fail(reply, 'models', key);
    const routes = await this.o.directory.reachable(key);
    const data = routes.flatMap((r) => {
      const created = 0;
      const entries = [{ id: r.deploymentId, object: 'model', created, owned_by: r.workspaceId, pipeline: r.pipelineName, task: r.task.toLowerCase() }];
      if (key.scope !== 'WORKSPACE') entries.unshift({ ...entries[0], id: 'default' });
      else entries.push({ ...entries[0], id: r.pipelineName });
      return entries;
    });
    this.o.metrics.requests.inc({ route: 'models', status: '200', code: '' });
    return reply.send({ object: 'list', data });
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

  /** The ready replica with the most headroom, excluding ones already tried. */
  private pick(route: Route, exclude: Set<string>): RouteReplica | null {
    let best: RouteReplica | null = null;
    let bestFree = 0;
    for (const r of route.replicas) {
      if (exclude.has(r.id)) continue;
      const free = r.concurrency - (this.inFlight.get(r.id) ?? 0);
      if (free > bestFree) {
        best = r;
        bestFree = free;
      }
    }
    return best;
  }

  private pool(address: string): Pool {
    let p = this.pools.get(address);
    if (!p) {
      p = new Pool(address, { connections: 256, pipelining: 1, keepAliveTimeout: 30_000 });
      this.pools.set(address, p);
    }
    return p;
  }

  private fail(reply: FastifyReply, route: string, e: OpenAIError) {
    this.o.metrics.requests.inc({ route, status: String(e.status), code: e.code });
    return sendError(reply, e);
  }

  private async proxy(req: FastifyRequest, reply: FastifyReply, kind: 'chat' | 'embeddings') {
    const started = process.hrtime.bigint();
    const key = await this.authenticate(req);
    if ('status' in key) return this.fail(reply, kind, key);

    if (req.body === undefined || req.body === null) {
      return this.fail(reply, kind, { status: 400, type: 'invalid_request_error', code: 'invalid_body', message: 'request body must be a JSON object' });
    }
    const parsed = (kind === 'chat' ? chatBody : embeddingsBody).safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return this.fail(reply, kind, { status: 400, type: 'invalid_request_error', code: 'invalid_body', param: issue?.path.join('.') || null, message: zodMessage(parsed.error) });
    }
    const body = parsed.data as Record<string, unknown> & { model: string; stream?: boolean };
    const route = await this.resolve(key, body.model);
    if ('status' in route) return this.fail(reply, kind, route);
    if ((kind === 'chat' && route.task !== 'CHAT') || (kind === 'embeddings' && route.task !== 'EMBEDDINGS')) {
      return this.fail(reply, kind, { status: 400, type: 'invalid_request_error', code: 'unsupported_task', param: 'model', message: `Deployment ${route.deploymentId} serves ${route.task.toLowerCase()}, not ${kind}.` });
    }

    // The upstream always comes from the route table; the request only picks among its replicas.
    const upstreamBody = JSON.stringify({ ...body, model: route.model });
    const path = kind === 'chat' ? '/v1/chat/completions' : '/v1/embeddings';
    const abort = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) abort.abort();
    };
    reply.raw.on('close', onClose);

    const tried = new Set<string>();
    // A replica that fails before the first byte is retried once on another.
    for (let attempt = 0; attempt < 2; attempt++) {
      const replica = this.pick(route, tried);
      if (!replica) break;
      tried.add(replica.id);
      this.track(replica.id, route.deploymentId, +1);
      let res: Dispatcher.ResponseData;
      try {
        res = await this.pool(replica.address).request({
          path,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: upstreamBody,
          signal: abort.signal,
          headersTimeout: this.o.upstreamTimeoutMs,
          bodyTimeout: this.o.upstreamTimeoutMs,
        });
      } catch (err) {
        this.track(replica.id, route.deploymentId, -1);
        if (abort.signal.aborted) return reply.hijack();
        this.o.log.warn({ err: (err as Error).message, replica: replica.id }, 'upstream failed before the first byte');
        continue;
      }
      if (res.statusCode >= 500 && attempt === 0 && route.replicas.length > 1) {
        await res.body.dump().catch(() => {});
        this.track(replica.id, route.deploymentId, -1);
        continue;
      }
      this.o.metrics.ttft.observe({ route: kind }, Number(process.hrtime.bigint() - started) / 1e9);
      return this.pipe(reply, res, kind, replica.id, route.deploymentId, started, abort);
    }
    reply.raw.off('close', onClose);
    return this.fail(reply, kind, {
      status: 503,
      type: 'server_error',
      code: 'no_replica_available',
      message: `No replica of deployment ${route.deploymentId} can take this request now; retry shortly.`,
      headers: { 'retry-after': '1' },
    });
  }

  private track(replicaId: string, deploymentId: string, delta: number) {
    this.inFlight.set(replicaId, (this.inFlight.get(replicaId) ?? 0) + delta);
    this.o.metrics.inFlight.inc({ deployment: deploymentId }, delta);
  }

  /** Streams the upstream body to the client chunk by chunk; never buffers. */
  private pipe(
    reply: FastifyReply,
    res: Dispatcher.ResponseData,
    kind: string,
    replicaId: string,
    deploymentId: string,
    started: bigint,
    abort: AbortController,
  ) {
    reply.hijack();
    const raw = reply.raw;
    const contentType = String(res.headers['content-type'] ?? 'application/json');
    const sse = contentType.startsWith('text/event-stream');
    const headers: Record<string, string> = { 'content-type': contentType, 'x-infercp-replica': replicaId };
    if (sse) {
      headers['cache-control'] = 'no-cache';
      headers['x-accel-buffering'] = 'no';
    }
    // Upstream errors keep their status: OpenAI-compatible engines already answer in the envelope.
    raw.writeHead(res.statusCode, headers);
    if (sse) raw.flushHeaders();
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      this.track(replicaId, deploymentId, -1);
      this.o.metrics.requests.inc({ route: kind, status: String(res.statusCode), code: ok ? '' : 'upstream_broken' });
      this.o.metrics.latency.observe({ route: kind }, Number(process.hrtime.bigint() - started) / 1e9);
    };
    res.body.on('data', (chunk: Buffer) => {
      if (!raw.write(chunk)) {
        res.body.pause();
        raw.once('drain', () => res.body.resume());
      }
    });
    res.body.on('end', () => {
      raw.end();
      finish(true);
    });
    res.body.on('error', (err) => {
      if (!abort.signal.aborted && sse) {
        // After the first byte the status is sent: end the stream with an error event.
        raw.write(`data: ${JSON.stringify(envelope({ status: 502, type: 'server_error', code: 'upstream_error', message: `replica failed mid-stream: ${err.message}` }))}\n\n`);
      }
      raw.end();
      finish(false);
    });
    raw.on('close', () => {
      if (!done) {
        abort.abort();
        res.body.destroy();
        finish(false);
      }
    });
  }
}
