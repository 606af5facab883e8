// The Responses API (/v1/responses) as an adapter over chat completions: the request becomes a chat request (what
// has no chat equivalent is refused with a 400 naming the field), and the replica's chat answer becomes a Response,
// plain or as the Responses event stream. The replica only ever sees /v1/chat/completions.
import { randomBytes } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { OpenAIError, refused } from './errors';
import type { RequestBody } from './requests';
import type { BodyTap, Usage } from './usage-tap';

const bad = (param: string, message: string): OpenAIError => ({
  ok: false,
  status: 400,
  type: 'invalid_request_error',
  code: 'unsupported_parameter',
  param,
  message,
});

const invalid = (param: string, message: string): OpenAIError => ({
  ok: false,
  status: 400,
  type: 'invalid_request_error',
  code: 'invalid_body',
  param,
  message,
});

/** Top-level fields accepted and not sent on: this gateway keeps no responses and has one service tier. */
const IGNORED = new Set(['store', 'metadata', 'service_tier', 'safety_identifier', 'prompt_cache_key', 'stream_options', 'user']);
/** Responses features with no chat equivalent, and why. */
const REFUSED: Record<string, string> = {
  previous_response_id: 'responses are not stored here: send the whole conversation in `input`',
  conversation: 'conversations are not stored here: send the whole conversation in `input`',
  background: 'background responses are not supported: stream instead',
  prompt: 'prompt templates are not supported: send `instructions` and `input`',
  include: 'extra output (`include`) is not supported',
  max_tool_calls: '`max_tool_calls` has no chat equivalent',
  top_logprobs: '`top_logprobs` is not supported on /v1/responses; use /v1/chat/completions',
};
const MAPPED = new Set([
  'model',
  'input',
  'instructions',
  'stream',
  'max_output_tokens',
  'temperature',
  'top_p',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'text',
  'reasoning',
  'truncation',
  'seed',
]);

/** What the Response echoes of its request. */
export interface ResponseRequest {
  model: string;
  stream: boolean;
  echo: Record<string, unknown>;
}

type Json = Record<string, unknown>;
type ChatMessage = Json & { role: string };

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** One content part of an input message, as chat content. */
function part(p: unknown, at: string): Json | OpenAIError {
  if (typeof p === 'string') return { type: 'text', text: p };
  if (!isObject(p)) return invalid(at, `'${at}' must be an object`);
  if (p.type === 'input_text' || p.type === 'output_text') {
    if (typeof p.text !== 'string') return invalid(`${at}.text`, `'${at}.text' must be a string`);
    return { type: 'text', text: p.text };
  }
  if (p.type === 'input_image') {
    if (typeof p.image_url !== 'string')
      return bad(`${at}.image_url`, `'${at}': only images by URL (image_url) are supported, not file ids`);
    const image: Json = { url: p.image_url };
    if (p.detail) image.detail = p.detail;
    return { type: 'image_url', image_url: image };
  }
  return bad(`${at}.type`, `'${at}.type' ${JSON.stringify(p.type)} is not supported: use input_text or input_image`);
}

