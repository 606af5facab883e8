import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { catalogGpus, POOLS, typesOfPool } from './catalog';
import { Fleet, shortId } from './fleet';
import { prng } from '../../../common/prng';
import { BodyError, bearer, MinuteRateLimiter, readJson, sendCloudflare403, sendJson, sendProblem } from './problems';
import { validateCreate, validateUpdate } from './spec';
import type { EndpointView, FakeLog, Faults, StoredEndpoint } from './types';

export type Access = 'ALL' | 'READ_ONLY' | 'NO_SERVERLESS';
export interface KeyInfo {
  access: Access;
  accountId: string;
}

export const accountIdOf = (key: string) => `user_${createHash('sha256').update(key).digest('hex').slice(0, 20)}`;

const DAY = 24 * 3600 * 1000;
const CONTAINER_FIELDS = ['image', 'args', 'disk', 'ports', 'env', 'registry'] as const;

type Json = Record<string, unknown>;
type Handler = (ctx: Ctx) => Promise<void> | void;
interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: string[];
  key: KeyInfo;
  /** RateLimit headers to send on every response. */
  headers: Record<string, string>;
}

interface Route {
  re: RegExp;
  template: string;
  methods: Record<string, Handler>;
}

export interface ManagementOptions {
  keys: Map<string, KeyInfo>;
  fleet: Fleet;
  faults: Faults;
  ratePerMinute: number;
  now: () => number;
  runtimeUrl: () => string;
  log: FakeLog;
}

/** The v2 management API (§1.3, §1.4) and the GraphQL subset (§1.7) on one host. */
export class Management {
  readonly endpoints = new Map<string, StoredEndpoint>();
  private readonly callCounts = new Map<string, number>();
  private readonly limiter: MinuteRateLimiter;
  private readonly held = new Set<NodeJS.Timeout>();
  private rng: () => number;
  private rngSeed: number;
  private readonly routes: Route[];

  constructor(private readonly o: ManagementOptions) {
    this.limiter = new MinuteRateLimiter(o.ratePerMinute);
    this.rngSeed = o.faults.seed;
    this.rng = prng(o.faults.seed);
    this.routes = [
      { re: /^\/v2\/serverless$/, template: '/v2/serverless', methods: { GET: (c) => this.list(c), POST: (c) => this.create(c) } },
      {
        re: /^\/v2\/serverless\/([^/]+)$/,
        template: '/v2/serverless/{id}',
        methods: { GET: (c) => this.get(c), PATCH: (c) => this.update(c), DELETE: (c) => this.remove(c) },
      },
      { re: /^\/v2\/serverless\/([^/]+)\/workers$/, template: '/v2/serverless/{id}/workers', methods: { GET: (c) => this.workers(c) } },
      { re: /^\/v2\/serverless\/([^/]+)\/releases$/, template: '/v2/serverless/{id}/releases', methods: { GET: (c) => this.releases(c) } },
      { re: /^\/v2\/catalog\/gpus$/, template: '/v2/catalog/gpus', methods: { GET: (c) => this.catalog(c) } },
      { re: /^\/graphql$/, template: '/graphql', methods: { POST: () => undefined } },
    ];
  }

  calls(): Record<string, number> {
    return Object.fromEntries(this.callCounts);
  }

  resetCalls(): void {
    this.callCounts.clear();
  }

  endpointViews(): unknown[] {
    return [...this.endpoints.values()].map((e) => structuredClone(e.view));
  }

  close(): void {
    for (const t of this.held) clearTimeout(t);
    this.held.clear();
  }

  /** One draw of the transient-failure injection: the kind to fail with, or null to serve normally. */
  private drawFault(): Faults['kinds'][number] | null {
    const f = this.o.faults;
    if (f.seed !== this.rngSeed) {
      this.rngSeed = f.seed;
      this.rng = prng(f.seed);
    }
    if (f.managementFailureRate <= 0 || f.kinds.length === 0) return null;
    if (this.rng() >= f.managementFailureRate) return null;
    return f.kinds[Math.floor(this.rng() * f.kinds.length)] ?? f.kinds[0];
  }

