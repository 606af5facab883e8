import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { embed, RunningSimulator, startSimulator } from './server';

const sims: RunningSimulator[] = [];
async function sim(opts: Parameters<typeof startSimulator>[0]) {
  const s = await startSimulator({ coldStartMs: 0, warmStartMs: 0, ttftMs: 1, itlMs: 1, ...opts });
  sims.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function until(cond: () => boolean) {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

describe('replica simulator', () => {
  it('should answer 503 on /health while weights load, then 200', async () => {
    const s = await sim({ coldStartMs: 60_000, cacheDir: mkdtempSync(join(tmpdir(), 'sim-')) });
    expect((await fetch(`${s.url}/health`)).status).toBe(503);
    expect((await fetch(`${s.url}/livez`)).status).toBe(200);
    const chat = await post(`${s.url}/v1/chat/completions`, { model: 'x', messages: [{ role: 'user', content: 'hi' }] });
    expect(chat.status).toBe(503);
    expect(((await chat.json()) as { error: { code: string } }).error.code).toBe('model_loading');
  });

  it('should load weights cold the first time and warm from the local cache after', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'sim-'));
    const first = await sim({ cacheDir, weightsKey: 'pl_1.var_1', coldStartMs: 30, warmStartMs: 5 });
    expect(await first.ready).toEqual({ coldStartMs: 30, cached: false });
    expect((await fetch(`${first.url}/health`)).status).toBe(200);
    const second = await sim({ cacheDir, weightsKey: 'pl_1.var_1', coldStartMs: 30, warmStartMs: 5 });
    expect(await second.ready).toEqual({ coldStartMs: 5, cached: true });
    // The cache is per pipeline variant: another pipeline pays the full load.
    const other = await sim({ cacheDir, weightsKey: 'pl_2.var_1', coldStartMs: 30, warmStartMs: 5 });
    expect((await other.ready).cached).toBe(false);
  });

  it('should stream max_tokens content chunks, then usage, then [DONE]', async () => {
    const s = await sim({});
    await s.ready;
    const res = await post(`${s.url}/v1/chat/completions`, {
      model: 'x',
      stream: true,
      max_tokens: 4,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hello' }],
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = (await res.text())
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks.filter((c) => c.choices[0]?.delta?.content).length).toBe(4);
    expect(chunks.at(-1).usage).toMatchObject({ completion_tokens: 4 });
  });

  it('should give the same completion for the same prompt', async () => {
    const s = await sim({});
    await s.ready;
    const ask = async () =>
      (
        (await (await post(`${s.url}/v1/chat/completions`, { model: 'x', messages: [{ role: 'user', content: 'same' }] })).json()) as {
          choices: Array<{ message: { content: string } }>;
        }
      ).choices[0].message.content;
    expect(await ask()).toBe(await ask());
  });

  it('should fail with a 500 envelope at errorRate 1 and cut streams at cutStreamRate 1', async () => {
    const failing = await sim({ errorRate: 1 });
    await failing.ready;
    const r = await post(`${failing.url}/v1/chat/completions`, { model: 'x', messages: [{ role: 'user', content: 'x' }] });
    expect(r.status).toBe(500);
    expect(await r.json()).toEqual({ error: { message: 'injected fault', type: 'server_error', param: null, code: 'injected_fault' } });

    const cutting = await sim({ cutStreamRate: 1 });
    await cutting.ready;
    const res = await post(`${cutting.url}/v1/chat/completions`, {
      model: 'x',
      stream: true,
      max_tokens: 10,
      messages: [{ role: 'user', content: 'x' }],
    });
    await expect(res.text()).rejects.toThrow();
  });

  it('should queue requests beyond maxConcurrency inside the replica', async () => {
    const s = await sim({ maxConcurrency: 1, itlMs: 20 });
    await s.ready;
    const a = post(`${s.url}/v1/chat/completions`, { model: 'x', max_tokens: 20, messages: [{ role: 'user', content: 'a' }] });
    await until(() => s.stats().active === 1);
    const b = post(`${s.url}/v1/chat/completions`, { model: 'x', max_tokens: 2, messages: [{ role: 'user', content: 'b' }] });
    await until(() => s.stats().queued === 1);
    expect(s.stats()).toMatchObject({ active: 1, queued: 1 });
    expect((await a).status).toBe(200);
    expect((await b).status).toBe(200);
    expect(s.stats()).toEqual({ active: 0, queued: 0, served: 2 });
  });

  it('should return deterministic unit embeddings, as floats or base64 float32', async () => {
    const s = await sim({ task: 'EMBEDDINGS', embeddingDim: 8 });
    await s.ready;
    const floats = (await (await post(`${s.url}/v1/embeddings`, { model: 'x', input: ['a', 'b'] })).json()) as {
      data: Array<{ embedding: number[] }>;
    };
    expect(floats.data[0].embedding).toEqual(embed('a', 8));
    const b64 = (await (await post(`${s.url}/v1/embeddings`, { model: 'x', input: 'a', encoding_format: 'base64' })).json()) as {
      data: Array<{ embedding: string }>;
    };
    const buf = Buffer.from(b64.data[0].embedding, 'base64');
    const decoded = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4));
    decoded.forEach((x, i) => expect(x).toBeCloseTo(embed('a', 8)[i], 6));
    const bad = await post(`${s.url}/v1/embeddings`, { model: 'x', input: 3 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('input');
  });
});