/** The `input` items as chat messages. */
function messagesOf(input: unknown): ChatMessage[] | OpenAIError {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  if (!Array.isArray(input) || input.length === 0) {
    return invalid('input', "'input' must be a string or a non-empty array of input items");
  }
  const out: ChatMessage[] = [];
  for (let i = 0; i < input.length; i++) {
    const item = input[i] as unknown;
    const at = `input[${i}]`;
    if (!isObject(item)) return invalid(at, `'${at}' must be an object`);
    const type = item.type ?? 'message';
    if (type === 'message') {
      const role = item.role === 'developer' ? 'system' : item.role;
      if (role !== 'user' && role !== 'assistant' && role !== 'system') {
        return invalid(`${at}.role`, `'${at}.role' must be user, assistant, system or developer`);
      }
      let content: unknown;
      if (typeof item.content === 'string') content = item.content;
      else if (Array.isArray(item.content)) {
        const parts: Json[] = [];
        for (let j = 0; j < item.content.length; j++) {
          const p = part(item.content[j], `${at}.content[${j}]`);
          if (refused(p)) return p;
          parts.push(p);
        }
        // Text-only history as one string: what every chat engine takes.
        content = parts.every((p) => p.type === 'text') ? parts.map((p) => p.text).join('') : parts;
      } else return invalid(`${at}.content`, `'${at}.content' must be a string or an array of content parts`);
      out.push({ role, content });
    } else if (type === 'function_call') {
      if (typeof item.call_id !== 'string' || typeof item.name !== 'string' || typeof item.arguments !== 'string') {
        return invalid(at, `'${at}': a function_call needs call_id, name and arguments (strings)`);
      }
      const call = { id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } };
      const last = out.at(-1);
      // Consecutive calls are one assistant turn.
      if (last?.role === 'assistant' && Array.isArray(last.tool_calls)) (last.tool_calls as Json[]).push(call);
      else out.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (type === 'function_call_output') {
      if (typeof item.call_id !== 'string') return invalid(`${at}.call_id`, `'${at}.call_id' must be a string`);
      const output = typeof item.output === 'string' ? item.output : JSON.stringify(item.output ?? '');
      out.push({ role: 'tool', tool_call_id: item.call_id, content: output });
    } else {
      return bad(`${at}.type`, `'${at}.type' ${JSON.stringify(type)} is not supported: use message, function_call or function_call_output`);
    }
  }
  return out;
}

/**
 * A /v1/responses body as the chat request a replica serves, with what the Response echoes; or the 400 naming the
 * first field that cannot be mapped.
 */
