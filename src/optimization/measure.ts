// The load an optimization run puts on one live replica: a concurrency level (c streams, each sending its next
// request the moment the last one ends, as vLLM's benchmark_serving does with --max-concurrency c), and a quality
// eval. It speaks the OpenAI API, so it measures the simulator and vLLM on a real GPU alike.
import { request } from 'undici';
import { percentileOfSorted } from '../common/stats';
import type { SweepPoint } from '../domain/optimization';
import type { Task } from '../domain/targets';

export interface LevelLoad {
  /** Base URL of the replica (no /v1). */
  address: string;
  model: string;
  task: Task;
  authorization: string | null;
  concurrency: number;
  /** How long the streams keep sending; requests in flight at the end still finish and count. */
  seconds: number;
  promptTokens: number;
  outputTokens: number;
  /** Called about once a second while the level runs (the activity's heartbeat). */
  onProgress?: (done: number) => void;
}

interface Sample {
  ok: boolean;
  latencyMs: number;
  ttftMs: number;
  itlMs: number | null;
  tokens: number;
  endedAt: number;
}

const WORDS = 'the quick model answers each prompt with tokens from its cache while the batch runs on'.split(' ');

/** A prompt of about `tokens` tokens (four characters each), different per stream and request so no cache serves it. */
export function promptOf(tokens: number, salt: number): string {
  const words: string[] = [`#${salt}`];
  let chars = words[0].length;
  for (let i = 0; chars < tokens * 4; i++) {
    const w = WORDS[(i * 7 + salt) % WORDS.length];
    words.push(w);
    chars += w.length + 1;
  }
  return words.join(' ');
}

const now = () => performance.now();

/** One streamed chat completion: time to first token, time between tokens, tokens, or a failure. */
async function chatOnce(l: LevelLoad, salt: number): Promise<Sample> {
  const t0 = now();
  let first = 0;
  let last = 0;
  let chunks = 0;
  let usageTokens: number | null = null;
  try {
    const res = await request(`${l.address}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(l.authorization ? { authorization: l.authorization } : {}) },
      body: JSON.stringify({
        model: l.model,
        messages: [{ role: 'user', content: promptOf(l.promptTokens, salt) }],
        max_tokens: l.outputTokens,
        // vLLM: decode exactly max_tokens, so every variant is measured on the same output length.
        min_tokens: l.outputTokens,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return { ok: false, latencyMs: now() - t0, ttftMs: 0, itlMs: null, tokens: 0, endedAt: now() };
    }
    let buf = '';
    let done = false;
    for await (const piece of res.body) {
      buf += (piece as Buffer).toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const j = JSON.parse(data) as { choices?: Array<{ delta?: { content?: string } }>; usage?: { completion_tokens?: number } };
        if (j.usage?.completion_tokens != null) usageTokens = j.usage.completion_tokens;
        if (j.choices?.[0]?.delta?.content) {
          const t = now();
          if (chunks === 0) first = t;
          last = t;
          chunks++;
        }
      }
    }
    const end = now();
    if (!done || chunks === 0) return { ok: false, latencyMs: end - t0, ttftMs: 0, itlMs: null, tokens: 0, endedAt: end };
    const tokens = usageTokens ?? chunks;
    return {
      ok: true,
      latencyMs: end - t0,
      ttftMs: first - t0,
      itlMs: tokens > 1 ? (last - first) / (tokens - 1) : null,
      tokens,
      endedAt: end,
    };
  } catch {
    return { ok: false, latencyMs: now() - t0, ttftMs: 0, itlMs: null, tokens: 0, endedAt: now() };
  }
}

/** One embeddings request of about promptTokens tokens: latency only (time to first token is the whole answer). */
async function embedOnce(l: LevelLoad, salt: number): Promise<Sample> {
  const t0 = now();
  try {
    const res = await request(`${l.address}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(l.authorization ? { authorization: l.authorization } : {}) },
      body: JSON.stringify({ model: l.model, input: promptOf(l.promptTokens, salt) }),
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
    const body = (await res.body.json().catch(() => null)) as { usage?: { prompt_tokens?: number } } | null;
    const end = now();
    const ok = res.statusCode === 200 && body !== null;
    return {
      ok,
      latencyMs: end - t0,
      ttftMs: end - t0,
      itlMs: null,
      tokens: ok ? (body?.usage?.prompt_tokens ?? l.promptTokens) : 0,
      endedAt: end,
    };
  } catch {
    return { ok: false, latencyMs: now() - t0, ttftMs: 0, itlMs: null, tokens: 0, endedAt: now() };
  }
}

