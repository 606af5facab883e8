import { createHash } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Task } from '../domain/targets';
import { readForm } from '../common/multipart';
import { audioSeconds, solidPng, SPEECH_SAMPLE_RATE, wavHeader } from '../common/media';
import { planAnswer, textOf } from './answers';
import { batchSlowdown } from './engine';

/**
 * An OpenAI-compatible model server with a latency model, for local replicas,
 * tests and benchmarks. Endpoints: POST /v1/chat/completions (SSE or JSON),
 * POST /v1/embeddings, GET /v1/models, GET /health (200 once weights are loaded,
 * 503 before, as vLLM does), GET /livez (always 200).
 */
export interface SimulatorOptions {
  port: number;
  host: string;
  /** Name reported by /v1/models and in responses. */
  model: string;
  task: Task;
  /** Sequences decoded at once; more requests wait in the replica's own queue. */
  maxConcurrency: number;
  /** Time to first token at concurrency 1, ms. */
  ttftMs: number;
  /** Inter-token latency at concurrency 1, ms. */
  itlMs: number;
  /** Each additional running sequence slows every sequence by this fraction. */
  slowdownPerSeq: number;
  /** The simulated GPU's speed: time to first token and between tokens are divided by it (sim 1, sim-large 2). */
  speed: number;
  /** Sequences that fit the KV cache; past it every sequence slows by (running / knee)^1.5 (src/simulator/engine.ts). 0: none. */
  kneeConcurrency: number;
  /** Multiplies the time between tokens (quantization, a draft model). */
  decodeFactor: number;
  /** Multiplies the time to first token. */
  prefillFactor: number;
  /** Fraction of arithmetic questions ("What is 17 + 25?") answered wrong: a quantized model's quality cost. */
  qualityLoss: number;
  /** GPUs the model is sharded over, and GPUs the box has: more than it has refuses to start. */
  tensorParallel: number;
  gpuCount: number;
  /** Weight load when the local cache does not hold this variant (first start), ms. */
  coldStartMs: number;
  /** Weight load from the local cache ("Instant Start"), ms. */
  warmStartMs: number;
  /** Directory of the local weight cache; a marker file per weights key. */
  cacheDir: string;
  weightsKey: string;
  /** Probability that a request fails with 500 before any byte. */
  errorRate: number;
  /** Probability that a stream is cut after its first chunk. */
  cutStreamRate: number;
  /** Completion length when max_tokens is absent. */
  defaultMaxTokens: number;
  embeddingDim: number;
  /** When set, /v1/* answers 401 unless `Authorization: Bearer <apiKey>` (vLLM's --api-key); health and stats stay open. */
  apiKey: string;
}

export const SIMULATOR_DEFAULTS: SimulatorOptions = {
  port: 0,
  host: '127.0.0.1',
  model: 'sim/tiny-chat',
  task: 'CHAT',
  maxConcurrency: 30,
  ttftMs: 40,
  itlMs: 8,
  slowdownPerSeq: 0.01,
  speed: 1,
  kneeConcurrency: 0,
  decodeFactor: 1,
  prefillFactor: 1,
  qualityLoss: 0,
  tensorParallel: 1,
  gpuCount: 1,
  coldStartMs: 4000,
  warmStartMs: 600,
  cacheDir: '.data/weights',
  weightsKey: 'default',
  errorRate: 0,
  cutStreamRate: 0,
  defaultMaxTokens: 16,
  embeddingDim: 64,
  apiKey: '',
};

// 0 ms (SIM_ITL_MS=0: as fast as the process can) yields to other requests without a timer's millisecond.
const sleep = (ms: number) => new Promise<void>((r) => (ms > 0 ? setTimeout(r, ms) : setImmediate(r)));

export interface RunningSimulator {
  server: Server;
  url: string;
  port: number;
  /** Resolves when weights are loaded and /health turns 200. */
  ready: Promise<{ coldStartMs: number; cached: boolean }>;
  stats: () => { active: number; queued: number; served: number };
  close: () => Promise<void>;
}