  private injectFault(req: IncomingMessage, res: ServerResponse, kind: Faults['kinds'][number]): void {
    this.o.log('runpod fake: injected management failure', { kind, method: req.method, url: req.url });
    req.resume();
    switch (kind) {
      case '429':
        return sendProblem(res, 429, 'rate limit exceeded for the minute window', {
          headers: {
            RateLimit: '"minute";r=0;t=1',
            'RateLimit-Policy': `"minute";q=${this.o.ratePerMinute};w=60`,
            'Retry-After': '1',
          },
        });
      case '500':
        return sendProblem(res, 500, 'internal server error');
      case '503':
        return sendProblem(res, 503, 'service temporarily unavailable');
      case 'html403':
        return sendCloudflare403(res);
      case 'timeout': {
        // Holds the request, then drops the connection without an answer.
        const t = setTimeout(() => {
          this.held.delete(t);
          req.socket.destroy();
        }, 10_000);
        this.held.add(t);
        return;
      }
    }
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    let params: string[] = [];
    const route = this.routes.find((r) => {
      const m = r.re.exec(url.pathname);
      if (m) params = m.slice(1).map(decodeURIComponent);
      return m !== null;
    });
    const callKey = `${method} ${route?.template ?? url.pathname}`;
    this.callCounts.set(callKey, (this.callCounts.get(callKey) ?? 0) + 1);

    // Transient failures hit before auth and before any state change.
    const fault = this.drawFault();
    if (fault) return this.injectFault(req, res, fault);

    if (route?.template === '/graphql' && method === 'POST') return this.graphql(req, res);

    const token = bearer(req);
    if (!token) return sendProblem(res, 401, 'missing bearer token');
    const key = this.o.keys.get(token);
    if (!key) return sendProblem(res, 401, 'invalid api key');

    const rl = this.limiter.take(token);
    if (!rl.ok) return sendProblem(res, 429, 'rate limit exceeded for the minute window', { headers: rl.headers });
    const headers = rl.headers;

    if (!route) return sendProblem(res, 404, 'resource not found', { headers });
    const handler = route.methods[method];
    if (!handler) {
      return sendProblem(res, 405, 'The requested method is not allowed for this path.', {
        headers: { ...headers, Allow: Object.keys(route.methods).join(', ') },
      });
    }
    const serverless = url.pathname.startsWith('/v2/serverless');
    if ((key.access === 'NO_SERVERLESS' && serverless) || (key.access === 'READ_ONLY' && method !== 'GET')) {
      return sendProblem(res, 403, 'access denied', { headers });
    }
    try {
      await handler({ req, res, url, params, key, headers });
    } catch (e) {
      if (e instanceof BodyError) return sendProblem(res, e.status, e.message, { headers });
      this.o.log('runpod fake: management handler failed', { error: String(e) });
      sendProblem(res, 500, 'internal server error', { headers });
    }
  }

  // ---- GraphQL (§1.7): `myself { id }` only ----

