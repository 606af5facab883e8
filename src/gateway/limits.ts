// Admission limits: a per-key request rate (a leaky bucket as GCRA, one timestamp per key) and a per-workspace
// concurrency budget, in this process (one gateway) or in Redis (several gateways share the counts exactly: every
// check is one atomic script on the Redis clock).
import type { Redis } from 'ioredis';

export interface RateDecision {
  allowed: boolean;
  /** Requests that could still be made at once. */
  remaining: number;
  /** Until the bucket is full again, ms. */
  resetMs: number;
  /** When refused: until one request fits, ms. */
  retryAfterMs: number;
}

/**
 * GCRA: a bucket of `burst` requests that drains one request every 60000/limit
 * ms. `tat` is the theoretical arrival time stored per key. In any interval of
 * t ms at most burst + t * limit / 60000 requests pass.
 */
export function gcra(tat: number | null, now: number, limitPerMinute: number, burst: number): RateDecision & { tat: number } {
  const interval = 60_000 / limitPerMinute;
  const tolerance = interval * burst;
  const base = Math.max(tat ?? now, now);
  const next = base + interval;
  const allowAt = next - tolerance;
  if (allowAt > now) return { allowed: false, remaining: 0, resetMs: base - now, retryAfterMs: allowAt - now, tat: base };
  return { allowed: true, remaining: Math.floor((tolerance - (next - now)) / interval), resetMs: next - now, retryAfterMs: 0, tat: next };
}

export interface LimitStore {
  takeRate(keyId: string, limitPerMinute: number, burst: number): Promise<RateDecision>;
  /** Reserves one of `budget` concurrent slots of a workspace; false when all are taken. */
  acquireSlot(workspaceId: string, budget: number): Promise<{ ok: boolean; inUse: number }>;
  releaseSlot(workspaceId: string): Promise<void>;
  close(): Promise<void>;
}

/** One gateway process: the counts live here. */
export class MemoryLimitStore implements LimitStore {
  private readonly tats = new Map<string, number>();
  private readonly slots = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  async takeRate(keyId: string, limitPerMinute: number, burst: number): Promise<RateDecision> {
    const d = gcra(this.tats.get(keyId) ?? null, this.now(), limitPerMinute, burst);
    if (d.allowed) this.tats.set(keyId, d.tat);
    return d;
  }

  async acquireSlot(workspaceId: string, budget: number) {
    const n = this.slots.get(workspaceId) ?? 0;
    if (n >= budget) return { ok: false, inUse: n };
    this.slots.set(workspaceId, n + 1);
    return { ok: true, inUse: n + 1 };
  }

  async releaseSlot(workspaceId: string) {
    const n = (this.slots.get(workspaceId) ?? 1) - 1;
    if (n <= 0) this.slots.delete(workspaceId);
    else this.slots.set(workspaceId, n);
  }

  async close() {}
}

// The same GCRA as gcra() above, on the Redis clock. KEYS[1] = the key's TAT; ARGV = interval ms, tolerance ms.
const RATE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
local allowAt = nxt - tolerance
if allowAt > now then
  return {0, 0, math.ceil(tat - now), math.ceil(allowAt - now)}
end
redis.call('SET', KEYS[1], tostring(nxt), 'PX', math.ceil(nxt - now) + 1000)
return {1, math.floor((tolerance - (nxt - now)) / interval), math.ceil(nxt - now), 0}
`;

// KEYS[1] = hash of slots per gateway for a workspace; ARGV = gateway id, budget, liveness key prefix, liveness TTL ms.
// Slots held by a gateway whose liveness key expired (it died) are dropped, so a crash leaks nothing for long.
// The caller is alive by definition: its own key is renewed first.
const ACQUIRE_SCRIPT = `
redis.call('SET', ARGV[3] .. ARGV[1], '1', 'PX', ARGV[4])
local fields = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #fields, 2 do
  if redis.call('EXISTS', ARGV[3] .. fields[i]) == 0 then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    sum = sum + tonumber(fields[i + 1])
  end
