// This process's load per deployment (DeploymentLoad, pure bookkeeping) and the half of each FIFO queue that needs
// timers and I/O: a waiter's timeout and client abort, dispatch when capacity frees or routes change, a route poll.
import type { ClientGone } from './client-gone';
import type { Directory, RouteReplica } from './directory';
import { DeploymentLoad, Waiter } from './load';
import type { LoadReporter } from './reporter';

/** How often a deployment with queued requests re-reads its routes, in case a NOTIFY was missed, ms. */
const QUEUE_ROUTE_POLL_MS = 1000;

export class Queue {
  /** This process's in-flight requests and queue, per deployment. */
  readonly loads = new Map<string, DeploymentLoad>();
  private readonly pollers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly directory: Directory,
    /** How long a request waits for headroom on busy replicas before a 503, ms. */
    private readonly queueTimeoutMs: number,
    /** How long a request that found zero ready replicas waits for the cold start, ms. */
    private readonly coldStartTimeoutMs: number,
    /** Woken when a request queues; absent in a gateway without Temporal. */
    private readonly reporter?: LoadReporter,
  ) {
    directory.onRouteChange((id) => {
      if (this.loads.get(id)?.queue.length) void this.dispatch(id);
    });
  }

  loadOf(deploymentId: string): DeploymentLoad {
    let l = this.loads.get(deploymentId);
    if (!l) {
      l = new DeploymentLoad(deploymentId);
      this.loads.set(deploymentId, l);
    }
    return l;
  }

  /** Deployments with requests in flight or queued here (for the load reporter). */
  *loadedDeployments(): Iterable<string> {
    for (const [id, l] of this.loads) if (!l.idle()) yield id;
  }

  /** Queues a request until dispatch hands it a reserved replica, its timeout passes, or its client leaves. */
  wait(load: DeploymentLoad, cold: boolean, gone: ClientGone): Promise<RouteReplica | null> {
    return new Promise((resolve) => {
      const done = (r: RouteReplica | null) => {
        clearTimeout(timer);
        gone.off('abort', giveUp);
        resolve(r);
      };
      const w: Waiter = { enqueuedAt: Date.now(), cold, resolve: done };
      const giveUp = () => {
        if (load.remove(w)) done(null);
      };
      // Past the queue timeout a request keeps waiting while replicas are starting (capacity on the way),
      // up to the cold-start timeout; then it gets its 503.
      const expire = () => {
        void this.directory.route(load.deploymentId).then((route) => {
          const left = this.coldStartTimeoutMs - (Date.now() - w.enqueuedAt);
          if ((route?.starting ?? 0) > 0 && left > 0 && load.queue.includes(w))
            timer = setTimeout(expire, Math.min(left, this.queueTimeoutMs));
          else giveUp();
        }, giveUp);
      };
      let timer = setTimeout(cold ? giveUp : expire, cold ? this.coldStartTimeoutMs : this.queueTimeoutMs);
      gone.once('abort', giveUp);
      load.enqueue(w);
      // Wake the scaler now, not at the next report.
      this.reporter?.poke(load.deploymentId);
      this.pollWhileQueued(load.deploymentId);
    });
  }

  /** Gives a replica slot back, and hands it on if anyone is queued. */
  release(load: DeploymentLoad, replicaId: string, completed: boolean) {
    load.release(replicaId, Date.now(), completed);
    if (load.queue.length) void this.dispatch(load.deploymentId);
  }

  /** Stops the polls and turns every waiter away (as a timeout). */
  close() {
    for (const t of this.pollers.values()) clearInterval(t);
    for (const l of this.loads.values()) for (const w of l.queue.splice(0)) w.resolve(null);
  }

  /**
   * Hands free capacity to queued requests, oldest first. Never rejects (its callers do not wait for it): when the
   * routes cannot be read now the waiters stay queued, and the next release, route change or the poll tries again.
   */
  private async dispatch(deploymentId: string) {
    const load = this.loads.get(deploymentId);
    if (!load?.queue.length) return;
    let route;
    try {
      route = await this.directory.route(deploymentId);
    } catch {
      return;
    }
    load.dispatch(route?.replicas ?? [], Date.now());
  }

  /** Routes of a deployment with queued requests are re-read every second: a missed NOTIFY cannot strand them. */
  private pollWhileQueued(deploymentId: string) {
    if (this.pollers.has(deploymentId)) return;
    const t = setInterval(() => {
      if (!this.loads.get(deploymentId)?.queue.length) {
        clearInterval(t);
        this.pollers.delete(deploymentId);
        return;
      }
      this.directory.invalidateRoute(deploymentId);
      void this.dispatch(deploymentId);
    }, QUEUE_ROUTE_POLL_MS);
    t.unref();
    this.pollers.set(deploymentId, t);
  }
}
