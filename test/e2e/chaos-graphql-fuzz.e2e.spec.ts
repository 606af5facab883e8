import { getIntrospectionQuery } from 'graphql';
import { FuzzReport, graphqlFuzz, shallowIntrospection } from '../support/graphql-fuzz';
import { Stack, startStack } from '../support/stack';

/**
 * Issue #20, scenario 5 (the GraphQL part; bench/chaos.js sends thousands): a few hundred schema-aware random
 * documents, drawn with a seeded PRNG from the introspected schema, against the api with a Team workspace's token:
 * random fields and arguments (of the right shapes and of wrong ones, inline and as variables), deep nesting past the
 * depth limit, thousands of aliases past the cost limit, batched arrays, truncated documents, fragment cycles and odd
 * bodies. Every one is answered within the bound, never with a 5xx, every error carries one of the project's codes
 * (none INTERNAL), and no message shows a stack trace.
 */
describe('GraphQL fuzzing: schema-aware random documents against the api (real stack)', () => {
  let stack: Stack;
  let r: FuzzReport;

  beforeAll(async () => {
    stack = await startStack();
    const ws = await stack.workspace('TEAM');
    // Ids that exist, so that some random arguments reach past the lookups.
    const { pipelineId, deploymentId } = await stack.deployed(
      ws.token,
      { name: 'fuzzed' },
      { target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
    );
    r = await graphqlFuzz(stack.url, ws.token, {
      documents: 400,
      seed: Number(process.env.FUZZ_SEED ?? 20),
      boundMs: 10_000,
      knownIds: [pipelineId, deploymentId, ws.id],
    });
    if (process.env.CHAOS_DEBUG) process.stderr.write(`${JSON.stringify(r, null, 1)}\n`);
  }, 150_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('should have sent every shape of document, and reached the resolvers as well as the validation', () => {
    expect(r.sent).toBe(400);
    expect(Object.keys(r.shapes).sort()).toEqual(['aliases', 'batched', 'deep', 'fragments', 'odd-body', 'random', 'raw', 'truncated']);
    expect(r.clean).toBeGreaterThan(0);
    expect(r.codes.GRAPHQL_VALIDATION_FAILED).toBeGreaterThan(0);
    expect(r.codes.GRAPHQL_PARSE_FAILED).toBeGreaterThan(0);
    expect(r.codes.QUERY_TOO_COMPLEX).toBeGreaterThan(0);
  });

  it('should answer every document within the bound, never with a 5xx', () => {
    expect(r.findings.filter((f) => f.kind === 'hang-or-reset' || f.kind === '5xx')).toEqual([]);
    expect(Object.keys(r.statuses).filter((s) => Number(s) >= 500)).toEqual([]);
  });

  it("should code every error with one of the project's codes, none INTERNAL, and show no stack trace", () => {
    expect(r.findings.filter((f) => ['uncoded', 'internal', 'stack-trace', 'not-json', 'unexpected-body'].includes(f.kind))).toEqual([]);
  });

  // What the fuzzer found, each pinned: these were answered with an error that carried no code (or the message of a
  // TypeError), a 200 all the same.
  const post = async (body: string) => {
    const { token } = await stack.workspace('TEAM', `fuzz-regress-${Math.random().toString(36).slice(2)}`);
    const res = await fetch(`${stack.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
    });
    const json = (await res.json()) as { errors?: Array<{ message: string; extensions?: { code?: string } }> };
    return { status: res.status, errors: json.errors ?? [] };
  };

  it.each([
    ['a query that is not a string', JSON.stringify({ query: 42 }), 'GRAPHQL_PARSE_FAILED', /not a GraphQL document/],
    ['a query that is JSON, not GraphQL', JSON.stringify({ query: '{}' }), 'GRAPHQL_PARSE_FAILED', /not a GraphQL document/],
    ['a query that is a JSON number', JSON.stringify({ query: '42' }), 'GRAPHQL_PARSE_FAILED', /not a GraphQL document/],
    ['an id with a NUL byte', JSON.stringify({ query: '{ pipeline(id: "a\\u0000b") { id } }' }), 'BAD_USER_INPUT', /NUL byte/],
    [
      'a model with a NUL byte',
      JSON.stringify({
        query: 'mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }',
        variables: { i: { name: 'nul-model', task: 'CHAT', model: 'a\u0000b' } },
      }),
      'BAD_USER_INPUT',
      /NUL byte/,
    ],
    ['no query at all', JSON.stringify({}), 'BAD_USER_INPUT', /Unknown query/],
    ['a body that is not JSON', '{"query": "{ __typename }"', 'BAD_USER_INPUT', /not valid JSON/],
    ['an empty body', '', 'BAD_USER_INPUT', /cannot be empty/],
    [
      'two operations, none named',
      JSON.stringify({ query: 'query A { __typename } query B { __typename }' }),
      'BAD_USER_INPUT',
      /operation name/,
    ],
    ['a variable without a value', JSON.stringify({ query: 'query($x: Boolean!) { __typename @skip(if: $x) }' }), 'BAD_USER_INPUT', /\$x/],
    [
      'more nodes than the cost estimator evaluates (10,000)',
      JSON.stringify({ query: `{ ${Array.from({ length: 3000 }, (_, i) => `a${i}: pipelines { id name task }`).join(' ')} }` }),
      'QUERY_TOO_COMPLEX',
      /too many fields/,
    ],
  ])('should refuse %s with a coded error', async (_what, body, code, message) => {
    const r = await post(body);
    expect(r.status).toBeLessThan(500);
    expect(r.errors).toEqual([
      expect.objectContaining({ message: expect.stringMatching(message), extensions: expect.objectContaining({ code }) }),
    ]);
  });

  it('should answer the standard introspection query (depth 15: what GraphiQL and codegen send), the depth limit not counting introspection', async () => {
    const { token } = await stack.workspace('TEAM', 'fuzz-introspect');
    const res = await stack.gql<{ __schema: { types: unknown[] } }>(getIntrospectionQuery(), token);
    expect(res.errors).toBeUndefined();
    expect(res.data.__schema.types.length).toBeGreaterThan(10);
    const shallow = await stack.gql<{ __schema: { types: unknown[] } }>(shallowIntrospection(), token);
    expect(shallow.data.__schema.types.length).toBe(res.data.__schema.types.length);
  });
});
