import fc from 'fast-check';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

/**
 * Admission on the real gateway: each rule with its status, code and headers,
 * the queue then 503, and two gateway processes sharing Redis holding a key's
 * rate and a workspace's budget exactly.
 */
describe('gateway admission', () => {
  let stack: Stack;
  let ws: { id: string; token: string };
  let deploymentId: string;

  beforeAll(async () => {
    stack = await startStack({ env: { GATEWAY_QUEUE_TIMEOUT_MS: '300', SIM_ITL_MS: '20' } });
    ws = await stack.workspace('PRO');
    ({ deploymentId } = await stack.deployed(ws.token, { name: 'adm' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 }));
  });
  afterAll(async () => {
    await stack?.close();
  });

  const newKey = async (rateLimitPerMinute?: number) => {
    const r = await stack.gql<{ createApiKey: { key: string } }>(
      `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key } }`,
      ws.token,
      { i: { name: 'k', scope: 'DEPLOYMENT', deploymentId, rateLimitPerMinute } },
    );
    return r.data.createApiKey.key;
  };
  const chat = (base: string, key: string, maxTokens = 3) =>
    fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'default', stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
    });

  it("should refuse past a key's rate with 429, Retry-After and X-RateLimit-* on every response", async () => {
    const key = await newKey(60); // 1 per second; a 6 s burst is 6 requests
    const res = [];
    const t0 = Math.floor(Date.now() / 1000);
    for (let i = 0; i < 8; i++) {
      const r = await chat(stack.url, key);
      res.push({
        status: r.status,
        remaining: r.headers.get('x-ratelimit-remaining'),
        limit: r.headers.get('x-ratelimit-limit'),
        reset: Number(r.headers.get('x-ratelimit-reset')),
        resetAfter: Number(r.headers.get('x-ratelimit-reset-after')),
        retry: r.headers.get('retry-after'),
        body: await r.text(),
      });
    }
    expect(res.slice(0, 6).map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(res.slice(0, 6).map((r) => r.remaining)).toEqual(['5', '4', '3', '2', '1', '0']);
    expect(res.every((r) => r.limit === '60')).toBe(true);
    // X-RateLimit-Reset is when the bucket is full again, in unix seconds: at most the burst's 6 s from now.
    expect(res.every((r) => r.reset >= t0 && r.reset <= Math.ceil(Date.now() / 1000) + 7 && r.resetAfter <= 7)).toBe(true);
    expect(res[6].status).toBe(429);
    expect(JSON.parse(res[6].body).error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect(Number(res[6].retry)).toBeGreaterThanOrEqual(1);
    expect(Number(res[6].retry)).toBeLessThanOrEqual(2);
  });

  it('should refuse a workspace over its monthly spend cap with 403 plan_limit_exceeded, before any rate is spent', async () => {
    const other = await stack.workspace('PRO');
    const { deploymentId: id, apiKey } = await stack.deployed(
      other.token,
      { name: 'spend' },
      { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
    );
    await stack.prisma.workspace.update({ where: { id: other.id }, data: { monthlySpendCapUsd: 5 } });
    const key = await stack.prisma.apiKey.findFirstOrThrow({ where: { deploymentId: id } });
    await stack.prisma.usageRollup.create({
      data: { deploymentId: id, apiKeyId: key.id, minute: new Date(), requests: 1000, costUsd: 5.5 },
    });
    const r = await chat(stack.url, apiKey);
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: object }).error).toMatchObject({
      type: 'permission_error',
      code: 'plan_limit_exceeded',
      message: expect.stringContaining('$5.50 of its $5.00'),
    });
    expect(r.headers.get('x-ratelimit-remaining')).toBeNull();
  });

  it('should hold a workspace to its concurrency budget with 429 concurrency_limit_exceeded', async () => {
    await stack.prisma.workspace.update({ where: { id: ws.id }, data: { maxConcurrency: 2 } });
    const key = await newKey(); // a new key: read with the workspace's new budget
    try {
      const open = await Promise.all([chat(stack.url, key, 100), chat(stack.url, key, 100)]);
      expect(open.map((r) => r.status)).toEqual([200, 200]);
      const third = await chat(stack.url, key);
      expect(third.status).toBe(429);
      expect(((await third.json()) as { error: object }).error).toMatchObject({
        code: 'concurrency_limit_exceeded',
        message: expect.stringContaining('budget of 2'),
      });
      expect(third.headers.get('retry-after')).toBe('1');
      await Promise.all(open.map((r) => r.text()));
      // Finished requests give their slots back.
      expect((await chat(stack.url, key)).status).toBe(200);
    } finally {
      await stack.prisma.workspace.update({ where: { id: ws.id }, data: { maxConcurrency: null } });
    }
  });

  it("should queue past the replicas' headroom, then answer 503 with a Retry-After from the measured drain rate", async () => {
    const key = await newKey();
    // One replica of 30 slots, 31 long streams: the last waits 300 ms in the queue and is refused.
    const streams = Array.from({ length: 31 }, () => chat(stack.url, key, 60));
    const res = await Promise.all(streams);
    const refused = res.filter((r) => r.status === 503);
    expect(refused.length).toBe(1);
    expect(((await refused[0].json()) as { error: object }).error).toMatchObject({
      code: 'no_replica_available',
      message: expect.stringContaining('queue timed out after'),
    });
    const retry = Number(refused[0].headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    await Promise.all(res.filter((r) => r.status === 200).map((r) => r.text()));
  });

  it('should answer fuzzed bodies (wrong types, truncated JSON, bad UTF-8, huge) with 400 or 413 in the envelope, never a 500', async () => {
    const key = await newKey(1000);
    const post = (body: Buffer | string) =>
      fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body,
      });
    const check = async (body: Buffer | string) => {
      const r = await post(body);
      const text = await r.text();
      expect([400, 413]).toContain(r.status);
      expect(JSON.parse(text).error).toMatchObject({
        type: 'invalid_request_error',
        code: expect.any(String),
        message: expect.any(String),
      });
    };
    // Objects that are JSON but not a chat request: every field of the wrong type, or missing.
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            model: fc.oneof(fc.integer(), fc.constant(null), fc.array(fc.string())),
            messages: fc.oneof(fc.string(), fc.integer(), fc.constant([])),
            stream: fc.oneof(fc.string(), fc.integer()),
          },
          { requiredKeys: [] },
        ),
        async (body) => check(JSON.stringify(body)),
      ),
      { numRuns: 40 },
    );
    // Valid requests cut short, anywhere.
    const good = JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'héllo' }], max_tokens: 3 });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: good.length - 1 }), async (n) => check(good.slice(0, n))),
      { numRuns: 20 },
    );
    // Bytes that are not UTF-8, a top-level non-object, and a body over the limit.
    await check(Buffer.from([0x7b, 0x22, 0x6d, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]));
    await check('[1, 2, 3]');
    await check('"just a string"');
    await check(`{"model":"default","messages":[{"role":"user","content":"${'x'.repeat(17 * 1024 * 1024)}"}]}`);
  });

  it('should carry a distinct x-request-id on every /v1 response, refusals and unknown paths included', async () => {
    const key = await newKey(1000);
    const ok = await chat(stack.url, key);
    await ok.text();
    const denied = await chat(stack.url, 'sk_not_a_key');
    const unknown = await fetch(`${stack.url}/v1/nope`);
    const ids = [ok, denied, unknown].map((r) => r.headers.get('x-request-id'));
    expect([ok.status, denied.status, unknown.status]).toEqual([200, 401, 404]);
    for (const id of ids) expect(id).toMatch(/^req_[0-9a-f]{32}$/);
    expect(new Set(ids).size).toBe(3);
  });

  it('should answer what is not a JSON request in the envelope: 415 for another Content-Type, 404 for an unknown /v1 path, the key checked before the body is read', async () => {
    const key = await newKey(1000);
    const body = JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    const send = (path: string, init: { method?: string; type?: string; auth?: string; body?: string }) =>
      fetch(`${stack.url}${path}`, {
        method: init.method ?? 'POST',
        headers: { ...(init.type ? { 'content-type': init.type } : {}), authorization: `Bearer ${init.auth ?? key}` },
        body: init.body,
      });
    const form = await send('/v1/chat/completions', { type: 'application/x-www-form-urlencoded', body: 'model=default' });
    expect(form.status).toBe(415);
    expect(((await form.json()) as { error: object }).error).toMatchObject({
      type: 'invalid_request_error',
      code: 'invalid_body',
      message: expect.stringContaining('application/json'),
    });
    const unknown = await send('/v1/completions/legacy', { type: 'application/json', body });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: object }).error).toMatchObject({
      code: 'unknown_url',
      message: 'Unknown request URL: POST /v1/completions/legacy',
    });
    const wrongMethod = await send('/v1/chat/completions', { method: 'GET' });
    expect(wrongMethod.status).toBe(404);
    // A wrong key with a body past the limit: refused for the key (nothing of the body is needed for that).
    const huge = await send('/v1/chat/completions', {
      type: 'application/json',
      auth: 'sk-wrong',
      body: `{"x":"${'x'.repeat(17 * 1024 * 1024)}"}`,
    });
    expect(huge.status).toBe(401);
    expect(((await huge.json()) as { error: object }).error).toMatchObject({ code: 'invalid_api_key' });
    // A query string does not change the route, and charset parameters are JSON all the same.
    const ok = await send('/v1/chat/completions?trace=1', { type: 'application/json; charset=utf-8', body });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { object: string }).object).toBe('chat.completion');
  });

  describe('two gateway processes sharing Redis', () => {
    const procs: Array<{ kill: () => Promise<void> }> = [];
    const urls: string[] = [];
    beforeAll(async () => {
      for (let i = 0; i < 2; i++) {
        const p = await stack.spawnApi({ REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
        procs.push(p);
        urls.push(p.url);
      }
    });
    afterAll(async () => {
      await Promise.all(procs.map((p) => p.kill()));
    });

    it('should never let a key past its rate, whichever process a request reaches', async () => {
      const key = await newKey(60); // burst 6, then 1 per second
      const t0 = Date.now();
      const statuses = await Promise.all(
        Array.from({ length: 20 }, (_, i) => chat(urls[i % 2], key).then(async (r) => (await r.text(), r.status))),
      );
      const elapsedS = (Date.now() - t0) / 1000;
      const ok = statuses.filter((s) => s === 200).length;
      expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
      expect(ok).toBeGreaterThanOrEqual(6);
      expect(ok).toBeLessThanOrEqual(6 + Math.floor(elapsedS));
    });

    it('should keep a rotated key working on both processes for its grace, then refuse it with 401 saying it was rotated', async () => {
      const created = await stack.gql<{ createApiKey: { key: string; apiKey: { id: string } } }>(
        `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id } } }`,
        ws.token,
        { i: { name: 'rotating', scope: 'DEPLOYMENT', deploymentId } },
      );
      const oldKey = created.data.createApiKey.key;
      const status = async (url: string, key: string) => {
        const r = await chat(url, key);
        return { status: r.status, body: await r.text() };
      };
      for (const url of urls) expect((await status(url, oldKey)).status).toBe(200);
      const rotated = await stack.gql<{
        rotateApiKey: { key: string; apiKey: { prefix: string }; previous: { rotatedAt: string; expiresAt: string } };
      }>(
        `mutation($id: ID!) { rotateApiKey(id: $id, graceSeconds: 3) { key apiKey { prefix } previous { rotatedAt expiresAt } } }`,
        ws.token,
        { id: created.data.createApiKey.apiKey.id },
      );
      const { key: newKey2, apiKey, previous } = rotated.data.rotateApiKey;
      expect(new Date(previous.expiresAt).getTime() - new Date(previous.rotatedAt).getTime()).toBe(3000);
      // Within the grace both keys work, on both processes.
      for (const url of urls) {
        expect((await status(url, oldKey)).status).toBe(200);
        expect((await status(url, newKey2)).status).toBe(200);
      }
      // After it, the old one is refused everywhere with a message that says what happened and what to use.
      for (const url of urls) {
        const refused = await eventually(
          async () => {
            const r = await status(url, oldKey);
            return r.status === 401 && r;
          },
          10_000,
          200,
        );
        expect(JSON.parse(refused.body).error).toMatchObject({
          code: 'invalid_api_key',
          message: expect.stringMatching(
            new RegExp(`^This API key was rotated on .* use the key that replaced it \\(${apiKey.prefix}\\.\\.\\.\\)\\.$`),
          ),
        });
        expect((await status(url, newKey2)).status).toBe(200);
      }
    });

    it('should hold the workspace budget across both processes', async () => {
      await stack.prisma.workspace.update({ where: { id: ws.id }, data: { maxConcurrency: 4 } });
      const key = await newKey();
      try {
        const res = await Promise.all(Array.from({ length: 10 }, (_, i) => chat(urls[i % 2], key, 100)));
        expect(res.filter((r) => r.status === 200).length).toBe(4);
        expect(res.filter((r) => r.status === 429).length).toBe(6);
        await Promise.all(res.map((r) => r.text()));
      } finally {
        await stack.prisma.workspace.update({ where: { id: ws.id }, data: { maxConcurrency: null } });
      }
    });
  });
});
