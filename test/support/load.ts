import { Pool } from 'undici';

/**
 * An open-loop load of chat completions through the gateway: requests go out on schedule at `rate`
 * a second whatever the responses do, alternating streamed and plain ones, until stop(). Every
 * response is checked whole: a plain one is a 200 with `maxTokens` completion tokens, a stream is a
 * 200 whose chunks carry `maxTokens` tokens, a `length` finish and `[DONE]`. What the lifecycle
 * tests and the swap benchmark hold operations to: no request failed, no stream cut.
 */
export interface LoadResult {
  sent: number;
  ok: number;
  streams: number;
  /** Each failed request: its kind and what went wrong (status and body, or the error). */
  failures: string[];
}

/** Loads still sending: a test that failed before its stop() would otherwise keep one going and jest from exiting. */
const running = new Set<{ stop: () => Promise<LoadResult> }>();

/** Stops every load still sending (Stack.close calls it). */
export async function stopAllLoads(): Promise<void> {
  await Promise.all([...running].map((l) => l.stop()));
}

export function chatLoad(baseUrl: string, apiKey: string, o: { rate: number; maxTokens?: number; model?: string }) {
  const maxTokens = o.maxTokens ?? 20;
  const pool = new Pool(baseUrl, { connections: 256 });
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  const result: LoadResult = { sent: 0, ok: 0, streams: 0, failures: [] };
  const pending = new Set<Promise<void>>();
  let stopped = false;

  async function one(stream: boolean): Promise<void> {
    const kind = stream ? 'stream' : 'plain';
    try {
      const res = await pool.request({
        path: '/v1/chat/completions',
        method: 'POST',
        headers,
        body: JSON.stringify({ model: o.model ?? 'default', stream, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) {
        result.failures.push(`${kind}: ${res.statusCode} ${text.slice(0, 300)}`);
        return;
      }
      if (stream) {
        const events = text
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6));
        const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e) as Record<string, never>);
        const tokens = chunks.filter((c) => (c.choices as Array<{ delta?: { content?: string } }>)?.[0]?.delta?.content).length;
        const finish = chunks.map((c) => (c.choices as Array<{ finish_reason?: string }>)?.[0]?.finish_reason).find((f) => f);
        if (events.at(-1) !== '[DONE]' || tokens !== maxTokens || finish !== 'length') {
          result.failures.push(
            `stream: cut (${tokens}/${maxTokens} tokens, finish ${finish}, last ${String(events.at(-1)).slice(0, 200)})`,
          );
          return;
        }
        result.streams++;
      } else {
        const body = JSON.parse(text) as { usage?: { completion_tokens?: number } };
        if (body.usage?.completion_tokens !== maxTokens) {
          result.failures.push(`plain: ${body.usage?.completion_tokens} of ${maxTokens} tokens`);
          return;
        }
      }
      result.ok++;
    } catch (err) {
      result.failures.push(`${kind}: ${(err as Error).message}`);
    }
  }

  const loop = (async () => {
    const t0 = performance.now();
    while (!stopped) {
      const due = Math.floor(((performance.now() - t0) * o.rate) / 1000) + 1;
      for (; result.sent < due; result.sent++) {
        const p = one(result.sent % 2 === 0);
        pending.add(p);
        void p.finally(() => pending.delete(p));
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();

  let closing: Promise<LoadResult> | null = null;
  const load = {
    result,
    /** Stops sending, waits for every request out to finish, and returns the tally (once; a second call gets the same). */
    stop(): Promise<LoadResult> {
      closing ??= (async () => {
        stopped = true;
        await loop;
        await Promise.all([...pending]);
        await pool.close();
        running.delete(load);
        return result;
      })();
      return closing;
    },
  };
  running.add(load);
  return load;
}
