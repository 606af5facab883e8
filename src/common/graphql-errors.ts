import { ArgumentsHost, Catch, HttpException, Inject } from '@nestjs/common';
import { GqlContextType, GqlExceptionFilter } from '@nestjs/graphql';
import type { FastifyReply } from 'fastify';
import { FragmentDefinitionNode, GraphQLError, Kind, SelectionSetNode, ValidationContext, ValidationRule } from 'graphql';
import { createComplexityRule, simpleEstimator } from 'graphql-query-complexity';
import type { Logger } from 'pino';
import { ZodError } from 'zod';
import { DomainError, ErrorCode } from '../domain/errors';
import { LOGGER } from './core.module';
import { zodMessage } from './zod';

/** The Postgres error code under a Prisma error (its driver adapter's cause), if any. */
function postgresCode(err: unknown): string | undefined {
  const cause = (err as { meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; code?: unknown } } } } | null)?.meta
    ?.driverAdapterError?.cause;
  const code = cause?.originalCode ?? cause?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The one mapping from our errors to GraphQL errors with extensions.code. */
export function toGraphQLError(err: unknown, log?: Logger): GraphQLError {
  if (err instanceof GraphQLError) return err;
  if (err instanceof DomainError) {
    return new GraphQLError(err.message, { extensions: { code: err.code, ...err.details } });
  }
  if (err instanceof ZodError) {
    return new GraphQLError(zodMessage(err), { extensions: { code: ErrorCode.BAD_USER_INPUT } });
  }
  // Postgres cannot store a NUL byte in text (22021): an argument carrying one (an id, a name) is the client's mistake.
  if (postgresCode(err) === '22021') {
    return new GraphQLError('An argument contains a character that cannot be stored (the NUL byte, \\u0000); remove it.', {
      extensions: { code: ErrorCode.BAD_USER_INPUT },
    });
  }
  log?.error({ err }, 'unhandled error in GraphQL resolver');
  return new GraphQLError('internal error', { extensions: { code: ErrorCode.INTERNAL } });
}

@Catch()
export class GraphQLErrorFilter implements GqlExceptionFilter {
  constructor(@Inject(LOGGER) private readonly log: Logger) {}
  catch(exception: unknown, host: ArgumentsHost) {
    if (host.getType<GqlContextType>() !== 'graphql') return this.http(exception, host);
    return toGraphQLError(exception, this.log);
  }

  /**
   * The same filter sees plain HTTP requests (an unknown path, /favicon.ico): a client's 4xx is answered as Nest would,
   * without a log line; only a 5xx or an unexpected error is logged, and its message is not shown.
   */
  private http(exception: unknown, host: ArgumentsHost) {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    if (exception instanceof HttpException && exception.getStatus() < 500) {
      const body = exception.getResponse();
      return reply
        .status(exception.getStatus())
        .send(typeof body === 'string' ? { statusCode: exception.getStatus(), message: body } : body);
    }
    this.log.error({ err: exception }, 'unhandled error in an HTTP handler');
    return reply.status(500).send({ statusCode: 500, error: 'Internal Server Error', message: 'internal error' });
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
    if (!Array.isArray(inner)) return [withCode(e).toJSON()];
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
 * An error that reached the formatter without a code gets one. graphql-js's request errors (no operation of that name,
 * several operations and none named, a variable not provided) and the HTTP layer's refusals before GraphQL (a body that
 * is not JSON, no query) are the client's: BAD_USER_INPUT, message kept. Anything else is ours: INTERNAL, and its
 * message (a TypeError's, say) is not shown.
 */
function withCode(e: GraphQLError): GraphQLError {
  if (e.extensions.code) return e;
  const original = e.originalError as (Error & { statusCode?: number }) | undefined;
  const client = !original || (typeof original.statusCode === 'number' && original.statusCode >= 400 && original.statusCode < 500);
  return client
    ? new GraphQLError(e.message, {
        nodes: e.nodes,
        source: e.source,
        positions: e.positions,
        extensions: { ...e.extensions, code: ErrorCode.BAD_USER_INPUT },
      })
    : new GraphQLError('internal error', { extensions: { code: ErrorCode.INTERNAL } });
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
    const visitor = rule(own) as unknown as {
      OperationDefinition: { enter: (...a: unknown[]) => unknown; leave: (...a: unknown[]) => unknown };
    };
    // The estimator throws past 10,000 evaluated nodes (fragments spread many times over, thousands of aliases): that
    // is this limit too, not a crash of the document's validation.
    const enter = visitor.OperationDefinition.enter;
    visitor.OperationDefinition.enter = (...a: unknown[]) => {
      try {
        return enter.apply(visitor, a);
      } catch (err) {
        if (!(err instanceof GraphQLError) || !/maximum allowed number of nodes/.test(err.message)) throw err;
        context.reportError(
          new GraphQLError(`This document asks for too many fields to count (GRAPHQL_MAX_COST ${max}); ask for fewer, or split it.`, {
            extensions: { code: 'QUERY_TOO_COMPLEX', limit: max },
          }),
        );
        return false;
      }
    };
    return visitor as never;
  };
}

/**
 * The depth limit: a document whose selections nest deeper than `max` fields (through fragments too) is refused before
 * it runs, GRAPHQL_VALIDATION_FAILED. Introspection fields (`__schema`, `__type`, ...) do not count: their depth is
 * bounded by the schema, and the standard introspection query (depth 15, what GraphiQL and codegen send) must pass.
 */
export function depthLimit(max: number): ValidationRule {
  return (context) => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const d of context.getDocument().definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
    // A fragment's depth does not depend on where it is spread: computed once (a cycle counts as no depth; graphql-js's
    // NoFragmentCycles rule refuses it).
    const memo = new Map<string, number>();
    const depthOf = (set: SelectionSetNode, visiting: Set<string>): number => {
      let deepest = 0;
      for (const sel of set.selections) {
        if (sel.kind === Kind.FIELD) {
          if (sel.name.value.startsWith('__')) continue;
          deepest = Math.max(deepest, 1 + (sel.selectionSet ? depthOf(sel.selectionSet, visiting) : 0));
        } else if (sel.kind === Kind.INLINE_FRAGMENT) {
          deepest = Math.max(deepest, depthOf(sel.selectionSet, visiting));
        } else {
          const name = sel.name.value;
          const f = fragments.get(name);
          if (!f || visiting.has(name)) continue;
          if (!memo.has(name)) {
            visiting.add(name);
            memo.set(name, depthOf(f.selectionSet, visiting));
            visiting.delete(name);
          }
          deepest = Math.max(deepest, memo.get(name)!);
        }
      }
      return deepest;
    };
    return {
      OperationDefinition(node) {
        const depth = depthOf(node.selectionSet, new Set());
        if (depth > max) {
          context.reportError(
            new GraphQLError(
              `This document nests ${depth} fields deep, above the depth limit of ${max} (GRAPHQL_MAX_DEPTH); ask for less nested data.`,
              { nodes: [node], extensions: { code: 'GRAPHQL_VALIDATION_FAILED', depth, limit: max } },
            ),
          );
        }
      },
    };
  };
}