end
if sum >= tonumber(ARGV[2]) then return {0, sum} end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return {1, sum + 1}
`;

// KEYS[1] = hash of slots per gateway for a workspace; ARGV = gateway id, slots given back. Never below zero: a release
// whose reply was lost (the connection dropped after Redis ran it) is owed and paid again, and must not make this
// gateway's count negative (a negative field would let other gateways past the budget).
const RELEASE_SCRIPT = `
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if v < 0 then redis.call('HSET', KEYS[1], ARGV[1], 0) return 0 end
return v
`;

/**
 * Several gateway processes: counts live in Redis, each check one atomic script. A release that cannot reach Redis
 * is owed, and paid with the next heartbeat that does (this gateway's liveness key lives on, so a slot never given
 * back would stay taken for good).
 */
export class RedisLimitStore implements LimitStore {
  private readonly alive: NodeJS.Timeout;
  private readonly aliveKey: string;
  private readonly livenessTtlMs: number;
  /** Releases Redis has not taken yet, by workspace. */
  private readonly owed = new Map<string, number>();

  constructor(
    private readonly redis: Redis,
    private readonly gatewayId: string,
    private readonly prefix = 'infercp:',
    livenessTtlMs = 10_000,
  ) {
    redis.defineCommand('infercpRate', { numberOfKeys: 1, lua: RATE_SCRIPT });
    redis.defineCommand('infercpAcquire', { numberOfKeys: 1, lua: ACQUIRE_SCRIPT });
    redis.defineCommand('infercpRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT });
    this.aliveKey = `${prefix}gw:${gatewayId}`;
    this.livenessTtlMs = livenessTtlMs;
    // Connection errors surface on the commands (admission falls back to this process); not as unhandled events.
    redis.on('error', () => {});
    const beat = () =>
      void redis
        .set(this.aliveKey, '1', 'PX', livenessTtlMs)
        .then(() => this.payOwed())
        .catch(() => {});
    beat();
    this.alive = setInterval(beat, Math.floor(livenessTtlMs / 4));
    this.alive.unref();
  }

  private run<T>(name: string, ...args: Array<string | number>): Promise<T> {
    return (this.redis as unknown as Record<string, (...a: Array<string | number>) => Promise<T>>)[name](...args);
  }

  async takeRate(keyId: string, limitPerMinute: number, burst: number): Promise<RateDecision> {
    const interval = 60_000 / limitPerMinute;
    const [ok, remaining, resetMs, retryAfterMs] = await this.run<number[]>(
      'infercpRate',
      `${this.prefix}rate:${keyId}`,
      interval,
      interval * burst,
    );
    return { allowed: ok === 1, remaining, resetMs, retryAfterMs };
  }

  async acquireSlot(workspaceId: string, budget: number) {
    const [ok, inUse] = await this.run<number[]>(
      'infercpAcquire',
      `${this.prefix}slots:${workspaceId}`,
      this.gatewayId,
      budget,
      `${this.prefix}gw:`,
      this.livenessTtlMs,
    );
    return { ok: ok === 1, inUse };
  }

  async releaseSlot(workspaceId: string) {
    try {
      await this.run('infercpRelease', `${this.prefix}slots:${workspaceId}`, this.gatewayId, 1);
    } catch {
      this.owed.set(workspaceId, (this.owed.get(workspaceId) ?? 0) + 1);
    }
  }

  /** Releases owed since Redis was last reachable. */
  get owedReleases(): number {
    let n = 0;
    for (const v of this.owed.values()) n += v;
    return n;
  }

  /** Gives Redis the releases it missed (each workspace's at once, relative, so a concurrent acquire is not undone). */
  async payOwed() {
    for (const [ws, n] of [...this.owed]) {
      this.owed.delete(ws);
      try {
        await this.run('infercpRelease', `${this.prefix}slots:${ws}`, this.gatewayId, n);
      } catch {
        this.owed.set(ws, (this.owed.get(ws) ?? 0) + n);
        return;
      }
    }
  }

  async close() {
    clearInterval(this.alive);
    await this.redis.del(this.aliveKey).catch(() => {});
    this.redis.disconnect();
  }
}
