// Admission of a /v1 request: before its body is read, the key (401), the workspace's spend cap (403) and the key's
// rate (429); once it has arrived, the workspace's concurrency budget (429), counted in the shared limit store or, while it is down, here.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { bearer } from '../common/secrets';
import type { Directory, KeyInfo } from './directory';
import { invalidKey, OpenAIError, refused } from './errors';
import { LimitStore, MemoryLimitStore } from './limits';

/** What admission hands the request path: headers for every response, and the slot to give back once. */
export interface Admitted {
  headers: Record<string, string>;
  release: () => void;
}

export class Admission {
  private readonly fallbackLimits = new MemoryLimitStore();
  /** While the shared store is unreachable: until when requests count here without trying it again. */
  private degradedUntil = 0;
  private degraded = false;

  constructor(
    private readonly directory: Directory,
    /** Where rate and concurrency counts live: this process, or Redis shared by every gateway. */
    private readonly limits: LimitStore,
    private readonly log: Logger,
    /** A key's bucket holds this many seconds of its per-minute rate as a burst. */
    private readonly rateBurstSeconds: number,
    /** Told true when the shared store becomes unreachable and false when it answers again (a metric). */
    private readonly onDegraded?: (degraded: boolean) => void,
    /** How long after a failure requests count here before the shared store is tried again, ms. */
    private readonly retryMs = 1000,
    private readonly now: () => number = Date.now,
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
    const checked = await this.check(key);
    if (refused(checked)) return checked;
    return this.slot(key, checked.headers);
  }

  /**
   * What is decided on the headers alone: the spend cap (403) and the key's rate (429). A request refused here costs
   * no body read. Resolves to the rate headers every response carries.
   */
  async check(key: KeyInfo): Promise<{ headers: Record<string, string> } | OpenAIError> {
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
    return { headers };
  }

  /**
   * The workspace's concurrency budget (429): a slot once the body has arrived. A client still sending its body (or one
   * that went silent in the middle of it) is not yet work at a replica and holds no slot meanwhile.
   */
  async slot(key: KeyInfo, headers: Record<string, string>): Promise<Admitted | OpenAIError> {
    // A slot goes back to the store that gave it: one counted here while Redis was away is not taken off Redis's count.
    let store: LimitStore = this.limits;
    const slot = await this.limited((l) => {
      store = l;
      return l.acquireSlot(key.workspaceId, key.concurrencyBudget);
    });
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
        void store.releaseSlot(key.workspaceId, slot.id!).catch(() => {});
      },
    };
  }

  /**
   * The shared store, or this process's counts while it is unreachable (availability over exactness): one warning when
   * it goes, one when it is back; meanwhile it is tried again once per retryMs, not on every request.
   */
  private async limited<T>(f: (store: LimitStore) => Promise<T>): Promise<T> {
    if (this.now() < this.degradedUntil) return f(this.fallbackLimits);
    try {
      const v = await f(this.limits);
      if (this.degraded) {
        this.degraded = false;
        this.onDegraded?.(false);
        this.log.warn('limit store reachable again; rate and concurrency are shared across gateways again');
      }
      return v;
    } catch (err) {
      this.degradedUntil = this.now() + this.retryMs;
      if (!this.degraded) {
        this.degraded = true;
        this.onDegraded?.(true);
        this.log.warn(
          { err: (err as Error).message },
          'limit store (Redis) unreachable; counting rate and concurrency in this process until it returns',
        );
      }
      return f(this.fallbackLimits);
    }
  }
}
