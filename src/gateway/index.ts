// The gateway's composition root: builds metrics, usage and capacity accounting, the directory, the limit store, the
// load reporter and the Gateway from the api's config, Prisma and Temporal client, and closes them in order.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import type { Client } from '@temporalio/client';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config/config';
import type { PrismaClient } from '../database/prisma';
import { CapacityAccountant } from '../usage/capacity';
import { loadPrices } from '../usage/prices';
import { UsageRecorder } from '../usage/recorder';
import { readCredentialSecret, replicaKey } from '../credentials/store';
import { secretsKey } from '../credentials/secrets-key';
import { parseCustomEndpoints } from '../providers/custom/endpoints';
import { Directory, UpstreamAuth } from './directory';
import { Gateway } from './gateway';
import { LimitStore, MemoryLimitStore, RedisLimitStore } from './limits';
import { createMetrics } from './metrics';
import { LoadReporter } from './reporter';
import { scalerSink } from './scaler-sink';
import { LoadSampler } from '../monitoring/sampler';

export interface GatewayDeps {
  config: Config;
  prisma: PrismaClient;
  temporal: Client;
  log: Logger;
  /** Largest request body accepted, bytes (413 past it). */
  bodyLimitBytes: number;
}

export interface GatewayHandle {
  /** Serves /v1/*; false for any other path, which the caller hands on. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** This process's Prometheus metrics, for /metrics. */
  registry: Registry;
  /** Stops reporting and accounting, then the gateway, then writes the last usage and closes the stores. */
  close(): Promise<void>;
}

/**
 * What upstreams want: RunPod's runtime takes the endpoint's account key (the platform's for managed RunPod, the
 * user's stored one otherwise); a Modal Sandbox takes its own replica key; a CUSTOM box the key registered with its URL.
 */
function upstreamAuth(config: Config, prisma: PrismaClient, log: Logger): UpstreamAuth {
  let key: Buffer | null = null;
  const sealKey = () => (key ??= secretsKey(config, log));
  return async ({ target, credentialId }) => {
    const none = () => null;
    if (target === 'RUNPOD') {
      const route = credentialId ? await readCredentialSecret(prisma, sealKey(), credentialId) : (config.RUNPOD_API_KEY ?? null);
      return { route, replica: none };
    }
    if (target === 'MODAL') return { route: null, replica: (replicaId) => replicaKey(sealKey(), replicaId) };
    // A CUSTOM box takes the key registered with its URL in the deployment's credential (read and opened once).
    if (target === 'CUSTOM' && credentialId) {
      const endpoints = parseCustomEndpoints(await readCredentialSecret(prisma, sealKey(), credentialId), credentialId);
      return { route: null, replica: (_id, address) => endpoints.find((e) => e.url === address)?.apiKey ?? null };
    }
    return { route: null, replica: none };
  };
}

export async function createGateway({ config, prisma, temporal, log, bodyLimitBytes }: GatewayDeps): Promise<GatewayHandle> {
  const metrics = createMetrics();
  const prices = loadPrices(config.PRICING_FILE);
  const usage = new UsageRecorder(prisma, config.USAGE_FLUSH_INTERVAL_MS, log.child({ component: 'usage' }), {
    onFlush: (_rows, ok) => metrics.usageFlushes.inc({ result: ok ? 'ok' : 'failed' }),
    onDropped: (rows) => metrics.usageDropped.inc(rows),
  });
  metrics.observeUsage(() => usage.pendingRows);
  const capacity = new CapacityAccountant(prisma, prices, config.USAGE_CAPACITY_INTERVAL_MS, log.child({ component: 'capacity' }));
  const directory = new Directory(
    prisma,
    config.DATABASE_URL,
    config.GATEWAY_CACHE_TTL_MS,
    log.child({ component: 'directory' }),
    upstreamAuth(config, prisma, log),
    { staleServeMs: config.GATEWAY_STALE_SERVE_MS, readTimeoutMs: config.GATEWAY_DB_READ_TIMEOUT_MS },
  );
  metrics.observeReplicas(() => directory.replicaCounts());
  await directory.start();
  const gatewayLog = log.child({ component: 'gateway' });
  const gatewayId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const limits: LimitStore = config.REDIS_URL
    ? new RedisLimitStore(
        // Fail fast while Redis is away (no offline queue, a bound on every command): admission counts in this process
        // meanwhile (admission.ts) and goes back to Redis once it answers.
        new Redis(config.REDIS_URL, {
          maxRetriesPerRequest: 1,
          enableOfflineQueue: false,
          lazyConnect: false,
          commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
          connectTimeout: Math.max(1000, config.REDIS_COMMAND_TIMEOUT_MS * 4),
          retryStrategy: (times) => Math.min(times * 100, 1000),
        }),
        gatewayId,
        'infercp:',
        config.GATEWAY_SLOT_LEASE_MS,
      )
    : new MemoryLimitStore();
  // The reporter reads the gateway's loads and the gateway pokes the reporter: `gateway` is set before either runs.
  const reporter: LoadReporter = new LoadReporter({
    gatewayId,
    intervalMs: config.GATEWAY_REPORT_INTERVAL_MS,
    heartbeatMs: config.GATEWAY_REPORT_HEARTBEAT_MS,
    log: gatewayLog,
    load: (id) => gateway.queue.loads.get(id),
    loaded: () => gateway.queue.loadedDeployments(),
    serving: () => directory.servingDeployments(),
    sink: scalerSink(temporal),
    onSent: (result) => metrics.loadReports.inc({ result }),
  });
  // Per-minute load samples for the console (src/monitoring/): written by this process, merged with the others' at read.
  const samples: LoadSampler = new LoadSampler({
    prisma,
    gatewayId,
    log: log.child({ component: 'samples' }),
    flushMs: config.METRICS_FLUSH_INTERVAL_MS,
    retentionDays: config.METRICS_RETENTION_DAYS,
    sources: {
      load: (id) => {
        const l = gateway.queue.loads.get(id);
        return l && { inFlight: l.inFlight, queued: l.queue.length };
      },
      loaded: () => gateway.queue.loadedDeployments(),
    },
  });
  const gateway: Gateway = new Gateway({
    directory,
    samples,
    metrics,
    log: gatewayLog,
    requestTimeoutMs: config.GATEWAY_REQUEST_TIMEOUT_MS,
    ttfbTimeoutMs: config.GATEWAY_TTFB_TIMEOUT_MS,
    idleTimeoutMs: config.GATEWAY_IDLE_TIMEOUT_MS,
    assumedMsPerToken: config.GATEWAY_ASSUMED_MS_PER_TOKEN,
    usage,
    prices,
    queueTimeoutMs: config.GATEWAY_QUEUE_TIMEOUT_MS,
    coldStartTimeoutMs: config.GATEWAY_COLD_START_TIMEOUT_MS,
    reporter,
    limits,
    rateBurstSeconds: config.GATEWAY_RATE_BURST_SECONDS,
    bodyLimitBytes,
  });
  reporter.start();
  samples.start();
  usage.start();
  capacity.start();
  return {
    handle: (req, res) => gateway.handle(req, res),
    registry: metrics.registry,
    close: async () => {
      reporter.stop();
      capacity.stop();
      await gateway.close();
      // After the gateway: the last requests' usage is in the final write.
      await usage.close();
      await samples.close();
      await limits.close();
      await directory.close();
    },
  };
}
