import 'reflect-metadata';
import './graphql/enums';
import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { NestFactory } from '@nestjs/core';
import { GraphQLModule } from '@nestjs/graphql';
import { MercuriusDriver, MercuriusDriverConfig } from '@nestjs/mercurius';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Logger } from 'pino';
import { createServer, IncomingMessage, ServerOptions, ServerResponse } from 'node:http';
import type { Client } from '@temporalio/client';
import { PRISMA, CoreModule, TEMPORAL_CLIENT } from './common/core.module';
import { costLimit, depthLimit, formatGraphQLErrors, GRAPHQL_PARSE_FAILED, GraphQLErrorFilter } from './common/graphql-errors';
import { PinoNestLogger } from './common/logger';
import { Config } from './config/config';
import { GraphQLError, Kind } from 'graphql';
import { BundleModule } from './bundle/bundle.module';
import { CredentialsModule } from './credentials/credentials.module';
import type { PrismaClient } from './database/prisma';
import { DeploymentsModule } from './deployments/deployments.module';
import { createGateway, GatewayHandle } from './gateway';
import { KeysModule } from './keys/keys.module';
import { PipelinesModule } from './pipelines/pipelines.module';
import { OptimizationModule } from './optimization/optimization.module';
import { ScalingModule } from './scaling/scaling.module';
import { WorkspacesModule } from './workspaces/workspaces.module';
import { UsageModule } from './usage/usage.module';
import { MonitoringModule } from './monitoring/monitoring.module';
import { PlaygroundModule } from './playground/playground.module';
import { PlaygroundService } from './playground/playground.service';
import { consoleRoot, loadConsole } from './console';
import { installLeanAsyncResourceBind } from './common/async-resource-bind';

/** Largest request body, GraphQL or /v1. */
const BODY_LIMIT_BYTES = 16 * 1024 * 1024;

/** Largest playground request body (a prompt and its conversation). */
const PLAYGROUND_BODY_LIMIT_BYTES = 1024 * 1024;

/** Pending connections the listening socket holds before the kernel drops SYNs. */
const LISTEN_BACKLOG = 4096;

/**
 * The api port's HTTP server against slow and idle clients (issue #20, scenario 5): a request's head must arrive whole
 * within API_HEADERS_TIMEOUT_MS (a slowloris, or a connection that never sends, gets a 408 and is closed), its body
 * within API_REQUEST_TIMEOUT_MS; a head past API_MAX_HEADER_BYTES gets a 431. Node checks the timeouts every
 * connectionsCheckingInterval, so it is a fraction of the headers timeout. Neither timeout bounds a response: a stream
 * is held only to GATEWAY_TTFB_TIMEOUT_MS and GATEWAY_IDLE_TIMEOUT_MS.
 */
export function serverOptions(config: Config): ServerOptions {
  const requestTimeout = config.API_REQUEST_TIMEOUT_MS;
  // Node refuses a headers timeout above a (non-zero) request timeout.
  const headersTimeout = requestTimeout > 0 ? Math.min(config.API_HEADERS_TIMEOUT_MS, requestTimeout) : config.API_HEADERS_TIMEOUT_MS;
  return {
    headersTimeout,
    requestTimeout,
    maxHeaderSize: config.API_MAX_HEADER_BYTES,
    connectionsCheckingInterval: Math.max(100, Math.min(5000, Math.floor(headersTimeout / 4))),
  };
}

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
        // One document cannot make the api do unbounded work: a depth limit (introspection not counted, so GraphiQL's
        // schema query passes; mercurius's own queryDepth counts it), and a cost limit checked before anything runs
        // (every field counts, each alias again: 2,000 aliases of a list are refused, not executed).
        validationRules: ({ variables }) => [depthLimit(config.GRAPHQL_MAX_DEPTH), costLimit(config.GRAPHQL_MAX_COST, variables ?? {})],
        // The cost rule needs each request's variables (for @skip and @include), which mercurius's compiled-query cache
        // cannot take; the management API's traffic does not need that cache.
        cache: false,
        hooks: {
          // A query graphql-js cannot parse that is JSON ("{}", "42", or a body's `query: 42`) is taken by mercurius for a
          // document already parsed, and its validation then throws a TypeError: refused as the syntax error it is.
          preValidation: async (_schema, document) => {
            const d = document as { kind?: unknown; definitions?: unknown } | null;
            if (!d || typeof d !== 'object' || d.kind !== Kind.DOCUMENT || !Array.isArray(d.definitions))
              throw new GraphQLError('Syntax Error: the query is not a GraphQL document.', {
                extensions: { code: GRAPHQL_PARSE_FAILED },
              });
          },
        },
        // GraphQL over HTTP: errors are a 200 with `errors`; each carries extensions.code (a document that does
        // not parse or fit the schema: graphql-js's own messages, GRAPHQL_PARSE_FAILED or GRAPHQL_VALIDATION_FAILED).
        errorFormatter: (execution) => ({
          statusCode: 200,
          response: {
            data: execution.data ?? null,
            errors: execution.errors && formatGraphQLErrors(execution.errors),
          },
        }),
      }),
      WorkspacesModule,
      PipelinesModule,
      OptimizationModule,
      DeploymentsModule,
      KeysModule,
      CredentialsModule,
      ScalingModule,
      UsageModule,
      BundleModule,
      MonitoringModule,
      PlaygroundModule,
    ],
    providers: [{ provide: APP_FILTER, useClass: GraphQLErrorFilter }],
  })
  class AppModule {}
  return AppModule;
}

