import { ArgumentsHost, Catch, Inject } from '@nestjs/common';
import { GqlExceptionFilter } from '@nestjs/graphql';
import { GraphQLError, ValidationContext, ValidationRule } from 'graphql';
import { createComplexityRule, simpleEstimator } from 'graphql-query-complexity';
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

/** The codes of errors found before execution: the document does not parse, or does not fit the schema. */
export const GRAPHQL_PARSE_FAILED = 'GRAPHQL_PARSE_FAILED';
export const GRAPHQL_VALIDATION_FAILED = 'GRAPHQL_VALIDATION_FAILED';

/**
 * The errors of one GraphQL response, as JSON. Mercurius wraps the parse and validation errors of a
 * document in one "Graphql validation error" whose `errors` are graphql-js's own: those are what the
 * client sees, each with its message and locations and a code saying which stage refused the document.
 * Variables whose values do not fit their types are refused at the same stage, as GRAPHQL_VALIDATION_FAILED.
 */
export function formatGraphQLErrors(errors: readonly GraphQLError[]): Array<ReturnType<GraphQLError['toJSON']>> {
  return errors.flatMap((e) => {
    const inner = (e.originalError as { errors?: unknown } | undefined)?.errors;
    if (!Array.isArray(inner)) return [e.toJSON()];
    return inner.map((x: unknown) => {
      const g = x instanceof GraphQLError ? x : new GraphQLError(x instanceof Error ? x.message : String(x));
      // A rule of ours (the cost limit) names its own code; graphql-js's rules name none.
      const code = g.extensions.code ?? (g.message.startsWith('Syntax Error') ? GRAPHQL_PARSE_FAILED : GRAPHQL_VALIDATION_FAILED);
      return new GraphQLError(g.message, {
        nodes: g.nodes,
        source: g.source,
        positions: g.positions,
        extensions: { ...g.extensions, code },
      }).toJSON();
    });
  });
}

/**
 * The cost rule: every field of the document counts 1 (graphql-query-complexity's simple estimator), aliases included;
 * a document above `max` is refused before it runs, naming its cost, with code QUERY_TOO_COMPLEX. Only that error is
 * reported: what else the estimator trips over (an argument of the wrong shape) graphql-js's own rules name better.
 */
export function costLimit(max: number, variables: Record<string, unknown>): ValidationRule {
  const rule = createComplexityRule({
    maximumComplexity: max,
    variables,
    estimators: [simpleEstimator({ defaultComplexity: 1 })],
    createError: (limit, actual) =>
      new GraphQLError(
        `This document asks for ${actual} fields, above the limit of ${limit} (GRAPHQL_MAX_COST); ask for fewer, or split it.`,
        {
          extensions: { code: 'QUERY_TOO_COMPLEX', cost: actual, limit },
        },
      ),
  });
  return (context) => {
    const own: ValidationContext = Object.create(context, {
      reportError: {
        value: (e: GraphQLError) => {
          if (e.extensions.code === 'QUERY_TOO_COMPLEX') context.reportError(e);
        },
      },
    });
    return rule(own);
  };
}
