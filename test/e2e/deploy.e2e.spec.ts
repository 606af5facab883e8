import OpenAI from 'openai';
import { CREATE_PIPELINE, deploy, DEPLOY } from '../support/graphql';
import { Stack, startStack } from '../support/stack';
import { eventually, pidAlive } from '../support/wait';

const DEPLOYMENT = `query($id: ID!) { deployment(id: $id) { id status statusReason url replicas { id state } events { kind message } operations { kind status workflowId } } }`;

interface Deployed {
  deploymentId: string;
  apiKey: string;
}

async function createPipeline(stack: Stack, token: string, name: string, task: 'CHAT' | 'EMBEDDINGS', model: string) {
  const r = await stack.gql<{ createPipeline: { id: string } }>(CREATE_PIPELINE, token, { input: { name, task, model } });
  expect(r.errors).toBeUndefined();
  return r.data.createPipeline.id;
}

async function deployAndWait(
  stack: Stack,
  token: string,
  pipelineId: string,
  extra: Record<string, unknown> = {},
): Promise<Deployed & { status: string; url: string }> {
  const r = await deploy(stack.as(token), { pipelineId, mode: 'FLEX', minReplicas: 1, maxReplicas: 2, ...extra });
  expect(r.errors).toBeUndefined();
  const { deployment, apiKey } = r.data.deployPipeline;
  expect(deployment.status).toBe('PENDING');
  const done = await eventually(async () => {
    const q = await stack.gql<{ deployment: { status: string; url: string } }>(DEPLOYMENT, token, { id: deployment.id });
    return ['ACTIVE', 'FAILED'].includes(q.data.deployment.status) ? q.data.deployment : null;
  });
  return { deploymentId: deployment.id, apiKey, status: done.status, url: done.url };
}

