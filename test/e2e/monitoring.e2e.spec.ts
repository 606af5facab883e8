import { Gql, must } from '../support/graphql';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

const METRICS = `query($id: ID!, $from: DateTime!, $to: DateTime!, $step: Int!) { deployment(id: $id) {
  metrics(from: $from, to: $to, step: $step) { stepSeconds relativeAccuracy points {
    start requests errors errorsByCode { code count } promptTokens completionTokens costUsd
    latencyP50Ms latencyP95Ms latencyP99Ms ttftP50Ms inFlightPeak inFlightMean queuedPeak replicasReady replicasStarting desired } } } }`;

const LOGS = `query($id: ID!) { deployment(id: $id) { replicas { id state logs(tail: 50) { available reason lines } } } }`;

interface Point {
  start: string;
  requests: number;
  errors: number;
  errorsByCode: Array<{ code: string; count: number }>;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  latencyP99Ms: number | null;
  ttftP50Ms: number | null;
  inFlightPeak: number | null;
  inFlightMean: number | null;
  queuedPeak: number | null;
  replicasReady: number | null;
  replicasStarting: number | null;
  desired: number | null;
}

/** Nearest-rank value at q of sorted values. */
const at = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))];

/**
 * The load series of a deployment served by two api processes (two gateways, each writing its own samples), read
 * through GraphQL: exactly the requests and tokens the test sent, latency percentiles no higher than what the clients
 * measured (the gateway's clock starts after the client's and stops before it) within the sketch's error, and the
 * replica's own log saying the model finished loading.
 */
