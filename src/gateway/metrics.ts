// The api process's Prometheus metrics (/metrics): the gateway's counters and histograms, and gauges read at each
// scrape from the loads and from the directory.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What the in-flight and queue gauges read at each scrape. */
export interface LoadSource {
  deploymentId: string;
  inFlight: number;
  queue: { length: number };
}

/** Replicas of one deployment in one state. */
export interface ReplicaCount {
  deploymentId: string;
  state: string;
  count: number;
}

/** Prometheus metrics of one process, exposed at /metrics. */
export function createMetrics() {
  const registry = new Registry();
  let loads: () => Iterable<LoadSource> = () => [];
  let replicas: () => Promise<ReplicaCount[]> = async () => [];
  let pendingUsage: () => number = () => 0;
  collectDefaultMetrics({ register: registry, prefix: 'infercp_' });
  return {
    registry,
    requests: new Counter({
      name: 'infercp_gateway_requests_total',
      help: 'Gateway requests by route, HTTP status and error code',
      labelNames: ['route', 'status', 'code'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'infercp_gateway_request_duration_seconds',
      help: 'Time from request to the last byte of the response',
      labelNames: ['route'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    ttft: new Histogram({
      name: 'infercp_gateway_time_to_first_byte_seconds',
      help: 'Time from request to the first upstream byte',
      labelNames: ['route'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    overhead: new Histogram({
      name: 'infercp_gateway_overhead_seconds',
      help: 'Time a served request spent in the gateway itself: its whole duration less its wait for a replica and the upstream time (from handing the request to the upstream client to the last byte back)',
      labelNames: ['route'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'infercp_gateway_in_flight',
      help: 'Requests in flight through this gateway process, by deployment',
      labelNames: ['deployment'] as const,
      registers: [registry],
      collect() {
        for (const l of loads()) this.set({ deployment: l.deploymentId }, l.inFlight);
      },
    }),
    queueDepth: new Gauge({
      name: 'infercp_gateway_queue_depth',
      help: 'Requests waiting for a replica in this gateway process, by deployment',
      labelNames: ['deployment'] as const,
      registers: [registry],
      collect() {
        for (const l of loads()) this.set({ deployment: l.deploymentId }, l.queue.length);
      },
    }),
    ejections: new Counter({
      name: 'infercp_gateway_replica_ejections_total',
      help: 'Replicas this gateway process stopped routing to for a while because a response from them broke or went silent, by deployment',
      labelNames: ['deployment'] as const,
      registers: [registry],
    }),
    tokens: new Counter({
      name: 'infercp_gateway_tokens_total',
      help: 'Tokens served through this gateway process, by deployment and type (prompt, completion)',
      labelNames: ['deployment', 'type'] as const,
      registers: [registry],
    }),
    usageFlushes: new Counter({
      name: 'infercp_usage_rollup_writes_total',
      help: 'Batched usage rollup writes to Postgres, by result; failed batches are kept and retried',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    usageDropped: new Counter({
      name: 'infercp_usage_rows_dropped_total',
      help: 'Usage rollup rows dropped because Postgres stayed unreachable until the rows held in memory reached their bound',
      registers: [registry],
    }),
    usagePending: new Gauge({
      name: 'infercp_usage_rows_pending',
      help: 'Usage rollup rows held in memory, not yet written to Postgres (grows while Postgres is unreachable)',
      registers: [registry],
      collect() {
        this.set(pendingUsage());
      },
    }),
    limitStoreDegraded: new Gauge({
      name: 'infercp_gateway_limit_store_degraded',
      help: '1 while the shared limit store (Redis) is unreachable and this process counts rate and concurrency itself',
      registers: [registry],
    }),
    replicas: new Gauge({
      name: 'infercp_replicas',
      help: 'Replicas by deployment and state (STARTING, READY, DRAINING), read from Postgres at scrape',
      labelNames: ['deployment', 'state'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const r of await replicas()) this.set({ deployment: r.deploymentId, state: r.state }, r.count);
      },
    }),
    coldStarts: new Counter({
      name: 'infercp_gateway_cold_starts_total',
      help: 'Requests that arrived with no ready replica and were served after a cold start',
      registers: [registry],
    }),
    loadReports: new Counter({
      name: 'infercp_gateway_load_reports_total',
      help: 'Load reports sent to deployment scalers, by result',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    /** The gateway's per-deployment loads: the in-flight and queue gauges are read from them, never kept twice. */
    observeLoads(source: () => Iterable<LoadSource>) {
      loads = source;
    },
    /** Where the pending usage gauge reads its count at each scrape. */
    observeUsage(source: () => number) {
      pendingUsage = source;
    },
    /** Where the replica gauge reads its counts at each scrape. */
    observeReplicas(source: () => Promise<ReplicaCount[]>) {
      replicas = source;
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
