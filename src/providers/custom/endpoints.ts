// The CUSTOM target's registered endpoints: base URLs of OpenAI-compatible servers the user runs (the bundle, on their
// own GPUs), each with the key it requires. Sealed as JSON in a CUSTOM credential; parsed, checked and probed here.
import { request } from 'undici';
import { DomainError, ErrorCode } from '../../domain/errors';

export interface CustomEndpoint {
  /** Base URL, no trailing slash and no /v1: http(s)://host[:port][/path]. */
  url: string;
  /** What the server requires as "Authorization: Bearer …" (its --api-key); null when it requires none. */
  apiKey: string | null;
}

/** Most endpoints one credential registers. */
export const MAX_CUSTOM_ENDPOINTS = 64;

const bad = (field: string, message: string) =>
  new DomainError(ErrorCode.BAD_USER_INPUT, `${field}: ${message}`, { field, provider: 'CUSTOM' });

/** The URL as we dial it: http(s) only, no credentials, query or fragment, without a trailing slash or /v1. */
export function normalizeEndpointUrl(raw: string, field = 'endpoints.url'): string {
  const text = raw.trim();
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw bad(field, `${JSON.stringify(text.slice(0, 200))} is not a URL; give the server's base URL, e.g. http://10.0.0.5:8000`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad(field, `${u.protocol} is not http: or https: (${text})`);
  if (u.username || u.password) throw bad(field, `${u.host}: put the key in apiKey, not in the URL`);
  if (u.search || u.hash) throw bad(field, `${u.host}: a base URL has no query or fragment`);
  const path = u.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  return `${u.protocol}//${u.host}${path}`;
}

/** The endpoints as given to addProviderCredential, checked: at least one, distinct URLs, keys without whitespace. */
export function customEndpointsOf(input: Array<{ url: string; apiKey?: string | null }> | null | undefined): CustomEndpoint[] {
  if (!input || input.length === 0) {
    throw bad('endpoints', 'a CUSTOM credential needs at least one endpoint { url, apiKey }: the base URL of a server running the bundle');
  }
  if (input.length > MAX_CUSTOM_ENDPOINTS) throw bad('endpoints', `at most ${MAX_CUSTOM_ENDPOINTS} endpoints, not ${input.length}`);
  const seen = new Set<string>();
  return input.map((e, i) => {
    const url = normalizeEndpointUrl(e.url, `endpoints[${i}].url`);
    if (seen.has(url)) throw bad(`endpoints[${i}].url`, `${url} is registered twice`);
    seen.add(url);
    const key = e.apiKey?.trim() ?? '';
    if (key && /\s/.test(key)) throw bad(`endpoints[${i}].apiKey`, `the key of ${url} must not contain whitespace`);
    if (key.length > 512) throw bad(`endpoints[${i}].apiKey`, `the key of ${url} must be at most 512 characters`);
    return { url, apiKey: key || null };
  });
}

/** What a CUSTOM credential seals. */
export const sealCustomEndpoints = (endpoints: CustomEndpoint[]): string => JSON.stringify({ endpoints });

/** A CUSTOM credential's sealed plaintext; `what` names the credential in the error when it is not one. */
export function parseCustomEndpoints(plaintext: string, what: string): CustomEndpoint[] {
  try {
    const j = JSON.parse(plaintext) as { endpoints?: CustomEndpoint[]; kubernetes?: { pools?: CustomEndpoint[] } };
    if (Array.isArray(j.endpoints) && j.endpoints.every((e) => typeof e.url === 'string')) {
      return j.endpoints.map((e) => ({ url: e.url, apiKey: e.apiKey ?? null }));
    }
    // Kubernetes mode: the pools' URLs and keys as the adapter recorded them (src/providers/kubernetes), so the gateway
    // finds a pool's key by its URL as it finds a box's.
    if (j.kubernetes && typeof j.kubernetes === 'object') {
      return (j.kubernetes.pools ?? []).map((e) => ({ url: e.url, apiKey: e.apiKey ?? null }));
    }
  } catch {
    /* below */
  }
  throw new Error(`provider credential ${what} does not hold CUSTOM endpoints`);
}

/** What one GET answered: the status, or why there was none. Never includes the key. */
export type ProbeResult = { ok: true; status: number; body: string } | { ok: false; said: string };

export async function probe(url: string, apiKey: string | null, timeoutMs: number): Promise<ProbeResult> {
  try {
    const res = await request(url, {
      method: 'GET',
      headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const body = (await res.body.text()).slice(0, 4096);
    if (res.statusCode === 200) return { ok: true, status: 200, body };
    return { ok: false, said: `answered ${res.statusCode}${body ? `: ${body.slice(0, 200).replace(/\s+/g, ' ')}` : ''}` };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    return { ok: false, said: `could not be reached (${e.code ?? e.cause?.code ?? e.name}: ${e.message})` };
  }
}

/**
 * The live check of a CUSTOM credential: each server's /health answers 200, and its /v1/models answers 200 to its key
 * (so a wrong key is caught now, not on the first request). BAD_USER_INPUT naming the URL and what it answered.
 */
export async function validateCustomEndpoints(endpoints: CustomEndpoint[], timeoutMs = 10_000): Promise<{ accountId: null }> {
  await Promise.all(
    endpoints.map(async (e, i) => {
      const scrub = (s: string) => (e.apiKey ? s.split(e.apiKey).join('[the key]') : s);
      const health = await probe(`${e.url}/health`, e.apiKey, timeoutMs);
      if (!health.ok) {
        throw bad(
          `endpoints[${i}].url`,
          `GET ${e.url}/health ${scrub(health.said)}; start the bundle there (serve.sh) first; nothing was stored`,
        );
      }
      const models = await probe(`${e.url}/v1/models`, e.apiKey, timeoutMs);
      if (!models.ok) {
        const keyed = /^answered 40[13]/.test(models.said);
        throw bad(
          keyed ? `endpoints[${i}].apiKey` : `endpoints[${i}].url`,
          `GET ${e.url}/v1/models ${scrub(models.said)}${keyed ? (e.apiKey ? '; the key is not the one the server was started with' : '; the server requires a key: give apiKey') : ''}; nothing was stored`,
        );
      }
    }),
  );
  return { accountId: null };
}
