// RunPod's management API (REST v2 on api.runpod.io), the GraphQL leftover we need (the account of a key), and
// the serverless runtime's health (api.runpod.ai), with every failure mapped once into one taxonomy
// (../shared/reference/providers-api.md §1.4, §1.7, §1.8, §1.10).
import { request } from 'undici';

export interface RunpodUrls {
  /** Management host; calls go to <apiUrl>/v2/... */
  apiUrl: string;
  graphqlUrl: string;
  /** Runtime host; calls go to <runtimeUrl>/v2/<endpointId>/... */
  runtimeUrl: string;
}

export type RunpodErrorKind = 'unauthorized' | 'forbidden' | 'not_found' | 'invalid' | 'rate_limited' | 'capacity' | 'transient';

/** What a RunPod call failed with: the kind decides retry or fail, the message carries RunPod's own detail. */
export class RunpodError extends Error {
  override readonly name = 'RunpodError';
  constructor(
    readonly kind: RunpodErrorKind,
    message: string,
    readonly status: number | null = null,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
  /** Whether a later retry may succeed. */
  get transient(): boolean {
    return this.kind === 'rate_limited' || this.kind === 'transient' || this.kind === 'capacity';
  }
}

/** The subset of RunPod's v2 Endpoint we read (the fields the spec's `Endpoint` schema names). */
export interface RunpodEndpoint {
  id: string;
  name: string;
  type: 'QUEUE' | 'LOAD_BALANCER';
  image?: string;
  env?: Record<string, string>;
  gpu?: { pools?: string[]; excludedTypes?: string[]; count?: number };
  workers: { min: number; max: number; idleTimeout?: number };
  scaling?: { type: 'QUEUE_DELAY' | 'REQUEST_COUNT'; queueDelay?: number; requestCount?: number };
  flashboot?: 'OFF' | 'FLASHBOOT' | 'PRIORITY_FLASHBOOT';
  timeout?: number;
  requestUrls?: Record<string, string>;
}

/** The runtime's /health, every key optional (clients in the wild see different subsets). */
export interface RunpodHealth {
  jobs: { completed?: number; failed?: number; inProgress?: number; inQueue?: number; retried?: number };
  workers: { idle?: number; initializing?: number; ready?: number; running?: number; throttled?: number; unhealthy?: number };
}

/** RunPod's rate-limit window as its headers tell it: the minute window's remaining calls and seconds to reset. */
export interface RateWindow {
  remaining: number;
  resetSeconds: number;
}

/** `"minute";r=0;t=12, "hour";r=2800;t=1812` → the minute window (IETF ratelimit-headers draft, §1.4). */
export function parseRateLimit(header: string | string[] | undefined): RateWindow | null {
  const value = Array.isArray(header) ? header.join(', ') : header;
  if (!value) return null;
  const m = /"?minute"?\s*;\s*r=(\d+)\s*;\s*t=(\d+)/.exec(value);
  return m ? { remaining: Number(m[1]), resetSeconds: Number(m[2]) } : null;
}

const retryAfter = (h: string | string[] | undefined): number | undefined => {
  const v = Number(Array.isArray(h) ? h[0] : h);
  return Number.isFinite(v) && v >= 0 ? v : undefined;
};

/** Maps one HTTP answer to the taxonomy. RunPod's problem+json detail (and its errors[]) go into the message. */
export function classify(
  what: string,
  status: number,
  contentType: string,
  body: string,
  headers: Record<string, string | string[] | undefined>,
): RunpodError {
  let detail = body.trim().slice(0, 300);
  // problem+json does not contain the substring application/json: match on +json (§1.4).
  if (/json/.test(contentType)) {
    try {
      const j = JSON.parse(body) as { title?: string; detail?: string; errors?: string[]; message?: string };
      detail = [j.detail ?? j.message ?? j.title, ...(j.errors ?? [])].filter(Boolean).join('; ');
    } catch {
      /* keep the text */
    }
  }
  const said = `${what}: RunPod answered ${status}${detail ? ` (${detail})` : ''}`;
  if (status === 401)
    return new RunpodError('unauthorized', `${what}: RunPod rejected the API key (401${detail ? `: ${detail}` : ''})`, status);
  if (status === 403) {
    // The hosts sit behind a CDN whose WAF answers 403 with an HTML page: not proof of a key without access.
    if (/html/.test(contentType))
      return new RunpodError('transient', `${what}: RunPod's CDN refused the call with an HTML 403 page`, status);
    return new RunpodError('forbidden', `${what}: the RunPod API key has no Serverless access (403${detail ? `: ${detail}` : ''})`, status);
  }
  if (status === 404) return new RunpodError('not_found', said, status);
  if (status === 400 || status === 422) return new RunpodError('invalid', said, status);
  if (status === 429) {
    const after = retryAfter(headers['retry-after']) ?? parseRateLimit(headers['ratelimit'])?.resetSeconds ?? 1;
    return new RunpodError('rate_limited', `${what}: RunPod rate-limited the call; retry in ${after} s`, status, after);
  }
  return new RunpodError('transient', said, status);
}

/**
 * One RunPod account's client. Every call has a deadline; a network failure or timeout is `transient`.
 * `onRateLimit` sees the minute window after every management answer (the adapter debounces with it).
 */
export class RunpodClient {
  /** Management calls made, by "METHOD /route" (for the note's "management calls per scaling decision"). */
  readonly calls = new Map<string, number>();
  lastWindow: RateWindow | null = null;

