import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { Fleet, Lease } from './fleet';
import { BodyError, bearer, readRaw, sendJson } from './problems';
import type { FakeLog, StoredEndpoint } from './types';

export interface RuntimeOptions {
  keys: Set<string>;
  fleet: Fleet;
  endpoint: (id: string) => StoredEndpoint | undefined;
  /** A runtime request reached the endpoint (idle scale-down clock). */
  touch: (ep: StoredEndpoint) => void;
  log: FakeLog;
}

type JobStatus = 'IN_QUEUE' | 'IN_PROGRESS' | 'COMPLETED' | 'FAILED' | 'CANCELLED' | 'TIMED_OUT';
interface Job {
  id: string;
  endpointId: string;
  status: JobStatus;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  keepMs: number;
  output?: unknown;
  error?: string;
  ac: AbortController;
  done: Promise<void>;
}

/** §1.8: 2000 requests / 10 s per endpoint (the /openai, /runsync and /status rate). */
const RUNTIME_LIMIT = 2000;
const RUNTIME_WINDOW_MS = 10_000;
const HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'host',
  'authorization',
  'content-length',
  'upgrade',
  'te',
  'trailer',
]);

class Timeout extends Error {}

function openaiError(
  res: ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | number | null,
  param: string | null = null,
) {
  sendJson(res, status, { error: { message, type, param, code } });
}

/** The serverless runtime host (api.runpod.ai): `/v2/{endpointId}/...` (§1.8). */
export class Runtime {
  private readonly windows = new Map<string, { start: number; count: number }>();
  private readonly jobs = new Map<string, Job>();

  constructor(private readonly o: RuntimeOptions) {}

  close(): void {
    for (const j of this.jobs.values()) j.ac.abort(new Error('fake stopped'));
  }

  private overLimit(endpointId: string): boolean {
    const now = Date.now();
    let w = this.windows.get(endpointId);
    if (!w || now - w.start >= RUNTIME_WINDOW_MS) {
      w = { start: now, count: 0 };
      this.windows.set(endpointId, w);
    }
    w.count++;
    return w.count > RUNTIME_LIMIT;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const token = bearer(req);
    if (!token || !this.o.keys.has(token)) {
      req.resume();
      return sendJson(res, 401, { error: 'Unauthorized' });
    }
    const lb = /^\/lb\/([^/]+)(\/.*)?$/.exec(url.pathname);
    const m = lb ?? /^\/v2\/([^/]+)\/(.*)$/.exec(url.pathname);
    const ep = m ? this.o.endpoint(m[1]) : undefined;
    if (!m || !ep) {
      req.resume();
      return sendJson(res, 404, { error: 'endpoint not found' });
    }
    if (this.overLimit(ep.view.id)) {
      req.resume();
      return sendJson(res, 429, { error: 'rate limit exceeded' }, { 'retry-after': '1' });
    }
    this.o.touch(ep);
    const method = req.method ?? 'GET';
    const rest = m[2];
    try {
      if (lb) return await this.loadBalancer(req, res, ep, lb[2] ?? '/', url.search);
      if (rest.startsWith('openai/v1/')) return await this.openai(req, res, ep, rest.slice('openai'.length) + url.search);
      if (rest === 'health' && method === 'GET') return sendJson(res, 200, this.o.fleet.health(ep.view.id));
      if (rest === 'run' && method === 'POST') return await this.run(req, res, ep, false, url);
      if (rest === 'runsync' && method === 'POST') return await this.run(req, res, ep, true, url);
      let j = /^status\/([^/]+)$/.exec(rest);
      if (j && method === 'GET') return this.status(res, ep, j[1]);
      j = /^cancel\/([^/]+)$/.exec(rest);
      if (j && method === 'POST') return this.cancel(res, ep, j[1]);
      if (rest === 'purge-queue' && method === 'POST') return this.purge(res, ep);
      req.resume();
      sendJson(res, 404, { error: `no route ${method} /v2/{id}/${rest}` });
    } catch (e) {
      if (e instanceof BodyError) return sendJson(res, e.status, { error: e.message });
      this.o.log('runpod fake: runtime handler failed', { error: String(e) });
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    }
  }

