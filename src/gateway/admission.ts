// Admission of a /v1 request before its body is read: the key (401), then the workspace's spend cap (403), the key's
// rate (429) and the workspace's concurrency budget (429), counted in the shared limit store or, while it is down, here.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { bearer } from '../common/secrets';
import type { Directory, KeyInfo } from './directory';
import { invalidKey, OpenAIError } from './errors';
import { LimitStore, MemoryLimitStore } from './limits';

/** What admission hands the request path: headers for every response, and the slot to give back once. */
export interface Admitted {
  headers: Record<string, string>;
  release: () => void;
}

export class Admission {
  private readonly fallbackLimits = new MemoryLimitStore();
  private lastLimitErrorAt = 0;

  constructor(
    private readonly directory: Directory,
    /** Where rate and concurrency counts live: this process, or Redis shared by every gateway. */
    private readonly limits: LimitStore,
    private readonly log: Logger,
    /** A key's bucket holds this many seconds of its per-minute rate as a burst. */
    private readonly rateBurstSeconds: number,
  ) {}

  async authenticate(req: IncomingMessage): Promise<KeyInfo | OpenAIError> {
    const token = bearer(req.headers.authorization);
    if (!token) return invalidKey('Missing API key. Send Authorization: Bearer <key>.');
    const key = await this.directory.key(token);
    const now = Date.now();
    if (!key || key.issuedAt === null) return invalidKey();
    if (key.revokedAt !== null) return invalidKey('This API key has been revoked.');
    if (key.expiresAt !== null && key.expiresAt <= now) {
      if (key.rotatedAt === null) return invalidKey('This API key has expired.');
      return invalidKey(
        `This API key was rotated on ${new Date(key.rotatedAt).toISOString()} and its grace period ended on ${new Date(key.expiresAt).toISOString()}; ` +
          `use the key that replaced it${key.replacedByPrefix ? ` (${key.replacedByPrefix}...)` : ''}.`,
      );
    }
    return key;
  }

  /** Admission after the key: spend cap (403), key rate (429), workspace concurrency budget (429), in that order. */
  async admit(key: KeyInfo): Promise<Admitted | OpenAIError> {
    if (key.spendCapUsd !== null) {
      const spent = await this.directory.monthSpendUsd(key.workspaceId);
      if (spent >= key.spendCapUsd) {
        return {
          ok: false,
          status: 403,
          type: 'permission_error',
          code: 'plan_limit_exceeded',
          message: `This workspace has spent $${spent.toFixed(2)} of its $${key.spendCapUsd.toFixed(2)} monthly spend cap; raise the cap to continue.`,
        };
      }
    }
    const headers: Record<string, string> = {};
    if (key.ratePerMinute !== null) {
      const limit = key.ratePerMinute;
      const burst = Math.max(1, Math.round((limit * this.rateBurstSeconds) / 60));
      const r = await this.limited((l) => l.takeRate(key.id, limit, burst));
      headers['x-ratelimit-limit'] = String(limit);
      headers['x-ratelimit-remaining'] = String(r.remaining);
      // Unix seconds, as the reference documents; the seconds from now too, for clients that want a duration.
      headers['x-ratelimit-reset'] = String(Math.ceil((Date.now() + r.resetMs) / 1000));
      headers['x-ratelimit-reset-after'] = String(Math.ceil(r.resetMs / 1000));
      if (!r.allowed) {
        return {
          ok: false,
          status: 429,
          type: 'rate_limit_error',
          code: 'rate_limit_exceeded',
          message: `Rate limit of ${limit} requests per minute reached for this key; retry after the Retry-After header's seconds.`,
          headers: Object.assign(headers, { 'retry-after': String(Math.max(1, Math.ceil(r.retryAfterMs / 1000))) }),
        };
      }
    }
    const slot = await this.limited((l) => l.acquireSlot(key.workspaceId, key.concurrencyBudget));
    if (!slot.ok) {
      return {
        ok: false,
        status: 429,
        type: 'rate_limit_error',
        code: 'concurrency_limit_exceeded',
        message: `This workspace already has ${slot.inUse} requests in flight, its plan's budget of ${key.concurrencyBudget}; retry when some finish.`,
        headers: Object.assign(headers, { 'retry-after': '1' }),
      };
    }
    let released = false;
    return {
      headers,
      release: () => {
        if (released) return;
        released = true;
        void this.limited((l) => l.releaseSlot(key.workspaceId)).catch(() => {});
      },
    };
  }

  /** The shared store, or this process's counts while it is unreachable (availability over exactness, logged). */
  private async limited<T>(f: (store: LimitStore) => Promise<T>): Promise<T> {
    try {
      return await f(this.limits);
    } catch (err) {
      if (Date.now() - this.lastLimitErrorAt > 10_000) {
        this.lastLimitErrorAt = Date.now();
        this.log.error({ err: (err as Error).message }, 'limit store unreachable; counting in this process until it returns');
      }
      return f(this.fallbackLimits);
    }
  }
}
