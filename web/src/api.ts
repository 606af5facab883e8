// The console's one way to the api: GraphQL at /graphql and the playground stream, with the management token.
//
// The token lives in sessionStorage (this tab only, gone when the tab closes), never in a URL or localStorage, and is
// sent only as an Authorization header to this origin (the page's CSP allows no other).
const TOKEN_KEY = 'infercp.managementToken';

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (t: string) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** A GraphQL call; throws ApiError with the first error's message and code. */
export async function gql<T>(query: string, variables: Record<string, unknown> = {}, t = token.get()): Promise<T> {
  const r = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(t ? { authorization: `Bearer ${t}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await r.json().catch(() => null)) as {
    data?: T;
    errors?: Array<{ message: string; extensions?: { code?: string } }>;
  } | null;
  if (!body) throw new ApiError(`the api answered ${r.status} without JSON`, 'HTTP_' + r.status);
  if (body.errors?.length) {
    const e = body.errors[0];
    if (e.extensions?.code === 'UNAUTHENTICATED') window.dispatchEvent(new Event('infercp:signed-out'));
    throw new ApiError(e.message, e.extensions?.code ?? 'ERROR');
  }
  return body.data as T;
}

export interface PlaygroundDone {
  promptTokens: number;
  completionTokens: number;
  ttftMs: number | null;
  latencyMs: number;
  coldStart: boolean;
  quota: { limit: number | null; used: number; remaining: number | null; resetsAt: string };
}

export interface PlaygroundEvents {
  onStart?: (e: { deploymentId: string; shared: boolean; coldStart: boolean }) => void;
  onDelta: (text: string) => void;
  onDone: (e: PlaygroundDone) => void;
}

/** Sends a prompt to POST /playground/chat and reads its event stream; throws ApiError on a refusal. */
export async function playground(
  body: { deploymentId?: string; pipelineId?: string; messages: Array<{ role: string; content: string }>; maxTokens?: number },
  ev: PlaygroundEvents,
): Promise<void> {
  const t = token.get();
  const r = await fetch('/playground/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(t ? { authorization: `Bearer ${t}` } : {}) },
    body: JSON.stringify(body),
  });
  if (!r.ok || !r.body) {
    const e = (await r.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
    throw new ApiError(e?.error?.message ?? `the playground answered ${r.status}`, e?.error?.code ?? `HTTP_${r.status}`);
  }
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    let end;
    while ((end = pending.indexOf('\n\n')) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 2);
      if (!line.startsWith('data: ')) continue;
      const e = JSON.parse(line.slice(6)) as { type: string } & Record<string, unknown>;
      if (e.type === 'start') ev.onStart?.(e as never);
      else if (e.type === 'delta') ev.onDelta(String(e.text));
      else if (e.type === 'done') ev.onDone(e as unknown as PlaygroundDone);
      else if (e.type === 'error') throw new ApiError(String(e.message), String(e.code));
    }
  }
}
