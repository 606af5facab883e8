// The /v1 request bodies the gateway checks before forwarding (chat and text completions, embeddings), and the 400 a
// malformed one gets. Unknown fields pass through to the replica. /v1/responses has its own mapping (responses.ts).
import { z } from 'zod';
import { zodMessage } from '../common/zod';
import type { OpenAIError } from './errors';

const positiveInt = (field: string) => {
  const message = `'${field}' must be a positive integer`;
  return z.number({ error: message }).int(message).positive(message).optional().nullable();
};

/** What every generating route reads: the model, whether to stream, and stream usage. */
const generating = z.object({
  model: z.string({ error: "'model' is required and must be a string" }).min(1),
  stream: z.boolean({ error: "'stream' must be a boolean" }).optional().nullable(),
  stream_options: z
    .object(
      { include_usage: z.boolean({ error: "'stream_options.include_usage' must be a boolean" }).optional() },
      { error: "'stream_options' must be an object" },
    )
    .passthrough()
    .optional()
    .nullable(),
  max_tokens: positiveInt('max_tokens'),
});

const chatBody = generating
  .extend({
    messages: z.array(z.unknown(), { error: "'messages' must be an array" }).min(1, "'messages' must not be empty"),
    max_completion_tokens: positiveInt('max_completion_tokens'),
  })
  .passthrough();

const completionsBody = generating
  .extend({
    prompt: z.union([z.string(), z.array(z.string()).min(1)], { error: "'prompt' must be a string or a non-empty array of strings" }),
  })
  .passthrough();

const embeddingsBody = z
  .object({
    model: z.string({ error: "'model' is required and must be a string" }).min(1),
    input: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number()), z.array(z.array(z.number()))], {
      error: "'input' must be a string, an array of strings, or token arrays",
    }),
  })
  .passthrough();

const imagesBody = z
  .object({
    model: z.string({ error: "'model' is required and must be a string" }).min(1),
    prompt: z.string({ error: "'prompt' must be a string" }).min(1, "'prompt' must not be empty"),
    n: z
      .number({ error: "'n' must be an integer from 1 to 10" })
      .int("'n' must be an integer from 1 to 10")
      .min(1)
      .max(10)
      .optional()
      .nullable(),
  })
  .passthrough();

const speechBody = z
  .object({
    model: z.string({ error: "'model' is required and must be a string" }).min(1),
    input: z
      .string({ error: "'input' must be a string" })
      .min(1, "'input' must not be empty")
      .max(4096, "'input' must be at most 4096 characters"),
    voice: z.string({ error: "'voice' must be a string" }).min(1),
  })
  .passthrough();

export type RequestKind = 'chat' | 'completions' | 'responses' | 'embeddings' | 'images' | 'speech' | 'transcriptions';

const BODIES = { chat: chatBody, completions: completionsBody, embeddings: embeddingsBody, images: imagesBody, speech: speechBody };

/** A checked body: the fields the gateway reads, and everything else as the client sent it. */
export type RequestBody = Record<string, unknown> & {
  model: string;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
};

/**
 * The body as the gateway reads it, or the 400 naming the first field that is wrong. Told apart by `success`, zod's
 * own tag (no wrapper per request): the body passes client fields through, so no field test on it could be trusted.
 */
export type ParsedRequest = { success: true; data: RequestBody } | { success: false; error: OpenAIError };

export function parseRequest(kind: keyof typeof BODIES, json: unknown): ParsedRequest {
  if (json === undefined || json === null) {
    return {
      success: false,
      error: { ok: false, status: 400, type: 'invalid_request_error', code: 'invalid_body', message: 'request body must be a JSON object' },
    };
  }
  const parsed = BODIES[kind].safeParse(json);
  if (parsed.success) return parsed as { success: true; data: RequestBody };
  const issue = parsed.error.issues[0];
  return {
    success: false,
    error: {
      ok: false,
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_body',
      param: issue?.path.join('.') || null,
      message: zodMessage(parsed.error),
    },
  };
}