class Semaphore {
  active = 0;
  private waiters: Array<() => void> = [];
  constructor(private readonly max: number) {}
  get queued() {
    return this.waiters.length;
  }
  async acquire(): Promise<void> {
    if (this.active < this.max) {
      this.active++;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.active--;
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null = null,
  param: string | null = null,
) {
  sendJson(res, status, { error: { message, type, param, code } });
}

async function readBody(req: IncomingMessage, limit = 8 * 1024 * 1024): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(c as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** The POST routes, the task each serves, and whether its body is multipart/form-data. */
const ROUTES = new Map<string, { task: Task; multipart?: boolean }>([
  ['/v1/chat/completions', { task: 'CHAT' }],
  ['/v1/completions', { task: 'CHAT' }],
  ['/v1/embeddings', { task: 'EMBEDDINGS' }],
  ['/v1/images/generations', { task: 'IMAGE' }],
  ['/v1/audio/speech', { task: 'AUDIO' }],
  ['/v1/audio/transcriptions', { task: 'AUDIO', multipart: true }],
]);

/** A multipart body as one object: its fields, and each file as { data, filename, mimeType }. */
async function readMultipart(req: IncomingMessage): Promise<Record<string, unknown>> {
  const form = await readForm(req.headers, req, 25 * 1024 * 1024);
  return { ...form.fields, ...form.files };
}

/** Deterministic pseudo-random stream from a seed string. */
function seeded(seed: string) {
  let h = createHash('sha256').update(seed).digest();
  let i = 0;
  return () => {
    if (i + 4 > h.length) {
      h = createHash('sha256').update(h).digest();
      i = 0;
    }
    const v = h.readUInt32BE(i) / 0x100000000;
    i += 4;
    return v;
  };
}

/** A request's stream: its prompt's, and its `seed`'s when it has one (an option passed through changes the answer). */
const seededFor = (prompt: string, seed: unknown) =>
  seeded(seed === undefined || seed === null ? prompt : `${prompt}\0seed:${String(seed)}`);

export function embed(text: string, dim: number): number[] {
  const rnd = seeded(`emb:${text}`);
  const v = Array.from({ length: dim }, () => rnd() * 2 - 1);
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  return v.map((x) => x / norm);
}

function countTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

export async function startSimulator(partial: Partial<SimulatorOptions> = {}): Promise<RunningSimulator> {
  const o: SimulatorOptions = { ...SIMULATOR_DEFAULTS, ...partial };
  if (o.tensorParallel > o.gpuCount) {
    throw new Error(`tensor parallel size ${o.tensorParallel} is more than the ${o.gpuCount} GPU(s) this box has`);
  }
  const sem = new Semaphore(o.maxConcurrency);
  let loaded = false;
  let served = 0;
  const sockets = new Set<import('node:net').Socket>();

  const slowdown = () => batchSlowdown(sem.active, o.slowdownPerSeq, o.kneeConcurrency) / o.speed;
  const ttftMs = o.ttftMs * o.prefillFactor;
  const itlMs = o.itlMs * o.decodeFactor;

  async function chat(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) {
    const messages = body.messages;
    if (!Array.isArray(messages) || messages.length === 0) {
      return sendError(res, 400, "'messages' must be a non-empty array", 'invalid_request_error', null, 'messages');
    }
    const prompt = messages.map((m) => (typeof m?.content === 'string' ? m.content : JSON.stringify(m?.content ?? ''))).join('\n');
    const maxTokens =
      typeof body.max_tokens === 'number'
        ? body.max_tokens
        : typeof body.max_completion_tokens === 'number'
          ? body.max_completion_tokens
          : o.defaultMaxTokens;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      return sendError(res, 400, "'max_tokens' must be a positive integer", 'invalid_request_error', null, 'max_tokens');
    }
    const stream = body.stream === true;
    const includeUsage = stream && (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    const id = `chatcmpl-${createHash('sha1').update(`${Date.now()}${Math.random()}`).digest('hex').slice(0, 24)}`;
    const created = Math.floor(Date.now() / 1000);
    const rnd = seededFor(prompt, body.seed);
    const plan = planAnswer(body, maxTokens, rnd, (i) => `call_${id.slice(9, 21)}${i}`, o.qualityLoss);
    const completionTokens = Math.max(1, plan.pieces.length + plan.toolCalls.reduce((n, c) => n + c.argumentPieces.length, 0));
    const usage = {
      prompt_tokens: countTokens(prompt),
      completion_tokens: completionTokens,
      total_tokens: countTokens(prompt) + completionTokens,
    };
    let closed = false;
    res.on('close', () => {
      closed = true;
    });

    await sem.acquire();
    try {
      if (Math.random() < o.errorRate) {
        return sendError(res, 500, 'injected fault', 'server_error', 'injected_fault');
      }
      await sleep(ttftMs * slowdown());
      if (closed) return;
      if (stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        const chunk = (delta: Record<string, unknown>, finish: string | null) =>
          `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: o.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        res.write(chunk({ role: 'assistant', content: '' }, null));
        const cut = Math.random() < o.cutStreamRate;
        // One delta per token: content pieces, then each tool call (its id and name first, then its arguments).
        const deltas: Array<Record<string, unknown>> = [
          ...plan.pieces.map((content) => ({ content })),
          ...plan.toolCalls.flatMap((c, index) =>
            c.argumentPieces.map((args, j) => ({
              tool_calls: [
                j === 0
                  ? { index, id: c.id, type: 'function', function: { name: c.name, arguments: args } }
                  : { index, function: { arguments: args } },
              ],
            })),
          ),
        ];
        for (let i = 0; i < deltas.length; i++) {
          if (closed) return;
          res.write(chunk(deltas[i], null));
          // Cut after the first token reached the client: a replica dying mid-stream.
          if (cut && i === 1) {
            res.socket?.destroy();
            return;
          }
          if (i < deltas.length - 1) await sleep(itlMs * slowdown());
        }
        res.write(chunk({}, plan.finish));
        if (includeUsage) {
          res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: o.model, choices: [], usage })}\n\n`);
        }
        res.end('data: [DONE]\n\n');
      } else {
        await sleep(itlMs * slowdown() * Math.max(0, completionTokens - 1));
        if (closed) return;
        const message: Record<string, unknown> = { role: 'assistant', content: plan.toolCalls.length ? null : textOf(plan) };
        if (plan.toolCalls.length) {
          message.tool_calls = plan.toolCalls.map((c) => ({
            id: c.id,
            type: 'function',
            function: { name: c.name, arguments: c.argumentPieces.join('') },
          }));
        }
        sendJson(res, 200, {
          id,
          object: 'chat.completion',
          created,
          model: o.model,
          choices: [{ index: 0, message, finish_reason: plan.finish, logprobs: null }],
          usage,
        });
      }
      served++;
    } finally {
      sem.release();
    }
  }

  /** Legacy text completions (/v1/completions): words after the prompt, plain or streamed. */
  async function completions(res: ServerResponse, body: Record<string, unknown>) {
    const prompt = Array.isArray(body.prompt) ? body.prompt.map(String).join('\n') : body.prompt;
    if (typeof prompt !== 'string') {
      return sendError(res, 400, "'prompt' must be a string or an array of strings", 'invalid_request_error', null, 'prompt');
    }
    const maxTokens = typeof body.max_tokens === 'number' ? body.max_tokens : o.defaultMaxTokens;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      return sendError(res, 400, "'max_tokens' must be a positive integer", 'invalid_request_error', null, 'max_tokens');
    }
    const stream = body.stream === true;
    const includeUsage = stream && (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    const id = `cmpl-${createHash('sha1').update(`${Date.now()}${Math.random()}`).digest('hex').slice(0, 24)}`;
    const created = Math.floor(Date.now() / 1000);
    const rnd = seededFor(`text:${prompt}`, body.seed);
    const pieces = planAnswer({}, maxTokens, rnd, () => '').pieces.map((p, i) => (i === 0 ? ` ${p}` : p));
    const usage = { prompt_tokens: countTokens(prompt), completion_tokens: maxTokens, total_tokens: countTokens(prompt) + maxTokens };
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    await sem.acquire();
    try {
      await sleep(ttftMs * slowdown());
      if (closed) return;
      const choice = (text: string, finish: string | null) => ({ index: 0, text, logprobs: null, finish_reason: finish });
      if (stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        const event = (payload: Record<string, unknown>) =>
          `data: ${JSON.stringify({ id, object: 'text_completion', created, model: o.model, ...payload })}\n\n`;
        for (let i = 0; i < pieces.length; i++) {
          if (closed) return;
          res.write(event({ choices: [choice(pieces[i], i === pieces.length - 1 ? 'length' : null)] }));
          if (i < pieces.length - 1) await sleep(itlMs * slowdown());
        }
        if (includeUsage) res.write(event({ choices: [], usage }));
        res.end('data: [DONE]\n\n');
      } else {
        await sleep(itlMs * slowdown() * Math.max(0, maxTokens - 1));
        if (closed) return;
        sendJson(res, 200, { id, object: 'text_completion', created, model: o.model, choices: [choice(pieces.join(''), 'length')], usage });
      }
      served++;
    } finally {
      sem.release();
    }
  }

  async function embeddings(res: ServerResponse, body: Record<string, unknown>) {
    const input = body.input;
    const inputs =
      typeof input === 'string' ? [input] : Array.isArray(input) && input.every((x) => typeof x === 'string') ? (input as string[]) : null;
    if (!inputs || inputs.length === 0) {
      return sendError(res, 400, "'input' must be a string or a non-empty array of strings", 'invalid_request_error', null, 'input');
    }
    const format = body.encoding_format ?? 'float';
    if (format !== 'float' && format !== 'base64') {
      return sendError(res, 400, "'encoding_format' must be 'float' or 'base64'", 'invalid_request_error', null, 'encoding_format');
    }
    await sem.acquire();
    try {
      await sleep(ttftMs * slowdown());
      const tokens = inputs.reduce((s, t) => s + countTokens(t), 0);
      // base64 is the little-endian float32 array, as OpenAI and vLLM send it.
      const encode = (v: number[]) => (format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v);
      sendJson(res, 200, {
        object: 'list',
        model: o.model,
        data: inputs.map((t, index) => ({ object: 'embedding', index, embedding: encode(embed(t, o.embeddingDim)) })),
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      });
      served++;
    } finally {
      sem.release();
    }
  }

  /** Images of one colour per prompt (a PNG of the asked size, base64), after a short "diffusion". */
  async function images(res: ServerResponse, body: Record<string, unknown>) {
    if (typeof body.prompt !== 'string' || !body.prompt)
      return sendError(res, 400, "'prompt' must be a non-empty string", 'invalid_request_error', null, 'prompt');
    const n = body.n ?? 1;
    if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > 10) {
      return sendError(res, 400, "'n' must be an integer from 1 to 10", 'invalid_request_error', null, 'n');
    }
    const size = (body.size ?? '256x256') as string;
    const m = /^(\d{2,4})x(\d{2,4})$/.exec(size);
    if (!m || Number(m[1]) > 2048 || Number(m[2]) > 2048) {
      return sendError(res, 400, "'size' must be WIDTHxHEIGHT, each at most 2048", 'invalid_request_error', null, 'size');
    }
    if (body.response_format !== undefined && body.response_format !== 'b64_json') {
      return sendError(
        res,
        400,
        "'response_format': only b64_json (images are not stored)",
        'invalid_request_error',
        null,
        'response_format',
      );
    }
    await sem.acquire();
    try {
      // Twenty "steps" of the decode time each.
      await sleep((ttftMs + 20 * itlMs) * slowdown());
      const data = Array.from({ length: n as number }, (_, i) => {
        const rnd = seeded(`img:${body.prompt as string}:${i}`);
        const rgb: [number, number, number] = [rnd() * 256, rnd() * 256, rnd() * 256].map(Math.floor) as [number, number, number];
        return { b64_json: solidPng(Number(m[1]), Number(m[2]), rgb).toString('base64'), revised_prompt: body.prompt };
      });
      sendJson(res, 200, { created: Math.floor(Date.now() / 1000), data });
      served++;
    } finally {
      sem.release();
    }
  }