  private async graphql(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const token = bearer(req) ?? new URL(req.url ?? '/', 'http://fake').searchParams.get('api_key');
    const key = token ? this.o.keys.get(token) : undefined;
    if (token && !key) return sendJson(res, 401, { errors: [{ message: 'Unauthorized' }] });
    let body: unknown;
    try {
      body = await readJson(req, 1024 * 1024);
    } catch {
      return sendJson(res, 200, { errors: [{ message: 'Syntax Error: request body is not JSON' }] });
    }
    const query = (body as { query?: unknown } | undefined)?.query;
    if (typeof query !== 'string') return sendJson(res, 200, { errors: [{ message: 'Must provide query string.' }] });
    const myself = /^\s*(?:query\s*(?:[A-Za-z_]\w*)?\s*(?:\([^)]*\))?\s*)?\{\s*myself\s*\{\s*id\s*\}\s*\}\s*$/;
    if (!myself.test(query)) {
      return sendJson(res, 200, { errors: [{ message: 'this fake serves only `query { myself { id } }`' }] });
    }
    sendJson(res, 200, { data: { myself: key ? { id: key.accountId } : null } });
  }

  // ---- REST v2 handlers ----

  private owned(c: Ctx): StoredEndpoint | null {
    const ep = this.endpoints.get(c.params[0]);
    if (!ep || ep.owner !== c.key.accountId) {
      sendProblem(c.res, 404, 'endpoint not found', { headers: c.headers });
      return null;
    }
    return ep;
  }

  private list(c: Ctx): void {
    const mine = [...this.endpoints.values()].filter((e) => e.owner === c.key.accountId).map((e) => e.view);
    sendJson(c.res, 200, { endpoints: mine }, c.headers);
  }

  private get(c: Ctx): void {
    const ep = this.owned(c);
    if (ep) sendJson(c.res, 200, ep.view, c.headers);
  }

  private workers(c: Ctx): void {
    const ep = this.owned(c);
    if (ep) sendJson(c.res, 200, this.o.fleet.workersResponse(ep), c.headers);
  }

  private releases(c: Ctx): void {
    const ep = this.owned(c);
    if (!ep) return;
    const w = (this.o.fleet.workersResponse(ep) as { workers: { isStale: boolean }[] }).workers;
    const onLatest = w.filter((x) => !x.isStale).length;
    sendJson(
      c.res,
      200,
      {
        endpointVersion: ep.version,
        rollout: {
          inProgress: onLatest < w.length,
          workersOnLatest: onLatest,
          workersTotal: w.length,
          percentOnLatest: w.length === 0 ? 100 : Math.round((onLatest / w.length) * 100),
        },
        releases: [...ep.releases].reverse(),
      },
      c.headers,
    );
  }

  private catalog(c: Ctx): void {
    const include = c.url.searchParams.get('include');
    const product = c.url.searchParams.get('product');
    // `product` is required with include=AVAILABILITY and valid only with it (400 either way).
    if (include !== null && include !== 'AVAILABILITY') {
      return sendProblem(c.res, 400, `unsupported include '${include}'`, { headers: c.headers });
    }
    if ((include === null) !== (product === null)) {
      return sendProblem(c.res, 400, 'product is required with include=AVAILABILITY, and valid only with it', { headers: c.headers });
    }
    if (product !== null && !product.split(',').every((p) => ['POD', 'CLUSTER', 'SERVERLESS'].includes(p))) {
      return sendProblem(c.res, 400, `unsupported product '${product}'`, { headers: c.headers });
    }
    sendJson(c.res, 200, { gpus: catalogGpus(include !== null, this.o.faults.exhaustedPools) }, c.headers);
  }

  private requestUrls(id: string, type: EndpointView['type']): Record<string, string> {
    const base = `${this.o.runtimeUrl()}/v2/${id}`;
    if (type === 'LOAD_BALANCER') {
      // Real LB endpoints live on https://{id}.api.runpod.ai; the fake has one host, so a path prefix.
      return { base: `${this.o.runtimeUrl()}/lb/${id}`, health: `${this.o.runtimeUrl()}/lb/${id}/ping` };
    }
    return {
      run: `${base}/run`,
      runSync: `${base}/runsync`,
      status: `${base}/status/{job_id}`,
      stream: `${base}/stream/{job_id}`,
      cancel: `${base}/cancel/{job_id}`,
      retry: `${base}/retry/{job_id}`,
      purgeQueue: `${base}/purge-queue`,
      health: `${base}/health`,
    };
  }

  private async create(c: Ctx): Promise<void> {
    const body = await readJson(c.req);
    const errors = validateCreate(body);
    if (errors) return sendProblem(c.res, 422, 'Request validation failed.', { errors, headers: c.headers });
    const b = body as Json;
    const gpu = b.gpu as Json | undefined;
    if ((gpu === undefined) === (b.cpu === undefined)) {
      return sendProblem(c.res, 400, 'exactly one of gpu or cpu must be specified', { headers: c.headers });
    }
    const scaling = b.scaling as EndpointView['scaling'];
    const workers = (b.workers ?? {}) as Partial<EndpointView['workers']>;
    const conflict =
      idleTimeoutConflict(b.type as string, scaling, workers) ??
      (gpu ? gpuConflict(normalizeGpu(gpu)) : null) ??
      boundsConflict({ min: workers.min ?? 0, max: workers.max ?? 3 });
    if (conflict) return sendProblem(c.res, 400, conflict, { headers: c.headers });
    if (b.templateId !== undefined) return sendProblem(c.res, 404, `template ${String(b.templateId)} not found`, { headers: c.headers });

    let id = shortId();
    while (this.endpoints.has(id)) id = shortId();
    const type = b.type as EndpointView['type'];
    const view: EndpointView = {
      id,
      name: b.name as string,
      type,
      requestUrls: this.requestUrls(id, type),
      image: b.image as string,
      args: (b.args as string) ?? '',
      disk: (b.disk as number) ?? 50,
      ports: (b.ports as string[]) ?? [],
      env: (b.env as Record<string, string>) ?? {},
      registry: (b.registry as string | null) ?? null,
      ...(gpu ? { gpu: normalizeGpu(gpu) } : {}),
      ...(b.cpu ? { cpu: (b.cpu as { id: string; vcpuCount: number }[]).map((x) => ({ ...x, memory: cpuMemory(x) })) } : {}),
      workers: { min: workers.min ?? 0, max: workers.max ?? 3, idleTimeout: workers.idleTimeout ?? 5 },
      scaling,
      dataCenterIds: (b.dataCenterIds as string[]) ?? [],
      networkVolumes: (b.networkVolumes as string[]) ?? [],
      timeout: (b.timeout as number) ?? 300_000,
      flashboot: (b.flashboot as EndpointView['flashboot']) ?? 'OFF',
      createdAt: new Date(this.o.now()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
    const ep: StoredEndpoint = {
      view,
      owner: c.key.accountId,
      version: 1,
      releases: [release(1, c.key.accountId, [])],
      lastRequestAt: this.o.now(),
      idleStage: 0,
    };
    this.endpoints.set(id, ep);
    this.o.log('runpod fake: endpoint created', { id, name: view.name });
    this.o.fleet.sync(ep);
    sendJson(c.res, 201, view, c.headers);
  }

  private async update(c: Ctx): Promise<void> {
    const ep = this.owned(c);
    if (!ep) return;
    const body = await readJson(c.req);
    const errors = validateUpdate(body);
    if (errors) return sendProblem(c.res, 422, 'Request validation failed.', { errors, headers: c.headers });
    const b = body as Json;
    const v = ep.view;
    if (b.gpu !== undefined && b.cpu !== undefined)
      return sendProblem(c.res, 400, 'gpu and cpu are mutually exclusive', { headers: c.headers });
    if ((b.gpu !== undefined && !v.gpu) || (b.cpu !== undefined && !v.cpu)) {
      return sendProblem(c.res, 400, 'compute family (gpu or cpu) cannot be changed', { headers: c.headers });
    }
    const scaling = (b.scaling as EndpointView['scaling'] | undefined) ?? v.scaling;
    const bodyWorkers = (b.workers ?? {}) as Partial<EndpointView['workers']>;
    const workers = { ...v.workers, ...bodyWorkers };
    let gpu = v.gpu;
    if (b.gpu !== undefined && v.gpu) {
      const g = b.gpu as Json;
      gpu = {
        pools: (g.pools as string[]) ?? v.gpu.pools,
        // Sending pools without excludedTypes clears the exclusions; omitting pools keeps both (§1.3).
        excludedTypes: g.pools !== undefined ? ((g.excludedTypes as string[]) ?? []) : v.gpu.excludedTypes,
        count: (g.count as number) ?? v.gpu.count,
        allowedCudaVersions: (g.allowedCudaVersions as string[]) ?? v.gpu.allowedCudaVersions,
        minCudaVersion: g.minCudaVersion === '' ? null : ((g.minCudaVersion as string) ?? v.gpu.minCudaVersion),
      };
      gpu = normalizeGpu(gpu);
    }
    const conflict =
      idleTimeoutConflict(v.type, scaling, bodyWorkers) ?? (gpu && b.gpu ? gpuConflict(gpu) : null) ?? boundsConflict(workers);
    if (conflict) return sendProblem(c.res, 400, conflict, { headers: c.headers });
    if (b.templateId !== undefined) return sendProblem(c.res, 404, `template ${String(b.templateId)} not found`, { headers: c.headers });

    const diff: { field: string; old: unknown; new: unknown }[] = [];
    for (const f of CONTAINER_FIELDS) {
      if (b[f] === undefined || JSON.stringify(b[f]) === JSON.stringify(v[f])) continue;
      diff.push({ field: f, old: v[f], new: b[f] });
    }
    const next: EndpointView = { ...v, workers, scaling, ...(gpu ? { gpu } : {}) };
    for (const f of ['name', 'dataCenterIds', 'networkVolumes', 'timeout', 'flashboot', ...CONTAINER_FIELDS] as const) {
      if (b[f] !== undefined) (next as unknown as Json)[f] = b[f];
    }
    if (b.cpu !== undefined) next.cpu = (b.cpu as { id: string; vcpuCount: number }[]).map((x) => ({ ...x, memory: cpuMemory(x) }));
    ep.view = next;
    if (diff.length > 0) {
      // Container fields make a release that rolls out as workers cycle; workers/scaling/timeout do not (§1.3).
      ep.version++;
      ep.releases.push(release(ep.version, c.key.accountId, diff));
    }
    if (bodyWorkers.max !== undefined) {
      // The idle scale-down holds until the owner sets max again; that PATCH counts as activity [inferred].
      ep.idleStage = 0;
      ep.lastRequestAt = this.o.now();
    }
    this.o.fleet.sync(ep);
    sendJson(c.res, 200, ep.view, c.headers);
  }

  private remove(c: Ctx): void {
    const ep = this.owned(c);
    if (!ep) return;
    this.endpoints.delete(ep.view.id);
    this.o.fleet.remove(ep.view.id);
    c.res.writeHead(204, c.headers);
    c.res.end();
  }

  /**
   * §1.5 "Idle endpoint scale-down": 3 days without a request lowers workers.max to at most 2, 7 days sets it
   * to 0; it stays there until a PATCH raises it.
   */
  idleScaleDown(): void {
    const now = this.o.now();
    for (const ep of this.endpoints.values()) {
      const idle = now - ep.lastRequestAt;
      const w = ep.view.workers;
      let changed = false;
      if (idle >= 7 * DAY && ep.idleStage < 2) {
        ep.view.workers = { ...w, max: 0, min: 0 };
        ep.idleStage = 2;
        changed = true;
      } else if (idle >= 3 * DAY && ep.idleStage < 1) {
        const max = Math.min(w.max, 2);
        ep.view.workers = { ...w, max, min: Math.min(w.min, max) };
        ep.idleStage = 1;
        changed = true;
      }
      if (changed) {
        this.o.log('runpod fake: idle scale-down', { id: ep.view.id, idleDays: idle / DAY, max: ep.view.workers.max });
        this.o.fleet.sync(ep);
      }
    }
  }

  /** A runtime request reached the endpoint. */
  touch(ep: StoredEndpoint): void {
    ep.lastRequestAt = this.o.now();
  }
}

function release(version: number, user: string, diff: { field: string; old: unknown; new: unknown }[]) {
  return {
    id: shortId(),
    version,
    source: 'MANUAL' as const,
    buildId: null,
    createdByUserId: user,
    createdAt: new Date().toISOString(),
    diff,
  };
}

/** Memory the catalog derives from a CPU flavor (the spec's example: cpu5c × 4 vCPU = 16 GB, cpu5g × 8 = 16 GB). */
const cpuMemory = (c: { id: string; vcpuCount: number }) => c.vcpuCount * (c.id.endsWith('g') ? 2 : 4);

function normalizeGpu(g: Json | NonNullable<EndpointView['gpu']>): NonNullable<EndpointView['gpu']> {
  const excluded = ((g.excludedTypes as string[] | undefined) ?? []).map((t) => t.trim());
  return {
    pools: g.pools as string[],
    ...(excluded.length > 0 ? { excludedTypes: excluded } : {}),
    count: (g.count as number | undefined) ?? 1,
    allowedCudaVersions: (g.allowedCudaVersions as string[] | undefined) ?? [],
    minCudaVersion: (g.minCudaVersion as string | null | undefined) ?? null,
  };
}

/** Rules the schema cannot express (400, §1.3/§1.11); the ranges and enums are the schema's (422). */
function idleTimeoutConflict(type: string, scaling: EndpointView['scaling'], workers: Partial<EndpointView['workers']>): string | null {
  if (type === 'QUEUE' && scaling.type === 'REQUEST_COUNT' && workers.idleTimeout !== undefined) {
    return 'workers.idleTimeout is not supported for a QUEUE endpoint with REQUEST_COUNT scaling';
  }
  return null;
}

function gpuConflict(g: NonNullable<EndpointView['gpu']>): string | null {
  if (g.allowedCudaVersions.length > 0 && g.minCudaVersion) {
    return 'gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive: send one, or an empty allowedCudaVersions';
  }
  const unknown = g.pools.find((p) => !POOLS.has(p));
  if (unknown) return `gpu.pools: '${unknown}' is not a serverless GPU pool`;
  const types = new Set(g.pools.flatMap(typesOfPool));
  const stray = (g.excludedTypes ?? []).find((t) => !types.has(t));
  if (stray) return `gpu.excludedTypes: '${stray}' is not a GPU type in the selected pools`;
  if ((g.excludedTypes ?? []).length > 0 && [...types].every((t) => g.excludedTypes!.includes(t))) {
    return 'gpu.excludedTypes leaves no GPU type in the selected pools';
  }
  return null;
}

function boundsConflict(w: { min: number; max: number }): string | null {
  return w.min > w.max ? `workers.min (${w.min}) must not exceed workers.max (${w.max})` : null;
}
