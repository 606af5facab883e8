import { request } from 'undici';
import { requestExamples, RunpodFake, RunpodFakeOptions, startRunpodFake, validateCreate } from '../../src/providers/runpod/fake';
import { eventually } from '../support/wait';

const KEY = 'rpa_test_all';
const RO = 'rpa_test_readonly';
const NOSL = 'rpa_test_noserverless';
const MODEL = 'sim/tiny-chat';

const start = (o: Partial<RunpodFakeOptions> = {}) =>
  startRunpodFake({
    keys: [
      { key: KEY, accountId: 'acct_1' },
      { key: RO, access: 'READ_ONLY' },
      { key: NOSL, access: 'NO_SERVERLESS' },
    ],
    coldStartMs: 300,
    flashbootStartMs: 50,
    ttftMs: 5,
    itlMs: 2,
    ...o,
  });

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  text: string;
}

async function call(base: string, method: string, path: string, body?: unknown, key: string | null = KEY): Promise<Res> {
  const headers: Record<string, string> = {};
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${base}${path}`, {
    method: method as 'GET',
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.statusCode, headers: res.headers, body: parsed, text };
}

const createBody = (o: Record<string, unknown> = {}) => ({
  name: 'ri-dep-1',
  type: 'QUEUE',
  image: 'runpod/worker-v1-vllm:v2.11.0',
  env: { MODEL_NAME: MODEL, MAX_CONCURRENCY: '4' },
  gpu: { pools: ['ADA_80_PRO', 'HOPPER_141'], count: 1 },
  workers: { min: 0, max: 0 },
  scaling: { type: 'REQUEST_COUNT', requestCount: 4 },
  flashboot: 'FLASHBOOT',
  ...o,
});

type Endpoint = { id: string; workers: { min: number; max: number; idleTimeout: number }; requestUrls: Record<string, string> } & Record<
  string,
  unknown
>;

describe('RunPod fake: management API', () => {
  let fake: RunpodFake;
  const mgmt = (method: string, path: string, body?: unknown, key: string | null = KEY) =>
    call(fake.managementUrl, method, path, body, key);
  beforeAll(async () => {
    fake = await start();
  });
  afterAll(async () => {
    await fake.stop();
  });
  afterEach(() => {
    fake.faults.managementFailureRate = 0;
  });

  it('should create, get, list, patch and delete an endpoint with the documented status codes and shape', async () => {
    const created = await mgmt('POST', '/v2/serverless', createBody());
    expect(created.status).toBe(201);
    const ep = created.body as Endpoint;
    expect(ep.id).toMatch(/^[a-z0-9]{8}$/);
    expect(ep).toMatchObject({
      name: 'ri-dep-1',
      type: 'QUEUE',
      args: '',
      registry: null,
      workers: { min: 0, max: 0, idleTimeout: 5 },
      timeout: 300000,
      flashboot: 'FLASHBOOT',
      dataCenterIds: [],
      networkVolumes: [],
      gpu: { pools: ['ADA_80_PRO', 'HOPPER_141'], count: 1, allowedCudaVersions: [], minCudaVersion: null },
    });
    expect(ep.requestUrls.run).toBe(`${fake.runtimeUrl}/v2/${ep.id}/run`);
    expect(ep.requestUrls.health).toBe(`${fake.runtimeUrl}/v2/${ep.id}/health`);
    expect(Date.parse(ep.createdAt as string)).not.toBeNaN();

    const got = await mgmt('GET', `/v2/serverless/${ep.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(ep);
    const list = await mgmt('GET', '/v2/serverless');
    expect(list.status).toBe(200);
    expect((list.body as { endpoints: Endpoint[] }).endpoints.map((e) => e.id)).toContain(ep.id);

    const patched = await mgmt('PATCH', `/v2/serverless/${ep.id}`, {
      workers: { max: 5 },
      gpu: { pools: ['ADA_80_PRO'], excludedTypes: ['NVIDIA H100 NVL'] },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      name: 'ri-dep-1',
      workers: { min: 0, max: 5, idleTimeout: 5 },
      gpu: { excludedTypes: ['NVIDIA H100 NVL'] },
    });
    // Sending pools without excludedTypes clears the exclusions (§1.3).
    const cleared = await mgmt('PATCH', `/v2/serverless/${ep.id}`, { gpu: { pools: ['ADA_80_PRO'] } });
    expect((cleared.body as { gpu: Record<string, unknown> }).gpu.excludedTypes).toBeUndefined();

    const workers = await mgmt('GET', `/v2/serverless/${ep.id}/workers`);
    expect(workers.body).toEqual({
      endpointVersion: 1,
      summary: { running: 0, idle: 0, initializing: 0, throttled: 0, unhealthy: 0, total: 0 },
      workers: [],
    });
    // An image change is a release: the version goes up; a workers change is not.
    await mgmt('PATCH', `/v2/serverless/${ep.id}`, { image: 'runpod/worker-v1-vllm:v2.12.0' });
    expect(((await mgmt('GET', `/v2/serverless/${ep.id}/workers`)).body as { endpointVersion: number }).endpointVersion).toBe(2);

    const deleted = await mgmt('DELETE', `/v2/serverless/${ep.id}`);
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    const gone = await mgmt('GET', `/v2/serverless/${ep.id}`);
    expect(gone.status).toBe(404);
    expect(gone.headers['content-type']).toBe('application/problem+json');
    expect((await mgmt('DELETE', `/v2/serverless/${ep.id}`)).status).toBe(404);
    expect((await mgmt('PATCH', `/v2/serverless/${ep.id}`, { name: 'x' })).status).toBe(404);
  });

  it('should answer 404 and 405 problems for unknown routes and wrong methods', async () => {
    const nf = await mgmt('GET', '/v2/nope');
    expect(nf.status).toBe(404);
    expect(nf.body).toMatchObject({ title: 'Not Found', status: 404 });
    const na = await mgmt('PUT', '/v2/serverless');
    expect(na.status).toBe(405);
    expect(na.headers.allow).toBe('GET, POST');
    expect(na.body).toMatchObject({ title: 'Method Not Allowed', status: 405 });
  });

  it.each([
    ['an unknown field', createBody({ bogus: 1 }), "$: additional properties 'bogus' not allowed"],
    ['a bad enum', createBody({ flashboot: 'ON' }), '$.flashboot'],
    [
      'idleTimeout 0',
      createBody({ scaling: { type: 'QUEUE_DELAY', queueDelay: 4 }, workers: { idleTimeout: 0 } }),
      '$.workers.idleTimeout',
    ],
    ['queueDelay below 0.5', createBody({ scaling: { type: 'QUEUE_DELAY', queueDelay: 0.1 } }), '$.scaling'],
    ['a missing name', createBody({ name: undefined }), "must have required property 'name'"],
    ['a missing image without templateId', createBody({ image: undefined }), "must have required property 'image'"],
    [
      'CUDA constraints on a CPU endpoint',
      createBody({ gpu: undefined, cpu: [{ id: 'cpu5c', vcpuCount: 4, minCudaVersion: '12.1' }] }),
      '$.cpu[0]',
    ],
  ])('should reject %s on create with 422 and the validator messages', async (_what, body, message) => {
    const before = fake.endpoints().length;
    const res = await mgmt('POST', '/v2/serverless', body);
    expect(res.status).toBe(422);
    expect(res.headers['content-type']).toBe('application/problem+json');
    const p = res.body as { title: string; status: number; detail: string; errors: string[] };
    expect(p).toMatchObject({ title: 'Unprocessable Entity', status: 422, detail: 'Request validation failed.' });
    expect(p.errors.join('\n')).toContain(message);
    expect(fake.endpoints()).toHaveLength(before);
  });

  it('should reject type on PATCH with 422 (unevaluatedProperties), and a malformed body with 400', async () => {
    const ep = (await mgmt('POST', '/v2/serverless', createBody())).body as Endpoint;
    const res = await mgmt('PATCH', `/v2/serverless/${ep.id}`, { type: 'LOAD_BALANCER' });
    expect(res.status).toBe(422);
    expect((res.body as { errors: string[] }).errors).toContain("$: additional properties 'type' not allowed");
    const bad = await mgmt('POST', '/v2/serverless', '{"name": ');
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ title: 'Bad Request', status: 400 });
  });

  it('should accept every request body example the spec gives for createEndpoint and updateEndpoint', async () => {
    const create = requestExamples('/v2/serverless', 'post');
    const update = requestExamples('/v2/serverless/{id}', 'patch');
    expect(Object.keys(create).length).toBeGreaterThan(0);
    expect(Object.keys(update).length).toBeGreaterThan(0);
    for (const [name, body] of Object.entries(create)) {
      expect([name, validateCreate(body)]).toEqual([name, null]);
      const res = await mgmt('POST', '/v2/serverless', body);
      expect([name, res.status]).toEqual([name, 201]);
    }
    const ep = (await mgmt('POST', '/v2/serverless', createBody({ scaling: { type: 'QUEUE_DELAY', queueDelay: 4 } }))).body as Endpoint;
    for (const [name, body] of Object.entries(update)) {
      const res = await mgmt('PATCH', `/v2/serverless/${ep.id}`, body);
      expect([name, res.status]).toEqual([name, 200]);
    }
  });

  it.each([
    ['gpu and cpu', createBody({ cpu: [{ id: 'cpu5c', vcpuCount: 4 }] }), 'exactly one of gpu or cpu'],
    ['neither gpu nor cpu', createBody({ gpu: undefined }), 'exactly one of gpu or cpu'],
    ['idleTimeout with REQUEST_COUNT on QUEUE', createBody({ workers: { max: 1, idleTimeout: 5 } }), 'idleTimeout'],
    [
      'allowedCudaVersions with minCudaVersion',
      createBody({ gpu: { pools: ['ADA_24'], allowedCudaVersions: ['12.8'], minCudaVersion: '12.6' } }),
      'mutually exclusive',
    ],
    ['an excluded type outside the pools', createBody({ gpu: { pools: ['ADA_24'], excludedTypes: ['NVIDIA H200'] } }), 'excludedTypes'],
    ['an unknown pool', createBody({ gpu: { pools: ['NOT_A_POOL'] } }), "'NOT_A_POOL'"],
    ['min above max', createBody({ workers: { min: 3, max: 1 } }), 'workers.min'],
  ])('should reject %s with a 400 naming the rule', async (_what, body, detail) => {
    const before = fake.endpoints().length;
    const res = await mgmt('POST', '/v2/serverless', body);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.body).toMatchObject({ title: 'Bad Request', status: 400 });
    expect((res.body as { detail: string }).detail).toContain(detail);
    expect(fake.endpoints()).toHaveLength(before);
  });

  it('should allow an explicit empty allowedCudaVersions beside a floor', async () => {
    const res = await mgmt(
      'POST',
      '/v2/serverless',
      createBody({ gpu: { pools: ['ADA_24'], allowedCudaVersions: [], minCudaVersion: '12.6' } }),
    );
    expect(res.status).toBe(201);
  });

  it('should reject gpu on PATCH of a CPU endpoint with 400', async () => {
    const cpu = (await mgmt('POST', '/v2/serverless', createBody({ gpu: undefined, cpu: [{ id: 'cpu5c', vcpuCount: 4 }] })))
      .body as Endpoint;
    const res = await mgmt('PATCH', `/v2/serverless/${cpu.id}`, { gpu: { pools: ['ADA_24'] } });
    expect(res.status).toBe(400);
  });

  it('should answer 401 and 403 as problem+json', async () => {
    const missing = await mgmt('GET', '/v2/serverless', undefined, null);
    expect(missing.status).toBe(401);
    expect(missing.headers['content-type']).toBe('application/problem+json');
    expect(missing.body).toEqual({ title: 'Unauthorized', status: 401, detail: 'missing bearer token' });
    const unknown = await mgmt('GET', '/v2/serverless', undefined, 'rpa_nobody');
    expect(unknown.status).toBe(401);
    expect(unknown.body).toMatchObject({ detail: 'invalid api key' });
    // The bare key is accepted as well.
    const bare = await request(`${fake.managementUrl}/v2/serverless`, { headers: { authorization: KEY } });
    await bare.body.dump();
    expect(bare.statusCode).toBe(200);

    expect((await mgmt('GET', '/v2/serverless', undefined, RO)).status).toBe(200);
    const before = fake.endpoints().length;
    const ro = await mgmt('POST', '/v2/serverless', createBody(), RO);
    expect(ro.status).toBe(403);
    expect(ro.headers['content-type']).toBe('application/problem+json');
    expect(ro.body).toEqual({ title: 'Forbidden', status: 403, detail: 'access denied' });
    expect(fake.endpoints()).toHaveLength(before);
    const nosl = await mgmt('GET', '/v2/serverless', undefined, NOSL);
    expect(nosl.status).toBe(403);
    expect(nosl.body).toEqual({ title: 'Forbidden', status: 403, detail: 'access denied' });
    // The catalog is not under /v2/serverless.
    expect((await mgmt('GET', '/v2/catalog/gpus', undefined, NOSL)).status).toBe(200);
  });

  it('should list the GPU catalog with pools, and refuse include without product', async () => {
    const res = await mgmt('GET', '/v2/catalog/gpus?include=AVAILABILITY&product=SERVERLESS');
    expect(res.status).toBe(200);
    const gpus = (res.body as { gpus: { id: string; pool: string; availability: string; price: { serverless: number } }[] }).gpus;
    const pool = (id: string) => gpus.find((g) => g.id === id)?.pool;
    expect(pool('NVIDIA H100 80GB HBM3')).toBe('ADA_80_PRO');
    expect(pool('NVIDIA H200')).toBe('HOPPER_141');
    expect(pool('NVIDIA GeForce RTX 4090')).toBe('ADA_24');
    expect(gpus.every((g) => g.availability === 'HIGH' && g.price.serverless > 0)).toBe(true);
    expect((await mgmt('GET', '/v2/catalog/gpus?include=AVAILABILITY')).status).toBe(400);
  });

  it('should answer GraphQL myself: 401 for an unknown key, null without a key, the account id with one', async () => {
    const q = { query: 'query Myself { myself { id } }' };
    expect((await call(fake.graphqlUrl, 'POST', '', q, 'rpa_nobody')).status).toBe(401);
    const anon = await call(fake.graphqlUrl, 'POST', '', q, null);
    expect(anon).toMatchObject({ status: 200, body: { data: { myself: null } } });
    const known = await call(fake.graphqlUrl, 'POST', '', { query: '\n  query {\n myself{id}\n}' });
    expect(known).toMatchObject({ status: 200, body: { data: { myself: { id: 'acct_1' } } } });
    const derived = await call(fake.graphqlUrl, 'POST', '', q, RO);
    expect((derived.body as { data: { myself: { id: string } } }).data.myself.id).toMatch(/^user_/);
    const other = await call(fake.graphqlUrl, 'POST', '', { query: 'query { myself { endpoints { id } } }' });
    expect(other.status).toBe(200);
    expect((other.body as { errors: { message: string }[] }).errors[0].message).toEqual(expect.any(String));
  });

  it('should fail every call at failure rate 1 with one of the injected kinds, and create nothing', async () => {
    fake.faults.kinds = ['429', '500', '503', 'html403'];
    fake.faults.managementFailureRate = 1;
    fake.resetCalls();
    const before = fake.endpoints().length;
    const seen = new Set<number>();
    for (let i = 0; i < 12; i++) {
      const res = await mgmt('POST', '/v2/serverless', createBody());
      expect([429, 500, 503, 403]).toContain(res.status);
      seen.add(res.status);
      if (res.status === 429) {
        expect(res.headers['retry-after']).toBe('1');
        expect(res.headers.ratelimit).toBeDefined();
      }
      if (res.status === 403) expect(res.headers['content-type']).toMatch(/^text\/html/);
      else expect(res.headers['content-type']).toBe('application/problem+json');
    }
    expect(seen.size).toBeGreaterThan(1);
    const gql = await call(fake.graphqlUrl, 'POST', '', { query: 'query { myself { id } }' });
    expect([429, 500, 503, 403]).toContain(gql.status);
    expect(fake.endpoints()).toHaveLength(before);
    expect(fake.calls()['POST /v2/serverless']).toBe(12);
    expect(fake.calls()['POST /graphql']).toBe(1);
  });

  it('should hold a timeout fault and drop the connection', async () => {
    fake.faults.kinds = ['timeout'];
    fake.faults.managementFailureRate = 1;
    const t0 = Date.now();
    await expect(request(`${fake.managementUrl}/v2/serverless`, { headers: { authorization: `Bearer ${KEY}` } })).rejects.toThrow();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(9_000);
  }, 20_000);
});

