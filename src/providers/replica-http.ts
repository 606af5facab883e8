// What every provider whose replicas are OpenAI-compatible HTTP servers asks them: whether they serve, and how much
// they are running. One place for the simulator's /stats and vLLM's Prometheus gauges.
import { request } from 'undici';

const TIMEOUT_MS = 2000;

async function get(address: string, path: string, authorization: string | null): Promise<string | null> {
  const res = await request(`${address}${path}`, {
    method: 'GET',
    headers: authorization ? { authorization } : {},
    headersTimeout: TIMEOUT_MS,
    bodyTimeout: TIMEOUT_MS,
  });
  const text = await res.body.text();
  return res.statusCode === 200 ? text : null;
}

/** 'ready' when the server's /health answers 200, 'starting' otherwise (not up yet, loading, unreachable). */
export async function replicaHealth(address: string, authorization: string | null = null): Promise<'ready' | 'starting'> {
  try {
    return (await get(address, '/health', authorization)) !== null ? 'ready' : 'starting';
  } catch {
    return 'starting';
  }
}

/**
 * Running plus waiting requests: the simulator's /stats, else vLLM's `vllm:num_requests_running` and
 * `vllm:num_requests_waiting` gauges from /metrics; null when the server exposes neither (or does not answer).
 */
export async function replicaInFlight(address: string, authorization: string | null = null): Promise<number | null> {
  try {
    const stats = await get(address, '/stats', authorization);
    if (stats) {
      try {
        const j = JSON.parse(stats) as { active?: number; queued?: number };
        if (typeof j.active === 'number') return j.active + (j.queued ?? 0);
      } catch {
        /* not the simulator's */
      }
    }
    const metrics = await get(address, '/metrics', authorization);
    if (metrics?.includes('vllm:num_requests_running')) {
      const sum = (name: string) =>
        [...metrics.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
      return sum('vllm:num_requests_running') + sum('vllm:num_requests_waiting');
    }
  } catch {
    return null;
  }
  return null;
}
