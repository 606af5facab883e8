import type { IncomingMessage, ServerResponse } from 'node:http';

/** RFC 9457 titles the v2 API uses (providers-api.md §1.4). */
const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const data = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) });
  res.end(data);
}

/** Every v2 error: `application/problem+json` with `{title, status, detail, errors?}`. */
export function sendProblem(
  res: ServerResponse,
  status: number,
  detail: string,
  o: { errors?: string[]; headers?: Record<string, string> } = {},
) {
  if (res.headersSent || res.destroyed) return;
  const body: Record<string, unknown> = { title: TITLES[status] ?? 'Error', status, detail };
  if (o.errors) body.errors = o.errors;
  const data = JSON.stringify(body);
  res.writeHead(status, {
    ...o.headers,
    'content-type': 'application/problem+json',
    'content-length': String(Buffer.byteLength(data)),
  });
  res.end(data);
}

/** A Cloudflare WAF block as the management host serves it: 403, text/html (§1.4: "403 is not proof of a dead key"). */
export function sendCloudflare403(res: ServerResponse): void {
  const html =
    '<!DOCTYPE html>\n<html lang="en-US"><head><title>Attention Required! | Cloudflare</title></head>\n' +
    '<body><div id="cf-wrapper"><h1>Sorry, you have been blocked</h1>' +
    '<h2>You are unable to access api.runpod.io</h2><p>Cloudflare Ray ID: 8f1c2a3b4d5e6f70</p></div></body></html>\n';
  res.writeHead(403, { 'content-type': 'text/html; charset=UTF-8', server: 'cloudflare', 'cf-ray': '8f1c2a3b4d5e6f70-ORD' });
  res.end(html);
}

export class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function readRaw(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw new BodyError(413, 'request body too large');
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The JSON body; an empty body reads as undefined, malformed JSON throws a 400 BodyError. */
export async function readJson(req: IncomingMessage, limit = 10 * 1024 * 1024): Promise<unknown> {
  const raw = await readRaw(req, limit);
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw new BodyError(400, `malformed JSON body: ${(e as Error).message}`);
  }
}

/** The key of `Authorization: Bearer <key>`, or of a bare `Authorization: <key>` (§1.1). */
export function bearer(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (!h) return null;
  const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(h);
  if (m) return m[1];
  const bare = h.trim();
  return bare && !/\s/.test(bare) ? bare : null;
}

/**
 * Per-key fixed minute windows with the IETF ratelimit-headers of §1.4, on every authenticated response:
 * `RateLimit: "minute";r=<remaining>;t=<s to reset>`, `RateLimit-Policy: "minute";q=<quota>;w=60`.
 */
export class MinuteRateLimiter {
  private readonly windows = new Map<string, { start: number; used: number }>();
  constructor(
    private readonly quota: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Takes one unit for key; returns whether it was allowed and the headers to send. */
  take(key: string): { ok: boolean; headers: Record<string, string> } {
    const now = this.clock();
    let w = this.windows.get(key);
    if (!w || now - w.start >= 60_000) {
      w = { start: now, used: 0 };
      this.windows.set(key, w);
    }
    const ok = w.used < this.quota;
    if (ok) w.used++;
    const reset = Math.max(1, Math.ceil((w.start + 60_000 - now) / 1000));
    const headers: Record<string, string> = {
      RateLimit: `"minute";r=${this.quota - w.used};t=${reset}`,
      'RateLimit-Policy': `"minute";q=${this.quota};w=60`,
    };
    if (!ok) headers['Retry-After'] = String(reset);
    return { ok, headers };
  }
}
