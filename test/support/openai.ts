import type OpenAI from 'openai';

/**
 * One streamed chat completion through the official client, read to its end: the content tokens it carried, its
 * finish reason, and the gateway's headers on it (the time it queued, whether it waited for a cold start).
 */
export async function streamChat(client: OpenAI, maxTokens: number) {
  const { data, response } = await client.chat.completions
    .create({ model: 'default', stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] })
    .withResponse();
  let tokens = 0;
  let finish: string | null = null;
  for await (const c of data) {
    if (c.choices[0]?.delta?.content) tokens++;
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return {
    tokens,
    finish,
    queuedMs: Number(response.headers.get('x-infercp-queue-ms')),
    cold: response.headers.get('x-infercp-cold-start'),
  };
}
