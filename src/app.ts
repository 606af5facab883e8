import 'reflect-metadata';
import './graphql/enums';
import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { NestFactory } from '@nestjs/core';
import { GraphQLModule } from '@nestjs/graphql';
import { MercuriusDriver, MercuriusDriverConfig } from '@nestjs/mercurius';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Logger } from 'pino';
import { LOGGER, PRISMA, CoreModule } from './common/core.module';
import { GraphQLErrorFilter } from './common/graphql-errors';
import { PinoNestLogger } from './common/logger';
import { Config } from './config/config';
import type { PrismaClient } from './database/prisma';
import { DeploymentsModule } from './deployments/deployments';
import { Directory } from './gateway/directory';
import { Gateway } from './gateway/gateway';
import { createMetrics } from './gateway/metrics';
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
  const gateway = new Gateway({ directory, metrics, log: app.get(LOGGER), upstreamTimeoutMs: config.GATEWAY_UPSTREAM_TIMEOUT_MS });
  gateway.register(fastify);
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
      await gateway.close();
      await directory.close();
      await app.close();
    },
  };
}
