// Token usage read from a response on its way through (UsageTap), and the parse of an OpenAI usage object.
import { audioSeconds } from '../common/media';
import { envelope, OpenAIError } from './errors';

/** What pipe() passes a response body through: the bytes to send on, and the usage read on the way. */
export interface BodyTap {
  /** It writes other bytes than it reads (the upstream's Content-Length does not hold). */
  readonly rewrites?: boolean;
  /** Takes a chunk from the upstream; returns the bytes to send to the client now (possibly empty). */
  push(chunk: Buffer): Buffer;
  /** The rest, once the upstream has ended. */
  flush(): Buffer;
  /** Usage once the body has ended. */
  result(): Usage;
  /** The end of a stream the upstream broke off after its first byte: what is held back, then the error event. */
  failure(e: OpenAIError): Buffer;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** False when the upstream sent no usage and the completion count is the number of content chunks seen. */
  reported: boolean;
  /** Seconds of audio the response carried (speech). */
  audioSeconds?: number;
}

/** A spoken answer (WAV or raw PCM) passed through as it streams, its bytes counted into seconds of audio. */
export class AudioTap implements BodyTap {
  private head = Buffer.alloc(0);
  private bytes = 0;

  push(chunk: Buffer): Buffer {
    if (this.head.length < 44) this.head = Buffer.concat([this.head, chunk.subarray(0, 44 - this.head.length)]);
    this.bytes += chunk.length;
    return chunk;
  }

  flush(): Buffer {
    return Buffer.alloc(0);
  }

  result(): Usage {
    return { promptTokens: 0, completionTokens: 0, reported: true, audioSeconds: audioSeconds(this.head, this.bytes) };
  }

  failure(): Buffer {
    return Buffer.alloc(0);
  }
}

const TAIL_BYTES = 4096;
/** An event longer than this is forwarded without waiting for its end. */
const MAX_PENDING_BYTES = 1 << 20;
const EVENT_END = Buffer.from('\n\n');
const USAGE_MARKERS = ['"usage":{', '"usage": {'];
const USAGE_OBJECT = USAGE_MARKERS.map((m) => Buffer.from(m));
const CONTENT = Buffer.from('"content":"');

/**
 * Reads token usage out of a response as it passes through, without buffering it and without parsing what it does
 * not need.
 *
 * - JSON bodies: OpenAI-compatible servers put `usage` at the end, so only the last few KB are kept and only the
 *   usage object is parsed, once, at the end.
 * - SSE streams: bytes are forwarded up to the last complete event; the (rare) event that carries a usage object is
 *   parsed. When the gateway asked the upstream for usage on the client's behalf (`stream_options.include_usage`),
 *   that usage-only event is taken out, so the client sees the stream it asked for.
 */
export class UsageTap implements BodyTap {
  private tail: Buffer = Buffer.alloc(0);
  private pending: Buffer = Buffer.alloc(0);
  private usage: { prompt: number; completion: number } | null = null;
  private contentChunks = 0;

  /**
   * @param sse the body is an event stream
   * @param stripUsage drop the usage-only event (the client did not ask for it)
   */
  constructor(
    private readonly sse: boolean,
    private readonly stripUsage: boolean,
  ) {}

  /** Takes a chunk from the upstream; returns the bytes to send to the client now (possibly empty). */
  push(chunk: Buffer): Buffer {
    if (!this.sse) {
      if (chunk.length >= TAIL_BYTES) {
        this.tail = chunk.subarray(-TAIL_BYTES);
      } else {
        const t = Buffer.concat([this.tail, chunk]);
        this.tail = t.length > TAIL_BYTES ? t.subarray(-TAIL_BYTES) : t;
      }
      return chunk;
    }
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const end = buf.lastIndexOf(EVENT_END);
    if (end < 0) {
      if (buf.length > MAX_PENDING_BYTES) {
        this.pending = Buffer.alloc(0);
        return buf;
      }
      this.pending = buf;
      return Buffer.alloc(0);
    }
    const complete = buf.subarray(0, end + EVENT_END.length);
    this.pending = buf.subarray(end + EVENT_END.length);
    this.contentChunks += countContent(complete);
    if (!USAGE_OBJECT.some((m) => complete.includes(m))) return complete;
    return this.readUsageEvents(complete);
  }

  /** What is still held back when the upstream ends (an unterminated last event). */
  flush(): Buffer {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    return rest;
  }

  failure(e: OpenAIError): Buffer {
    return Buffer.concat([this.flush(), Buffer.from(`data: ${JSON.stringify(envelope(e))}\n\n`)]);
  }

  /** Usage once the body has ended: the upstream's figures, or the content chunks counted. */
  result(): Usage {
    if (!this.sse && !this.usage) this.usage = parseUsageObject(this.tail.toString('utf8'));
    if (this.usage) return { promptTokens: this.usage.prompt, completionTokens: this.usage.completion, reported: true };
    return { promptTokens: 0, completionTokens: this.contentChunks, reported: false };
  }

  private readUsageEvents(complete: Buffer): Buffer {
    const events = complete.toString('utf8').split('\n\n');
    const kept: string[] = [];
    for (const ev of events.slice(0, -1)) {
      const data = /^data: ?(.*)$/ms.exec(ev)?.[1];
      let dropped = false;
      if (data && USAGE_MARKERS.some((m) => ev.includes(m))) {
        try {
          const obj = JSON.parse(data) as { choices?: unknown[]; usage?: OpenAIUsage | null };
          if (obj.usage) {
            this.usage = tokensOf(obj.usage);
            dropped = this.stripUsage && Array.isArray(obj.choices) && obj.choices.length === 0;
          }
        } catch {
          /* not JSON: forwarded as it came */
        }
      }
      if (!dropped) kept.push(ev, '\n\n');
    }
    return Buffer.from(kept.join(''), 'utf8');
  }
}

/** The usage object as OpenAI-compatible servers send it. */
interface OpenAIUsage {
  prompt_tokens?: unknown;
  completion_tokens?: unknown;
}

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);
const tokensOf = (u: OpenAIUsage) => ({ prompt: num(u.prompt_tokens), completion: num(u.completion_tokens) });

/** Content deltas with text in them: one per token for the engines we front. */
function countContent(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(CONTENT); i >= 0; i = b.indexOf(CONTENT, i + CONTENT.length)) {
    if (b[i + CONTENT.length] !== 0x22 /* an empty string */) n++;
  }
  return n;
}

/** The last `"usage": {...}` object in a JSON text's tail, parsed on its own. */
export function parseUsageObject(text: string): { prompt: number; completion: number } | null {
  const at = text.lastIndexOf('"usage"');
  if (at < 0) return null;
  const open = text.indexOf('{', at);
  if (open < 0 || !/^"usage"\s*:\s*$/.test(text.slice(at, open))) return null;
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '{') depth++;
    else if (c === '}' && --depth === 0) {
      try {
        return tokensOf(JSON.parse(text.slice(open, i + 1)) as OpenAIUsage);
      } catch {
        return null;
      }
    }
  }
  return null;
}
