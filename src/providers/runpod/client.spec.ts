import { classify, parseRateLimit } from './client';
import { providerFailure, runpodPool } from './runpod.provider';

const problem = 'application/problem+json';
const body = (status: number, detail: string, errors?: string[]) => JSON.stringify({ title: 'x', status, detail, errors });

describe('RunPod failures, mapped once', () => {
  it('should tell a rejected key, a key without Serverless access and a CDN block apart', () => {
    expect(classify('create endpoint e', 401, problem, body(401, 'missing bearer token'), {})).toMatchObject({
      kind: 'unauthorized',
      message: 'create endpoint e: RunPod rejected the API key (401: missing bearer token)',
    });
    expect(classify('list', 403, problem, body(403, 'access denied'), {})).toMatchObject({ kind: 'forbidden', transient: false });
    // A WAF block answers 403 with an HTML page: not proof of a key without access, so it is retried.
    expect(classify('list', 403, 'text/html; charset=UTF-8', '<html>Attention Required! | Cloudflare</html>', {})).toMatchObject({
      kind: 'transient',
      transient: true,
    });
  });

  it("should carry RunPod's validation detail and its errors[] into a permanent failure", () => {
    const e = classify(
      'create endpoint e',
      422,
      problem,
      body(422, 'Request validation failed.', ['/workers/idleTimeout: must be >= 1']),
      {},
    );
    expect(e).toMatchObject({ kind: 'invalid', transient: false });
    expect(e.message).toBe('create endpoint e: RunPod answered 422 (Request validation failed.; /workers/idleTimeout: must be >= 1)');
    const failure = providerFailure(e);
    expect(failure.name).toBe('ProviderPermanentError');
    expect(failure.message).toContain('/workers/idleTimeout');
  });

  it('should retry a rate limit after the Retry-After RunPod sent, and 5xx and timeouts with backoff', () => {
    const limited = classify('update endpoint e', 429, problem, body(429, 'rate limit exceeded for the minute window'), {
      'retry-after': '7',
    });
    expect(limited).toMatchObject({ kind: 'rate_limited', retryAfterSeconds: 7, transient: true });
    const failure = providerFailure(limited) as Error & { type?: string; nextRetryDelay?: unknown };
    expect(failure).toMatchObject({ type: 'ProviderError', nextRetryDelay: '7s' });
    // Without Retry-After, the minute window's reset from the RateLimit header.
    expect(classify('x', 429, problem, '', { ratelimit: '"minute";r=0;t=12, "hour";r=2800;t=1812' }).retryAfterSeconds).toBe(12);
    expect(providerFailure(classify('x', 503, 'text/plain', 'upstream connect error', {})).name).toBe('ProviderError');
  });

  it('should read the minute window of the RateLimit header', () => {
    expect(parseRateLimit('"minute";r=0;t=12, "hour";r=2800;t=1812, "day";r=49500;t=45012')).toEqual({ remaining: 0, resetSeconds: 12 });
    expect(parseRateLimit(undefined)).toBeNull();
  });
});

describe('GPU names to RunPod serverless pools', () => {
  it('should map the GPUs users name to their pools, and refuse others naming the ones it knows', () => {
    expect(['H100', 'h100-80gb', 'NVIDIA H100 80GB HBM3'].map(runpodPool)).toEqual(['ADA_80_PRO', 'ADA_80_PRO', 'ADA_80_PRO']);
    expect(['NVIDIA L40S', 'NVIDIA GeForce RTX 4090', 'NVIDIA A40'].map(runpodPool)).toEqual(['ADA_48_PRO', 'ADA_24', 'AMPERE_48']);
    expect(['H200', 'A100', 'L40S', 'RTX 4090', 'L4', 'A4000', 'AMPERE_48'].map(runpodPool)).toEqual([
      'HOPPER_141',
      'AMPERE_80',
      'ADA_48_PRO',
      'ADA_24',
      'AMPERE_24',
      'AMPERE_16',
      'AMPERE_48',
    ]);
    expect(() => runpodPool('TPU-v5')).toThrow(/GPU "TPU-v5" has no RunPod serverless pool; one of H200; H100; A100/);
  });
});
