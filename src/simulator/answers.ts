// What the simulated model answers a chat request with, decided before any byte is sent: words, a JSON
// document that fits the requested response_format, or a call of one of the request's tools. Deterministic
// for a prompt and a seed, so tests through the gateway can tell a passed-through option by its effect.
import { createHash } from 'node:crypto';

const WORDS = (
  'the a model replica token stream answer quickly gpu batch cache warm cold start request ' +
  'latency scale route key deploy queue serve infer vector prompt reply'
).split(' ');

export type Rnd = () => number;

export interface ToolCallPlan {
  id: string;
  name: string;
  /** The arguments JSON, in the pieces a stream sends it in. */
  argumentPieces: string[];
}

export interface AnswerPlan {
  /** Content, one piece per token (a stream sends each as a delta). */
  pieces: string[];
  toolCalls: ToolCallPlan[];
  finish: 'length' | 'stop' | 'tool_calls';
}

interface Tool {
  type?: string;
  function?: { name?: unknown; parameters?: unknown };
}

type Schema = Record<string, unknown>;

/** A value that fits a JSON schema's common subset (object, array, string, number, integer, boolean, enum, const, anyOf). */
export function sampleSchema(schema: unknown, rnd: Rnd, depth = 0): unknown {
  const s = (schema && typeof schema === 'object' ? schema : {}) as Schema;
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[Math.floor(rnd() * s.enum.length)];
  const alt = (s.anyOf ?? s.oneOf) as unknown[] | undefined;
  if (Array.isArray(alt) && alt.length) return sampleSchema(alt[0], rnd, depth);
  const type = Array.isArray(s.type) ? (s.type as string[]).find((t) => t !== 'null') : (s.type as string | undefined);
  switch (type) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      if (depth < 6) for (const [k, v] of Object.entries(props)) out[k] = sampleSchema(v, rnd, depth + 1);
      return out;
    }
    case 'array':
      return depth < 6 ? [sampleSchema(s.items, rnd, depth + 1)] : [];
    case 'integer':
      return Math.floor(rnd() * 100);
    case 'number':
      return Math.round(rnd() * 10_000) / 100;
    case 'boolean':
      return rnd() < 0.5;
    case 'null':
      return null;
    default:
      return WORDS[Math.floor(rnd() * WORDS.length)];
  }
}

/** Splits a text into about `n` pieces (at least one), as a stream would send it. */
function split(text: string, n: number): string[] {
  const size = Math.max(1, Math.ceil(text.length / Math.max(1, n)));
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length ? out : [''];
}

/**
 * The answer to a chat request: a tool call when tools are offered and tool_choice does not say none (the
 * forced one, else the first; a request whose last message is a tool result gets words instead), a JSON
 * document for response_format json_schema or json_object, otherwise `maxTokens` words ending in `length`.
 */
export function planAnswer(
  body: Record<string, unknown>,
  maxTokens: number,
  rnd: Rnd,
  idFor: (i: number) => string,
  qualityLoss = 0,
): AnswerPlan {
  const messages = Array.isArray(body.messages) ? (body.messages as Array<{ role?: unknown; content?: unknown }>) : [];
  const tools = (Array.isArray(body.tools) ? body.tools : []) as Tool[];
  const choice = body.tool_choice as string | { function?: { name?: unknown } } | undefined;
  const afterToolResult = messages.at(-1)?.role === 'tool';
  if (tools.length && choice !== 'none' && !afterToolResult) {
    const forced = typeof choice === 'object' ? choice?.function?.name : undefined;
    const tool = tools.find((t) => t.function?.name === forced) ?? tools[0];
    const args = JSON.stringify(sampleSchema(tool.function?.parameters ?? { type: 'object' }, rnd));
    return {
      pieces: [],
      toolCalls: [{ id: idFor(0), name: String(tool.function?.name ?? 'tool'), argumentPieces: split(args, Math.min(maxTokens, 4)) }],
      finish: 'tool_calls',
    };
  }
  const format = body.response_format as { type?: string; json_schema?: { schema?: unknown } } | undefined;
  if (format?.type === 'json_schema' || format?.type === 'json_object') {
    const doc =
      format.type === 'json_schema' ? sampleSchema(format.json_schema?.schema ?? { type: 'object' }, rnd) : { answer: words(rnd, 3) };
    return { pieces: split(JSON.stringify(doc), maxTokens), toolCalls: [], finish: 'stop' };
  }
  const last = messages.at(-1);
  const sum = typeof last?.content === 'string' ? arithmetic(last.content, qualityLoss) : null;
  if (sum !== null) return { pieces: split(sum, Math.min(maxTokens, 2)), toolCalls: [], finish: 'stop' };
  const pieces = Array.from({ length: maxTokens }, (_, i) => (i === 0 ? '' : ' ') + WORDS[Math.floor(rnd() * WORDS.length)]);
  return { pieces, toolCalls: [], finish: 'length' };
}

/**
 * The answer to "What is A + B?" (or -, *): right, except for the questions a quantized model gets wrong: a fixed
 * `qualityLoss` fraction of them, chosen by a hash of the question, so a quality eval reads the same every run.
 */
export function arithmetic(question: string, qualityLoss: number): string | null {
  const m = /what is (-?\d+)\s*([+*-])\s*(-?\d+)\s*\?/i.exec(question);
  if (!m) return null;
  const [a, b] = [Number(m[1]), Number(m[3])];
  const right = m[2] === '+' ? a + b : m[2] === '-' ? a - b : a * b;
  const draw = createHash('sha256').update(m[0].toLowerCase()).digest().readUInt32BE(0) / 0x100000000;
  return String(draw < qualityLoss ? right + 1 : right);
}

function words(rnd: Rnd, n: number): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(' ');
}

/** What a plan's content reads as whole. */
export const textOf = (p: AnswerPlan) => p.pieces.join('');
