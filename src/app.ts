import 'reflect-metadata';
import './graphql/enums';
import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { NestFactory } from '@nestjs/core';
import { GraphQLModule } from '@nestjs/graphql';
import { MercuriusDriver, MercuriusDriverConfig } from '@nestjs/mercurius';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Logger } from 'pino';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import { LOGGER, PRISMA, CoreModule, TEMPORAL_CLIENT } from './common/core.module';
import { GraphQLErrorFilter } from './common/graphql-errors';
import { PinoNestLogger } from './common/logger';
import { Config } from './config/config';
import type { PrismaClient } from './database/prisma';
import { DeploymentsModule } from './deployments/deployments';
import { Directory } from './gateway/directory';
import { Gateway } from './gateway/gateway';
import { createMetrics } from './gateway/metrics';
import { LoadReporter, NoScalerError } from './gateway/reporter';
import { LimitStore, MemoryLimitStore, RedisLimitStore } from './gateway/limits';
import { Redis } from 'ioredis';
import { loadReportSignal, scalerWorkflowId } from '../workflows/messages';
import { KeysModule } from './keys/keys';
import { PipelinesModule } from './pipelines/pipelines';
import { ScalingModule } from './scaling/scaling.module';
import { WorkspacesModule } from './workspaces/workspaces.module';
import { UsageModule } from './usage/usage.module';
import { UsageRecorder } from './usage/recorder';
import { CapacityAccountant } from './usage/capacity';
import { loadPrices } from './usage/prices';
import { installLeanAsyncResourceBind } from './common/async-resource-bind';

/** Largest request body, GraphQL or /v1. */
const BODY_LIMIT_BYTES = 16 * 1024 * 1024;

/** Pending connections the listening socket holds before the kernel drops SYNs. */
const LISTEN_BACKLOG = 4096;

export interface AppHandle {
  app: NestFastifyApplication;
  url: string;
  close: () => Promise<void>;
}

function rootModule(config: Config, logger: Logger) {
  @Module({
    imports: [
      CoreModule.forRoot({ config, logger }),
      GraphQLModule.forRoot<MercuriusDriverConfig>({
        driver: MercuriusDriver,
        autoSchemaFile: config.GRAPHQL_SCHEMA_FILE || true,
        sortSchema: true,
        graphiql: true,
        context: (req: unknown) => ({ req }),
        // GraphQL over HTTP: execution errors are a 200 with `errors`; each carries extensions.code.
        errorFormatter: (execution) => ({
          statusCode: 200,
          response: {
            data: execution.data ?? null,
            errors: execution.errors?.map((e) => e.toJSON()),
          },
        }),
      }),
      WorkspacesModule,
      PipelinesModule,
      DeploymentsModule,
      KeysModule,
      ScalingModule,
      UsageModule,
    ],
    providers: [{ provide: APP_FILTER, useClass: GraphQLErrorFilter }],
  })
  class AppModule {}
  return AppModule;
}