describe('deploy a pipeline and call it with the official OpenAI client', () => {
  let stack: Stack;
  let team: { id: string; token: string };
  let chat: Deployed & { url: string };

  beforeAll(async () => {
    stack = await startStack();
    team = await stack.workspace('TEAM');
    const pipelineId = await createPipeline(stack, team.token, 'demo', 'CHAT', 'sim/tiny-chat');
    const d = await deployAndWait(stack, team.token, pipelineId);
    expect(d.status).toBe('ACTIVE');
    chat = d;
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should be ACTIVE with its URL, a ready replica and every step as an event when the workflow finishes', async () => {
    const q = await stack.gql<{
      deployment: {
        url: string;
        replicas: Array<{ state: string }>;
        events: Array<{ kind: string }>;
        operations: Array<{ kind: string; status: string; workflowId: string }>;
      };
    }>(DEPLOYMENT, team.token, { id: chat.deploymentId });
    expect(q.data.deployment.url).toBe(`${stack.url}/v1`);
    expect(q.data.deployment.replicas.map((r) => r.state)).toEqual(['READY']);
    expect(q.data.deployment.events.map((e) => e.kind)).toEqual([
      'deploy.requested',
      'plan.checked',
      'replicas.provisioning',
      'replica.ready',
      'key.issued',
      'routes.published',
      'deployment.active',
    ]);
    expect(q.data.deployment.operations).toEqual([{ kind: 'DEPLOY', status: 'SUCCEEDED', workflowId: `deploy:${chat.deploymentId}` }]);
    const handle = stack.temporal.workflow.getHandle(`deploy:${chat.deploymentId}`);
    expect(await handle.result()).toEqual({ url: `${stack.url}/v1` });
    expect((await handle.describe()).status.name).toBe('COMPLETED');
  });

  it('should answer a non-streamed chat completion with usage', async () => {
    const client = new OpenAI({ baseURL: chat.url, apiKey: chat.apiKey });
    const res = await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 5 });
    expect(res.choices[0].message.content?.split(' ')).toHaveLength(5);
    expect(res.usage?.completion_tokens).toBe(5);
    expect(res.usage?.total_tokens).toBe((res.usage?.prompt_tokens ?? 0) + 5);
    // The SDK's request id, for a user's bug report.
    expect(res._request_id).toMatch(/^req_[0-9a-f]{32}$/);

    // The raw wire format: the body's length, as the replica sent it, not chunked framing.
    const raw = await fetch(`${chat.url}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${chat.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', max_tokens: 2, messages: [{ role: 'user', content: 'x' }] }),
    });
    const body = Buffer.from(await raw.arrayBuffer());
    expect(raw.headers.get('transfer-encoding')).toBeNull();
    expect(Number(raw.headers.get('content-length'))).toBe(body.length);
    expect(JSON.parse(body.toString()).usage.completion_tokens).toBe(2);
  });

  it('should stream a chat completion chunk by chunk, ending with [DONE]', async () => {
    const client = new OpenAI({ baseURL: chat.url, apiKey: chat.apiKey });
    const stream = await client.chat.completions.create({
      model: 'default',
      stream: true,
      max_tokens: 6,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Stream please' }],
    });
    const parts: string[] = [];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) parts.push(chunk.choices[0].delta.content);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(parts).toHaveLength(6);
    expect(usage?.completion_tokens).toBe(6);

    // The raw wire format: SSE through the gateway, unbuffered, closed by [DONE].
    const raw = await fetch(`${chat.url}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${chat.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', stream: true, max_tokens: 2, messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(raw.headers.get('content-type')).toContain('text/event-stream');
    expect(raw.headers.get('x-accel-buffering')).toBe('no');
    const text = await raw.text();
    expect(text.trim().endsWith('data: [DONE]')).toBe(true);
  });

  it('should list what the key can reach at GET /v1/models', async () => {
    const client = new OpenAI({ baseURL: chat.url, apiKey: chat.apiKey });
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(['default', chat.deploymentId]);
  });

  it('should serve deterministic embeddings from an EMBEDDINGS pipeline', async () => {
    const pipelineId = await createPipeline(stack, team.token, 'embed', 'EMBEDDINGS', 'sim/tiny-embed');
    const d = await deployAndWait(stack, team.token, pipelineId);
    expect(d.status).toBe('ACTIVE');
    const client = new OpenAI({ baseURL: d.url, apiKey: d.apiKey });
    const a = await client.embeddings.create({ model: 'default', input: ['hello', 'world'] });
    const b = await client.embeddings.create({ model: 'default', input: 'hello' });
    expect(a.data).toHaveLength(2);
    expect(a.data[0].embedding).toHaveLength(64);
    // Unit vectors: the client decoded the base64 float32 payload it asked for.
    expect(a.data[0].embedding.reduce((s, x) => s + x * x, 0)).toBeCloseTo(1, 5);
    expect(b.data[0].embedding).toEqual(a.data[0].embedding);
    expect(a.data[1].embedding).not.toEqual(a.data[0].embedding);
    // The chat key of another deployment cannot reach it, and the task is checked.
    const wrongTask = new OpenAI({ baseURL: d.url, apiKey: d.apiKey, maxRetries: 0 });
    await expect(wrongTask.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject(
      {
        status: 400,
        code: 'unsupported_task',
      },
    );
  });

  it('should answer 401 in the OpenAI envelope when the key is wrong', async () => {
    const client = new OpenAI({ baseURL: chat.url, apiKey: 'sk_not-a-real-key-at-all-0000000000000000', maxRetries: 0 });
    await expect(client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({
      status: 401,
      code: 'invalid_api_key',
      type: 'authentication_error',
    });
    const res = await fetch(`${chat.url}/chat/completions`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({
      error: { message: expect.stringContaining('Missing API key'), type: 'authentication_error', param: null, code: 'invalid_api_key' },
    });
  });

  it('should answer 400 in the envelope for a malformed body, never a 500', async () => {
    const bodies = [
      '{"model":',
      '[]',
      '{"model":"default"}',
      '{"model":"default","messages":"hi"}',
      '{"model":7,"messages":[]}',
      '\u00ff\u00fe',
    ];
    for (const body of bodies) {
      const res = await fetch(`${chat.url}/chat/completions`, {
        method: 'POST',
        body,
        headers: { authorization: `Bearer ${chat.apiKey}`, 'content-type': 'application/json' },
      });
      expect(res.status).toBe(400);
      const json = (await res.json()) as { error: { type: string; message: string } };
      expect(json.error.type).toBe('invalid_request_error');
      expect(json.error.message.length).toBeGreaterThan(5);
    }
  });

  it('should refuse a revoked key with 401 on the next request', async () => {
    const created = await stack.gql<{ createApiKey: { key: string; apiKey: { id: string; prefix: string } } }>(
      `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key apiKey { id prefix } } }`,
      team.token,
      { input: { name: 'ci', scope: 'DEPLOYMENT', deploymentId: chat.deploymentId } },
    );
    const { key, apiKey } = created.data.createApiKey;
    expect(key.startsWith(apiKey.prefix)).toBe(true);
    const client = new OpenAI({ baseURL: chat.url, apiKey: key, maxRetries: 0 });
    await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'x' }] });

    const listed = await stack.gql<{ apiKeys: Array<Record<string, unknown>> }>(`{ apiKeys { id prefix name } }`, team.token);
    expect(JSON.stringify(listed.data)).not.toContain(key);
    expect(listed.data.apiKeys).toContainEqual({ id: apiKey.id, prefix: apiKey.prefix, name: 'ci' });

    const revoked = await stack.gql(`mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }`, team.token, { id: apiKey.id });
    expect(revoked.errors).toBeUndefined();
    // Revocation reaches the gateway by NOTIFY; the cache TTL in this stack is a minute.
    await eventually(
      async () => {
        try {
          await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'x' }] });
          return false;
        } catch (e) {
          return (e as { status?: number }).status === 401;
        }
      },
      1000,
      20,
    );
  });

  it("should refuse a Starter workspace's deploy with a clear PLAN_LIMIT error", async () => {
    const starter = await stack.workspace('STARTER');
    const pipelineId = await createPipeline(stack, starter.token, 'starter-demo', 'CHAT', 'sim/tiny-chat');
    const r = await stack.gql(DEPLOY, starter.token, { input: { pipelineId, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', maxReplicas: 1 } });
    expect(r.errors?.[0].extensions.code).toBe('PLAN_LIMIT');
    expect(r.errors?.[0].message).toMatch(/STARTER plan cannot deploy.*Pro plan or higher/);
    expect(await stack.prisma.deployment.count({ where: { workspaceId: starter.id } })).toBe(0);
  });

  it('should refuse ACTIVE mode on Pro and maxReplicas above the plan ceiling', async () => {
    const pro = await stack.workspace('PRO');
    const pipelineId = await createPipeline(stack, pro.token, 'pro-demo', 'CHAT', 'sim/tiny-chat');
    const active = await stack.gql(DEPLOY, pro.token, {
      input: { pipelineId, target: 'LOCAL', gpu: 'sim', mode: 'ACTIVE', minReplicas: 1, maxReplicas: 2 },
    });
    expect(active.errors?.[0]).toMatchObject({
      message: expect.stringMatching(/ACTIVE mode needs the Team plan/),
      extensions: { code: 'PLAN_LIMIT' },
    });
    const big = await stack.gql(DEPLOY, pro.token, { input: { pipelineId, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', maxReplicas: 9 } });
    expect(big.errors?.[0]).toMatchObject({
      message: "maxReplicas 9 exceeds the PRO plan's ceiling of 8",
      extensions: { code: 'PLAN_LIMIT', limit: 8 },
    });
    const bad = await stack.gql(DEPLOY, pro.token, {
      input: { pipelineId, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 3, maxReplicas: 2 },
    });
    expect(bad.errors?.[0]).toMatchObject({
      message: 'minReplicas: must not exceed maxReplicas (2)',
      extensions: { code: 'BAD_USER_INPUT' },
    });
  });

  it("should not let another workspace's token read or touch the deployment", async () => {
    const other = await stack.workspace('TEAM');
    const read = await stack.gql(DEPLOYMENT, other.token, { id: chat.deploymentId });
    expect(read.errors?.[0]).toMatchObject({ message: `deployment ${chat.deploymentId} not found`, extensions: { code: 'NOT_FOUND' } });
    const list = await stack.gql<{ deployments: unknown[] }>(`{ deployments { id } }`, other.token);
    expect(list.data.deployments).toEqual([]);
    const key = await stack.gql(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }`, other.token, {
      input: { name: 'steal', scope: 'DEPLOYMENT', deploymentId: chat.deploymentId },
    });
    expect(key.errors?.[0].extensions.code).toBe('NOT_FOUND');
    // Its workspace key cannot name the deployment through `model` either.
    const ws = await stack.gql<{ createApiKey: { key: string } }>(
      `mutation { createApiKey(input: { name: "w", scope: WORKSPACE }) { key } }`,
      other.token,
    );
    const client = new OpenAI({ baseURL: chat.url, apiKey: ws.data.createApiKey.key, maxRetries: 0 });
    await expect(
      client.chat.completions.create({ model: chat.deploymentId, messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({ status: 404, code: 'model_not_found' });
  });

  it('should simulate scaling for a traffic pattern, and refuse a policy over the plan', async () => {
    const q = `query($input: SimulateScalingInput!) { simulateScaling(input: $input) { requests served rejected503 coldStarts maxReplicas svg decisions { from to reason } } }`;
    const r = await stack.gql<{
      simulateScaling: {
        requests: number;
        served: number;
        rejected503: number;
        maxReplicas: number;
        svg: string;
        decisions: Array<{ from: number; to: number }>;
      };
    }>(q, team.token, {
      input: {
        avgRps: 2,
        burstRps: 40,
        burstEverySeconds: 60,
        burstSeconds: 10,
        durationSeconds: 120,
        meanDurationMs: 3000,
        maxReplicas: 4,
      },
    });
    expect(r.errors).toBeUndefined();
    const sim = r.data.simulateScaling;
    expect(sim.served + sim.rejected503).toBe(sim.requests);
    expect(sim.maxReplicas).toBe(4);
    expect(sim.decisions[0]).toMatchObject({ from: 0, to: 1 });
    expect(sim.svg).toContain('<svg');
    const over = await stack.gql(q, team.token, { input: { avgRps: 1, maxReplicas: 33 } });
    expect(over.errors?.[0]).toMatchObject({ extensions: { code: 'PLAN_LIMIT', limit: 32 } });
    const huge = await stack.gql(q, team.token, { input: { avgRps: 1000, durationSeconds: 86_400, maxReplicas: 4 } });
    expect(huge.errors?.[0]).toMatchObject({
      message: expect.stringMatching(/^durationSeconds: the trace would exceed 500000 requests/),
      extensions: { code: 'BAD_USER_INPUT' },
    });
  });

  it('should create, list by prefix and revoke management tokens, never by another workspace', async () => {
    const created = await stack.gql<{ createManagementToken: { id: string; prefix: string; token: string } }>(
      `mutation { createManagementToken(name: "ci") { id prefix token } }`,
      team.token,
    );
    const { id, prefix, token } = created.data.createManagementToken;
    expect(token.startsWith(prefix)).toBe(true);
    expect((await stack.gql(`{ workspace { id } }`, token)).errors).toBeUndefined();
    const listed = await stack.gql<{ managementTokens: unknown[] }>(`{ managementTokens { id prefix name } }`, team.token);
    expect(listed.data.managementTokens).toContainEqual({ id, prefix, name: 'ci' });
    expect(JSON.stringify(listed.data)).not.toContain(token);

    const self = await stack.gql(`mutation($id: ID!) { revokeManagementToken(id: $id) { id } }`, token, { id });
    expect(self.errors?.[0]).toMatchObject({ extensions: { code: 'CONFLICT' }, message: expect.stringMatching(/cannot revoke itself/) });
    const other = await stack.workspace('TEAM');
    const foreign = await stack.gql(`mutation($id: ID!) { revokeManagementToken(id: $id) { id } }`, other.token, { id });
    expect(foreign.errors?.[0].extensions.code).toBe('NOT_FOUND');

    const revoked = await stack.gql(`mutation($id: ID!) { revokeManagementToken(id: $id) { revokedAt } }`, team.token, { id });
    expect(revoked.errors).toBeUndefined();
    expect((await stack.gql(`{ workspace { id } }`, token)).errors?.[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it('should reject GraphQL calls without a valid management token', async () => {
    const r = await stack.gql(`{ deployments { id } }`, 'mt_wrongwrongwrongwrong');
    expect(r.errors?.[0]).toMatchObject({ message: 'invalid or revoked management token', extensions: { code: 'UNAUTHENTICATED' } });
  });
});

describe('a deploy whose replica never becomes healthy', () => {
  it('should end FAILED with the reason, the key revoked and no process left running', async () => {
    // A replica that starts but never answers /health.
    const stack = await startStack({
      env: { LOCAL_REPLICA_COMMAND: `${process.execPath} -e "setInterval(() => {}, 1000)" -- {port}`, DEPLOY_HEALTH_TIMEOUT_SECONDS: '2' },
    });
    try {
      const team = await stack.workspace('TEAM');
      const pipelineId = await createPipeline(stack, team.token, 'broken', 'CHAT', 'sim/tiny-chat');
      const d = await deployAndWait(stack, team.token, pipelineId);
      expect(d.status).toBe('FAILED');
      const q = await stack.gql<{
        deployment: { statusReason: string; url: string | null; replicas: Array<{ state: string }>; events: Array<{ kind: string }> };
      }>(DEPLOYMENT, team.token, { id: d.deploymentId });
      expect(q.data.deployment.statusReason).toMatch(/not healthy after 2 s/);
      expect(q.data.deployment.url).toBeNull();
      expect(q.data.deployment.events.map((e) => e.kind)).toEqual(expect.arrayContaining(['replicas.released', 'deployment.failed']));
      const replicas = await stack.prisma.replica.findMany({ where: { deploymentId: d.deploymentId } });
      expect(replicas).toHaveLength(1);
      expect(replicas[0].state).toBe('STOPPED');
      expect(pidAlive(Number(replicas[0].providerId))).toBe(false);
      expect(await stack.worker.providers.LOCAL!.listReplicas()).toEqual([]);
      const key = await stack.prisma.apiKey.findFirstOrThrow({ where: { deploymentId: d.deploymentId } });
      expect(key.issuedAt).toBeNull();
      const res = await fetch(`${stack.url}/v1/models`, { headers: { authorization: `Bearer ${d.apiKey}` } });
      expect(res.status).toBe(401);
      const op = await stack.prisma.operation.findFirstOrThrow({ where: { deploymentId: d.deploymentId } });
      expect(op).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/not healthy/) });
    } finally {
      await stack.close();
    }
  });

  it('should end FAILED when the replica process exits at start', async () => {
    const stack = await startStack({ env: { LOCAL_REPLICA_COMMAND: '/bin/false {port}', DEPLOY_HEALTH_TIMEOUT_SECONDS: '30' } });
    try {
      const team = await stack.workspace('TEAM');
      const pipelineId = await createPipeline(stack, team.token, 'crashy', 'CHAT', 'sim/tiny-chat');
      const d = await deployAndWait(stack, team.token, pipelineId);
      expect(d.status).toBe('FAILED');
      const dep = await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.deploymentId } });
      // The health wait noticed the exit itself, not its 30 s timeout.
      expect(dep.statusReason).toMatch(/exited before it became healthy/);
      expect(dep.activeOperationId).toBeNull();
    } finally {
      await stack.close();
    }
  });
});

describe('the GraphQL contract', () => {
  it('should match the committed schema.gql (UPDATE_SCHEMA=1 npm test rewrites it)', async () => {
    const { mkdtempSync, readFileSync, writeFileSync } = await import('node:fs');
    const { join, resolve } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'schema-')), 'schema.gql');
    const stack = await startStack({ env: { GRAPHQL_SCHEMA_FILE: file } });
    await stack.close();
    const emitted = readFileSync(file, 'utf8');
    const committedPath = resolve(__dirname, '../../schema.gql');
    if (process.env.UPDATE_SCHEMA === '1') writeFileSync(committedPath, emitted);
    expect(emitted).toBe(readFileSync(committedPath, 'utf8'));
    expect(emitted).toContain('deployPipeline(input: DeployPipelineInput!): DeployPayload!');
  });
});
