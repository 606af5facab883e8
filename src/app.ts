import 'reflect-metadata';
import './graphql/enums';
import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { NestFactory } from '@nestjs/core';
import { GraphQLModule } from '@nestjs/graphql';
import { MercuriusDriver, MercuriusDriverConfig } from '@nestjs/mercurius';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Logger } from 'pino';
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
    ],
    providers: [{ provide: APP_FILTER, useClass: GraphQLErrorFilter }],
  })
  class AppModule {}
  return AppModule;
}

/** Builds the api process: GraphQL at /graphql, the gateway at /v1/*, /metrics, /healthz. */
export async function createApp(config: Config, logger: Logger): Promise<AppHandle> {
  const adapter = new FastifyAdapter({ bodyLimit: 16 * 1024 * 1024, logger: false });
  const app = await NestFactory.create<NestFastifyApplication>(rootModule(config, logger), adapter, {
    logger: new PinoNestLogger(logger.child({ component: 'nest' })),
  });
  app.enableShutdownHooks();
  const fastify = app.getHttpAdapter().getInstance();
  const prisma = app.get<PrismaClient>(PRISMA);
  const metrics = createMetrics();
  const directory = new Directory(prisma, config.DATABASE_URL, config.GATEWAY_CACHE_TTL_MS, logger.child({ component: 'directory' }));
  await directory.start();
  const temporal = app.get<Client>(TEMPORAL_CLIENT);
  const gatewayLog = app.get<Logger>(LOGGER).child({ component: 'gateway' });
  let gateway: Gateway | null = null;
  const gatewayId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const limits: LimitStore = config.REDIS_URL
    ? new RedisLimitStore(new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false }), gatewayId)
    : new MemoryLimitStore();
  const reporter = new LoadReporter({
    gatewayId,
    intervalMs: config.GATEWAY_REPORT_INTERVAL_MS,
    heartbeatMs: config.GATEWAY_REPORT_HEARTBEAT_MS,
    log: gatewayLog,
    load: (id) => gateway?.loads.get(id),
    loaded: () => gateway?.loadedDeployments() ?? [],
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
    upstreamTimeoutMs: config.GATEWAY_UPSTREAM_TIMEOUT_MS,
    queueTimeoutMs: config.GATEWAY_QUEUE_TIMEOUT_MS,
    coldStartTimeoutMs: config.GATEWAY_COLD_START_TIMEOUT_MS,
    reporter,
    limits,
    rateBurstSeconds: config.GATEWAY_RATE_BURST_SECONDS,
  });
  gateway.register(fastify);
  reporter.start();
  fastify.get('/healthz', async () => ({ ok: true }));
  if (config.METRICS_ENABLED) {
    fastify.get('/metrics', async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }
  await app.listen(config.API_PORT, config.API_HOST);
  const address = fastify.server.address();
  const port = typeof address === 'object' && address ? address.port : config.API_PORT;
  return {
    app,
    url: `http://${config.API_HOST}:${port}`,
    close: async () => {
      reporter.stop();
      await gateway.close();
      await limits.close();
      await directory.close();
      await app.close();
    },
  };
}