export function responsesToChat(json: unknown): { chat: RequestBody; request: ResponseRequest } | OpenAIError {
  if (!isObject(json)) return invalid('', 'request body must be a JSON object');
  for (const k of Object.keys(json)) {
    if (REFUSED[k] !== undefined && json[k] !== null && json[k] !== false && !(Array.isArray(json[k]) && !(json[k] as []).length)) {
      return bad(k, `'${k}': ${REFUSED[k]}`);
    }
    if (!MAPPED.has(k) && !IGNORED.has(k) && REFUSED[k] === undefined) return bad(k, `'${k}' is not supported on /v1/responses`);
  }
  if (typeof json.model !== 'string' || !json.model) return invalid('model', "'model' is required and must be a string");
  if (json.stream !== undefined && json.stream !== null && typeof json.stream !== 'boolean') {
    return invalid('stream', "'stream' must be a boolean");
  }
  if (json.instructions !== undefined && json.instructions !== null && typeof json.instructions !== 'string') {
    return invalid('instructions', "'instructions' must be a string");
  }
  const max = json.max_output_tokens;
  if (max !== undefined && max !== null && !(typeof max === 'number' && Number.isInteger(max) && max > 0)) {
    return invalid('max_output_tokens', "'max_output_tokens' must be a positive integer");
  }
  if (json.truncation !== undefined && json.truncation !== null && json.truncation !== 'disabled') {
    return bad('truncation', "'truncation': only 'disabled' is supported (the replica refuses what does not fit)");
  }
  const messages = messagesOf(json.input);
  if (refused(messages)) return messages;
  if (typeof json.instructions === 'string') messages.unshift({ role: 'system', content: json.instructions });

  const chat: RequestBody = { model: json.model, messages, stream: json.stream === true };
  if (typeof max === 'number') chat.max_tokens = max;
  for (const k of ['temperature', 'top_p', 'parallel_tool_calls', 'seed'] as const)
    if (json[k] !== undefined && json[k] !== null) chat[k] = json[k];

  if (json.tools !== undefined && json.tools !== null) {
    if (!Array.isArray(json.tools)) return invalid('tools', "'tools' must be an array");
    const tools: Json[] = [];
    for (let i = 0; i < json.tools.length; i++) {
      const t = json.tools[i] as unknown;
      if (!isObject(t) || t.type !== 'function') {
        return bad(
          `tools[${i}].type`,
          `'tools[${i}].type' ${JSON.stringify(isObject(t) ? t.type : t)} is not supported: only function tools`,
        );
      }
      if (typeof t.name !== 'string' || !t.name) return invalid(`tools[${i}].name`, `'tools[${i}].name' must be a non-empty string`);
      const fn: Json = { name: t.name };
      for (const k of ['description', 'parameters', 'strict'] as const) if (t[k] !== undefined && t[k] !== null) fn[k] = t[k];
      tools.push({ type: 'function', function: fn });
    }
    if (tools.length) chat.tools = tools;
  }
  const choice = json.tool_choice;
  if (choice !== undefined && choice !== null) {
    if (choice === 'auto' || choice === 'none' || choice === 'required') chat.tool_choice = choice;
    else if (isObject(choice) && choice.type === 'function' && typeof choice.name === 'string') {
      chat.tool_choice = { type: 'function', function: { name: choice.name } };
    } else return bad('tool_choice', "'tool_choice' must be auto, none, required or { type: 'function', name }");
  }
  if (json.text !== undefined && json.text !== null) {
    if (!isObject(json.text)) return invalid('text', "'text' must be an object");
    const f = json.text.format;
    if (f !== undefined && f !== null) {
      if (!isObject(f)) return invalid('text.format', "'text.format' must be an object");
      if (f.type === 'json_object') chat.response_format = { type: 'json_object' };
      else if (f.type === 'json_schema') {
        if (typeof f.name !== 'string' || !isObject(f.schema)) {
          return invalid('text.format', "'text.format' json_schema needs a name and a schema object");
        }
        const schema: Json = { name: f.name, schema: f.schema };
        if (f.strict !== undefined && f.strict !== null) schema.strict = f.strict;
        if (typeof f.description === 'string') schema.description = f.description;
        chat.response_format = { type: 'json_schema', json_schema: schema };
      } else if (f.type !== 'text') return bad('text.format.type', "'text.format.type' must be text, json_object or json_schema");
    }
    if (json.text.verbosity !== undefined && json.text.verbosity !== null) chat.verbosity = json.text.verbosity;
  }
  if (json.reasoning !== undefined && json.reasoning !== null) {
    if (!isObject(json.reasoning)) return invalid('reasoning', "'reasoning' must be an object");
    if (json.reasoning.effort !== undefined && json.reasoning.effort !== null) chat.reasoning_effort = json.reasoning.effort;
  }

  const echo: Json = {
    instructions: json.instructions ?? null,
    max_output_tokens: max ?? null,
    temperature: json.temperature ?? 1,
    top_p: json.top_p ?? 1,
    tools: Array.isArray(json.tools) ? json.tools : [],
    tool_choice: json.tool_choice ?? 'auto',
    parallel_tool_calls: json.parallel_tool_calls ?? true,
    text: { format: isObject(json.text) && isObject(json.text.format) ? json.text.format : { type: 'text' } },
    reasoning: isObject(json.reasoning) ? json.reasoning : { effort: null, summary: null },
    truncation: 'disabled',
    metadata: isObject(json.metadata) ? json.metadata : {},
    store: false,
    user: json.user ?? null,
  };
  return { chat, request: { model: json.model, stream: json.stream === true, echo } };
}

const rid = (prefix: string) => `${prefix}_${randomBytes(16).toString('hex')}`;

interface ChatToolCall {
  index?: number;
  id?: string;
  function?: { name?: string; arguments?: string };
}
interface ChatChoice {
  message?: { content?: string | null; tool_calls?: ChatToolCall[] };
  delta?: { content?: string | null; tool_calls?: ChatToolCall[] };
  finish_reason?: string | null;
}
interface ChatCompletion {
  created?: number;
  choices?: ChatChoice[];
  usage?: { prompt_tokens?: number; completion_tokens?: number };
}

const usageOf = (u: Usage) => ({
  input_tokens: u.promptTokens,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: u.completionTokens,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: u.promptTokens + u.completionTokens,
});

/** The Response object around its output items. */
function responseObject(
  id: string,
  createdAt: number,
  req: ResponseRequest,
  status: string,
  output: Json[],
  usage: Usage | null,
  finish?: string | null,
) {
  return Object.assign(
    {
      id,
      object: 'response',
      created_at: createdAt,
      status,
      error: null,
      incomplete_details: finish === 'length' ? { reason: 'max_output_tokens' } : null,
      model: req.model,
      output,
      usage: usage ? usageOf(usage) : null,
    },
    req.echo,
  );
}

