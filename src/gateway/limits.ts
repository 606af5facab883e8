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

/** A workspace's slot as the store gave it: released by this id, so giving it back twice frees it once. */
export interface Slot {
  ok: boolean;
  /** Slots of the workspace in use, this one included when ok. */
  inUse: number;
  /** The slot's id, when ok. */
  id?: string;
}

export interface LimitStore {
  takeRate(keyId: string, limitPerMinute: number, burst: number): Promise<RateDecision>;
  /** Reserves one of `budget` concurrent slots of a workspace; not ok when all are taken. */
  acquireSlot(workspaceId: string, budget: number): Promise<Slot>;
  /** Gives back the slot of that id; a slot already given back (or expired) is a no-op. */
  releaseSlot(workspaceId: string, slotId: string): Promise<void>;
  close(): Promise<void>;
}

/** One gateway process: the counts live here. */
export class MemoryLimitStore implements LimitStore {
  private readonly tats = new Map<string, number>();
  private readonly slots = new Map<string, Set<string>>();
  private seq = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async takeRate(keyId: string, limitPerMinute: number, burst: number): Promise<RateDecision> {
    const d = gcra(this.tats.get(keyId) ?? null, this.now(), limitPerMinute, burst);
    if (d.allowed) this.tats.set(keyId, d.tat);
    return d;
  }

  async acquireSlot(workspaceId: string, budget: number): Promise<Slot> {
    let held = this.slots.get(workspaceId);
    if (held && held.size >= budget) return { ok: false, inUse: held.size };
    if (!held) this.slots.set(workspaceId, (held = new Set()));
    const id = `m${++this.seq}`;
    held.add(id);
    return { ok: true, inUse: held.size, id };
  }

  async releaseSlot(workspaceId: string, slotId: string) {
    const held = this.slots.get(workspaceId);
    if (!held) return;
    held.delete(slotId);
    if (held.size === 0) this.slots.delete(workspaceId);
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

// A workspace's slots are leases in one sorted set: member = slot id (the gateway's id, '#', a sequence), score = when
// the lease ends on the Redis clock. A gateway renews the leases of the requests it still serves every lease/4, so the
// slots of a gateway that died (it renews nothing) lapse within one lease, each on its own, while a live gateway's
// long streams keep theirs. Releasing is ZREM of the id: a release given twice (its reply was lost, so it was sent
// again) frees one slot, never another request's.
// KEYS[1] = the workspace's slot set; ARGV = slot id, budget, lease ms.
const ACQUIRE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 1000)
return {1, n + 1}
`;

// KEYS[1] = the workspace's slot set; ARGV = lease ms, then the ids this gateway still holds. Re-adds a lease that
// lapsed while Redis was away: the request still runs, so it counts again.
const RENEW_SCRIPT = `
local t = redis.call('TIME')
local until_ = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], until_, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + 1000)
return #ARGV - 1
`;

/**
 * Several gateway processes: counts live in Redis, each check one atomic script. A release that cannot reach Redis
 * is owed and paid with the next renewal that does; until then its lease is no longer renewed, so it lapses anyway.
 */
export class RedisLimitStore implements LimitStore {
  private readonly renewal: NodeJS.Timeout;
  /** Slots this gateway holds, by workspace: their leases are renewed. */
  private readonly held = new Map<string, Set<string>>();
  /** Releases Redis has not taken yet, by workspace. */
  private readonly owed = new Map<string, Set<string>>();
  private seq = 0;

  constructor(
    private readonly redis: Redis,
    private readonly gatewayId: string,
    private readonly prefix = 'infercp:',
    /** How long a slot lasts without renewal: a dead gateway's slots are free again within this. */
    private readonly leaseMs = 10_000,
  ) {
    redis.defineCommand('infercpRate', { numberOfKeys: 1, lua: RATE_SCRIPT });
    redis.defineCommand('infercpAcquire', { numberOfKeys: 1, lua: ACQUIRE_SCRIPT });
    redis.defineCommand('infercpRenew', { numberOfKeys: 1, lua: RENEW_SCRIPT });
    // Connection errors surface on the commands (admission falls back to this process); not as unhandled events.
    redis.on('error', () => {});
    this.renewal = setInterval(() => void this.renew().catch(() => {}), Math.max(10, Math.floor(leaseMs / 4)));
    this.renewal.unref();
  }

  private run<T>(name: string, ...args: Array<string | number>): Promise<T> {
    return (this.redis as unknown as Record<string, (...a: Array<string | number>) => Promise<T>>)[name](...args);
  }

  private slotsKey(workspaceId: string) {
    return `${this.prefix}slots:${workspaceId}`;
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

  async acquireSlot(workspaceId: string, budget: number): Promise<Slot> {
    const id = `${this.gatewayId}#${++this.seq}`;
    const [ok, inUse] = await this.run<number[]>('infercpAcquire', this.slotsKey(workspaceId), id, budget, this.leaseMs);
    if (ok !== 1) return { ok: false, inUse };
    let held = this.held.get(workspaceId);
    if (!held) this.held.set(workspaceId, (held = new Set()));
    held.add(id);
    return { ok: true, inUse, id };
  }

  async releaseSlot(workspaceId: string, slotId: string) {
    // Out of the held set first, in the same tick the ZREM is queued: a renewal queued after this one cannot carry it,
    // and one queued before runs before the ZREM on this connection.
    const held = this.held.get(workspaceId);
    held?.delete(slotId);
    if (held?.size === 0) this.held.delete(workspaceId);
    try {
      await this.redis.zrem(this.slotsKey(workspaceId), slotId);
    } catch {
      let owed = this.owed.get(workspaceId);
      if (!owed) this.owed.set(workspaceId, (owed = new Set()));
      owed.add(slotId);
    }
  }

  /** Releases owed since Redis was last reachable. */
  get owedReleases(): number {
    let n = 0;
    for (const v of this.owed.values()) n += v.size;
    return n;
  }

  /** Renews the leases of the slots held, then pays the releases owed. */
  async renew() {
    await Promise.all([...this.held].map(([ws, ids]) => this.run('infercpRenew', this.slotsKey(ws), this.leaseMs, ...ids)));
    for (const [ws, ids] of [...this.owed]) {
      this.owed.delete(ws);
      try {
        await this.redis.zrem(this.slotsKey(ws), ...ids);
      } catch {
        const owed = this.owed.get(ws) ?? new Set();
        for (const id of ids) owed.add(id);
        this.owed.set(ws, owed);
        return;
      }
    }
  }

  async close() {
    clearInterval(this.renewal);
    // What this gateway still holds is given back now, not a lease later.
    await Promise.all([...this.held].map(([ws, ids]) => this.redis.zrem(this.slotsKey(ws), ...ids).catch(() => 0)));
    this.held.clear();
    this.redis.disconnect();
  }
}
