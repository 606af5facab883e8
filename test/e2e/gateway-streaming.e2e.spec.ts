import { DEFAULT_PRICES } from '../../src/domain/pricing';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

/**
 * The gateway's streaming path on real replicas: usage read from the upstream
 * and rolled up, the max_tokens advice for non-streamed requests, a client
 * that leaves, a replica that goes silent, and a replica killed mid-stream.
 */
describe('gateway streaming, timeouts and usage', () => {
  let stack: Stack;
  let ws: { id: string; token: string };
  let deploymentId: string;
  let key: string;

  beforeAll(async () => {
    stack = await startStack({
      env: {
        SIM_ITL_MS: '10',
        GATEWAY_REQUEST_TIMEOUT_MS: '3000',
        GATEWAY_ASSUMED_MS_PER_TOKEN: '40',
        GATEWAY_IDLE_TIMEOUT_MS: '500',
        USAGE_FLUSH_INTERVAL_MS: '100',
        USAGE_CAPACITY_INTERVAL_MS: '300',
      },
    });
    ws = await stack.workspace('TEAM');
    ({ deploymentId, apiKey: key } = await stack.deployed(
      ws.token,
      { name: 'streams' },
      { mode: 'ACTIVE', minReplicas: 2, maxReplicas: 2 },
    ));
  });
  afterAll(async () => {
    await stack?.close();
  });

  const post = (body: Record<string, unknown>, signal?: AbortSignal, bearer = key) =>
    fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'four words of prompt' }], ...body }),
      signal,
    });
  /** The data events of an SSE body, parsed; [DONE] as the string. */
  const events = (text: string) =>
    text
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => (e === 'data: [DONE]' ? '[DONE]' : JSON.parse(e.slice(6))));
  const metric = async (line: RegExp) => {
    const text = await (await fetch(`${stack.url}/metrics`)).text();
    const m = text.split('\n').find((l) => line.test(l));
    return m ? Number(m.split(' ').pop()) : null;
  };
  const inFlight = () => metric(new RegExp(`^infercp_gateway_in_flight\\{deployment="${deploymentId}"\\}`));
  const pidOf = async (replicaId: string) =>
    Number((await stack.prisma.replica.findUniqueOrThrow({ where: { id: replicaId } })).providerId);

  it('should refuse a non-streamed request whose max_tokens would outlast the request timeout, advising streaming', async () => {
    const r = await post({ max_tokens: 150 });
    expect(r.status).toBe(400);
    const err = ((await r.json()) as { error: Record<string, string> }).error;
    expect(err).toMatchObject({ type: 'invalid_request_error', code: 'stream_required', param: 'max_tokens' });
    expect(err.message).toMatch(/max_tokens 150 at about 40\.0 ms per token \(assumed.*6 s, past the 3 s limit.*"stream": true/);
    // The same request streamed is served whole.
    const s = await post({ max_tokens: 150, stream: true });
    expect(s.status).toBe(200);
    expect(events(await s.text()).filter((e) => e !== '[DONE]' && e.choices[0]?.delta?.content)).toHaveLength(150);
  });

  it('should accept that request once the deployment has been measured fast enough', async () => {
    // The stream above measured about 10 ms per token: 150 tokens fit in 3 s.
    const r = await post({ max_tokens: 150 });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(150);
  });

  it('should keep the usage chunk out of streams that did not ask for it, pass it to those that did, and roll both up with cost', async () => {
    const from = new Date(Date.now() - 60_000);
    // A key of its own: the rollups below hold exactly this test's requests.
    const created = await stack.gql<{ createApiKey: { key: string; apiKey: { id: string } } }>(
      `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id } } }`,
      ws.token,
      { i: { name: 'usage', scope: 'DEPLOYMENT', deploymentId } },
    );
    const usageKey = created.data.createApiKey.key;
    const usageKeyId = created.data.createApiKey.apiKey.id;
    const plain = events(await (await post({ max_tokens: 7, stream: true }, undefined, usageKey)).text());
    expect(plain.at(-1)).toBe('[DONE]');
    expect(plain.slice(0, -1).every((e) => e.choices.length === 1 && !e.usage)).toBe(true);
    const asked = events(
      await (await post({ max_tokens: 9, stream: true, stream_options: { include_usage: true } }, undefined, usageKey)).text(),
    );
    expect(asked.at(-2)).toMatchObject({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 } });
    const whole = (await (await post({ max_tokens: 4 }, undefined, usageKey)).json()) as { usage: object };
    expect(whole.usage).toEqual({ prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 });

    const rows = await eventually(async () => {
      const s = await stack.prisma.usageRollup.aggregate({
        where: { apiKeyId: usageKeyId },
        _sum: { requests: true, errors: true, promptTokens: true, completionTokens: true, ttftCount: true },
      });
      return s._sum.requests === 3 ? s._sum : null;
    }, 10_000);
    expect(rows).toMatchObject({ errors: 0, promptTokens: 15n, completionTokens: 20n, ttftCount: 3 });

    const q = `query($i: UsageInput!) { usage(input: $i) { buckets { start requests } total { requests errors promptTokens completionTokens avgLatencyMs avgTtftMs replicaSeconds tokenCostUsd capacityCostUsd costUsd } } }`;
    const rates = DEFAULT_PRICES.gpus.default;
    const window = { from, to: new Date(Date.now() + 60_000) };
    const byKey = await stack.gql<{ usage: { buckets: Array<{ requests: number }>; total: Record<string, number> } }>(q, ws.token, {
      i: { ...window, granularity: 'MINUTE', apiKeyId: usageKeyId },
    });
    const t = byKey.data.usage.total;
    expect(t).toMatchObject({ requests: 3, errors: 0, promptTokens: 15, completionTokens: 20, replicaSeconds: 0, capacityCostUsd: 0 });
    expect(t.avgTtftMs).toBeGreaterThan(0);
    expect(t.avgLatencyMs).toBeGreaterThanOrEqual(t.avgTtftMs);
    // ACTIVE on an unlisted GPU: the default's lower per-token rate.
    expect(t.tokenCostUsd).toBeCloseTo((35 * rates.activePerMillionTokensUsd) / 1e6, 9);
    expect(byKey.data.usage.buckets.reduce((s, b) => s + b.requests, 0)).toBe(3);

    // Per deployment, warm replica time is priced too (Active pays per second per warm replica).
    const byDeployment = await eventually(async () => {
      const r = await stack.gql<{ usage: { total: Record<string, number> } }>(q, ws.token, { i: { ...window, deploymentId } });
      return r.data.usage.total.replicaSeconds > 0 ? r.data.usage.total : null;
    }, 10_000);
    expect(byDeployment.requests).toBeGreaterThan(3);
    expect(byDeployment.capacityCostUsd).toBeCloseTo(byDeployment.replicaSeconds * rates.activePerReplicaSecondUsd, 5);
    expect(byDeployment.costUsd).toBeCloseTo(byDeployment.tokenCostUsd + byDeployment.capacityCostUsd, 6);

    // Prometheus sees the same tokens, and the replicas by state.
    expect(await metric(new RegExp(`^infercp_gateway_tokens_total\\{deployment="${deploymentId}",type="completion"\\}`))).toBe(320);
    expect(await metric(new RegExp(`^infercp_replicas\\{deployment="${deploymentId}",state="READY"\\}`))).toBe(2);
    // Every served request is in the gateway's own-overhead histogram too, and that overhead is a part of its duration.
    const overheadCount = await metric(/^infercp_gateway_overhead_seconds_count\{route="chat"\}/);
    expect(overheadCount).toBeGreaterThanOrEqual(3);
    expect(overheadCount).toBe(await metric(/^infercp_gateway_request_duration_seconds_count\{route="chat"\}/));
    expect(await metric(/^infercp_gateway_overhead_seconds_sum\{route="chat"\}/)).toBeLessThan(
      (await metric(/^infercp_gateway_request_duration_seconds_sum\{route="chat"\}/))!,
    );
  });

  it('should refuse a usage range that is backwards or too fine, naming the field', async () => {
    const q = `query($i: UsageInput!) { usage(input: $i) { total { requests } } }`;
    const now = Date.now();
    const back = await stack.gql(q, ws.token, { i: { from: new Date(now), to: new Date(now - 1000) } });
    expect(back.errors?.[0]).toMatchObject({
      message: expect.stringContaining('to: must be after from'),
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const fine = await stack.gql(q, ws.token, { i: { from: new Date(now - 30 * 86_400_000), to: new Date(now), granularity: 'MINUTE' } });
    expect(fine.errors?.[0]).toMatchObject({
      message: expect.stringContaining('43200 MINUTE buckets'),
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const other = await stack.workspace('TEAM');
    const foreign = await stack.gql(q, other.token, { i: { from: new Date(now - 1000), to: new Date(now), deploymentId } });
    expect(foreign.errors?.[0].extensions.code).toBe('NOT_FOUND');
  });

  it('should abort the upstream and leave nothing in flight when the client disconnects mid-stream', async () => {
    const ac = new AbortController();
    const r = await post({ max_tokens: 500, stream: true }, ac.signal);
    const reader = r.body!.getReader();
    await reader.read();
    await reader.read();
    expect(await inFlight()).toBe(1);
    ac.abort();
    await eventually(async () => (await inFlight()) === 0, 5000);
    // The next request is served at once: the slot came back, on the gateway and in the workspace budget.
    const next = await post({ max_tokens: 2, stream: true });
    expect(next.status).toBe(200);
    await next.text();
  });

  it('should end a stream whose replica goes silent with a timeout error event, then route around that replica', async () => {
    const r = await post({ max_tokens: 400, stream: true });
    const replica = r.headers.get('x-infercp-replica')!;
    const pid = await pidOf(replica);
    const reader = r.body!.getReader();
    await reader.read();
    process.kill(pid, 'SIGSTOP');
    let text = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
      }
      const last = events(text).at(-1);
      expect(last.error).toMatchObject({
        type: 'server_error',
        code: 'upstream_timeout',
        message: expect.stringContaining('GATEWAY_IDLE_TIMEOUT_MS'),
      });
      expect(await inFlight()).toBe(0);
      const next = await post({ max_tokens: 2 });
      expect(next.status).toBe(200);
      expect(next.headers.get('x-infercp-replica')).not.toBe(replica);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });

  it('should end a stream whose replica is killed with an error event, and send the next request to another replica', async () => {
    const r = await post({ max_tokens: 400, stream: true });
    const replica = r.headers.get('x-infercp-replica')!;
    const reader = r.body!.getReader();
    let text = Buffer.from((await reader.read()).value!).toString();
    process.kill(await pidOf(replica), 'SIGKILL');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    const evs = events(text);
    // What came before the failure reached the client; then the error, and no [DONE].
    expect(evs[0].choices[0].delta.role).toBe('assistant');
    expect(evs.at(-1).error).toMatchObject({
      type: 'server_error',
      code: 'upstream_error',
      message: expect.stringContaining('replica failed mid-stream'),
    });
    expect(await inFlight()).toBe(0);
    for (let i = 0; i < 3; i++) {
      const next = await post({ max_tokens: 2 });
      expect(next.status).toBe(200);
      expect(next.headers.get('x-infercp-replica')).not.toBe(replica);
      await next.text();
    }
    // The failure is in the rollups as an error, and was not billed.
    await eventually(async () => {
      const s = await stack.prisma.usageRollup.aggregate({ where: { deploymentId }, _sum: { errors: true } });
      return (s._sum.errors ?? 0) >= 2;
    }, 5000);
  });
});