const messageItem = (id: string, text: string, status: string) => ({
  id,
  type: 'message',
  status,
  role: 'assistant',
  content: status === 'in_progress' ? [] : [{ type: 'output_text', text, annotations: [] }],
});

const callItem = (id: string, c: { callId: string; name: string; args: string }, status: string) => ({
  id,
  type: 'function_call',
  status,
  call_id: c.callId,
  name: c.name,
  arguments: c.args,
});

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);

/**
 * The body tap of a /v1/responses request: reads the replica's chat answer (a JSON body, or the chat chunk stream)
 * and writes the Response (or its event stream) instead, with the usage it read. An upstream error (status >= 400)
 * passes through as it came: it is already in the OpenAI envelope.
 */
export class ResponsesTap implements BodyTap {
  readonly rewrites = true;
  private readonly id = rid('resp');
  private readonly createdAt = Math.floor(Date.now() / 1000);
  private pending = '';
  /** A character split across two chunks is decoded once both have come. */
  private readonly decoder = new StringDecoder('utf8');
  private body: Buffer[] = [];
  private usage: Usage = { promptTokens: 0, completionTokens: 0, reported: false };
  private seq = 0;
  private started = false;
  private ended = false;
  private text = '';
  private message: { id: string; index: number } | null = null;
  private readonly calls = new Map<number, { id: string; index: number; callId: string; name: string; args: string }>();
  private outputs = 0;
  private finish: string | null = null;

  constructor(
    private readonly sse: boolean,
    private readonly status: number,
    private readonly req: ResponseRequest,
  ) {}

  private get passthrough() {
    return this.status >= 400;
  }

  push(chunk: Buffer): Buffer {
    if (this.passthrough) return chunk;
    if (!this.sse) {
      this.body.push(chunk);
      return Buffer.alloc(0);
    }
    this.pending += this.decoder.write(chunk);
    const end = this.pending.lastIndexOf('\n\n');
    if (end < 0) return Buffer.alloc(0);
    const complete = this.pending.slice(0, end);
    this.pending = this.pending.slice(end + 2);
    let out = '';
    for (const ev of complete.split('\n\n')) out += this.chatEvent(ev);
    return Buffer.from(out, 'utf8');
  }

  flush(): Buffer {
    if (this.passthrough) return Buffer.alloc(0);
    if (!this.sse) return Buffer.from(JSON.stringify(this.fromCompletion()), 'utf8');
    const rest = this.pending ? this.chatEvent(this.pending) : '';
    this.pending = '';
    // A stream that ended without [DONE] still closes what it opened.
    return Buffer.from(rest + (this.ended ? '' : this.end()), 'utf8');
  }

  result(): Usage {
    return this.usage;
  }

  failure(e: OpenAIError): Buffer {
    const rest = this.pending ? this.chatEvent(this.pending) : '';
    this.pending = '';
    this.ended = true;
    return Buffer.from(rest + this.event('error', { code: e.code, message: e.message, param: e.param ?? null }), 'utf8');
  }

  private event(type: string, payload: Json): string {
    return `event: ${type}\ndata: ${JSON.stringify(Object.assign({ type, sequence_number: this.seq++ }, payload))}\n\n`;
  }