  constructor(private readonly o: RunpodUrls & { apiKey: string; timeoutMs?: number }) {}

  private async call<T>(
    what: string,
    base: 'api' | 'graphql' | 'runtime',
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    body?: unknown,
  ): Promise<T> {
    const url = base === 'api' ? `${this.o.apiUrl}${path}` : base === 'graphql' ? this.o.graphqlUrl : `${this.o.runtimeUrl}${path}`;
    if (base !== 'runtime') {
      const route = `${method} ${path.replace(/\/serverless\/[^/?]+/, '/serverless/{id}')}`;
      this.calls.set(route, (this.calls.get(route) ?? 0) + 1);
    }
    const timeout = this.o.timeoutMs ?? 15_000;
    let res;
    try {
      res = await request(url, {
        method,
        headers: {
          authorization: `Bearer ${this.o.apiKey}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
    } catch (e) {
      throw new RunpodError('transient', `${what}: RunPod could not be reached (${(e as Error).message})`);
    }
    const text = await res.body.text().catch(() => '');
    if (base === 'api') this.lastWindow = parseRateLimit(res.headers['ratelimit']) ?? this.lastWindow;
    const contentType = String(res.headers['content-type'] ?? '');
    if (res.statusCode >= 400) throw classify(what, res.statusCode, contentType, text, res.headers);
    if (res.statusCode === 204 || text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new RunpodError('transient', `${what}: RunPod answered ${res.statusCode} with a body that is not JSON`, res.statusCode);
    }
  }

  async listEndpoints(): Promise<RunpodEndpoint[]> {
    return (await this.call<{ endpoints: RunpodEndpoint[] }>('list endpoints', 'api', 'GET', '/v2/serverless')).endpoints ?? [];
  }

  async getEndpoint(id: string): Promise<RunpodEndpoint | null> {
    try {
      return await this.call<RunpodEndpoint>(`read endpoint ${id}`, 'api', 'GET', `/v2/serverless/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e instanceof RunpodError && e.kind === 'not_found') return null;
      throw e;
    }
  }

  createEndpoint(body: Record<string, unknown>): Promise<RunpodEndpoint> {
    return this.call<RunpodEndpoint>(`create endpoint ${String(body.name)}`, 'api', 'POST', '/v2/serverless', body);
  }

  updateEndpoint(id: string, patch: Record<string, unknown>): Promise<RunpodEndpoint> {
    return this.call<RunpodEndpoint>(`update endpoint ${id}`, 'api', 'PATCH', `/v2/serverless/${encodeURIComponent(id)}`, patch);
  }

  /** Deletes the endpoint (its workers and bound template go with it); an endpoint already gone is fine. */
  async deleteEndpoint(id: string): Promise<void> {
    try {
      await this.call<void>(`delete endpoint ${id}`, 'api', 'DELETE', `/v2/serverless/${encodeURIComponent(id)}`);
    } catch (e) {
      if (!(e instanceof RunpodError && e.kind === 'not_found')) throw e;
    }
  }

  /** The runtime's view of an endpoint's workers and jobs; null when the endpoint is gone. */
  async health(id: string): Promise<RunpodHealth | null> {
    try {
      return await this.call<RunpodHealth>(`health of endpoint ${id}`, 'runtime', 'GET', `/v2/${encodeURIComponent(id)}/health`);
    } catch (e) {
      if (e instanceof RunpodError && e.kind === 'not_found') return null;
      throw e;
    }
  }

  /** The OpenAI-compatible base of a queue endpoint running the vLLM worker (our gateway appends /v1/...). */
  openaiBase(id: string): string {
    return `${this.o.runtimeUrl}/v2/${encodeURIComponent(id)}/openai`;
  }

  /**
   * The cheap live check of §1.10: `GET /v2/serverless` proves the key authentic and able to read Serverless;
   * then GraphQL `myself { id }` names the account (a GraphQL error is not proof of a bad key: fail open).
   * A CDN block (HTML 403) is retried once, then reported as no Serverless access.
   */
  async validateKey(): Promise<{ accountId: string | null }> {
    const list = () => this.call<unknown>('check the key', 'api', 'GET', '/v2/serverless');
    try {
      await list();
    } catch (e) {
      if (!(e instanceof RunpodError && e.status === 403 && e.kind === 'transient')) throw e;
      try {
        await list();
      } catch (again) {
        if (again instanceof RunpodError && again.status === 403)
          throw new RunpodError('forbidden', 'check the key: the RunPod API key has no Serverless access (403, twice)', 403);
        throw again;
      }
    }
    try {
      const r = await this.call<{ data?: { myself?: { id?: string } | null } }>('read the account', 'graphql', 'POST', '', {
        query: 'query { myself { id } }',
      });
      return { accountId: r.data?.myself?.id ?? null };
    } catch (e) {
      if (e instanceof RunpodError && e.kind === 'unauthorized') throw e;
      return { accountId: null };
    }
  }
}
