import { request } from 'undici';

/** One non-streamed chat completion straight at a replica (or a pool's URL): its status and completion tokens. */
export async function chatReplica(address: string, authorization?: string): Promise<{ status: number; tokens: number | undefined }> {
  const res = await request(`${address}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
    body: JSON.stringify({ model: 'sim/tiny-chat', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const body = (await res.body.json()) as { usage?: { completion_tokens?: number } };
  return { status: res.statusCode, tokens: body.usage?.completion_tokens };
}
