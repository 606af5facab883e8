import OpenAI from 'openai';
import { Gql, GqlResult, must } from '../support/graphql';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

const CREATE_KEY = `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id prefix } } }`;
const KEYS = `{ apiKeys { id lastUsedAt rateLimitPerMinute } }`;

/**
 * The key model through the real api and gateway: what workspace and pipeline keys reach (and nothing else), a
 * key's own rate within its plan, lastUsedAt written behind the request path, and the workspace settings with
 * their audit trail.
 */
describe('API keys and workspace settings (real api, gateway and replicas)', () => {
  let stack: Stack;
  let gql: Gql;
  let a: { pipelineId: string; deploymentId: string };
  let b: { pipelineId: string; deploymentId: string };
  const errorOf = (r: GqlResult<unknown>) => r.errors?.[0];
  const key = async (i: Record<string, unknown>) =>
    (await must(gql<{ createApiKey: { key: string; apiKey: { id: string } } }>(CREATE_KEY, { i }))).createApiKey;
  const client = (apiKey: string) => new OpenAI({ baseURL: `${stack.url}/v1`, apiKey, maxRetries: 0 });
  const ask = (c: OpenAI, model: string) =>
    c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }).then(
      (r) => ({ ok: true as const, model: r.model }),
      (e: InstanceType<typeof OpenAI.APIError>) => ({ ok: false as const, status: e.status, message: e.message }),
    );

  beforeAll(async () => {
    stack = await startStack();
    const ws = await stack.workspace('TEAM');
    gql = stack.as(ws.token);
    a = await stack.deployed(ws.token, { name: 'alpha' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 });
    b = await stack.deployed(ws.token, { name: 'beta' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should let a workspace key name any of its deployments by pipeline or id, and list the names when it names none', async () => {
    const ws = client((await key({ name: 'ws', scope: 'WORKSPACE' })).key);
    expect(await ask(ws, 'alpha')).toMatchObject({ ok: true });
    expect(await ask(ws, b.deploymentId)).toMatchObject({ ok: true });
    const refused = await ask(ws, 'default');
    expect(refused).toMatchObject({ ok: false, status: 404 });
    expect(refused.ok === false && refused.message).toContain(
      "A workspace key reaches several pipelines, so 'default' names none of them.",
    );
    expect(refused.ok === false && refused.message).toContain(`alpha (${a.deploymentId})`);
    expect(refused.ok === false && refused.message).toContain(`beta (${b.deploymentId})`);
    const models = (await ws.models.list()).data.map((m) => m.id).sort();
    expect(models).toEqual([a.deploymentId, b.deploymentId, 'alpha', 'beta'].sort());
  });

  it("should let a pipeline key reach its pipeline's deployment and nothing else, not even by id", async () => {
    const pl = client((await key({ name: 'pl', scope: 'PIPELINE', pipelineId: a.pipelineId })).key);
    expect(await ask(pl, 'default')).toMatchObject({ ok: true });
    expect(await ask(pl, 'alpha')).toMatchObject({ ok: true });
    const other = await ask(pl, b.deploymentId);
    expect(other).toMatchObject({ ok: false, status: 404 });
    expect(other.ok === false && other.message).toContain(`alpha (${a.deploymentId})`);
    expect(other.ok === false && other.message).not.toContain('beta');
    expect((await pl.models.list()).data.map((m) => m.id).sort()).toEqual([a.deploymentId, 'default'].sort());
    // Another workspace's key reaches none of it.
    const stranger = await stack.workspace('TEAM', 'stranger');
    const theirs = await must(
      stack.as(stranger.token)<{ createApiKey: { key: string } }>(CREATE_KEY, { i: { name: 'x', scope: 'WORKSPACE' } }),
    );
    expect(await ask(client(theirs.createApiKey.key), a.deploymentId)).toMatchObject({ ok: false, status: 404 });
  });

  it("should write a key's lastUsedAt after it is used, off the request path", async () => {
    const k = await key({ name: 'used', scope: 'DEPLOYMENT', deploymentId: a.deploymentId });
    const before = Date.now();
    expect(await ask(client(k.key), 'default')).toMatchObject({ ok: true });
    const row = await eventually(
      async () => {
        const { apiKeys } = await must(gql<{ apiKeys: Array<{ id: string; lastUsedAt: string | null }> }>(KEYS));
        const mine = apiKeys.find((x) => x.id === k.apiKey.id);
        return mine?.lastUsedAt ? mine : null;
      },
      10_000,
      100,
    );
    expect(new Date(row.lastUsedAt!).getTime()).toBeGreaterThanOrEqual(before - 1000);
  });

  it('should rotate a key once, refusing a grace out of range and a second rotation of the old key', async () => {
    const ROTATE = `mutation($id: ID!, $g: Int!) { rotateApiKey(id: $id, graceSeconds: $g) { key apiKey { id name scope deploymentId } previous { id rotatedAt replacedById } } }`;
    const k = await key({ name: 'turned', scope: 'DEPLOYMENT', deploymentId: a.deploymentId });
    expect(errorOf(await gql(ROTATE, { id: k.apiKey.id, g: 700_000 }))).toMatchObject({
      message: 'graceSeconds: must be an integer from 0 to 604800 (a week)',
      extensions: { code: 'BAD_USER_INPUT', field: 'graceSeconds' },
    });
    const r = (
      await must(
        gql<{ rotateApiKey: { key: string; apiKey: { id: string }; previous: { replacedById: string } } }>(ROTATE, {
          id: k.apiKey.id,
          g: 0,
        }),
      )
    ).rotateApiKey;
    expect(r.apiKey).toMatchObject({ name: 'turned', scope: 'DEPLOYMENT', deploymentId: a.deploymentId });
    expect(r.previous.replacedById).toBe(r.apiKey.id);
    expect(r.key).not.toBe(k.key);
    // Grace 0: the old key is refused at once, the new one serves.
    expect(await ask(client(k.key), 'default')).toMatchObject({ ok: false, status: 401, message: expect.stringContaining('was rotated') });
    expect(await ask(client(r.key), 'default')).toMatchObject({ ok: true });
    expect(errorOf(await gql(ROTATE, { id: k.apiKey.id, g: 60 }))).toMatchObject({
      message: expect.stringContaining('was already rotated; rotate the key that replaced it'),
      extensions: { code: 'CONFLICT' },
    });
  });

  it("should set a key's own rate within the plan's bounds, seen by the gateway at once", async () => {
    const k = await key({ name: 'rated', scope: 'DEPLOYMENT', deploymentId: a.deploymentId });
    const limitHeader = async () =>
      (
        await fetch(`${stack.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'default', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] }),
        })
      ).headers.get('x-ratelimit-limit');
    expect(await limitHeader()).toBe('5000'); // Team's default
    const SET = `mutation($id: ID!, $r: Int) { setApiKeyRateLimit(id: $id, rateLimitPerMinute: $r) { rateLimitPerMinute } }`;
    expect(
      (await must(gql<{ setApiKeyRateLimit: { rateLimitPerMinute: number } }>(SET, { id: k.apiKey.id, r: 120 }))).setApiKeyRateLimit,
    ).toEqual({
      rateLimitPerMinute: 120,
    });
    await eventually(async () => (await limitHeader()) === '120', 5000, 50);
    expect(errorOf(await gql(SET, { id: k.apiKey.id, r: 20_000 }))).toMatchObject({
      message: "rateLimitPerMinute 20000 exceeds the TEAM plan's 10000",
      extensions: { code: 'PLAN_LIMIT', field: 'rateLimitPerMinute', limit: 10000 },
    });
    await must(gql(SET, { id: k.apiKey.id, r: null }));
    await eventually(async () => (await limitHeader()) === '5000', 5000, 50);
  });

  it('should change the spend cap (the gateway then answers 403), refuse Enterprise caps on Team, and audit every change', async () => {
    const UPDATE = `mutation($i: WorkspaceSettingsInput!) { updateWorkspaceSettings(input: $i) { monthlySpendCapUsd maxReplicas } }`;
    const k = await key({ name: 'capped', scope: 'DEPLOYMENT', deploymentId: a.deploymentId });
    const keyRow = await stack.prisma.apiKey.findUniqueOrThrow({ where: { id: k.apiKey.id } });
    await stack.prisma.usageRollup.create({
      data: { deploymentId: a.deploymentId, apiKeyId: keyRow.id, minute: new Date(), requests: 1, costUsd: 2 },
    });

    expect(
      (await must(gql<{ updateWorkspaceSettings: unknown }>(UPDATE, { i: { monthlySpendCapUsd: 1.5 } }))).updateWorkspaceSettings,
    ).toMatchObject({
      monthlySpendCapUsd: 1.5,
    });
    const capped = await eventually(
      async () => {
        const r = await ask(client(k.key), 'default');
        return !r.ok && r;
      },
      5000,
      50,
    );
    expect(capped).toMatchObject({ status: 403, message: expect.stringContaining('of its $1.50 monthly spend cap') });

    expect(errorOf(await gql(UPDATE, { i: { maxReplicas: 64 } }))).toMatchObject({
      message: "maxReplicas: custom caps are an Enterprise setting; the TEAM plan's caps apply",
      extensions: { code: 'PLAN_LIMIT', field: 'maxReplicas' },
    });
    expect(errorOf(await gql(UPDATE, { i: { monthlySpendCapUsd: -1 } }))?.extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'monthlySpendCapUsd',
    });
    await must(gql(UPDATE, { i: { monthlySpendCapUsd: null } }));
    expect(await eventually(async () => (await ask(client(k.key), 'default')).ok, 5000, 50)).toBe(true);

    const { auditEvents } = await must(
      gql<{ auditEvents: Array<{ kind: string; message: string; actorId: string | null }> }>(`{ auditEvents { kind message actorId } }`),
    );
    expect(auditEvents.filter((e) => e.kind === 'workspace.settings').map((e) => e.message)).toEqual([
      'monthlySpendCapUsd 1.5 -> none',
      'monthlySpendCapUsd none -> 1.5',
    ]);
    expect(auditEvents.filter((e) => e.kind === 'key.created').length).toBeGreaterThanOrEqual(4);
    expect(auditEvents.filter((e) => e.kind === 'key.rotated').map((e) => e.message)).toEqual([
      expect.stringMatching(/^key turned \(sk_[\w-]+\) rotated to sk_/),
    ]);
    expect(auditEvents.filter((e) => e.kind === 'key.rate_limit').map((e) => e.message.replace(/^key rated \(sk_[\w-]+\) /, ''))).toEqual([
      'rate 120 -> plan default per minute',
      'rate plan default -> 120 per minute',
    ]);
    expect(auditEvents.every((e) => typeof e.actorId === 'string' && e.actorId.startsWith('mtk_'))).toBe(true);
  });
});
