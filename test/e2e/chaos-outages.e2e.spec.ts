import {
  postgresOutage,
  PostgresOutageReport,
  redisOutage,
  RedisOutageReport,
  temporalOutage,
  TemporalOutageReport,
} from '../support/chaos';
import { Stack, startStack } from '../support/stack';

const REDIS_URL = process.env.CHAOS_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Issue #20, scenario 4 (short versions; bench/chaos.js runs 30 s outages): a gateway process whose Postgres, Redis
 * or Temporal goes through a TCP proxy that the test cuts (every connection reset, new ones refused) and restores,
 * under a steady load of chat completions on a LOCAL deployment.
 */
describe('a gateway process cut off from Postgres, Redis or Temporal (real api processes, TCP proxies)', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });

  describe('Postgres unreachable for 5 s', () => {
    let r: PostgresOutageReport;
    beforeAll(async () => {
      const ws = await stack.workspace('TEAM');
      r = await postgresOutage(stack, ws, { outageMs: 5000, rate: 20, staleServeMs: 60_000, cacheTtlMs: 2000 });
    }, 90_000);

    it('should keep serving requests whose key and route are cached, past their TTL, within the stale bound', () => {
      expect(r.connectionsReset).toBeGreaterThan(0);
      expect(r.sentDuringOutage).toBeGreaterThan(50);
      expect(r.load.failures).toEqual([]);
      expect(r.load.ok).toBe(r.load.sent);
    });

    it('should buffer the usage and write all of it once Postgres is back, each request counted once', () => {
      expect(r.counted).toBe(r.load.sent);
      expect(r.countedLater).toBe(r.load.sent);
    });

    it('should answer a key never seen before with a 503 database_unavailable, settled within the read bound', () => {
      expect(r.freshKey).toMatchObject({ status: 503, code: 'database_unavailable' });
      // Settled, not hung: the read bound is 5 s; a hang would run into the 30 s bound.
      expect(r.freshKey.ms).toBeLessThan(30_000);
    });

    it('should answer 503 database_unavailable for a cached key past GATEWAY_STALE_SERVE_MS, and serve it again after', () => {
      expect(r.pastBound).toMatchObject({ status: 503, code: 'database_unavailable' });
      expect(r.pastBoundAfter.status).toBe(200);
    });

    it('should reconnect its LISTEN connection: a key revoked after the restore is refused at once, not after the TTL', () => {
      expect(r.revokedRefusedMs).not.toBeNull();
    });
  });

  describe('Redis unreachable for 4 s', () => {
    let r: RedisOutageReport;
    beforeAll(async () => {
      const ws = await stack.workspace('TEAM');
      r = await redisOutage(stack, ws, { outageMs: 4000, rate: 20, redisUrl: REDIS_URL });
    }, 90_000);

    it('should serve every request on in-process limits while Redis is away, and say so in its metrics', () => {
      expect(r.connectionsReset).toBeGreaterThan(0);
      expect(r.sentDuringOutage).toBeGreaterThan(40);
      expect(r.load.failures).toEqual([]);
      expect(r.degradedDuring).toBe(1);
    });

    it('should go back to the shared limits once Redis returns', () => {
      expect(r.degradedAfter).toBe(0);
      expect(r.sharedAgain).toBe(true);
    });

    it('should leave no slot taken in Redis once the load is done: none leaked by a lost release, none given back twice', () => {
      expect(r.slotsLeft).toBe(0);
    });
  });

  // Longer than the 5 s a load report may wait for its answer: a report sent as the cut begins fails within the outage
  // rather than hanging past the restore and succeeding.
  describe('Temporal unreachable for 7 s', () => {
    let r: TemporalOutageReport;
    beforeAll(async () => {
      const ws = await stack.workspace('TEAM');
      r = await temporalOutage(stack, ws, { outageMs: 7000, rate: 20, catchUpBoundMs: 30_000 });
    }, 90_000);

    it("should keep serving an ACTIVE deployment's requests while its load reports fail", () => {
      expect(r.connectionsReset).toBeGreaterThan(0);
      expect(r.sentDuringOutage).toBeGreaterThan(40);
      expect(r.load.failures).toEqual([]);
      expect(r.reportsOkBeforeOutage).toBeGreaterThan(0);
      expect(r.reportsFailedDuring).toBeGreaterThan(0);
    });

    it('should deliver load reports to the scaler again once Temporal is back', () => {
      expect(r.reportsOkAfter).toBeGreaterThanOrEqual(3);
    });
  });
});
