import { ArgumentsHost, Catch, Inject } from '@nestjs/common';
import { GqlExceptionFilter } from '@nestjs/graphql';
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { ZodError } from 'zod';
import { DomainError, ErrorCode } from '../domain/errors';
import { LOGGER } from './core.module';
import { zodMessage } from './zod';

/** The one mapping from our errors to GraphQL errors with extensions.code. */
export function toGraphQLError(err: unknown, log?: Logger): GraphQLError {
  if (err instanceof GraphQLError) return err;
  if (err instanceof DomainError) {
    return new GraphQLError(err.message, { extensions: { code: err.code, ...err.details } });
  }
  if (err instanceof ZodError) {
    return new GraphQLError(zodMessage(err), { extensions: { code: ErrorCode.BAD_USER_INPUT } });
  }
  log?.error({ err }, 'unhandled error in GraphQL resolver');
  return new GraphQLError('internal error', { extensions: { code: ErrorCode.INTERNAL } });
}

@Catch()
export class GraphQLErrorFilter implements GqlExceptionFilter {
  constructor(@Inject(LOGGER) private readonly log: Logger) {}
  catch(exception: unknown, _host: ArgumentsHost) {
    return toGraphQLError(exception, this.log);
  }
}
