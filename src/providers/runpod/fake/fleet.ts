import { createHash, randomInt } from 'node:crypto';
import type { LocalProvider } from '../../local/local.provider';
import type { ReplicaHandle, ReplicaSpec } from '../../provider';
import type { Task } from '../../../domain/targets';
import { GPU_TYPES } from './catalog';
import type { FakeLog, Faults, StoredEndpoint, WorkerStatus } from './types';

const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
/** 8 lowercase alphanumerics, the shape of RunPod's endpoint and worker ids (`4m7x2k9q`, `8g3n5t6r`). */
export const shortId = () => Array.from({ length: 8 }, () => ALNUM[randomInt(ALNUM.length)]).join('');

type Phase = 'throttled' | 'unhealthy' | 'starting' | 'ready';

interface Worker {
  id: string;
  endpointId: string;
  phase: Phase;
  /** Taken out of service (scale-down below a running worker, or a stale release): finishes its requests, then stops. */
  draining: boolean;
  /** The current process's replica id (LocalProvider), `<id>-<n>`; empty while no process was started. */
  replicaId: string;
  starts: number;
  handle?: ReplicaHandle;
  spawning?: Promise<void>;
  checking: boolean;
  lastCheckAt: number;
  stopped: boolean;
  inFlight: number;
  maxConcurrency: number;
  version: number;
  image: string;
  gpuTypeId: string | null;
  gpuCount: number;
  createdAt: number;
  startedAt: number | null;
  idleSince: number;
}

interface Waiter {
  enqueuedAt: number;
  resolve: (lease: Lease) => void;
  reject: (e: unknown) => void;
}

export interface Lease {
  workerId: string;
  /** Base URL of the worker's OpenAI server (no /v1). */
  address: string;
  release(outcome: 'completed' | 'failed' | 'cancelled'): void;
}

interface EndpointState {
  workers: Map<string, Worker>;
  queue: Waiter[];
  inProgress: number;
  completed: number;
  failed: number;
  retried: number;
}

export class QueueAbort extends Error {}

export interface FleetOptions {
  provider: LocalProvider;
  faults: Faults;
  endpoint: (id: string) => StoredEndpoint | undefined;
  log: FakeLog;
}

const env = (ep: StoredEndpoint, k: string): string | undefined => ep.view.env[k];
const maxConcurrencyOf = (ep: StoredEndpoint) => {
  const n = Number(env(ep, 'MAX_CONCURRENCY') ?? 30);
  return Number.isInteger(n) && n > 0 ? n : 30;
};

/**
 * The simulated workers of every endpoint and each endpoint's FIFO request queue. RunPod's autoscaler
 * moves the count inside `workers.min..max` (§1.3, §1.5); each worker is one simulator process.
 */
export class Fleet {
  private readonly states = new Map<string, EndpointState>();
  private readonly stops = new Set<Promise<void>>();
  private timer: NodeJS.Timeout;
  private kicked = false;
  private closed = false;

  constructor(private readonly o: FleetOptions) {
    this.timer = setInterval(() => this.reconcileAll(), 200);
    this.timer.unref();
  }

  private state(id: string): EndpointState {
    let s = this.states.get(id);
    if (!s) {
      s = { workers: new Map(), queue: [], inProgress: 0, completed: 0, failed: 0, retried: 0 };
      this.states.set(id, s);
    }
    return s;
  }