describe('deployment metrics and replica logs (two gateway processes, real replicas)', () => {
  let stack: Stack;
  let gql: Gql;
  let deploymentId: string;
  let apiKey: string;
  let second: { url: string; kill: () => Promise<void> };
  const startedAt = new Date();

  beforeAll(async () => {
    stack = await startStack({ env: { METRICS_FLUSH_INTERVAL_MS: '200' } });
    const ws = await stack.workspace('TEAM');
    gql = stack.as(ws.token);
    ({ deploymentId, apiKey } = await stack.deployed(ws.token, { name: 'monitored' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 2 }));
    second = await stack.spawnApi({ METRICS_FLUSH_INTERVAL_MS: '200' });
  });
  afterAll(async () => {
    await second?.kill();
    await stack?.close();
  });

  const chat = async (base: string, i: number, maxTokens = 8 + (i % 24)) => {
    const t0 = performance.now();
    const r = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', max_tokens: maxTokens, messages: [{ role: 'user', content: `request ${i}` }] }),
    });
    const body = (await r.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    expect(r.status).toBe(200);
    return { ms: performance.now() - t0, ...body.usage };
  };

  it('should report exactly the requests and tokens sent through both processes, with latency within what clients saw', async () => {
    const results: Array<{ ms: number; prompt_tokens: number; completion_tokens: number }> = [];
    // Two long requests (about 3 s of decoding each), one per process, span several of the once-a-second samples of in
    // flight; beside them 58 short ones, 8 at a time, alternating between the two processes.
    const long = [chat(stack.url, 0, 1500), chat(second.url, 1, 1500)];
    for (let batch = 2; batch < 60; batch += 8) {
      const n = Math.min(8, 60 - batch);
      results.push(...(await Promise.all(Array.from({ length: n }, (_, k) => chat(k % 2 ? second.url : stack.url, batch + k)))));
    }
    results.push(...(await Promise.all(long)));
    const prompt = results.reduce((s, r) => s + r.prompt_tokens, 0);
    const completion = results.reduce((s, r) => s + r.completion_tokens, 0);
    const vars = {
      id: deploymentId,
      from: new Date(startedAt.getTime() - 60_000).toISOString(),
      to: new Date(Date.now() + 60_000).toISOString(),
    };

    // Samples arrive within a flush interval; the series then holds all 60, whichever minute each fell in.
    const points = await eventually(async () => {
      const { deployment } = await must(gql<{ deployment: { metrics: { points: Point[] } } }>(METRICS, { ...vars, step: 60 }));
      const ps = deployment.metrics.points;
      return ps.reduce((s, p) => s + p.requests, 0) === 60 && ps.reduce((s, p) => s + p.promptTokens, 0) === prompt ? ps : null;
    });
    expect(points.reduce((s, p) => s + p.requests, 0)).toBe(60);
    expect(points.reduce((s, p) => s + p.errors, 0)).toBe(0);
    expect(points.reduce((s, p) => s + p.completionTokens, 0)).toBe(completion);
    expect(points.some((p) => (p.replicasReady ?? 0) >= 1)).toBe(true);
    expect(points.some((p) => (p.desired ?? 0) >= 1)).toBe(true);
    expect(points.some((p) => (p.inFlightPeak ?? 0) >= 1)).toBe(true);

    // One step over the whole range: percentiles merged from both processes' sketches.
    const steps = Math.ceil((Date.parse(vars.to) - Date.parse(vars.from)) / 60_000);
    const { deployment } = await must(
      gql<{ deployment: { metrics: { relativeAccuracy: number; points: Point[] } } }>(METRICS, { ...vars, step: steps * 60 }),
    );
    const [whole] = deployment.metrics.points;
    expect(whole.requests).toBe(60);
    const client = results.map((r) => r.ms).sort((a, b) => a - b);
    const eps = 1 + deployment.metrics.relativeAccuracy;
    for (const [q, got] of [
      [0.5, whole.latencyP50Ms],
      [0.95, whole.latencyP95Ms],
      [0.99, whole.latencyP99Ms],
    ] as const) {
      expect(got).not.toBeNull();
      expect(got!).toBeGreaterThan(0);
      expect(got!).toBeLessThanOrEqual(at(client, q) * eps);
    }
    expect(whole.ttftP50Ms!).toBeLessThanOrEqual(whole.latencyP50Ms! * eps);
  });

  it("should show a replica's log, in which the model finished loading", async () => {
    const { deployment } = await must(
      gql<{ deployment: { replicas: Array<{ id: string; state: string; logs: { available: boolean; lines: string[] } }> } }>(LOGS, {
        id: deploymentId,
      }),
    );
    const ready = deployment.replicas.find((r) => r.state === 'READY')!;
    expect(ready.logs.available).toBe(true);
    expect(ready.logs.lines.some((l) => l.includes('simulator ready'))).toBe(true);
    // The same through the top-level replica query, and a bad tail named.
    const one = await gql<{ replica: { logs: { lines: string[] } } }>(`query($id: ID!) { replica(id: $id) { logs(tail: 1) { lines } } }`, {
      id: ready.id,
    });
    expect(one.data.replica.logs.lines).toHaveLength(1);
    const bad = await gql(`query($id: ID!) { replica(id: $id) { logs(tail: 0) { lines } } }`, { id: ready.id });
    expect(bad.errors?.[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(bad.errors?.[0].message).toMatch(/tail must be at least 1/);
  });

  it("should refuse a bad step with BAD_USER_INPUT naming the rule, and another workspace's replica with NOT_FOUND", async () => {
    const r = await gql(METRICS, {
      id: deploymentId,
      from: new Date(Date.now() - 3_600_000).toISOString(),
      to: new Date().toISOString(),
      step: 30,
    });
    expect(r.errors?.[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(r.errors?.[0].message).toMatch(/at least 60 seconds/);
    const other = await stack.workspace('TEAM');
    const { deployment } = await must(gql<{ deployment: { replicas: Array<{ id: string }> } }>(LOGS, { id: deploymentId }));
    const foreign = await stack.as(other.token)(`query($id: ID!) { replica(id: $id) { id } }`, { id: deployment.replicas[0].id });
    expect(foreign.errors?.[0].extensions.code).toBe('NOT_FOUND');
  });
});