/** Builds the api process: GraphQL at /graphql, the gateway at /v1/*, /metrics, /healthz. */
export async function createApp(config: Config, logger: Logger): Promise<AppHandle> {
  // Fastify binds a callback per request body (GraphQL); Node's bind made every request's objects outlive young GCs.
  if (installLeanAsyncResourceBind()) logger.debug('AsyncResource.prototype.bind replaced by a lean version (src/common/async-resource-bind.ts)');
  // /v1/* is answered by the gateway before Fastify sees it (Gateway.handle); everything else goes on to
  // Fastify and Nest. The server gets Fastify's own defaults, which it only sets on servers it makes itself.
  let gateway: Gateway | null = null;
  const serverFactory = (fastifyHandler: (req: IncomingMessage, res: ServerResponse) => void) => {
    const server = createServer((req, res) => {
      if (!gateway?.handle(req, res)) fastifyHandler(req, res);
    });
    server.keepAliveTimeout = 72_000;
    server.requestTimeout = 0;
    return server;
  };
  // No Nest middleware is used: without middie, and with Fastify's own JSON parser (Nest's wraps it per request).
  const adapter = new FastifyAdapter({ bodyLimit: BODY_LIMIT_BYTES, logger: false, skipMiddie: true, serverFactory });
  const app = await NestFactory.create<NestFastifyApplication>(rootModule(config, logger), adapter, {
    logger: new PinoNestLogger(logger.child({ component: 'nest' })),
    bodyParser: false,
  });
  // No enableShutdownHooks(): Nest's default list includes SIGUSR2 and SIGHUP, which would shut the api down
  // on a signal meant for something else; main.ts closes the app on SIGINT/SIGTERM, after the gateway drains.
  const fastify = app.getHttpAdapter().getInstance();
  const prisma = app.get<PrismaClient>(PRISMA);
  const metrics = createMetrics();
  const prices = loadPrices(config.PRICING_FILE);
  metrics.observeReplicas(async () => {
    const rows = await prisma.replica.groupBy({ by: ['deploymentId', 'state'], where: { state: { in: ['STARTING', 'READY', 'DRAINING'] } }, _count: { _all: true } });
    return rows.map((r) => ({ deploymentId: r.deploymentId, state: r.state, count: r._count._all }));
  });
  const usage = new UsageRecorder(prisma, config.USAGE_FLUSH_INTERVAL_MS, logger.child({ component: 'usage' }), (_rows, ok) =>
    metrics.usageFlushes.inc({ result: ok ? 'ok' : 'failed' }),
  );
  const capacity = new CapacityAccountant(prisma, prices, config.USAGE_CAPACITY_INTERVAL_MS, logger.child({ component: 'capacity' }));
  const directory = new Directory(prisma, config.DATABASE_URL, config.GATEWAY_CACHE_TTL_MS, logger.child({ component: 'directory' }));
  await directory.start();
  const temporal = app.get<Client>(TEMPORAL_CLIENT);
  const gatewayLog = app.get<Logger>(LOGGER).child({ component: 'gateway' });
  const gatewayId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const limits: LimitStore = config.REDIS_URL
    ? new RedisLimitStore(new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false }), gatewayId)
    : new MemoryLimitStore();
  const reporter = new LoadReporter({
    gatewayId,
    intervalMs: config.GATEWAY_REPORT_INTERVAL_MS,
    heartbeatMs: config.GATEWAY_REPORT_HEARTBEAT_MS,
    log: gatewayLog,
    load: (id) => gateway?.queue.loads.get(id),
    loaded: () => gateway?.queue.loadedDeployments() ?? [],
    serving: () => directory.servingDeployments(),
    sink: async (id, report) => {
      try {
        await temporal.workflow.getHandle(scalerWorkflowId(id)).signal(loadReportSignal, report);
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw new NoScalerError(`deployment ${id} has no running scaler`);
        throw err;
      }
    },
    onSent: (result) => metrics.loadReports.inc({ result }),
  });
  gateway = new Gateway({
    directory,
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
    bodyLimitBytes: BODY_LIMIT_BYTES,
  });
  reporter.start();
  usage.start();
  capacity.start();
  fastify.get('/healthz', async () => ({ ok: true }));
  if (config.METRICS_ENABLED) {
    fastify.get('/metrics', async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }
  // A deep accept queue: thousands of clients opening streams at once must wait to be accepted, not have
  // their SYNs dropped (Node's default is 511; the kernel caps it at net.core.somaxconn).
  await app.listen({ port: config.API_PORT, host: config.API_HOST, backlog: LISTEN_BACKLOG });
  const address = fastify.server.address();
  const port = typeof address === 'object' && address ? address.port : config.API_PORT;
  return {
    app,
    url: `http://${config.API_HOST}:${port}`,
    close: async () => {
      reporter.stop();
      capacity.stop();
      await gateway.close();
      // After the gateway: the last requests' usage is in the final write.
      await usage.close();
      await limits.close();
      await directory.close();
      await app.close();
    },
  };
}