  private chatEvent(ev: string): string {
    const data = /^data: ?(.*)$/ms.exec(ev.trim())?.[1];
    if (data === undefined) return '';
    if (data === '[DONE]') return this.ended ? '' : this.end();
    let chunk: ChatCompletion & { error?: unknown };
    try {
      chunk = JSON.parse(data) as ChatCompletion;
    } catch {
      return '';
    }
    let out = this.start();
    if (chunk.usage)
      this.usage = { promptTokens: num(chunk.usage.prompt_tokens), completionTokens: num(chunk.usage.completion_tokens), reported: true };
    const choice = chunk.choices?.[0];
    if (!choice) return out;
    const delta = choice.delta ?? {};
    if (typeof delta.content === 'string' && delta.content) {
      if (!this.message) {
        this.message = { id: rid('msg'), index: this.outputs++ };
        out += this.event('response.output_item.added', {
          output_index: this.message.index,
          item: messageItem(this.message.id, '', 'in_progress'),
        });
        out += this.event('response.content_part.added', {
          item_id: this.message.id,
          output_index: this.message.index,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [] },
        });
      }
      this.text += delta.content;
      if (!this.usage.reported) this.usage.completionTokens++;
      out += this.event('response.output_text.delta', {
        item_id: this.message.id,
        output_index: this.message.index,
        content_index: 0,
        delta: delta.content,
        logprobs: [],
      });
    }
    for (const t of delta.tool_calls ?? []) {
      const i = t.index ?? 0;
      let call = this.calls.get(i);
      if (!call) {
        call = { id: rid('fc'), index: this.outputs++, callId: t.id ?? rid('call'), name: t.function?.name ?? '', args: '' };
        this.calls.set(i, call);
        out += this.event('response.output_item.added', {
          output_index: call.index,
          item: callItem(call.id, { callId: call.callId, name: call.name, args: '' }, 'in_progress'),
        });
      }
      const piece = t.function?.arguments ?? '';
      if (piece) {
        call.args += piece;
        out += this.event('response.function_call_arguments.delta', { item_id: call.id, output_index: call.index, delta: piece });
      }
    }
    if (choice.finish_reason) this.finish = choice.finish_reason;
    return out;
  }

  private start(): string {
    if (this.started) return '';
    this.started = true;
    const r = responseObject(this.id, this.createdAt, this.req, 'in_progress', [], null);
    return this.event('response.created', { response: r }) + this.event('response.in_progress', { response: r });
  }

  /** The items' done events in output order, then response.completed (or .incomplete at max_output_tokens). */
  private end(): string {
    this.ended = true;
    let out = this.start();
    const items: Array<{ index: number; item: Json; done: string }> = [];
    if (this.message) {
      const m = this.message;
      const item = messageItem(m.id, this.text, 'completed');
      items.push({
        index: m.index,
        item,
        done:
          this.event('response.output_text.done', {
            item_id: m.id,
            output_index: m.index,
            content_index: 0,
            text: this.text,
            logprobs: [],
          }) +
          this.event('response.content_part.done', {
            item_id: m.id,
            output_index: m.index,
            content_index: 0,
            part: { type: 'output_text', text: this.text, annotations: [] },
          }),
      });
    }
    for (const c of this.calls.values()) {
      items.push({
        index: c.index,
        item: callItem(c.id, c, 'completed'),
        done: this.event('response.function_call_arguments.done', {
          item_id: c.id,
          output_index: c.index,
          arguments: c.args,
          name: c.name,
        }),
      });
    }
    items.sort((a, b) => a.index - b.index);
    for (const it of items) out += it.done + this.event('response.output_item.done', { output_index: it.index, item: it.item });
    const status = this.finish === 'length' ? 'incomplete' : 'completed';
    const r = responseObject(
      this.id,
      this.createdAt,
      this.req,
      status,
      items.map((i) => i.item),
      this.usage,
      this.finish,
    );
    return out + this.event(status === 'completed' ? 'response.completed' : 'response.incomplete', { response: r });
  }

  /** A whole chat completion as the Response. */
  private fromCompletion() {
    let c: ChatCompletion;
    try {
      c = JSON.parse(Buffer.concat(this.body).toString('utf8')) as ChatCompletion;
    } catch {
      c = {};
    }
    this.usage = { promptTokens: num(c.usage?.prompt_tokens), completionTokens: num(c.usage?.completion_tokens), reported: !!c.usage };
    const choice = c.choices?.[0];
    const output: Json[] = [];
    const text = choice?.message?.content;
    if (typeof text === 'string' && text) output.push(messageItem(rid('msg'), text, 'completed'));
    for (const t of choice?.message?.tool_calls ?? []) {
      output.push(
        callItem(rid('fc'), { callId: t.id ?? rid('call'), name: t.function?.name ?? '', args: t.function?.arguments ?? '' }, 'completed'),
      );
    }
    const finish = choice?.finish_reason ?? null;
    return responseObject(
      this.id,
      c.created ?? this.createdAt,
      this.req,
      finish === 'length' ? 'incomplete' : 'completed',
      output,
      this.usage,
      finish,
    );
  }
}