  /** Re-evaluates soon (after a request, a PATCH, a worker turning ready). */
  kick(): void {
    if (this.kicked || this.closed) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      this.reconcileAll();
    });
  }

  private reconcileAll(): void {
    if (this.closed) return;
    for (const id of this.states.keys()) {
      const ep = this.o.endpoint(id);
      if (ep) this.reconcile(ep);
    }
  }

  /** Starts tracking an endpoint (create) or re-reads its bounds (PATCH). */
  sync(ep: StoredEndpoint): void {
    this.state(ep.view.id);
    this.reconcile(ep);
  }

  /** DELETE: every worker stops at once, queued requests fail. */
  remove(endpointId: string): void {
    const s = this.states.get(endpointId);
    if (!s) return;
    this.states.delete(endpointId);
    for (const w of s.workers.values()) this.stopWorker(s, w);
    for (const q of s.queue.splice(0)) q.reject(new QueueAbort('endpoint deleted'));
  }

  private crashLooping(ep: StoredEndpoint) {
    return this.o.faults.crashLoop.has(ep.view.id) || this.o.faults.crashLoop.has(ep.view.name);
  }

  /** The GPU type a new worker lands on: the first non-excluded type of the first pool with capacity; null = throttled. */
  private placement(ep: StoredEndpoint): { gpuTypeId: string | null } | null {
    const gpu = ep.view.gpu;
    if (!gpu) return { gpuTypeId: null };
    const excluded = new Set(gpu.excludedTypes ?? []);
    for (const pool of gpu.pools) {
      if (this.o.faults.exhaustedPools.has(pool)) continue;
      const t = GPU_TYPES.find((g) => g.pool === pool && !excluded.has(g.id));
      if (t) return { gpuTypeId: t.id };
    }
    return null;
  }

  private reconcile(ep: StoredEndpoint): void {
    if (this.closed) return;
    const s = this.state(ep.view.id);
    const now = Date.now();
    const { min, max, idleTimeout } = ep.view.workers;
    const crash = this.crashLooping(ep);

    for (const w of [...s.workers.values()]) {
      // Rolling release (§1.5): idle and not-yet-serving stale workers are replaced at once, running ones drain.
      if (w.version < ep.version && !w.draining) {
        if (w.phase === 'ready' && w.inFlight > 0) w.draining = true;
        else this.stopWorker(s, w);
        continue;
      }
      if (w.draining) {
        if (w.inFlight === 0) this.stopWorker(s, w);
        continue;
      }
      if (crash && w.phase !== 'unhealthy' && w.inFlight === 0) this.makeUnhealthy(w);
      else if (!crash && w.phase === 'unhealthy') this.startProcess(ep, w);
      else if (w.phase === 'throttled') {
        const p = this.placement(ep);
        if (p) {
          w.gpuTypeId = p.gpuTypeId;
          this.startProcess(ep, w);
        }
      } else if (w.phase === 'starting' || (w.phase === 'ready' && now - w.lastCheckAt > 1000)) this.check(w);
    }

    const live = () => [...s.workers.values()].filter((w) => !w.draining);
    // Over the ceiling: idle or initializing workers stop at once, running ones drain.
    const order: Record<Phase, number> = { unhealthy: 0, throttled: 1, starting: 2, ready: 3 };
    let l = live();
    if (l.length > max) {
      const victims = l.sort((a, b) => order[a.phase] - order[b.phase] || a.inFlight - b.inFlight || b.createdAt - a.createdAt);
      for (const w of victims.slice(0, l.length - max)) {
        if (w.phase === 'ready' && w.inFlight > 0) w.draining = true;
        else this.stopWorker(s, w);
      }
      l = live();
    }

    const inQueue = s.queue.length;
    let need: number;
    if (ep.view.scaling.type === 'REQUEST_COUNT') {
      need = Math.ceil((inQueue + s.inProgress) / ep.view.scaling.requestCount);
    } else {
      // QUEUE_DELAY: one more worker once the oldest queued request has waited queueDelay s and none is
      // coming up; a first worker as soon as something queues on an empty endpoint [inferred].
      const waiting = inQueue > 0 ? now - s.queue[0].enqueuedAt : 0;
      const coming = l.some((w) => w.phase === 'starting' || w.phase === 'throttled');
      if (l.length === 0 && inQueue > 0) need = 1;
      else if (inQueue > 0 && !coming && waiting >= ep.view.scaling.queueDelay * 1000) need = l.length + 1;
      else need = l.length;
    }
    const target = Math.max(min, Math.min(max, need));
    while (l.length < target) {
      this.createWorker(ep, s);
      l = live();
    }

    // Flex workers above the floor stop after idleTimeout seconds without a request.
    const idle = l.filter((w) => w.phase === 'ready' && w.inFlight === 0 && now - w.idleSince >= idleTimeout * 1000);
    idle.sort((a, b) => a.idleSince - b.idleSince);
    for (const w of idle) {
      const count = live().length;
      const surplus = ep.view.scaling.type === 'REQUEST_COUNT' ? count > target : s.queue.length === 0;
      if (count > min && surplus) this.stopWorker(s, w);
    }
    this.pump(s);
  }

  private createWorker(ep: StoredEndpoint, s: EndpointState): void {
    const now = Date.now();
    const w: Worker = {
      id: shortId(),
      endpointId: ep.view.id,
      phase: 'throttled',
      draining: false,
      replicaId: '',
      starts: 0,
      checking: false,
      lastCheckAt: 0,
      stopped: false,
      inFlight: 0,
      maxConcurrency: maxConcurrencyOf(ep),
      version: ep.version,
      image: ep.view.image,
      gpuTypeId: null,
      gpuCount: ep.view.gpu ? ep.view.gpu.count : 0,
      createdAt: now,
      startedAt: null,
      idleSince: now,
    };
    s.workers.set(w.id, w);
    this.o.log('runpod fake: worker created', { endpointId: ep.view.id, workerId: w.id });
    if (this.crashLooping(ep)) return this.makeUnhealthy(w);
    const p = this.placement(ep);
    if (!p) return; // stays THROTTLED until a pool has capacity
    w.gpuTypeId = p.gpuTypeId;
    this.startProcess(ep, w);
  }

  private makeUnhealthy(w: Worker): void {
    this.killProcess(w);
    w.phase = 'unhealthy';
  }

  /**
   * One simulator process. FlashBoot (§1.9) keeps the worker's state on spin-down: with it on, every worker
   * of one endpoint image+env shares a weights key, so a revival finds it cached and starts warm; with it OFF
   * each worker has its own key and always starts cold.
   */
  private startProcess(ep: StoredEndpoint, w: Worker): void {
    w.phase = 'starting';
    w.startedAt = Date.now();
    w.checking = false;
    // A restarted worker keeps its id but gets a new process (replica) id.
    w.replicaId = `${w.id}-${++w.starts}`;
    const fingerprint = createHash('sha256')
      .update(JSON.stringify([ep.view.image, Object.entries(ep.view.env).sort()]))
      .digest('hex')
      .slice(0, 16);
    const task = (env(ep, 'INFERCP_TASK') ?? 'CHAT') as Task;
    const spec: ReplicaSpec = {
      revisionId: null,
      replicaId: w.replicaId,
      deploymentId: ep.view.id,
      pipelineId: ep.view.flashboot === 'OFF' ? `${ep.view.id}-${w.id}` : ep.view.id,
      variantId: fingerprint,
      model: env(ep, 'OPENAI_SERVED_MODEL_NAME_OVERRIDE') ?? env(ep, 'MODEL_NAME') ?? 'sim/tiny-chat',
      task,
      gpu: 'sim',
      maxConcurrency: w.maxConcurrency,
    };
    const spawning = this.o.provider.ensureReplica(spec).then(
      (h) => {
        if (w.stopped || w.phase !== 'starting' || w.replicaId !== spec.replicaId) return this.killHandle(spec.replicaId);
        w.handle = h;
      },
      (e: unknown) => {
        this.o.log('runpod fake: worker failed to start', { workerId: w.id, error: String(e) });
        w.phase = 'unhealthy';
      },
    );
    w.spawning = spawning;
    this.track(spawning);
  }

  private check(w: Worker): void {
    if (w.checking || !w.handle) return;
    w.checking = true;
    const handle = w.handle;
    this.o.provider
      .health(handle)
      .then((h) => {
        w.lastCheckAt = Date.now();
        if (w.stopped || w.handle !== handle) return;
        if (h === 'ready' && w.phase === 'starting') {
          w.phase = 'ready';
          w.idleSince = Date.now();
          this.o.log('runpod fake: worker ready', { workerId: w.id, ms: Date.now() - (w.startedAt ?? 0) });
          this.kick();
        } else if (h === 'gone') {
          // The process died: the worker is gone and the autoscaler replaces it.
          const s = this.states.get(w.endpointId);
          if (s) this.stopWorker(s, w);
        }
      })
      .catch(() => undefined)
      .finally(() => {
        w.checking = false;
      });
  }

  /** Keeps a pending spawn or stop so that stop() waits for it. */
  private track(p: Promise<unknown>): void {
    const q = p.then(
      () => undefined,
      () => undefined,
    );
    this.stops.add(q);
    void q.finally(() => this.stops.delete(q));
  }

  private killHandle(replicaId: string): Promise<void> {
    const p = this.o.provider.stopReplica(replicaId).catch(() => undefined);
    this.track(p);
    return p;
  }

  private killProcess(w: Worker): void {
    const { spawning, replicaId } = w;
    w.spawning = undefined;
    w.handle = undefined;
    w.startedAt = null;
    if (!replicaId) return;
    if (spawning) this.track(spawning.then(() => this.killHandle(replicaId)));
    else void this.killHandle(replicaId);
  }

  private stopWorker(s: EndpointState, w: Worker): void {
    if (w.stopped) return;
    w.stopped = true;
    s.workers.delete(w.id);
    this.o.log('runpod fake: worker stopped', { endpointId: w.endpointId, workerId: w.id });
    this.killProcess(w);
  }

  /** Hands queued requests, oldest first, to serviceable workers with room, least in-flight first. */
  private pump(s: EndpointState): void {
    while (s.queue.length > 0) {
      let best: Worker | undefined;
      for (const w of s.workers.values()) {
        if (w.phase !== 'ready' || w.draining || !w.handle || w.inFlight >= w.maxConcurrency) continue;
        if (!best || w.inFlight < best.inFlight) best = w;
      }
      if (!best) return;
      const waiter = s.queue.shift()!;
      waiter.resolve(this.lease(s, best));
    }
  }

  private lease(s: EndpointState, w: Worker): Lease {
    w.inFlight++;
    s.inProgress++;
    let done = false;
    return {
      workerId: w.id,
      address: w.handle!.address,
      release: (outcome) => {
        if (done) return;
        done = true;
        w.inFlight--;
        s.inProgress--;
        if (outcome === 'completed') s.completed++;
        else if (outcome === 'failed') s.failed++;
        if (w.inFlight === 0) w.idleSince = Date.now();
        if (w.draining && w.inFlight === 0) this.stopWorker(s, w);
        this.pump(s);
        this.kick();
      },
    };
  }

  /** Waits in the endpoint's FIFO queue for a worker with room; rejects when signal aborts (client gone, timeout). */
  acquire(endpointId: string, signal: AbortSignal): Promise<Lease> {
    const s = this.states.get(endpointId);
    if (!s) return Promise.reject(new QueueAbort('endpoint not found'));
    return new Promise<Lease>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const waiter: Waiter = {
        enqueuedAt: Date.now(),
        resolve: (l) => {
          signal.removeEventListener('abort', onAbort);
          resolve(l);
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        const i = s.queue.indexOf(waiter);
        if (i >= 0) s.queue.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      s.queue.push(waiter);
      this.pump(s);
      this.kick();
    });
  }

  /** A request that failed before reaching a worker (timed out in the queue). */
  countFailed(endpointId: string): void {
    const s = this.states.get(endpointId);
    if (s) s.failed++;
  }

  status(w: Worker): WorkerStatus {
    if (w.phase === 'throttled') return 'THROTTLED';
    if (w.phase === 'unhealthy') return 'UNHEALTHY';
    if (w.phase === 'starting') return 'INITIALIZING';
    return w.inFlight > 0 ? 'RUNNING' : 'IDLE';
  }

  workers(endpointId: string): { id: string; status: WorkerStatus; inFlight: number }[] {
    return [...(this.states.get(endpointId)?.workers.values() ?? [])].map((w) => ({
      id: w.id,
      status: this.status(w),
      inFlight: w.inFlight,
    }));
  }

  /** The body of `GET /v2/serverless/{id}/workers` (schema ListEndpointWorkersResponse). */
  workersResponse(ep: StoredEndpoint): unknown {
    const now = Date.now();
    const list = [...(this.states.get(ep.view.id)?.workers.values() ?? [])].map((w) => {
      const placed = w.phase !== 'throttled';
      return {
        id: w.id,
        status: this.status(w),
        isStale: w.version < ep.version,
        version: w.version,
        gpuCount: w.gpuCount,
        image: w.image,
        uptimeSeconds: w.startedAt !== null && placed ? Math.floor((now - w.startedAt) / 1000) : null,
        gpuTypeId: placed ? w.gpuTypeId : null,
        dataCenterId: placed ? 'US-KS-2' : null,
        startedAt: w.startedAt !== null ? new Date(w.startedAt).toISOString() : null,
      };
    });
    const count = (st: WorkerStatus) => list.filter((w) => w.status === st).length;
    return {
      endpointVersion: ep.version,
      summary: {
        running: count('RUNNING'),
        idle: count('IDLE'),
        initializing: count('INITIALIZING'),
        throttled: count('THROTTLED'),
        unhealthy: count('UNHEALTHY'),
        total: list.length,
      },
      workers: list,
    };
  }

  /** The body of the runtime's `GET /v2/{id}/health` (§1.8), every key present. */
  health(endpointId: string, extraQueued = 0): unknown {
    const s = this.state(endpointId);
    const ws = [...s.workers.values()];
    const count = (st: WorkerStatus) => ws.filter((w) => this.status(w) === st).length;
    return {
      jobs: {
        completed: s.completed,
        failed: s.failed,
        inProgress: s.inProgress,
        inQueue: s.queue.length + extraQueued,
        retried: s.retried,
      },
      workers: {
        idle: count('IDLE'),
        initializing: count('INITIALIZING'),
        // "ready" is seen in the wild beside "idle" and "running" as a third serviceable state (§1.8); every worker here
        // is idle or running, so none is "ready": readiness is idle + ready + running, and each worker counts once.
        ready: 0,
        running: count('RUNNING'),
        throttled: count('THROTTLED'),
        unhealthy: count('UNHEALTHY'),
      },
    };
  }

  async stop(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const id of [...this.states.keys()]) this.remove(id);
    while (this.stops.size > 0) await Promise.all([...this.stops]);
    await this.o.provider.stopAll();
  }
}