  /** Speech: a tone of 1 s per 15 characters, streamed as WAV (or raw 24 kHz PCM) while it is "generated". */
  async function speech(res: ServerResponse, body: Record<string, unknown>) {
    if (typeof body.input !== 'string' || !body.input || body.input.length > 4096) {
      return sendError(res, 400, "'input' must be a string of 1 to 4096 characters", 'invalid_request_error', null, 'input');
    }
    if (typeof body.voice !== 'string' || !body.voice)
      return sendError(res, 400, "'voice' must be a string", 'invalid_request_error', null, 'voice');
    const format = body.response_format ?? 'wav';
    if (format !== 'wav' && format !== 'pcm') {
      return sendError(res, 400, "'response_format' must be wav or pcm on this engine", 'invalid_request_error', null, 'response_format');
    }
    const seconds = Math.max(0.2, body.input.length / 15);
    const samples = Math.round(seconds * SPEECH_SAMPLE_RATE);
    await sem.acquire();
    try {
      await sleep(ttftMs * slowdown());
      res.writeHead(200, { 'content-type': format === 'wav' ? 'audio/wav' : 'audio/pcm' });
      if (format === 'wav') res.write(wavHeader(samples * 2));
      const hz = 200 + Math.floor(seeded(`voice:${body.voice}`)() * 400);
      // Ten chunks, one decode step apart.
      const per = Math.ceil(samples / 10);
      for (let start = 0; start < samples; start += per) {
        const n = Math.min(per, samples - start);
        const pcm = Buffer.alloc(n * 2);
        for (let i = 0; i < n; i++)
          pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * hz * (start + i)) / SPEECH_SAMPLE_RATE)), i * 2);
        res.write(pcm);
        await sleep(itlMs * slowdown());
      }
      res.end();
      served++;
    } finally {
      sem.release();
    }
  }

  /** Transcriptions: words seeded by the file, about 2.5 a second of its audio, with the duration as usage. */
  async function transcriptions(res: ServerResponse, body: Record<string, unknown>) {
    const file = body.file as { data: Buffer; filename: string } | undefined;
    if (!file?.data?.length) return sendError(res, 400, "'file' must be an audio file", 'invalid_request_error', null, 'file');
    const format = body.response_format ?? 'json';
    if (!['json', 'text', 'verbose_json'].includes(format as string)) {
      return sendError(res, 400, "'response_format' must be json, text or verbose_json", 'invalid_request_error', null, 'response_format');
    }
    const duration = audioSeconds(file.data.subarray(0, 44), file.data.length);
    const rnd = seeded(`asr:${createHash('sha256').update(file.data).digest('hex')}`);
    const text = planAnswer({}, Math.max(1, Math.round(duration * 2.5)), rnd, () => '').pieces.join('');
    await sem.acquire();
    try {
      await sleep((ttftMs + itlMs * Math.ceil(duration)) * slowdown());
      const usage = { type: 'duration', seconds: Math.ceil(duration) };
      if (format === 'text') {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(text);
      } else if (format === 'verbose_json') {
        sendJson(res, 200, { task: 'transcribe', language: body.language ?? 'english', duration, text, segments: [], usage });
      } else sendJson(res, 200, { text, usage });
      served++;
    } finally {
      sem.release();
    }
  }

  type Handler = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => Promise<void>;
  const handlers: Record<string, Handler> = {
    '/v1/chat/completions': chat,
    '/v1/completions': (_req, res, b) => completions(res, b),
    '/v1/embeddings': (_req, res, b) => embeddings(res, b),
    '/v1/images/generations': (_req, res, b) => images(res, b),
    '/v1/audio/speech': (_req, res, b) => speech(res, b),
    '/v1/audio/transcriptions': (_req, res, b) => transcriptions(res, b),
  };

  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/livez') return sendJson(res, 200, { ok: true });
    if (req.method === 'GET' && url === '/health') {
      return loaded ? sendJson(res, 200, { ok: true }) : sendJson(res, 503, { ok: false, loading: true });
    }
    if (req.method === 'GET' && url === '/stats') return sendJson(res, 200, { active: sem.active, queued: sem.queued, served });
    if (o.apiKey && url.startsWith('/v1/') && req.headers.authorization !== `Bearer ${o.apiKey}`) {
      return sendError(res, 401, 'invalid or missing API key', 'invalid_request_error', 'invalid_api_key');
    }
    if (!loaded) return sendError(res, 503, 'model is loading', 'server_error', 'model_loading');
    if (req.method === 'GET' && url === '/v1/models') {
      return sendJson(res, 200, { object: 'list', data: [{ id: o.model, object: 'model', created: 0, owned_by: 'simulator' }] });
    }
    const route = req.method === 'POST' ? ROUTES.get(url) : undefined;
    if (route) {
      if (o.task !== route.task) {
        return sendError(res, 400, `model ${o.model} (${o.task}) does not serve ${url}`, 'invalid_request_error', 'unsupported_task');
      }
      const body = route.multipart ? readMultipart(req) : readBody(req);
      body
        .then((b) => {
          if (typeof b !== 'object' || b === null || Array.isArray(b)) {
            return sendError(res, 400, 'request body must be a JSON object', 'invalid_request_error');
          }
          return handlers[url](req, res, b as Record<string, unknown>);
        })
        .catch((err: Error) => {
          if (!res.headersSent) sendError(res, 400, `invalid body: ${err.message}`, 'invalid_request_error');
        });
      return;
    }
    sendError(res, 404, `no route ${req.method} ${url}`, 'invalid_request_error', 'not_found');
  });
  server.keepAliveTimeout = 65_000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  // Weight loading: long the first time this variant's weights are seen on this
  // machine, short when the local cache already holds them ("Instant Start").
  const ready = (async () => {
    const marker = join(o.cacheDir, `${o.weightsKey.replace(/[^A-Za-z0-9._-]/g, '_')}.weights`);
    const cached = await stat(marker).then(
      () => true,
      () => false,
    );
    const ms = cached ? o.warmStartMs : o.coldStartMs;
    await sleep(ms);
    await mkdir(o.cacheDir, { recursive: true });
    await writeFile(marker, `${new Date().toISOString()}\n`);
    loaded = true;
    return { coldStartMs: ms, cached };
  })();

  return {
    server,
    port,
    url: `http://${o.host}:${port}`,
    ready,
    stats: () => ({ active: sem.active, queued: sem.queued, served }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
