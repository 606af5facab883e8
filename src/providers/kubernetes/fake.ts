// A fake of the Kubernetes API subset the adapter uses (../shared/reference/providers-api.md §3.8), on 127.0.0.1 over
// plain HTTP (a kubeconfig with insecure-skip-tls-verify, as client-node requires for http://). It answers with the
// Status bodies and messages a real kube-apiserver v1.37 gives (§3.4), checks a bearer token and an RBAC table per
// token, and runs a built-in controller + kubelet: spec.replicas becomes pods, each pod one in-process replica
// simulator that turns Ready only when a real GET /health of it answers 200. A GPU budget makes the pods past it
// Pending/Unschedulable with the scheduler's message; a LoadBalancer Service gets a loopback port that proxies
// (streaming) round-robin to the Ready pods. Failure injection: an image that cannot be pulled, a crash-loop flag,
// 429 with Retry-After on the next N calls.
import { randomBytes } from 'node:crypto';
import { createServer, IncomingMessage, request as httpRequest, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunningSimulator, startSimulator } from '../../simulator/server';
import type { Task } from '../../domain/targets';

/** What a token may do: rules as RBAC has them ("*" matches any). */
export interface FakeRule {
  verbs: string[];
  groups: string[];
  resources: string[];
}

export interface FakeUser {
  token: string;
  /** The user name in 403 messages (a ServiceAccount reads system:serviceaccount:<ns>:<name>). */
  name: string;
  rules: FakeRule[];
}

export interface KubernetesFakeOptions {
  users: FakeUser[];
  /** Namespaces that exist. */
  namespaces: string[];
  /** GPUs (nvidia.com/gpu) the one fake node has. */
  gpus?: number;
  /** Simulator latency knobs for every pod. */
  coldStartMs?: number;
  ttftMs?: number;
  itlMs?: number;
  /** Images whose pull fails (ErrImagePull, then ImagePullBackOff). Default: any under registry.invalid/. */
  unpullable?: RegExp;
  /** How often the controller reconciles, ms. */
  tickMs?: number;
  /** How often the readiness probe GETs /health of a running pod, ms (default 100). */
  probePeriodMs?: number;
  /** The simulators' weight-cache markers (default: under the OS temp directory). */
  cacheDir?: string;
}

/** Full access in every group and namespace (an admin ServiceAccount). */
export const ALL: FakeRule[] = [{ verbs: ['*'], groups: ['*'], resources: ['*'] }];

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Pod {
  obj: Obj;
  deployment: string;
  namespace: string;
  gpus: number;
  sim: RunningSimulator | null;
  starting: boolean;
  /** Set once deleted: the simulator is closing. */
  gone: boolean;
  /** When the readiness probe last ran, ms since the epoch. */
  probedAt: number;
}

interface Lb {
  server: Server;
  port: number;
  next: number;
}

const status = (code: number, reason: string, message: string, details?: Obj): Obj => ({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message,
  reason,
  ...(details ? { details } : {}),
  code,
});

class HttpError extends Error {
  constructor(
    readonly body: Obj,
    readonly headers: Record<string, string> = {},
  ) {
    super(body.message as string);
  }
}

const fail = (code: number, reason: string, message: string, details?: Obj) => new HttpError(status(code, reason, message, details));
const notFound = (resource: string, name: string) =>
  fail(404, 'NotFound', `${resource} "${name}" not found`, { name, ...groupKind(resource) });
const groupKind = (resource: string) => {
  const [kind, group] = resource.split('.');
  return group ? { group, kind } : { kind };
};

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!patch || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Obj = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Obj) } : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** A labelSelector: k=v, k!=v, k (exists), !k. */
function selects(selector: string | null, labels: Record<string, string> = {}): boolean {
  if (!selector) return true;
  return selector
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .every((term) => {
      const ne = term.match(/^([^!=]+)!=(.*)$/);
      if (ne) return labels[ne[1]] !== ne[2];
      const eq = term.match(/^([^!=]+)==?(.*)$/);
      if (eq) return labels[eq[1]] === eq[2];
      if (term.startsWith('!')) return !(term.slice(1) in labels);
      return term in labels;
    });
}

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** The fake API server. `kubeconfig(token)` is what a credential seals to reach it. */
export class KubernetesFake {
  private server: Server | null = null;
  port = 0;
  private rv = 1;
  private readonly deployments = new Map<string, Obj>();
  private readonly services = new Map<string, Obj>();
  private readonly secrets = new Map<string, Obj>();
  private readonly pods = new Map<string, Pod>();
  /** Servers of deleted pods still finishing their requests. */
  private readonly terminating = new Set<RunningSimulator>();
  private readonly lbs = new Map<string, Lb>();
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private throttle: { left: number; retryAfterSeconds: number } | null = null;
  /** Every pod started while this is on crash-loops (CrashLoopBackOff). */
  crashLoop = false;
  /** GPUs of the one fake node. */
  gpus: number;
  /** Requests by method and path (no bodies), for tests. */
  readonly calls: string[] = [];

