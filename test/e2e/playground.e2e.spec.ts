import { createPipeline, CREATE_VARIANT, Gql, must } from '../support/graphql';
import { Stack, startStack } from '../support/stack';

interface Done {
  type: 'done';
  promptTokens: number;
  completionTokens: number;
  ttftMs: number | null;
  latencyMs: number;
  coldStart: boolean;
  quota: { limit: number | null; used: number; remaining: number | null };
}

/** POST /playground/chat: the refusal's status and body, or the events of its stream. */
async function send(stack: Stack, token: string, body: Record<string, unknown>) {
  const r = await fetch(`${stack.url}/playground/chat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (r.headers.get('content-type')?.startsWith('application/json'))
    return { status: r.status, error: ((await r.json()) as { error: { code: string; message: string } }).error, events: [] as never[] };
  const events = (await r.text())
    .split('\n\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => JSON.parse(l.slice(6)) as { type: string; text?: string } & Partial<Done>);
  return { status: r.status, error: null, events };
}

const text = (events: Array<{ type: string; text?: string }>) =>
  events
    .filter((e) => e.type === 'delta')
    .map((e) => e.text)
    .join('');
const done = (events: Array<{ type: string }>) => events.find((e) => e.type === 'done') as Done | undefined;

/**
 * The playground through the real api, gateway, worker and replicas: a deployment's answer streamed with its tokens and
 * timings; two variants compared on one prompt; a Starter workspace on the shared playground deployment, its first
 * request paying the cold start, held to 100 requests a day with a message saying so.
 */
describe('playground (POST /playground/chat)', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should stream a deployment answer with its token counts and timings, and compare two variants on one prompt', async () => {
    const ws = await stack.workspace('TEAM');
    const gql: Gql = stack.as(ws.token);
    const a = await stack.deployed(ws.token, { name: 'compare' }, { minReplicas: 1, maxReplicas: 1 });
    const { createVariant } = await must(
      gql<{ createVariant: { id: string } }>(CREATE_VARIANT, {
        pipelineId: a.pipelineId,
        input: { name: 'fast', gpu: 'sim-large', engine: 'sim' },
      }),
    );
    const { deployPipeline } = await must(
      gql<{ deployPipeline: { deployment: { id: string } } }>(
        `mutation($input: DeployPipelineInput!) { deployPipeline(input: $input) { deployment { id } } }`,
        {
          input: {
            pipelineId: a.pipelineId,
            variantId: createVariant.id,
            target: 'LOCAL',
            gpu: 'sim-large',
            minReplicas: 1,
            maxReplicas: 1,
          },
        },
      ),
    );
    const b = deployPipeline.deployment.id;
    for (;;) {
      const { deployment } = await must(
        gql<{ deployment: { status: string } }>(`query($id: ID!) { deployment(id: $id) { status } }`, { id: b }),
      );
      if (deployment.status === 'ACTIVE') break;
      expect(['PENDING', 'PROVISIONING']).toContain(deployment.status);
      await new Promise((r) => setTimeout(r, 100));
    }
    const messages = [{ role: 'user', content: 'compare these two' }];
    const [ra, rb] = await Promise.all([
      send(stack, ws.token, { deploymentId: a.deploymentId, messages, maxTokens: 12 }),
      send(stack, ws.token, { deploymentId: b, messages, maxTokens: 12 }),
    ]);
    for (const r of [ra, rb]) {
      expect(r.status).toBe(200);
      expect(r.events[0]).toMatchObject({ type: 'start', shared: false, coldStart: false });
      expect(text(r.events).length).toBeGreaterThan(0);
      const d = done(r.events)!;
      expect(d.promptTokens).toBeGreaterThan(0);
      expect(d.completionTokens).toBe(12);
      expect(d.ttftMs).not.toBeNull();
      expect(d.latencyMs).toBeGreaterThanOrEqual(d.ttftMs!);
      expect(d.quota.limit).toBeNull();
    }
    expect(ra.events[0]).toMatchObject({ deploymentId: a.deploymentId });
    expect(rb.events[0]).toMatchObject({ deploymentId: b });
  });

  it('should refuse a bad body, a foreign deployment and a missing token with their codes', async () => {
    const ws = await stack.workspace('TEAM');
    const other = await stack.workspace('TEAM');
    const d = await stack.deployed(ws.token, { name: 'mine' }, { minReplicas: 1, maxReplicas: 1 });
    const bad = await send(stack, ws.token, { deploymentId: d.deploymentId, messages: [] });
    expect(bad).toMatchObject({ status: 400, error: { code: 'BAD_USER_INPUT' } });
    expect(bad.error!.message).toMatch(/messages must hold at least one message/);
    const foreign = await send(stack, other.token, { deploymentId: d.deploymentId, messages: [{ role: 'user', content: 'hi' }] });
    expect(foreign).toMatchObject({ status: 404, error: { code: 'NOT_FOUND' } });
    const notJson = await fetch(`${stack.url}/playground/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ws.token}`, 'content-type': 'application/json' },
      body: '{"messages": [',
      signal: AbortSignal.timeout(20_000),
    });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'BAD_USER_INPUT',
      message: expect.stringMatching(/the body must be JSON/),
    });
    const anon = await send(stack, 'mt_not_a_real_token_at_all', {
      deploymentId: d.deploymentId,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(anon).toMatchObject({ status: 401, error: { code: 'UNAUTHENTICATED' } });
  });

  it('should serve a Starter pipeline on the shared playground deployment, paying a cold start first, and hold it to 100 a day', async () => {
    const ws = await stack.workspace('STARTER');
    const gql = stack.as(ws.token);
    const pipelineId = await createPipeline(gql, { name: 'starter-chat' });
    const body = { pipelineId, messages: [{ role: 'user', content: 'hello' }], maxTokens: 4 };
    const first = await send(stack, ws.token, body);
    expect(first.status).toBe(200);
    expect(first.events[0]).toMatchObject({ type: 'start', shared: true, coldStart: true });
    expect(done(first.events)).toMatchObject({ completionTokens: 4, quota: { limit: 100, used: 1, remaining: 99 } });
    // The other 99 of the day, ten at a time.
    for (let i = 1; i < 100; i += 11) {
      const n = Math.min(11, 100 - i);
      const rs = await Promise.all(Array.from({ length: n }, () => send(stack, ws.token, body)));
      for (const r of rs) expect(r.status).toBe(200);
    }
    const spent = await send(stack, ws.token, body);
    expect(spent.status).toBe(429);
    expect(spent.error!.code).toBe('PLAYGROUND_QUOTA_EXCEEDED');
    expect(spent.error!.message).toMatch(/Starter workspaces get 100 playground requests a day/);
    const { playgroundQuota } = await must(
      gql<{ playgroundQuota: { limit: number; used: number; remaining: number } }>(`query { playgroundQuota { limit used remaining } }`),
    );
    expect(playgroundQuota).toEqual({ limit: 100, used: 100, remaining: 0 });
  });

  it('should make one shared playground deployment of a model when two api processes are asked for it at once', async () => {
    const ws = await stack.workspace('STARTER');
    const pipelineId = await createPipeline(stack.as(ws.token), { name: 'starter-race', model: 'sim/race-chat' });
    const body = { pipelineId, messages: [{ role: 'user', content: 'hello' }], maxTokens: 2 };
    const apis = await Promise.all([stack.spawnApi(), stack.spawnApi()]);
    try {
      const rs = await Promise.all(
        apis.flatMap((a) =>
          [1, 2].map(async () => {
            const r = await fetch(`${a.url}/playground/chat`, {
              method: 'POST',
              headers: { authorization: `Bearer ${ws.token}`, 'content-type': 'application/json' },
              body: JSON.stringify(body),
            });
            return { status: r.status, text: await r.text() };
          }),
        ),
      );
      for (const r of rs) expect(r).toMatchObject({ status: 200, text: expect.stringContaining('"type":"done"') });
      const shared = await stack.prisma.deployment.findMany({
        where: { pipeline: { model: 'sim/race-chat', workspaceId: { not: ws.id } }, status: { not: 'DELETED' } },
      });
      expect(shared).toHaveLength(1);
    } finally {
      await Promise.all(apis.map((a) => a.kill()));
    }
  });
});