/** Builds the api process: GraphQL at /graphql, the gateway at /v1/*, /metrics, /healthz. */
export async function createApp(config: Config, logger: Logger): Promise<AppHandle> {
  // Fastify binds a callback per request body (GraphQL); Node's bind made every request's objects outlive young GCs.
  if (installLeanAsyncResourceBind())
    logger.debug('AsyncResource.prototype.bind replaced by a lean version (src/common/async-resource-bind.ts)');
  // /v1/* is answered by the gateway before Fastify sees it (Gateway.handle); everything else goes on to
  // Fastify and Nest. The server's timeouts and limits come from the config (serverOptions, above).
  let handler: GatewayHandle['handle'] | null = null;
  const serverFactory = (fastifyHandler: (req: IncomingMessage, res: ServerResponse) => void) => {
    const server = createServer(serverOptions(config), (req, res) => {
      if (!handler?.(req, res)) fastifyHandler(req, res);
    });
    server.keepAliveTimeout = config.API_KEEP_ALIVE_TIMEOUT_MS;
    if (config.API_MAX_CONNECTIONS > 0) server.maxConnections = config.API_MAX_CONNECTIONS;
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
  const gateway = await createGateway({
    config,
    prisma: app.get<PrismaClient>(PRISMA),
    temporal: app.get<Client>(TEMPORAL_CLIENT),
    log: logger,
    bodyLimitBytes: BODY_LIMIT_BYTES,
  });
  handler = gateway.handle;
  fastify.get('/healthz', async () => ({ ok: true }));
  // The console (web/, built into dist/web by `npm run build`): static files at /console/, its data from /graphql.
  const playground = app.get(PlaygroundService);
  // In a scope of its own: the body arrives as text (the service parses it and names what is wrong), and a refusal of
  // Fastify's own (a body over the limit) gets the playground's JSON shape.
  await fastify.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'string', bodyLimit: PLAYGROUND_BODY_LIMIT_BYTES }, (_req, body, done) => done(null, body));
    scope.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) =>
      reply
        .code(err.statusCode && err.statusCode < 500 ? err.statusCode : 400)
        .send({ error: { code: 'BAD_USER_INPUT', message: err.message } }),
    );
    scope.post('/playground/chat', async (req, reply) => {
      reply.hijack();
      await playground.chat(req.headers, req.body, reply.raw);
    });
  });
  const webRoot = consoleRoot();
  if (webRoot) {
    const files = loadConsole(webRoot);
    fastify.get('/console', async (_req, reply) => reply.redirect('/console/'));
    fastify.get('/console/*', async (req, reply) => {
      const f = files.get((req.params as { '*': string })['*']);
      if (!f) return reply.code(404).type('text/plain').send('Not found\n');
      return reply.headers(f.headers).type(f.type).send(f.body);
    });
  } else {
    logger.warn('the console is not built (no dist/web/index.html): /console is off; `npm run build` builds it');
    fastify.get('/console', async (_req, reply) =>
      reply.code(503).type('text/plain').send('The console is not built: run `npm run build`.\n'),
    );
  }
  if (config.METRICS_ENABLED) {
    fastify.get('/metrics', async (_req, reply) => reply.type(gateway.registry.contentType).send(await gateway.registry.metrics()));
  }
  // A deep accept queue: thousands of clients opening streams at once must wait to be accepted, not have
  // their SYNs dropped (Node's default is 511; the kernel caps it at net.core.somaxconn).
  await app.listen({ port: config.API_PORT, host: config.API_HOST, backlog: LISTEN_BACKLOG });
  const address = fastify.server.address();
  const port = typeof address === 'object' && address ? address.port : config.API_PORT;
  playground.setGatewayUrl(`http://${config.API_HOST}:${port}`);
  return {
    app,
    url: `http://${config.API_HOST}:${port}`,
    close: async () => {
      await gateway.close();
      await app.close();
    },
  };
}