  /**
   * `/openai/v1/*`: the request waits in the endpoint's queue for a worker with room, then is proxied with
   * its response streamed through chunk by chunk. A client that goes away leaves the queue or aborts the
   * upstream; the endpoint's `timeout` bounds the whole request.
   */
  private async openai(
    req: IncomingMessage,
    res: ServerResponse,
    ep: StoredEndpoint,
    upstreamPath: string,
    timeoutMs = ep.view.timeout,
    checkModel = true,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    const raw = method === 'GET' || method === 'HEAD' ? Buffer.alloc(0) : await readRaw(req, 30 * 1024 * 1024);
    if (raw.length > 0 && checkModel) {
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return openaiError(res, 400, 'request body is not valid JSON', 'invalid_request_error', null);
      }
      const model = (body as { model?: unknown } | null)?.model;
      const served = [ep.view.env.MODEL_NAME, ep.view.env.OPENAI_SERVED_MODEL_NAME_OVERRIDE].filter((x): x is string => !!x);
      if (served.length > 0 && !served.includes(model as string)) {
        return openaiError(res, 404, `The model \`${String(model)}\` does not exist.`, 'NotFoundError', 'model_not_found', 'model');
      }
    }
    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort(new Error('client closed the connection'));
    };
    res.on('close', onClose);
    const timer = setTimeout(() => ac.abort(new Timeout(`request exceeded the endpoint timeout of ${timeoutMs} ms`)), timeoutMs);
    let lease: Lease | undefined;
    let outcome: 'completed' | 'failed' | 'cancelled' = 'failed';
    try {
      try {
        lease = await this.o.fleet.acquire(ep.view.id, ac.signal);
      } catch (e) {
        if (e instanceof Timeout) {
          this.o.fleet.countFailed(ep.view.id);
          return openaiError(res, 504, e.message, 'timeout', 'timeout');
        }
        if (!res.destroyed) openaiError(res, 503, String((e as Error).message ?? e), 'service_unavailable', null);
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k) && typeof v === 'string') headers[k] = v;
      const up = await request(`${lease.address}${upstreamPath}`, {
        method: method as 'GET',
        headers,
        body: raw.length > 0 ? raw : undefined,
        signal: ac.signal,
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (!HOP.has(k) && v !== undefined) out[k] = v;
      if (up.headers['content-length'] !== undefined) out['content-length'] = String(up.headers['content-length']);
      res.writeHead(up.statusCode, out);
      res.flushHeaders();
      await pipeline(up.body, res);
      outcome = up.statusCode < 500 ? 'completed' : 'failed';
    } catch (e) {
      if (ac.signal.aborted && !(ac.signal.reason instanceof Timeout)) outcome = 'cancelled';
      if (!res.headersSent) {
        if (ac.signal.reason instanceof Timeout) openaiError(res, 504, (ac.signal.reason as Error).message, 'timeout', 'timeout');
        else openaiError(res, 502, `upstream worker failed: ${String(e)}`, 'upstream_error', null);
      } else res.destroy();
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
      lease?.release(outcome);
    }
  }

  /**
   * A LOAD_BALANCER endpoint (§1.8): `https://{id}.api.runpod.ai/<path>` straight to a worker's HTTP server,
   * served here under `/lb/{id}/<path>`. `/ping` answers 200 with a ready worker, 204 while one initializes.
   */
  private async loadBalancer(req: IncomingMessage, res: ServerResponse, ep: StoredEndpoint, path: string, search: string): Promise<void> {
    if (ep.view.type !== 'LOAD_BALANCER') {
      req.resume();
      return sendJson(res, 404, { error: 'not a load-balancing endpoint' });
    }
    if (path === '/ping') {
      req.resume();
      const w = this.o.fleet.workers(ep.view.id);
      if (w.some((x) => x.status === 'IDLE' || x.status === 'RUNNING')) return sendJson(res, 200, { status: 'healthy' });
      if (w.some((x) => x.status === 'INITIALIZING')) {
        res.writeHead(204);
        return void res.end();
      }
      return sendJson(res, 503, { error: 'no workers available' });
    }
    // No queue on a load balancer: a request waits at most 2 min for a worker, then "no workers available".
    return this.openai(req, res, ep, path + search, Math.min(ep.view.timeout, 120_000), false);
  }

  // ---- Jobs: /run, /runsync, /status, /cancel, /purge-queue, with the vLLM worker's OpenAI passthrough input ----

  private view(j: Job): Record<string, unknown> {
    const out: Record<string, unknown> = { id: j.id, status: j.status };
    if (j.startedAt !== undefined) out.delayTime = j.startedAt - j.createdAt;
    if (j.startedAt !== undefined && j.finishedAt !== undefined) out.executionTime = j.finishedAt - j.startedAt;
    if (j.output !== undefined) out.output = j.output;
    if (j.error !== undefined) out.error = j.error;
    return out;
  }

  private job(ep: StoredEndpoint, id: string): Job | undefined {
    const j = this.jobs.get(id);
    if (!j || j.endpointId !== ep.view.id) return undefined;
    if (j.finishedAt !== undefined && Date.now() - j.finishedAt > j.keepMs) {
      this.jobs.delete(id); // a job past its TTL is gone: /status answers 404 (§1.8)
      return undefined;
    }
    return j;
  }

  private async run(req: IncomingMessage, res: ServerResponse, ep: StoredEndpoint, sync: boolean, url: URL): Promise<void> {
    const raw = await readRaw(req, (sync ? 20 : 10) * 1024 * 1024);
    let body: { input?: { openai_route?: unknown; openai_input?: unknown }; policy?: { executionTimeout?: number } };
    try {
      body = JSON.parse(raw.toString('utf8')) as typeof body;
    } catch {
      return sendJson(res, 400, { error: 'request body is not valid JSON' });
    }
    if (!body || typeof body.input !== 'object' || body.input === null) return sendJson(res, 400, { error: "'input' is required" });
    const job: Job = {
      id: sync ? `sync-${randomUUID()}` : `${randomUUID()}-u1`,
      endpointId: ep.view.id,
      status: 'IN_QUEUE',
      createdAt: Date.now(),
      keepMs: sync ? 60_000 : 30 * 60_000,
      ac: new AbortController(),
      done: Promise.resolve(),
    };
    this.jobs.set(job.id, job);
    job.done = this.execute(ep, job, body.input, body.policy?.executionTimeout ?? ep.view.timeout);
    if (!sync) return sendJson(res, 200, { id: job.id, status: job.status });
    const wait = Math.min(300_000, Math.max(1000, Number(url.searchParams.get('wait') ?? 90_000) || 90_000));
    let t: NodeJS.Timeout | undefined;
    await Promise.race([job.done, new Promise<void>((r) => (t = setTimeout(r, wait)))]);
    clearTimeout(t);
    sendJson(res, 200, this.view(job));
  }

  private async execute(ep: StoredEndpoint, job: Job, input: { openai_route?: unknown; openai_input?: unknown }, timeoutMs: number) {
    const finish = (status: JobStatus, patch: Partial<Job> = {}) => {
      if (job.status === 'CANCELLED') return;
      Object.assign(job, patch, { status, finishedAt: Date.now() });
    };
    const route = input.openai_route;
    if (typeof route !== 'string' || !route.startsWith('/v1/') || typeof input.openai_input !== 'object') {
      return finish('FAILED', { error: 'this fake worker handles only the OpenAI passthrough input {openai_route, openai_input}' });
    }
    const timer = setTimeout(() => job.ac.abort(new Timeout('execution timeout')), timeoutMs);
    let lease: Lease | undefined;
    let outcome: 'completed' | 'failed' | 'cancelled' = 'failed';
    try {
      lease = await this.o.fleet.acquire(ep.view.id, job.ac.signal);
      job.status = 'IN_PROGRESS';
      job.startedAt = Date.now();
      const up = await request(`${lease.address}${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...(input.openai_input as object), stream: false }),
        signal: job.ac.signal,
      });
      const text = await up.body.text();
      let output: unknown = text;
      try {
        output = JSON.parse(text);
      } catch {
        /* keep the text */
      }
      if (up.statusCode >= 400) finish('FAILED', { error: text });
      else {
        finish('COMPLETED', { output });
        outcome = 'completed';
      }
    } catch (e) {
      const reason: unknown = job.ac.signal.reason;
      if (reason instanceof Timeout) {
        if (!lease) this.o.fleet.countFailed(ep.view.id);
        finish('TIMED_OUT', { error: reason.message });
      } else if (job.status === 'CANCELLED') outcome = 'cancelled';
      else finish('FAILED', { error: String(e) });
    } finally {
      clearTimeout(timer);
      lease?.release(outcome);
    }
  }

  private status(res: ServerResponse, ep: StoredEndpoint, id: string): void {
    const j = this.job(ep, id);
    if (!j) return sendJson(res, 404, { error: `job ${id} not found` });
    sendJson(res, 200, this.view(j));
  }

  private cancel(res: ServerResponse, ep: StoredEndpoint, id: string): void {
    const j = this.job(ep, id);
    if (!j) return sendJson(res, 404, { error: `job ${id} not found` });
    if (j.status === 'IN_QUEUE' || j.status === 'IN_PROGRESS') {
      j.status = 'CANCELLED';
      j.finishedAt = Date.now();
      j.ac.abort(new Error('cancelled'));
    }
    sendJson(res, 200, { id: j.id, status: j.status });
  }

  private purge(res: ServerResponse, ep: StoredEndpoint): void {
    let removed = 0;
    for (const j of this.jobs.values()) {
      if (j.endpointId !== ep.view.id || j.status !== 'IN_QUEUE') continue;
      j.status = 'CANCELLED';
      j.finishedAt = Date.now();
      j.ac.abort(new Error('purged'));
      removed++;
    }
    sendJson(res, 200, { removed, status: 'completed' });
  }
}
