import { Global, Inject, Injectable, Module, OnModuleDestroy } from '@nestjs/common';
import { Client, Connection } from '@temporalio/client';
import { temporalConnectionOptions } from '../temporal/connection';
import type { Logger } from 'pino';
import { Config, CONFIG, loadConfig } from '../config/config';
import { createPrisma, PrismaClient } from '../database/prisma';

export const PRISMA = Symbol('PRISMA');
export const TEMPORAL_CLIENT = Symbol('TEMPORAL_CLIENT');
export const LOGGER = Symbol('LOGGER');

@Injectable()
class Closer implements OnModuleDestroy {
  constructor(
    @Inject(PRISMA) private readonly prisma: PrismaClient,
    @Inject(TEMPORAL_CLIENT) private readonly temporal: Client,
  ) {}
  async onModuleDestroy() {
    await this.prisma.$disconnect();
    await this.temporal.connection.close().catch(() => {});
  }
}

/**
 * Process-wide singletons: config, Prisma, the Temporal client, the logger.
 * Tests build the module with their own config and logger.
 */
@Global()
@Module({})
export class CoreModule {
  static forRoot(opts: { config?: Config; logger: Logger }) {
    const config = opts.config ?? loadConfig();
    return {
      module: CoreModule,
      providers: [
        { provide: CONFIG, useValue: config },
        { provide: LOGGER, useValue: opts.logger },
        { provide: PRISMA, useFactory: () => createPrisma(config.DATABASE_URL) },
        {
          provide: TEMPORAL_CLIENT,
          useFactory: () =>
            new Client({
              // Lazy: the api boots and serves /v1 even while Temporal is still starting.
              connection: Connection.lazy(temporalConnectionOptions(config)),
              namespace: config.TEMPORAL_NAMESPACE,
            }),
        },
        Closer,
      ],
      exports: [CONFIG, LOGGER, PRISMA, TEMPORAL_CLIENT],
    };
  }
}
