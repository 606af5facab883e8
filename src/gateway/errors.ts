// The /v1 error envelope (OpenAI's, the only error shape on the data path), how it is sent, and refusals that more
// than one stage gives.
import type { ServerResponse } from 'node:http';

/** OpenAI's error envelope; the only error shape on /v1/*. */
export interface OpenAIError {
  /** What refused() reads to tell a refusal from a step's own value; never test it on client JSON, which may carry any field. */
  ok: false;
  status: number;
  message: string;
  type: 'invalid_request_error' | 'authentication_error' | 'permission_error' | 'rate_limit_error' | 'server_error' | 'not_found_error';
  code: string;
  param?: string | null;
  headers?: Record<string, string>;
}

/** Whether a step refused the request instead of handing on its value. */
export function refused<T extends object>(x: T | OpenAIError): x is OpenAIError {
  return (x as Partial<OpenAIError>).ok === false;
}

export function envelope(e: OpenAIError) {
  return { error: { message: e.message, type: e.type, param: e.param ?? null, code: e.code } };
}

/** Answers with a JSON body and its length (headers set earlier with setHeader are kept). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>) {
  const text = JSON.stringify(body);
  if (headers) for (const k in headers) res.setHeader(k, headers[k]);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, e: OpenAIError) {
  sendJson(res, e.status, envelope(e), e.headers);
}

export const invalidKey = (
  message = 'Invalid API key. Send Authorization: Bearer <key> with a key issued for this workspace.',
): OpenAIError => ({
  ok: false,
  status: 401,
  type: 'authentication_error',
  code: 'invalid_api_key',
  message,
});

/** 404 model_not_found: the request's `model` names nothing this key reaches. */
export const modelNotFound = (message: string): OpenAIError => ({
  ok: false,
  status: 404,
  type: 'invalid_request_error',
  code: 'model_not_found',
  param: 'model',
  message,
});

/** 503 when no replica takes a request, with the Retry-After measured for its deployment. */
export const noReplica = (message: string, retryAfterSeconds: number): OpenAIError => ({
  ok: false,
  status: 503,
  type: 'server_error',
  code: 'no_replica_available',
  message,
  headers: { 'retry-after': String(retryAfterSeconds) },
});

/** 503 when the gateway cannot read Postgres and has no cached answer recent enough (GATEWAY_STALE_SERVE_MS) to serve. */
export const databaseUnavailable = (): OpenAIError => ({
  ok: false,
  status: 503,
  type: 'server_error',
  code: 'database_unavailable',
  message:
    "The gateway cannot reach its database (Postgres) and has no recent enough cached copy of this key's or deployment's " +
    'record to serve from; retry shortly.',
  headers: { 'retry-after': '5' },
});