  constructor(private readonly o: KubernetesFakeOptions) {
    this.gpus = o.gpus ?? 8;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    this.timer = setInterval(() => void this.tick(), this.o.tickMs ?? 50);
    this.timer.unref();
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A kubeconfig for one token (a ServiceAccount's, as a user would export it). */
  kubeconfig(token: string, namespace = this.o.namespaces[0]): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: fake',
      '  cluster:',
      `    server: ${this.url}`,
      '    insecure-skip-tls-verify: true',
      'users:',
      '- name: infercp',
      '  user:',
      `    token: ${token}`,
      'contexts:',
      '- name: fake',
      '  context:',
      '    cluster: fake',
      '    user: infercp',
      `    namespace: ${namespace}`,
      'current-context: fake',
      '',
    ].join('\n');
  }

  /** The next `n` API calls answer 429 TooManyRequests with Retry-After. */
  rateLimitNext(n: number, retryAfterSeconds = 1): void {
    this.throttle = { left: n, retryAfterSeconds };
  }

  /** Deployments in a namespace, as stored (tests read status and spec). */
  deployment(namespace: string, name: string): Obj | undefined {
    return this.deployments.get(`${namespace}/${name}`);
  }

  listDeployments(): Obj[] {
    return [...this.deployments.values()];
  }