describe('RunPod fake: rate limit', () => {
  let fake: RunpodFake;
  beforeAll(async () => {
    fake = await start({ ratePerMinute: 3 });
  });
  afterAll(async () => {
    await fake.stop();
  });

  it('should send RateLimit headers on successes and 429 with Retry-After over the quota', async () => {
    const first = await call(fake.managementUrl, 'GET', '/v2/serverless');
    expect(first.status).toBe(200);
    expect(first.headers.ratelimit).toMatch(/^"minute";r=2;t=\d+$/);
    expect(first.headers['ratelimit-policy']).toBe('"minute";q=3;w=60');
    await call(fake.managementUrl, 'GET', '/v2/serverless');
    const third = await call(fake.managementUrl, 'GET', '/v2/serverless');
    expect(third.headers.ratelimit).toMatch(/^"minute";r=0;/);
    const over = await call(fake.managementUrl, 'GET', '/v2/serverless');
    expect(over.status).toBe(429);
    expect(over.headers['content-type']).toBe('application/problem+json');
    expect(over.body).toEqual({ title: 'Too Many Requests', status: 429, detail: 'rate limit exceeded for the minute window' });
    expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
    // Per key: another key still has its quota.
    expect((await call(fake.managementUrl, 'GET', '/v2/serverless', undefined, RO)).status).toBe(200);
  });
});

