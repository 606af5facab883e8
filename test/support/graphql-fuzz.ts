// Issue #20, scenario 5 (the GraphQL part), written once for the e2e test and bench/chaos.ts: schema-aware random
// documents against /graphql, each response held to the suite's rules (no 5xx, no hang, every error coded with one of
// the project's codes, no stack trace in a message).
import {
  buildClientSchema,
  getIntrospectionQuery,
  getNamedType,
  GraphQLArgument,
  GraphQLEnumType,
  GraphQLField,
  GraphQLInputType,
  GraphQLList,
  GraphQLNamedType,
  GraphQLObjectType,
  GraphQLScalarType,
  GraphQLSchema,
  IntrospectionQuery,
  isAbstractType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
} from 'graphql';
import { prng } from '../../src/common/prng';
import { ErrorCode } from '../../src/domain/errors';

/** Every code a GraphQL error of this api may carry. */
export const GRAPHQL_CODES = new Set<string>([
  ...Object.values(ErrorCode),
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'QUERY_TOO_COMPLEX',
]);

/** What reads as a stack trace or a source location in a message. */
export const STACK_TRACE = /\n\s+at |\bat [\w.<>]+ \(|\.(ts|js):\d+:\d+|node_modules|\/work\/main|dist\/src/;

export interface FuzzOptions {
  documents: number;
  seed: number;
  /** A response later than this counts as a hang. */
  boundMs: number;
  /** Ids that exist in the workspace (a pipeline, a deployment...): arguments of type ID sometimes take one. */
  knownIds?: string[];
  /** Share of documents that are mutations (default 0.3). */
  mutationShare?: number;
  /** Requests in flight at once (default 4). */
  concurrency?: number;
}

export interface FuzzFinding {
  n: number;
  kind: string;
  what: string;
  body: string;
}

export interface FuzzReport {
  sent: number;
  /** Responses by HTTP status. */
  statuses: Record<string, number>;
  /** Errors by extensions.code. */
  codes: Record<string, number>;
  /** Responses that carried data with no error at all. */
  clean: number;
  /** Documents of each shape sent. */
  shapes: Record<string, number>;
  maxMs: number;
  p99Ms: number;
  findings: FuzzFinding[];
}

type Rnd = () => number;

class Gen {
  private vars: Array<{ name: string; type: string; value: unknown }> = [];
  constructor(
    private readonly schema: GraphQLSchema,
    readonly rnd: Rnd,
    private readonly knownIds: string[],
  ) {}

  int = (lo: number, hi: number) => lo + Math.floor(this.rnd() * (hi - lo + 1));
  pick = <T>(xs: readonly T[]): T => xs[Math.floor(this.rnd() * xs.length)];
  chance = (p: number) => this.rnd() < p;

  /** A random string: plain, empty, long, unicode, or with characters GraphQL strings must escape. */
  str(): string {
    return this.pick([
      () => `fuzz-${this.int(0, 1e6)}`,
      () => '',
      () => 'x'.repeat(this.int(200, 5000)),
      () => 'ünïcødé ✓ 😀',
      () => 'quote " backslash \\ newline \n tab \t',
      () => '../../etc/passwd',
      () => "'; DROP TABLE deployments; --",
      () => 'http://169.254.169.254/latest/meta-data',
      () => '{"json": true}',
      () => '\u0000nul',
    ])();
  }

  /** A value for `type`: of the right shape (wrong=false), or sometimes of a wrong one. */
  value(type: GraphQLInputType, wrong: boolean, depth = 0): unknown {
    if (wrong && this.chance(0.35)) return this.wrongValue(type);
    if (isNonNullType(type)) return this.value(type.ofType, wrong, depth);
    if (this.chance(0.05)) return null;
    if (isListType(type)) {
      const n = depth > 3 ? 0 : this.int(0, this.chance(0.1) ? 50 : 3);
      return Array.from({ length: n }, () => this.value(type.ofType, wrong, depth + 1));
    }
    if (isInputObjectType(type)) {
      const out: Record<string, unknown> = {};
      for (const f of Object.values(type.getFields())) {
        if (isNonNullType(f.type) || this.chance(0.5)) {
          if (wrong && this.chance(0.1)) continue; // a required field left out
          out[f.name] = depth > 5 ? null : this.value(f.type, wrong, depth + 1);
        }
      }
      if (wrong && this.chance(0.2)) out[`unknown${this.int(0, 99)}`] = 1;
      return out;
    }
    if (type instanceof GraphQLEnumType) {
      const vals = type.getValues();
      return wrong && this.chance(0.3) ? 'NOT_A_VALUE' : this.pick(vals).value;
    }
    return this.scalar(type as GraphQLScalarType, wrong);
  }

  scalar(type: GraphQLScalarType, wrong: boolean): unknown {
    switch (type.name) {
      case 'Int':
        return this.pick([0, 1, -1, 2, 16, 1000, 2 ** 31 - 1, -(2 ** 31), this.int(-100, 100), ...(wrong ? [2 ** 40, 1.5] : [])]);
      case 'Float':
        return this.pick([0, 0.5, -1, 1e308, 3.14, this.int(0, 100)]);
      case 'Boolean':
        return this.chance(0.5);
      case 'ID':
        return this.knownIds.length && this.chance(0.5)
          ? this.pick(this.knownIds)
          : this.pick([`c${this.int(0, 1e9).toString(36)}`, '', 'not-an-id', '00000000-0000-0000-0000-000000000000', this.str()]);
      case 'String':
        return this.str();
      case 'DateTime':
        return this.pick(['2026-01-01T00:00:00.000Z', new Date(0).toISOString(), 'yesterday', '9999-12-31T23:59:59Z']);
      case 'JSON':
      case 'JSONObject':
        return this.pick([{}, { a: 1 }, { nested: { deep: [1, 2, { x: 'y' }] } }, [], 'str', 1]);
      default:
        return this.str();
    }
  }

  wrongValue(type: GraphQLInputType): unknown {
    const named = getNamedType(type);
    const wrongs: unknown[] = [null, 'a string', 42, 4.2, true, [], {}, [1, 'two'], { nested: { deep: true } }];
    if (isLeafType(named) && named.name === 'Int') wrongs.push(2 ** 53, '12', 1e40);
    return this.pick(wrongs);
  }

  /** A value as a GraphQL literal (for arguments written inline). */
  literal(v: unknown, type: GraphQLInputType): string {
    const named = getNamedType(type);
    if (v === null || v === undefined) return 'null';
    if (Array.isArray(v)) {
      const inner = isListType(isNonNullType(type) ? type.ofType : type)
        ? ((isNonNullType(type) ? type.ofType : type) as GraphQLList<GraphQLInputType>).ofType
        : type;
      return `[${v.map((x) => this.literal(x, inner)).join(', ')}]`;
    }
    if (typeof v === 'object') {
      const fields = isInputObjectType(named) ? named.getFields() : {};
      return `{${Object.entries(v as Record<string, unknown>)
        .map(([k, x]) => `${k}: ${this.literal(x, fields[k]?.type ?? (named as GraphQLInputType))}`)
        .join(', ')}}`;
    }
    if (typeof v === 'string' && named instanceof GraphQLEnumType && /^[A-Z_][A-Z0-9_]*$/.test(v)) return v;
    return JSON.stringify(v);
  }

  args(args: readonly GraphQLArgument[]): string {
    const out: string[] = [];
    for (const a of args) {
      const required = isNonNullType(a.type);
      if (!required && this.chance(0.5)) continue;
      if (required && this.chance(0.03)) continue; // a required argument left out
      const wrong = this.chance(0.15);
      const v = this.value(a.type, wrong);
      if (this.chance(0.35)) {
        const name = `v${this.vars.length}`;
        // Sometimes declared with a type other than the argument's.
        const declared = wrong && this.chance(0.3) ? this.pick(['String', 'Int!', 'ID', '[String]', 'Boolean!']) : String(a.type);
        this.vars.push({ name, type: declared, value: v });
        out.push(`${a.name}: $${name}`);
      } else out.push(`${a.name}: ${this.literal(v, a.type)}`);
    }
    if (this.chance(0.03)) out.push(`notAnArgument: 1`);
    return out.length ? `(${out.join(', ')})` : '';
  }

  /** A selection set on `type`, depth levels deep at most. */
  selection(type: GraphQLNamedType, depth: number, maxDepth: number, aliases: number): string {
    if (isAbstractType(type)) {
      const possible = this.schema.getPossibleTypes(type);
      const parts = [
        '__typename',
        ...possible.filter(() => this.chance(0.6)).map((t) => `... on ${t.name} ${this.selection(t, depth + 1, maxDepth, 0)}`),
      ];
      return `{ ${parts.join(' ')} }`;
    }
    const obj = type as GraphQLObjectType;
    const fields = Object.values(obj.getFields());
    const n = Math.min(fields.length, this.int(1, 4));
    const chosen = Array.from({ length: n }, () => this.pick(fields));
    if (this.chance(0.05)) chosen.push({ name: 'notAField', args: [], type: new GraphQLScalarType({ name: 'X' }) } as never);
    const parts = chosen.map((f, i) => this.field(f, depth, maxDepth, i === 0 ? aliases : this.chance(0.1) ? this.int(2, 5) : 0));
    if (this.chance(0.2)) parts.push('__typename');
    return `{ ${parts.join(' ')} }`;
  }

  field(f: GraphQLField<unknown, unknown>, depth: number, maxDepth: number, aliases: number): string {
    const named = getNamedType(f.type);
    const leaf = isLeafType(named);
    const one = (alias: string) => {
      const head = `${alias}${f.name}${this.args(f.args)}`;
      if (leaf) return this.chance(0.03) ? `${head} { id }` : head; // a selection on a scalar
      if (depth >= maxDepth) return this.chance(0.5) ? `${head} { __typename }` : head; // sometimes no selection on an object
      return `${head} ${this.selection(named, depth + 1, maxDepth, 0)}`;
    };
    if (aliases <= 0) return one(this.chance(0.1) ? `a${this.int(0, 999)}: ` : '');
    return Array.from({ length: aliases }, (_, i) => one(`a${i}: `)).join(' ');
  }

  /** One operation: query or mutation, with its variables. */
  operation(kind: 'query' | 'mutation', o: { maxDepth: number; aliases: number }): { query: string; variables: Record<string, unknown> } {
    this.vars = [];
    const root = kind === 'query' ? this.schema.getQueryType()! : this.schema.getMutationType()!;
    const body = this.selection(root, 0, o.maxDepth, o.aliases);
    const decl = this.vars.length ? `(${this.vars.map((v) => `$${v.name}: ${v.type}`).join(', ')})` : '';
    const variables = Object.fromEntries(this.vars.map((v) => [v.name, v.value]));
    return { query: `${kind} Fuzz${decl} ${body}`, variables };
  }
}

/** One request body (or raw text), and the shape it was drawn as. */
function document(g: Gen, mutationShare: number): { shape: string; body: string } {
  const json = (x: unknown) => JSON.stringify(x);
  const kind = () => (g.chance(mutationShare) ? 'mutation' : 'query');
  const r = g.rnd();
  if (r < 0.5) return { shape: 'random', body: json(g.operation(kind(), { maxDepth: g.int(1, 5), aliases: 0 })) };
  if (r < 0.6) return { shape: 'deep', body: json(g.operation('query', { maxDepth: g.int(8, 30), aliases: 0 })) };
  if (r < 0.68)
    return { shape: 'aliases', body: json(g.operation('query', { maxDepth: g.int(1, 3), aliases: g.pick([50, 500, 2000, 5000]) })) };
  if (r < 0.74) {
    const docs = Array.from({ length: g.int(2, g.chance(0.2) ? 100 : 5) }, () =>
      g.operation(kind(), { maxDepth: g.int(1, 3), aliases: 0 }),
    );
    return { shape: 'batched', body: json(docs) };
  }
  if (r < 0.82) {
    const d = g.operation(kind(), { maxDepth: g.int(1, 4), aliases: 0 });
    return { shape: 'truncated', body: json({ ...d, query: d.query.slice(0, g.int(0, d.query.length - 1)) }) };
  }
  if (r < 0.86) {
    // A fragment spread cycle, and a fragment on a type that does not exist.
    return {
      shape: 'fragments',
      body: json({
        query: g.pick([
          'query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }',
          'query { ...A } fragment A on Nope { id }',
          `query { ${'workspace { '.repeat(40)}id${' }'.repeat(40)} }`,
          'query A { __typename } query B { __typename }',
          'subscription { __typename }',
          '{ __schema { types { name fields { name type { name ofType { name ofType { name ofType { name } } } } } } } }',
          '{ __typename @skip(if: $undefined) }',
          `{ __typename ${'@include(if: true) '.repeat(200)} }`,
        ]),
      }),
    };
  }
  if (r < 0.93) {
    const d = g.operation(kind(), { maxDepth: g.int(1, 3), aliases: 0 });
    const odd = g.pick<unknown>([
      { query: d.query, variables: 'not an object' },
      { query: d.query, variables: [1, 2] },
      { query: d.query, operationName: 'NoSuchOperation', variables: d.variables },
      { query: 42 },
      { query: g.pick(['{}', '42', '[1, 2]', '"a string"', '{"kind": "Document"}', 'null']) },
      { query: null },
      {},
      { query: ['a'] },
      { query: d.query, variables: d.variables, extensions: { persistedQuery: { version: 1, sha256Hash: 'abc' } } },
    ]);
    return { shape: 'odd-body', body: json(odd) };
  }
  return {
    shape: 'raw',
    body: g.pick([
      '',
      '{',
      'null',
      '[]',
      '"query"',
      '{"query": "{ __typename }"',
      '\u0000\u0001\u0002',
      '[' + '['.repeat(5000) + ']'.repeat(5000) + ']',
      json({ query: '{ __typename }' }).replace('}', ', "query": 1}'),
    ]),
  };
}

/**
 * graphql-js's introspection query with its type references four levels deep instead of nine: the api's depth limit
 * (12) refuses the standard one (depth 15), and four levels spell every type this schema uses ([X!]! at most).
 */
export function shallowIntrospection(): string {
  const q = getIntrospectionQuery({ descriptions: false });
  const at = q.indexOf('fragment TypeRef on __Type');
  let ref = 'kind name';
  for (let i = 0; i < 4; i++) ref = `kind name ofType { ${ref} }`;
  return `${q.slice(0, at)}fragment TypeRef on __Type { ${ref} }`;
}

/** Sends `documents` random documents to `url`/graphql with `token`, checking each response. */
export async function graphqlFuzz(url: string, token: string, o: FuzzOptions): Promise<FuzzReport> {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
  const intro = (await (
    await fetch(`${url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query: shallowIntrospection() }) })
  ).json()) as { data: IntrospectionQuery; errors?: unknown };
  if (!intro.data) throw new Error(`introspection refused: ${JSON.stringify(intro.errors)}`);
  const schema = buildClientSchema(intro.data);
  const rnd = prng(o.seed);
  const g = new Gen(schema, rnd, o.knownIds ?? []);
  const report: FuzzReport = { sent: 0, statuses: {}, codes: {}, clean: 0, shapes: {}, maxMs: 0, p99Ms: 0, findings: [] };
  const times: number[] = [];
  const docs = Array.from({ length: o.documents }, () => document(g, o.mutationShare ?? 0.3));
  let next = 0;
  const finding = (n: number, kind: string, what: string, body: string) => {
    if (report.findings.filter((f) => f.kind === kind).length < 20) report.findings.push({ n, kind, what, body: body.slice(0, 600) });
  };
  const worker = async () => {
    while (next < docs.length) {
      const n = next++;
      const { shape, body } = docs[n];
      report.shapes[shape] = (report.shapes[shape] ?? 0) + 1;
      const t0 = performance.now();
      let status = 0;
      let text = '';
      try {
        const res = await fetch(`${url}/graphql`, { method: 'POST', headers, body, signal: AbortSignal.timeout(o.boundMs) });
        status = res.status;
        text = await res.text();
      } catch (err) {
        finding(
          n,
          'hang-or-reset',
          (err as Error).name === 'TimeoutError' ? `no answer within ${o.boundMs} ms` : (err as Error).message,
          body,
        );
        report.sent++;
        continue;
      }
      const ms = performance.now() - t0;
      times.push(ms);
      report.maxMs = Math.max(report.maxMs, ms);
      report.sent++;
      report.statuses[status] = (report.statuses[status] ?? 0) + 1;
      if (status >= 500) finding(n, '5xx', `status ${status}: ${text.slice(0, 300)}`, body);
      if (STACK_TRACE.test(text.replace(/\\n/g, '\n'))) finding(n, 'stack-trace', text.slice(0, 400), body);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        finding(n, 'not-json', `status ${status}: ${text.slice(0, 200)}`, body);
        continue;
      }
      const results = Array.isArray(parsed) ? parsed : [parsed];
      for (const res of results as Array<{
        data?: unknown;
        errors?: Array<{ message?: string; extensions?: { code?: string } }>;
        statusCode?: number;
        message?: string;
      }>) {
        if (res && typeof res === 'object' && 'errors' in res && Array.isArray(res.errors)) {
          for (const e of res.errors) {
            const code = e.extensions?.code ?? 'none';
            report.codes[code] = (report.codes[code] ?? 0) + 1;
            if (!GRAPHQL_CODES.has(code)) finding(n, 'uncoded', `${code}: ${e.message}`, body);
            if (code === 'INTERNAL') finding(n, 'internal', String(e.message), body);
            if (STACK_TRACE.test(String(e.message))) finding(n, 'stack-trace', String(e.message), body);
          }
        } else if (res && typeof res === 'object' && 'data' in res) {
          report.clean++;
        } else if (status < 400) {
          finding(n, 'unexpected-body', text.slice(0, 300), body);
        } else {
          // A refusal before GraphQL (fastify: a body that is not JSON, or too large): no 5xx, no trace is all we ask.
          const code = `http:${status}`;
          report.codes[code] = (report.codes[code] ?? 0) + 1;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 4 }, worker));
  times.sort((a, b) => a - b);
  report.p99Ms = Math.round(times[Math.floor(times.length * 0.99)] ?? 0);
  report.maxMs = Math.round(report.maxMs);
  return report;
}