  /** The pods that exist now (not yet deleted), as the API lists them. */
  listPods(): Obj[] {
    return [...this.pods.values()].map((p) => p.obj);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const lb of this.lbs.values()) lb.server.close();
    this.lbs.clear();
    await Promise.all([...this.pods.values()].map((p) => p.sim?.close().catch(() => undefined)));
    this.pods.clear();
    await Promise.all([...this.terminating].map((sim) => sim.close().catch(() => undefined)));
    this.terminating.clear();
    if (this.server) {
      this.server.closeAllConnections();
      await new Promise<void>((r) => this.server!.close(() => r()));
    }
  }

  // ---------------------------------------------------------------- the API

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const send = (code: number, body: unknown, headers: Record<string, string> = {}) => {
      const data = JSON.stringify(body);
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
      res.end(data);
    };
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const raw = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', 'http://fake');
      this.calls.push(`${req.method} ${url.pathname}`);
      // A long-running demo fake keeps only the newest calls.
      if (this.calls.length > 10_000) this.calls.splice(0, this.calls.length - 5_000);
      if (url.pathname === '/version') return send(200, { major: '1', minor: '37', gitVersion: 'v1.37.2' });
      const user = this.o.users.find((u) => `Bearer ${u.token}` === req.headers.authorization);
      if (!user) return send(401, status(401, 'Unauthorized', 'Unauthorized'));
      if (this.throttle && this.throttle.left > 0) {
        this.throttle.left--;
        const after = this.throttle.retryAfterSeconds;
        return send(429, status(429, 'TooManyRequests', 'Too many requests, please try again later.', { retryAfterSeconds: after }), {
          'retry-after': String(after),
        });
      }
      const body = raw ? (JSON.parse(raw) as Obj) : null;
      const out = this.route(user, req.method ?? 'GET', url, body, String(req.headers['content-type'] ?? ''));
      send(out.code, out.body);
    } catch (e) {
      if (e instanceof HttpError) return send(e.body.code as number, e.body, e.headers);
      if (e instanceof SyntaxError)
        return send(400, status(400, 'BadRequest', `the body of the request was in an unknown format: ${e.message}`));
      send(500, status(500, 'InternalError', `Internal error occurred: ${(e as Error).message}`));
    }
  }

  private can(user: FakeUser, verb: string, group: string, resource: string): boolean {
    const m = (list: string[], v: string) => list.includes('*') || list.includes(v);
    return user.rules.some((r) => m(r.verbs, verb) && m(r.groups, group) && m(r.resources, resource));
  }

  private authorize(user: FakeUser, verb: string, group: string, resource: string, ns: string, name?: string) {
    if (this.can(user, verb, group, resource)) return;
    const base = resource.split('/')[0];
    const what = `${base}${group ? `.${group}` : ''}${name ? ` "${name}"` : ''}`;
    throw fail(
      403,
      'Forbidden',
      `${what} is forbidden: User "${user.name}" cannot ${verb} resource "${resource}" in API group "${group}" in the namespace "${ns}"`,
      { ...(name ? { name } : {}), ...(group ? { group } : {}), kind: base },
    );
  }

  private route(user: FakeUser, method: string, url: URL, body: Obj | null, contentType: string): { code: number; body: unknown } {
    const p = url.pathname;
    if (method === 'POST' && p === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') {
      const a = (body?.spec?.resourceAttributes ?? {}) as Obj;
      const resource = a.subresource ? `${a.resource}/${a.subresource}` : (a.resource as string);
      const allowed = this.can(user, a.verb as string, (a.group as string) ?? '', resource);
      return { code: 201, body: { ...body, status: allowed ? { allowed: true } : { allowed: false } } };
    }
    const ns = p.match(/^\/api\/v1\/namespaces\/([^/]+)$/);
    if (ns && method === 'GET') {
      this.authorize(user, 'get', '', 'namespaces', ns[1], ns[1]);
      if (!this.o.namespaces.includes(ns[1])) throw notFound('namespaces', ns[1]);
      return { code: 200, body: { kind: 'Namespace', apiVersion: 'v1', metadata: { name: ns[1] }, status: { phase: 'Active' } } };
    }
    const m = p.match(/^\/(?:api\/v1|apis\/(apps)\/v1)\/namespaces\/([^/]+)\/([a-z]+)(?:\/([^/]+))?(?:\/(scale))?$/);
    if (!m) throw fail(404, 'NotFound', 'the server could not find the requested resource');
    const [, group = '', namespace, resource, name, sub] = m;
    const verb =
      method === 'GET'
        ? name
          ? 'get'
          : url.searchParams.get('watch') === 'true'
            ? 'watch'
            : 'list'
        : ({ POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<string, string>)[method];
    const kinds: Record<string, string> = { '': 'services,secrets,pods', apps: 'deployments' };
    if (!kinds[group].split(',').includes(resource)) throw fail(404, 'NotFound', 'the server could not find the requested resource');
    this.authorize(user, verb, group, sub ? `${resource}/${sub}` : resource, namespace, name);
    if (!this.o.namespaces.includes(namespace)) {
      if (verb === 'create') throw fail(404, 'NotFound', `namespaces "${namespace}" not found`, { name: namespace, kind: 'namespaces' });
      if (verb === 'list') return { code: 200, body: this.list(resource, []) };
      throw notFound('namespaces', namespace);
    }
    const selector = url.searchParams.get('labelSelector');
    if (resource === 'deployments') return this.deploymentsApi(verb, namespace, name, sub, body, contentType, selector, url);
    if (resource === 'services' || resource === 'secrets') return this.simpleApi(resource, verb, namespace, name, body, selector);
    if (resource === 'pods') {
      if (verb !== 'list') throw fail(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      const items = [...this.pods.values()].filter((x) => x.namespace === namespace && selects(selector, x.obj.metadata.labels));
      return {
        code: 200,
        body: this.list(
          'pods',
          items.map((x) => x.obj),
        ),
      };
    }
    throw fail(404, 'NotFound', 'the server could not find the requested resource');
  }

  private list(resource: string, items: Obj[]) {
    const kind = { deployments: 'DeploymentList', services: 'ServiceList', secrets: 'SecretList', pods: 'PodList' }[resource];
    return { kind, apiVersion: resource === 'deployments' ? 'apps/v1' : 'v1', metadata: { resourceVersion: String(this.rv) }, items };
  }

  private meta(namespace: string, m: Obj = {}): Obj {
    return {
      ...m,
      namespace,
      uid: `${randomBytes(4).toString('hex')}-${randomBytes(2).toString('hex')}-${randomBytes(2).toString('hex')}`,
      resourceVersion: String(++this.rv),
      creationTimestamp: now(),
    };
  }

  private scaleOf(d: Obj): Obj {
    const sel = d.spec.selector?.matchLabels ?? {};
    return {
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      metadata: {
        name: d.metadata.name,
        namespace: d.metadata.namespace,
        uid: d.metadata.uid,
        resourceVersion: d.metadata.resourceVersion,
        creationTimestamp: d.metadata.creationTimestamp,
      },
      spec: { replicas: d.spec.replicas ?? 1 },
      status: {
        replicas: d.status?.replicas ?? 0,
        selector: Object.entries(sel)
          .map(([k, v]) => `${k}=${v as string}`)
          .join(','),
      },
    };
  }

  private validateDeployment(d: Obj) {
    const name = d.metadata?.name as string;
    const containers = (d.spec?.template?.spec?.containers ?? []) as Obj[];
    const invalid = (field: string, message: string, reason = 'FieldValueRequired') =>
      fail(422, 'Invalid', `Deployment.apps "${name}" is invalid: ${field}: ${message}`, {
        name,
        group: 'apps',
        kind: 'Deployment',
        causes: [{ reason, message, field }],
      });
    if (!containers.length) throw invalid('spec.template.spec.containers', 'Required value');
    containers.forEach((c, i) => {
      if (!c.image) throw invalid(`spec.template.spec.containers[${i}].image`, 'Required value');
      const req = c.resources?.requests?.['nvidia.com/gpu'];
      const lim = c.resources?.limits?.['nvidia.com/gpu'];
      if (req !== undefined && lim === undefined)
        throw invalid(
          `spec.template.spec.containers[${i}].resources.limits`,
          'Required value: Limit must be set for non overcommitable resources',
        );
      if (lim !== undefined && !/^\d+$/.test(String(lim)))
        throw invalid(
          `spec.template.spec.containers[${i}].resources.limits[nvidia.com/gpu]`,
          `Invalid value: "${String(lim)}": must be an integer`,
          'FieldValueInvalid',
        );
      if (req !== undefined && String(req) !== String(lim))
        throw invalid(
          `spec.template.spec.containers[${i}].resources.requests`,
          `Invalid value: "${String(req)}": must be equal to nvidia.com/gpu limit of ${String(lim)}`,
          'FieldValueInvalid',
        );
    });
    const sel = (d.spec?.selector?.matchLabels ?? {}) as Record<string, string>;
    const labels = (d.spec?.template?.metadata?.labels ?? {}) as Record<string, string>;
    if (!Object.entries(sel).every(([k, v]) => labels[k] === v))
      throw invalid('spec.template.metadata.labels', 'Invalid value: `selector` does not match template `labels`', 'FieldValueInvalid');
  }

  private deploymentsApi(
    verb: string,
    namespace: string,
    name: string | undefined,
    sub: string | undefined,
    body: Obj | null,
    contentType: string,
    selector: string | null,
    url: URL,
  ): { code: number; body: unknown } {
    const key = (n: string) => `${namespace}/${n}`;
    if (!name) {
      if (verb === 'list') {
        const items = [...this.deployments.values()].filter(
          (d) => d.metadata.namespace === namespace && selects(selector, d.metadata.labels),
        );
        return { code: 200, body: this.list('deployments', items) };
      }
      if (verb !== 'create') throw fail(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      const n = body?.metadata?.name as string;
      if (this.deployments.has(key(n)))
        throw fail(409, 'AlreadyExists', `deployments.apps "${n}" already exists`, { name: n, group: 'apps', kind: 'deployments' });
      this.validateDeployment(body!);
      const d: Obj = {
        ...body,
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { ...this.meta(namespace, body!.metadata as Obj), generation: 1 },
        spec: { replicas: 1, ...body!.spec },
        status: {},
      };
      this.deployments.set(key(n), d);
      return { code: 201, body: d };
    }
    const d = this.deployments.get(key(name));
    if (!d) throw notFound('deployments.apps', name);
    if (sub === 'scale') {
      if (verb === 'get') return { code: 200, body: this.scaleOf(d) };
      let replicas: unknown;
      if (verb === 'patch') {
        if (!contentType.includes('merge-patch+json') && !contentType.includes('strategic-merge-patch+json')) {
          if (!Array.isArray(body))
            throw fail(
              400,
              'BadRequest',
              'error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp',
            );
          const op = (body as Obj[]).find((o) => o.path === '/spec/replicas');
          replicas = op?.value;
        } else replicas = body?.spec?.replicas;
      } else if (verb === 'update') {
        const want = body?.metadata?.resourceVersion as string | undefined;
        if (want && want !== d.metadata.resourceVersion)
          throw fail(
            409,
            'Conflict',
            `Operation cannot be fulfilled on deployments.apps "${name}": the object has been modified; please apply your changes to the latest version and try again`,
            { name, group: 'apps', kind: 'deployments' },
          );
        replicas = body?.spec?.replicas;
      } else throw fail(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0)
        throw fail(
          422,
          'Invalid',
          `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`,
        );
      if (replicas !== d.spec.replicas) {
        d.spec.replicas = replicas;
        d.metadata.generation++;
      }
      d.metadata.resourceVersion = String(++this.rv);
      return { code: 200, body: this.scaleOf(d) };
    }
    if (verb === 'get') return { code: 200, body: d };
    if (verb === 'patch') {
      if (!contentType.includes('merge-patch+json'))
        throw fail(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json`,
        );
      const spec = mergePatch(d.spec, body?.spec ?? {}) as Obj;
      const patched = { ...d, metadata: mergePatch(d.metadata, body?.metadata ?? {}) as Obj, spec };
      this.validateDeployment(patched);
      if (JSON.stringify(spec) !== JSON.stringify(d.spec)) patched.metadata.generation = (d.metadata.generation as number) + 1;
      patched.metadata.resourceVersion = String(++this.rv);
      this.deployments.set(key(name), patched);
      return { code: 200, body: patched };
    }
    if (verb === 'delete') {
      const policy = url.searchParams.get('propagationPolicy') ?? 'Background';
      if (policy === 'Foreground') {
        // The object stays, marked, until the garbage collector has removed its pods (§3.2).
        d.metadata.deletionTimestamp ??= now();
        d.metadata.finalizers = ['foregroundDeletion'];
        d.metadata.resourceVersion = String(++this.rv);
        return { code: 200, body: d };
      }
      this.deployments.delete(key(name));
      for (const pod of this.podsOf(d)) this.deletePod(pod);
      return {
        code: 200,
        body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, group: 'apps', kind: 'deployments' } },
      };
    }
    throw fail(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
  }

  private simpleApi(
    resource: 'services' | 'secrets',
    verb: string,
    namespace: string,
    name: string | undefined,
    body: Obj | null,
    selector: string | null,
  ) {
    const store = resource === 'services' ? this.services : this.secrets;
    const key = (n: string) => `${namespace}/${n}`;
    if (!name) {
      if (verb === 'list')
        return {
          code: 200,
          body: this.list(
            resource,
            [...store.values()].filter((o) => o.metadata.namespace === namespace && selects(selector, o.metadata.labels)),
          ),
        };
      if (verb !== 'create') throw fail(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      const n = body?.metadata?.name as string;
      if (store.has(key(n))) throw fail(409, 'AlreadyExists', `${resource} "${n}" already exists`, { name: n, kind: resource });
      const o: Obj = {
        ...body,
        apiVersion: 'v1',
        kind: resource === 'services' ? 'Service' : 'Secret',
        metadata: this.meta(namespace, body!.metadata as Obj),
      };
      if (resource === 'secrets') {
        // stringData is write-only: the server stores it base64 in data.
        const data: Record<string, string> = { ...(o.data ?? {}) };
        for (const [k, v] of Object.entries((o.stringData ?? {}) as Record<string, string>)) data[k] = Buffer.from(v).toString('base64');
        o.data = data;
        delete o.stringData;
      } else {
        o.spec = { ...o.spec, clusterIP: `10.96.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250) + 1}` };
        o.status = { loadBalancer: {} };
        if (o.spec.type === 'LoadBalancer') void this.openLb(key(n), o);
      }
      store.set(key(n), o);
      return { code: 201, body: o };
    }
    const o = store.get(key(name));
    if (!o) throw notFound(resource, name);
    if (verb === 'get') return { code: 200, body: o };
    if (verb === 'delete') {
      store.delete(key(name));
      const lb = this.lbs.get(key(name));
      if (lb) {
        lb.server.closeAllConnections();
        lb.server.close();
        this.lbs.delete(key(name));
      }
      return { code: 200, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: resource } } };
    }
    throw fail(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
  }

  // ---------------------------------------------------------------- load balancers

  /** A LoadBalancer Service's "cloud" load balancer: a loopback port proxying to the Ready pods, round-robin. */
  private async openLb(key: string, svc: Obj) {
    const lb: Lb = { server: createServer((req, res) => this.proxy(lb, svc, req, res)), port: 0, next: 0 };
    await new Promise<void>((r) => lb.server.listen(0, '127.0.0.1', r));
    lb.port = (lb.server.address() as AddressInfo).port;
    if (this.services.get(key) !== svc) {
      lb.server.close();
      return;
    }
    this.lbs.set(key, lb);
    svc.status = { loadBalancer: { ingress: [{ ip: '127.0.0.1', ipMode: 'VIP', ports: [{ port: lb.port, protocol: 'TCP' }] }] } };
    svc.metadata.resourceVersion = String(++this.rv);
  }

  private proxy(lb: Lb, svc: Obj, req: IncomingMessage, res: ServerResponse) {
    const ready = [...this.pods.values()].filter(
      (p) =>
        p.namespace === svc.metadata.namespace &&
        !p.gone &&
        p.sim &&
        this.isReady(p) &&
        selects(this.selectorOf(svc.spec.selector), p.obj.metadata.labels),
    );
    if (!ready.length) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('no ready endpoints');
      return;
    }
    const pod = ready[lb.next++ % ready.length];
    const up = httpRequest({ host: '127.0.0.1', port: pod.sim!.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    // A client that goes away aborts the upstream stream too.
    res.on('close', () => up.destroy());
    req.pipe(up);
  }

  private selectorOf(sel: Record<string, string> = {}) {
    return Object.entries(sel)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
  }

  // ---------------------------------------------------------------- controller + kubelet

  private podsOf(d: Obj): Pod[] {
    return [...this.pods.values()].filter((p) => p.namespace === d.metadata.namespace && p.deployment === d.metadata.name);
  }

  private isReady(p: Pod) {
    return (p.obj.status.conditions as Obj[] | undefined)?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  }

  /**
   * A deleted pod leaves every Service at once; its server, told to stop (SIGTERM), finishes the requests it serves and
   * then exits, at the latest after the pod's terminationGracePeriodSeconds, as vLLM's does under a kubelet.
   */
  private deletePod(p: Pod) {
    p.gone = true;
    this.pods.delete(`${p.namespace}/${p.obj.metadata.name as string}`);
    const sim = p.sim;
    if (!sim) return;
    this.terminating.add(sim);
    const until = Date.now() + Number(p.obj.spec.terminationGracePeriodSeconds ?? 30) * 1000;
    const exit = () => {
      this.terminating.delete(sim);
      void sim.close().catch(() => undefined);
    };
    const drain = () => {
      const s = sim.stats();
      if (!this.terminating.has(sim)) return;
      if (s.active + s.queued === 0 || Date.now() >= until) return exit();
      setTimeout(drain, 20).unref();
    };
    drain();
  }

  private gpusInUse(): number {
    return [...this.pods.values()].filter((p) => p.obj.spec.nodeName).reduce((n, p) => n + p.gpus, 0);
  }

  private async tick() {
    if (this.ticking) return;
    this.ticking = true;
    try {
      for (const d of [...this.deployments.values()]) {
        const key = `${d.metadata.namespace as string}/${d.metadata.name as string}`;
        const want = d.metadata.deletionTimestamp ? 0 : (d.spec.replicas as number);
        const pods = this.podsOf(d);
        // Scale down: pods not ready first, then the newest (the ReplicaSet controller's order).
        if (pods.length > want) {
          const victims = [...pods]
            .sort(
              (a, b) =>
                Number(this.isReady(a)) - Number(this.isReady(b)) ||
                String(b.obj.metadata.creationTimestamp).localeCompare(String(a.obj.metadata.creationTimestamp)),
            )
            .slice(0, pods.length - want);
          victims.forEach((p) => this.deletePod(p));
        }
        for (let i = pods.length; i < want; i++) this.createPod(d);
        if (d.metadata.deletionTimestamp && this.podsOf(d).length === 0) {
          this.deployments.delete(key);
          continue;
        }
      }
      for (const p of [...this.pods.values()]) this.kubelet(p);
      for (const d of this.deployments.values()) this.updateStatus(d);
    } finally {
      this.ticking = false;
    }
  }

  private createPod(d: Obj) {
    const template = d.spec.template as Obj;
    const hash = (d.metadata.uid as string).replace(/-/g, '').slice(0, 10);
    const name = `${d.metadata.name as string}-${hash}-${randomBytes(3).toString('hex').slice(0, 5)}`;
    const c = (template.spec.containers as Obj[])[0];
    const obj: Obj = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { ...this.meta(d.metadata.namespace as string, { name, labels: { ...template.metadata?.labels } }) },
      spec: JSON.parse(JSON.stringify(template.spec)) as Obj,
      status: { phase: 'Pending', conditions: [] },
    };
    this.pods.set(`${d.metadata.namespace as string}/${name}`, {
      obj,
      deployment: d.metadata.name as string,
      namespace: d.metadata.namespace as string,
      gpus: Number(c.resources?.limits?.['nvidia.com/gpu'] ?? 0),
      sim: null,
      starting: false,
      gone: false,
      probedAt: 0,
    });
  }

  private touch(p: Pod) {
    p.obj.metadata.resourceVersion = String(++this.rv);
  }

  /** One pod's next step: schedule (or not, for lack of GPUs), pull, run the simulator, probe it. */
  private kubelet(p: Pod) {
    const o = p.obj;
    if (!o.spec.nodeName) {
      if (this.gpusInUse() + p.gpus > this.gpus) {
        if (o.status.conditions?.[0]?.reason !== 'Unschedulable') {
          o.status = {
            phase: 'Pending',
            conditions: [
              {
                type: 'PodScheduled',
                status: 'False',
                lastProbeTime: null,
                lastTransitionTime: now(),
                reason: 'Unschedulable',
                message:
                  '0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.',
              },
            ],
            qosClass: 'BestEffort',
          };
          this.touch(p);
        }
        return;
      }
      o.spec.nodeName = 'fake-gpu-0';
      o.status = {
        phase: 'Pending',
        hostIP: '10.0.0.10',
        podIP: `10.244.0.${Math.floor(Math.random() * 250) + 2}`,
        startTime: now(),
        conditions: [
          { type: 'PodScheduled', status: 'True', lastTransitionTime: now() },
          { type: 'Initialized', status: 'True', lastTransitionTime: now() },
          { type: 'Ready', status: 'False', lastTransitionTime: now(), reason: 'ContainersNotReady' },
          { type: 'ContainersReady', status: 'False', lastTransitionTime: now(), reason: 'ContainersNotReady' },
        ],
        containerStatuses: [
          {
            name: 'server',
            ready: false,
            restartCount: 0,
            image: o.spec.containers[0].image,
            state: { waiting: { reason: 'ContainerCreating' } },
          },
        ],
      };
      this.touch(p);
      return;
    }
    const c = o.spec.containers[0] as Obj;
    const cs = o.status.containerStatuses[0] as Obj;
    if ((this.o.unpullable ?? /^registry\.invalid\//).test(String(c.image))) {
      const reason = cs.state.waiting?.reason === 'ErrImagePull' ? 'ImagePullBackOff' : 'ErrImagePull';
      if (cs.state.waiting?.reason !== 'ImagePullBackOff') {
        cs.state = {
          waiting: {
            reason,
            message:
              reason === 'ErrImagePull'
                ? `failed to pull and unpack image "${String(c.image)}": failed to resolve reference "${String(c.image)}": not found`
                : `Back-off pulling image "${String(c.image)}"`,
          },
        };
        this.touch(p);
      }
      return;
    }
    if (p.starting || p.gone) return;
    if (!p.sim) {
      if (this.crashLoop || (p.obj.metadata.annotations?.['infercp.dev/crash'] as string | undefined)) {
        if (cs.state.waiting?.reason !== 'CrashLoopBackOff') {
          cs.restartCount = (cs.restartCount as number) + 1;
          cs.lastState = { terminated: { exitCode: 1, reason: 'Error', finishedAt: now() } };
          cs.state = {
            waiting: {
              reason: 'CrashLoopBackOff',
              message: `back-off 10s restarting failed container=server pod=${String(o.metadata.name)}`,
            },
          };
          o.status.phase = 'Running';
          this.touch(p);
        }
        return;
      }
      p.starting = true;
      void this.run(p).finally(() => (p.starting = false));
      return;
    }
    // The readiness probe: a real GET /health of the simulator, every probePeriodMs.
    if (Date.now() - p.probedAt < (this.o.probePeriodMs ?? 100)) return;
    p.probedAt = Date.now();
    p.starting = true;
    void fetch(`${p.sim.url}/health`)
      .then((r) => r.status === 200)
      .catch(() => false)
      .then((ok) => {
        if (p.gone) return;
        const ready = o.status.conditions.find((x: Obj) => x.type === 'Ready');
        if ((ready.status === 'True') !== ok) {
          ready.status = ok ? 'True' : 'False';
          ready.lastTransitionTime = now();
          delete ready.reason;
          o.status.conditions.find((x: Obj) => x.type === 'ContainersReady').status = ready.status;
          cs.ready = ok;
          this.touch(p);
        }
      })
      .finally(() => (p.starting = false));
  }

  /** Starts the container: `vllm serve <model> --max-num-seqs N … --api-key $(API_KEY)` as a simulator. */
  private async run(p: Pod) {
    const c = p.obj.spec.containers[0] as Obj;
    const args = (c.args ?? []) as string[];
    const env = new Map<string, string>();
    for (const e of (c.env ?? []) as Obj[]) {
      if (e.value !== undefined) env.set(e.name as string, String(e.value));
      const ref = e.valueFrom?.secretKeyRef as Obj | undefined;
      if (ref) {
        const secret = this.secrets.get(`${p.namespace}/${ref.name as string}`);
        const v = secret?.data?.[ref.key as string] as string | undefined;
        if (v === undefined && !ref.optional) {
          const cs = p.obj.status.containerStatuses[0] as Obj;
          cs.state = { waiting: { reason: 'CreateContainerConfigError', message: `secret "${ref.name as string}" not found` } };
          this.touch(p);
          return;
        }
        if (v !== undefined) env.set(e.name as string, Buffer.from(v, 'base64').toString('utf8'));
      }
    }
    const expand = (s: string) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, n: string) => env.get(n) ?? all);
    const flag = (name: string) => {
      const i = args.indexOf(name);
      return i >= 0 ? expand(args[i + 1]) : undefined;
    };
    const model = args[0] && !args[0].startsWith('--') ? args[0] : 'sim/tiny-chat';
    const task: Task = flag('--runner') === 'pooling' ? 'EMBEDDINGS' : 'CHAT';
    const sim = await startSimulator({
      port: 0,
      host: '127.0.0.1',
      model,
      task,
      maxConcurrency: Number(flag('--max-num-seqs') ?? 30),
      apiKey: flag('--api-key') ?? env.get('API_KEY') ?? '',
      coldStartMs: this.o.coldStartMs ?? 200,
      warmStartMs: this.o.coldStartMs ?? 200,
      ttftMs: this.o.ttftMs ?? 5,
      itlMs: this.o.itlMs ?? 5,
      cacheDir: this.o.cacheDir ?? join(tmpdir(), 'infercp-kubernetes-fake'),
      weightsKey: `${model}-${p.obj.metadata.name as string}`,
    });
    if (p.gone) {
      await sim.close();
      return;
    }
    p.sim = sim;
    const cs = p.obj.status.containerStatuses[0] as Obj;
    cs.state = { running: { startedAt: now() } };
    cs.started = true;
    p.obj.status.phase = 'Running';
    this.touch(p);
  }

  private updateStatus(d: Obj) {
    const pods = this.podsOf(d);
    const replicas = d.spec.replicas as number;
    const ready = pods.filter((p) => this.isReady(p)).length;
    const floor = replicas - Math.floor(replicas * 0.25);
    const available = ready >= floor;
    const st: Obj = {
      observedGeneration: d.metadata.generation,
      replicas: pods.length,
      updatedReplicas: pods.length,
      readyReplicas: ready || undefined,
      availableReplicas: ready || undefined,
      unavailableReplicas: pods.length - ready || undefined,
      conditions: [
        available
          ? { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' }
          : {
              type: 'Available',
              status: 'False',
              reason: 'MinimumReplicasUnavailable',
              message: 'Deployment does not have minimum availability.',
            },
        ready === replicas
          ? {
              type: 'Progressing',
              status: 'True',
              reason: 'NewReplicaSetAvailable',
              message: `ReplicaSet "${d.metadata.name as string}" has successfully progressed.`,
            }
          : {
              type: 'Progressing',
              status: 'True',
              reason: 'ReplicaSetUpdated',
              message: `ReplicaSet "${d.metadata.name as string}" is progressing.`,
            },
      ],
    };
    for (const k of Object.keys(st)) if (st[k] === undefined) delete st[k];
    const before = JSON.stringify(d.status ?? {});
    // Conditions keep their transition times unless their status changes; compared without them.
    if (before !== JSON.stringify(st)) {
      d.status = st;
      d.metadata.resourceVersion = String(++this.rv);
    }
  }
}

/** Starts a fake. */
export function startKubernetesFake(o: KubernetesFakeOptions): Promise<KubernetesFake> {
  return new KubernetesFake(o).start();
}
