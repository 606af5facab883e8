import type { FastifyReply } from 'fastify';

/** OpenAI's error envelope; the only error shape on /v1/*. */
export interface OpenAIError {
  status: number;
  message: string;
  type: 'invalid_request_error' | 'authentication_error' | 'permission_error' | 'rate_limit_error' | 'server_error' | 'not_found_error';
  code: string;
  param?: string | null;
  headers?: Record<string, string>;
}

export function envelope(e: OpenAIError) {
  return { error: { message: e.message, type: e.type, param: e.param ?? null, code: e.code } };
}

export function sendError(reply: FastifyReply, e: OpenAIError) {
  if (e.headers) for (const [k, v] of Object.entries(e.headers)) reply.header(k, v);
  return reply.code(e.status).type('application/json').send(envelope(e));
}

export const invalidKey = (message = 'Invalid API key. Send Authorization: Bearer <key> with a key issued for this workspace.'): OpenAIError => ({
  status: 401,
  type: 'authentication_error',
  code: 'invalid_api_key',
  message,
});