/** Runs one concurrency level and sums it up. */
export async function measureLevel(l: LevelLoad): Promise<SweepPoint> {
  const once = l.task === 'EMBEDDINGS' ? embedOnce : chatOnce;
  const start = now();
  const stopAt = start + l.seconds * 1000;
  const samples: Sample[] = [];
  const tick = l.onProgress ? setInterval(() => l.onProgress?.(samples.length), 1000) : null;
  let salt = Math.floor(Math.random() * 1e6);
  try {
    await Promise.all(
      Array.from({ length: l.concurrency }, async () => {
        while (now() < stopAt) samples.push(await once(l, salt++));
      }),
    );
  } finally {
    if (tick) clearInterval(tick);
  }
  const ok = samples.filter((s) => s.ok);
  const sorted = (xs: number[]) => xs.sort((a, b) => a - b);
  const ttft = sorted(ok.map((s) => s.ttftMs));
  const itl = sorted(ok.flatMap((s) => (s.itlMs === null ? [] : [s.itlMs])));
  const latency = sorted(ok.map((s) => s.latencyMs));
  const elapsed = Math.max(...samples.map((s) => s.endedAt), start + 1) - start;
  return {
    concurrency: l.concurrency,
    requests: samples.length,
    errors: samples.length - ok.length,
    throughputTps: (ok.reduce((n, s) => n + s.tokens, 0) * 1000) / elapsed,
    ttftP50Ms: percentileOfSorted(ttft, 50),
    ttftP95Ms: percentileOfSorted(ttft, 95),
    itlP50Ms: percentileOfSorted(itl, 50),
    itlP95Ms: percentileOfSorted(itl, 95),
    latencyP50Ms: percentileOfSorted(latency, 50),
    latencyP95Ms: percentileOfSorted(latency, 95),
  };
}

/** The quality eval: arithmetic with one right answer each, the same questions every run. */
export function evalQuestions(n: number): Array<{ question: string; answer: string }> {
  return Array.from({ length: n }, (_, i) => {
    const a = 11 + ((i * 37) % 89);
    const b = 7 + ((i * 53) % 83);
    return { question: `What is ${a} + ${b}? Answer with the number only.`, answer: String(a + b) };
  });
}

/** Fraction of the eval a replica answers right (the first number in its answer, compared exactly); a few at a time. */
export async function measureQuality(
  l: Pick<LevelLoad, 'address' | 'model' | 'authorization'>,
  questions: number,
  parallel = 4,
): Promise<number> {
  const qs = evalQuestions(questions);
  let right = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, qs.length) }, async () => {
      while (next < qs.length) {
        const q = qs[next++];
        try {
          const res = await request(`${l.address}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...(l.authorization ? { authorization: l.authorization } : {}) },
            body: JSON.stringify({ model: l.model, messages: [{ role: 'user', content: q.question }], max_tokens: 8, temperature: 0 }),
            headersTimeout: 120_000,
            bodyTimeout: 120_000,
          });
          const j = (await res.body.json().catch(() => null)) as { choices?: Array<{ message?: { content?: string } }> } | null;
          const said = /-?\d+/.exec(j?.choices?.[0]?.message?.content ?? '')?.[0];
          if (res.statusCode === 200 && said === q.answer) right++;
        } catch {
          /* a failed request is a wrong answer */
        }
      }
    }),
  );
  return qs.length ? right / qs.length : 0;
}