describe('RunPod fake: idle scale-down', () => {
  let fake: RunpodFake;
  let clock = Date.parse('2026-12-01T00:00:00Z');
  beforeAll(async () => {
    fake = await start({ now: () => clock });
  });
  afterAll(async () => {
    await fake.stop();
  });

  it('should lower workers.max to 2 after 3 idle days, to 0 after 7, and keep it until a PATCH raises it', async () => {
    const ep = (await call(fake.managementUrl, 'POST', '/v2/serverless', createBody({ workers: { min: 0, max: 6 } }))).body as Endpoint;
    const max = async () => ((await call(fake.managementUrl, 'GET', `/v2/serverless/${ep.id}`)).body as Endpoint).workers.max;
    const day = 24 * 3600 * 1000;
    clock += 2 * day;
    await fake.tick();
    expect(await max()).toBe(6);
    // A runtime request resets the idle clock.
    expect((await call(fake.runtimeUrl, 'GET', `/v2/${ep.id}/health`)).status).toBe(200);
    clock += 2.5 * day;
    await fake.tick();
    expect(await max()).toBe(6);
    clock += 1 * day;
    await fake.tick();
    expect(await max()).toBe(2);
    clock += 4 * day;
    await fake.tick();
    expect(await max()).toBe(0);
    clock += 1 * day;
    await fake.tick();
    expect(await max()).toBe(0);
    await call(fake.managementUrl, 'PATCH', `/v2/serverless/${ep.id}`, { workers: { max: 6 } });
    await fake.tick();
    expect(await max()).toBe(6);
  });
});

type Chat = { choices: { message: { content: string } }[]; model: string };

describe('RunPod fake: fleet and runtime', () => {
  let fake: RunpodFake;
  const mgmt = (method: string, path: string, body?: unknown) => call(fake.managementUrl, method, path, body);
  const rt = (method: string, path: string, body?: unknown, key: string | null = KEY) => call(fake.runtimeUrl, method, path, body, key);
  const health = async (id: string) =>
    (await rt('GET', `/v2/${id}/health`)).body as { jobs: Record<string, number>; workers: Record<string, number> };
  const statuses = (id: string) => fake.workers(id).map((w) => w.status);
  const chat = (id: string, o: Record<string, unknown> = {}) =>
    rt('POST', `/v2/${id}/openai/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 4,
      ...o,
    });

  beforeAll(async () => {
    fake = await start();
  });
  afterAll(async () => {
    await fake.stop();
  });
  afterEach(() => {
    fake.faults.exhaustedPools.clear();
    fake.faults.crashLoop.clear();
  });
  const create = async (o: Record<string, unknown> = {}) => {
    const res = await mgmt('POST', '/v2/serverless', createBody(o));
    expect(res.status).toBe(201);
    return res.body as Endpoint;
  };

  it('should start a worker on min=max=1 (INITIALIZING then IDLE) and serve chat, streamed and not, through /openai', async () => {
    const ep = await create();
    expect(await health(ep.id)).toEqual({
      jobs: { completed: 0, failed: 0, inProgress: 0, inQueue: 0, retried: 0 },
      workers: { idle: 0, initializing: 0, ready: 0, running: 0, throttled: 0, unhealthy: 0 },
    });
    await mgmt('PATCH', `/v2/serverless/${ep.id}`, { workers: { min: 1, max: 1 } });
    expect(statuses(ep.id)).toEqual(['INITIALIZING']);
    expect((await health(ep.id)).workers.initializing).toBe(1);
    await eventually(async () => statuses(ep.id)[0] === 'IDLE');
    const h = await health(ep.id);
    expect(h.workers).toMatchObject({ idle: 1, initializing: 0, running: 0 });
    const listed = (await mgmt('GET', `/v2/serverless/${ep.id}/workers`)).body as {
      summary: Record<string, number>;
      workers: Record<string, unknown>[];
    };
    expect(listed.summary).toEqual({ running: 0, idle: 1, initializing: 0, throttled: 0, unhealthy: 0, total: 1 });
    expect(listed.workers[0]).toMatchObject({
      status: 'IDLE',
      isStale: false,
      version: 1,
      gpuCount: 1,
      gpuTypeId: 'NVIDIA H100 80GB HBM3',
      dataCenterId: 'US-KS-2',
    });

    const res = await chat(ep.id);
    expect(res.status).toBe(200);
    expect((res.body as Chat).choices[0].message.content.length).toBeGreaterThan(0);

    const stream = await request(`${fake.runtimeUrl}/v2/${ep.id}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 6, stream: true }),
    });
    expect(stream.statusCode).toBe(200);
    expect(stream.headers['content-type']).toMatch(/text\/event-stream/);
    let chunks = 0;
    let text = '';
    for await (const c of stream.body) {
      chunks++;
      text += (c as Buffer).toString();
    }
    expect(chunks).toBeGreaterThan(1);
    expect(text).toContain('data: [DONE]');
    expect((await health(ep.id)).jobs).toMatchObject({ completed: 2, inProgress: 0, inQueue: 0 });

    const wrong = await chat(ep.id, { model: 'someone/else' });
    expect(wrong.status).toBe(404);
    expect((wrong.body as { error: { message: string } }).error.message).toContain('someone/else');
    expect((await rt('GET', `/v2/${ep.id}/health`, undefined, 'rpa_nobody')).status).toBe(401);
    expect((await rt('GET', `/v2/nothere1/health`)).status).toBe(404);
  });

  it('should queue requests while max=0 and serve them once max is raised; scaling to 0 lets a running stream finish', async () => {
    const ep = await create();
    const pending = chat(ep.id, { max_tokens: 2 });
    await eventually(async () => (await health(ep.id)).jobs.inQueue === 1);
    expect(fake.workers(ep.id)).toEqual([]);
    await mgmt('PATCH', `/v2/serverless/${ep.id}`, { workers: { min: 1, max: 1 } });
    const served = await pending;
    expect(served.status).toBe(200);
    expect((await health(ep.id)).jobs).toMatchObject({ inQueue: 0, completed: 1 });

    // A long stream is running; the scale to 0 drains the worker instead of killing it.
    const stream = await request(`${fake.runtimeUrl}/v2/${ep.id}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'long' }], max_tokens: 300, stream: true }),
    });
    const it = stream.body[Symbol.asyncIterator]();
    await it.next();
    expect(statuses(ep.id)).toEqual(['RUNNING']);
    await mgmt('PATCH', `/v2/serverless/${ep.id}`, { workers: { min: 0, max: 0 } });
    // Draining: still listed while its stream runs, and it takes no new request.
    expect(statuses(ep.id)).toEqual(['RUNNING']);
    let text = '';
    for (let r = await it.next(); !r.done; r = await it.next()) text += (r.value as Buffer).toString();
    expect(text).toContain('data: [DONE]');
    await eventually(async () => fake.workers(ep.id).length === 0);
  });

  it('should time out a queued request after the endpoint timeout, and a disconnected client leaves the queue', async () => {
    const ep = await create({ timeout: 400 });
    const res = await chat(ep.id);
    expect(res.status).toBe(504);
    expect((await health(ep.id)).jobs).toMatchObject({ failed: 1, inQueue: 0 });

    const ac = new AbortController();
    const gone = request(`${fake.runtimeUrl}/v2/${ep.id}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }),
      signal: ac.signal,
    });
    await eventually(async () => (await health(ep.id)).jobs.inQueue === 1);
    ac.abort();
    await expect(gone).rejects.toThrow();
    await eventually(async () => (await health(ep.id)).jobs.inQueue === 0);
  });

  it('should revive a FlashBoot worker faster than a cold start', async () => {
    const timeToIdle = async (id: string) => {
      const t0 = Date.now();
      await mgmt('PATCH', `/v2/serverless/${id}`, { workers: { min: 1, max: 1 } });
      await eventually(async () => statuses(id)[0] === 'IDLE', 30_000, 10);
      const ms = Date.now() - t0;
      await mgmt('PATCH', `/v2/serverless/${id}`, { workers: { min: 0, max: 0 } });
      await eventually(async () => fake.workers(id).length === 0);
      return ms;
    };
    const off = await create({ flashboot: 'OFF' });
    const fb = await create({ flashboot: 'FLASHBOOT' });
    await timeToIdle(off.id);
    await timeToIdle(fb.id); // the first start of a FlashBoot endpoint is cold
    const coldAgain = await timeToIdle(off.id);
    const revived = await timeToIdle(fb.id);
    expect(revived).toBeLessThan(coldAgain);
  });

  it('should show a crash-looping endpoint’s workers as UNHEALTHY and never serve', async () => {
    const ep = await create({ timeout: 600, name: 'crashy' });
    fake.faults.crashLoop.add('crashy');
    await mgmt('PATCH', `/v2/serverless/${ep.id}`, { workers: { min: 1, max: 1 } });
    expect(statuses(ep.id)).toEqual(['UNHEALTHY']);
    expect((await health(ep.id)).workers.unhealthy).toBe(1);
    expect((await chat(ep.id)).status).toBe(504);
    fake.faults.crashLoop.clear();
    await eventually(async () => statuses(ep.id)[0] === 'IDLE');
  });

  it('should keep workers THROTTLED while every pool of the endpoint is exhausted', async () => {
    const ep = await create();
    fake.faults.exhaustedPools.add('ADA_80_PRO').add('HOPPER_141');
    await mgmt('PATCH', `/v2/serverless/${ep.id}`, { workers: { min: 2, max: 2 } });
    expect(statuses(ep.id)).toEqual(['THROTTLED', 'THROTTLED']);
    expect((await health(ep.id)).workers.throttled).toBe(2);
    const listed = (await mgmt('GET', `/v2/serverless/${ep.id}/workers`)).body as { workers: { gpuTypeId: unknown }[] };
    expect(listed.workers.map((w) => w.gpuTypeId)).toEqual([null, null]);
    const cat = (await mgmt('GET', '/v2/catalog/gpus?include=AVAILABILITY&product=SERVERLESS')).body as {
      gpus: { pool: string; availability: string }[];
    };
    expect(cat.gpus.filter((g) => g.pool === 'HOPPER_141').every((g) => g.availability === 'NONE')).toBe(true);
    // One pool with capacity again: the workers are placed there.
    fake.faults.exhaustedPools.delete('HOPPER_141');
    await eventually(async () => statuses(ep.id).every((s) => s === 'IDLE'));
    const placed = (await mgmt('GET', `/v2/serverless/${ep.id}/workers`)).body as { workers: { gpuTypeId: unknown }[] };
    expect(placed.workers.map((w) => w.gpuTypeId)).toEqual(['NVIDIA H200', 'NVIDIA H200']);
  });

  it('should scale with REQUEST_COUNT inside the bounds and stop idle flex workers after idleTimeout', async () => {
    const ep = await create({ scaling: { type: 'QUEUE_DELAY', queueDelay: 0.5 }, workers: { min: 0, max: 2, idleTimeout: 1 } });
    await mgmt('PATCH', `/v2/serverless/${ep.id}`, { scaling: { type: 'REQUEST_COUNT', requestCount: 1 } });
    const all = Promise.all([chat(ep.id, { max_tokens: 30 }), chat(ep.id, { max_tokens: 30 }), chat(ep.id, { max_tokens: 30 })]);
    await eventually(async () => fake.workers(ep.id).length === 2);
    expect(fake.workers(ep.id).length).toBeLessThanOrEqual(2);
    const done = await all;
    expect(done.map((r) => r.status)).toEqual([200, 200, 200]);
    await eventually(async () => fake.workers(ep.id).length === 0, 10_000);
  });

  it('should roll a release: an image change replaces idle workers with ones on the new version', async () => {
    const ep = await create({ workers: { min: 1, max: 1 } });
    await eventually(async () => statuses(ep.id)[0] === 'IDLE');
    const first = fake.workers(ep.id)[0].id;
    await mgmt('PATCH', `/v2/serverless/${ep.id}`, { image: 'runpod/worker-v1-vllm:v2.12.0' });
    await eventually(async () => fake.workers(ep.id).length === 1 && fake.workers(ep.id)[0].id !== first && statuses(ep.id)[0] === 'IDLE');
    const listed = (await mgmt('GET', `/v2/serverless/${ep.id}/workers`)).body as {
      endpointVersion: number;
      workers: { version: number; isStale: boolean; image: string }[];
    };
    expect(listed.endpointVersion).toBe(2);
    expect(listed.workers[0]).toMatchObject({ version: 2, isStale: false, image: 'runpod/worker-v1-vllm:v2.12.0' });
  });

  it('should run a job through /runsync and /run + /status with the OpenAI passthrough input', async () => {
    const ep = await create({ workers: { min: 1, max: 1 } });
    const input = {
      openai_route: '/v1/chat/completions',
      openai_input: { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
    };
    const sync = await rt('POST', `/v2/${ep.id}/runsync`, { input });
    expect(sync.status).toBe(200);
    expect(sync.body).toMatchObject({ status: 'COMPLETED', output: { model: MODEL } });
    expect((sync.body as { id: string }).id).toMatch(/^sync-/);
    const queued = await rt('POST', `/v2/${ep.id}/run`, { input });
    const id = (queued.body as { id: string }).id;
    expect(queued.body).toMatchObject({ status: 'IN_QUEUE' });
    await eventually(async () => ((await rt('GET', `/v2/${ep.id}/status/${id}`)).body as { status: string }).status === 'COMPLETED');
    expect((await rt('GET', `/v2/${ep.id}/status/nope`)).status).toBe(404);
  });

  it('should stop every worker when the endpoint is deleted', async () => {
    const ep = await create({ workers: { min: 2, max: 2 } });
    await eventually(async () => statuses(ep.id).every((s) => s === 'IDLE') && statuses(ep.id).length === 2);
    expect((await mgmt('DELETE', `/v2/serverless/${ep.id}`)).status).toBe(204);
    expect(fake.workers(ep.id)).toEqual([]);
    expect((await rt('GET', `/v2/${ep.id}/health`)).status).toBe(404);
  });
});

describe('RunPod fake: load balancer and runtime limits', () => {
  let fake: RunpodFake;
  beforeAll(async () => {
    fake = await start();
  });
  afterAll(async () => {
    await fake.stop();
  });

  it('should serve a LOAD_BALANCER endpoint straight from a worker, with 204 on /ping while it initializes', async () => {
    const created = await call(
      fake.managementUrl,
      'POST',
      '/v2/serverless',
      createBody({ type: 'LOAD_BALANCER', scaling: { type: 'REQUEST_COUNT', requestCount: 2 }, workers: { min: 1, max: 1 } }),
    );
    expect(created.status).toBe(201);
    const ep = created.body as Endpoint;
    expect(ep.requestUrls).toEqual({ base: `${fake.runtimeUrl}/lb/${ep.id}`, health: `${fake.runtimeUrl}/lb/${ep.id}/ping` });
    expect((await call(ep.requestUrls.health, 'GET', '')).status).toBe(204);
    await eventually(async () => (await call(ep.requestUrls.health, 'GET', '')).status === 200);
    const models = await call(ep.requestUrls.base, 'GET', '/v1/models');
    expect((models.body as { data: { id: string }[] }).data[0].id).toBe(MODEL);
  });

  it('should answer 429 past 2000 runtime requests in 10 s on one endpoint', async () => {
    const ep = (await call(fake.managementUrl, 'POST', '/v2/serverless', createBody())).body as Endpoint;
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const batch = await Promise.all(
        Array.from({ length: 101 }, () =>
          request(`${fake.runtimeUrl}/v2/${ep.id}/health`, { headers: { authorization: `Bearer ${KEY}` } }).then(async (r) => {
            await r.body.dump();
            return r.statusCode;
          }),
        ),
      );
      statuses.push(...batch);
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(2000);
    expect(statuses.filter((s) => s === 429)).toHaveLength(20);
  });
});
