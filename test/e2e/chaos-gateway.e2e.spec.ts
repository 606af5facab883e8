import { gatewayKill, GatewayKillReport } from '../support/chaos';
import { Stack, startStack } from '../support/stack';

const REDIS_URL = process.env.CHAOS_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Issue #20, scenario 3 (short version; bench/chaos.js runs the long one): two gateway processes sharing their limits
 * in Redis over one LOCAL deployment; long streams and a load run through one, a load through the other; the first
 * is SIGKILLed mid-stream. Its clients see a connection error (no hang, no stream that ends as if whole), the other
 * serves every request whole, the slots the dead process held come back once its liveness key expires (a burst of
 * the whole budget is admitted), and no usage row written before the kill is lost while the survivor's requests are
 * all counted.
 */
describe('a gateway process SIGKILLed mid-stream beside another (real api processes, Redis limits, LOCAL replica)', () => {
  let stack: Stack;
  let r: GatewayKillReport;

  beforeAll(async () => {
    // Tokens 10 ms apart: a 600-token stream runs 6 s, so the kill lands mid-stream.
    stack = await startStack({ env: { SIM_ITL_MS: '10', GATEWAY_QUEUE_TIMEOUT_MS: '20000' } });
    const ws = await stack.workspace('TEAM');
    r = await gatewayKill(stack, ws, {
      budget: 24,
      streamsOnKilled: 6,
      longTokens: 600,
      survivorRate: 20,
      survivorAfterKillMs: 2000,
      settleBoundMs: 30_000,
      redisUrl: REDIS_URL,
    });
  }, 120_000);
  afterAll(async () => {
    await stack?.close();
  });

  it("should give the killed gateway's clients a clean connection error, every request settled within the bound", () => {
    expect(r.killedHung).toBe(0);
    expect(r.killedUnclean).toEqual([]);
    expect(r.killedCleanErrors).toBeGreaterThanOrEqual(6);
  });

  it('should keep serving on the other gateway: its load whole, zero failures', () => {
    expect(r.survivor.failures).toEqual([]);
    expect(r.survivor.ok).toBe(r.survivor.sent);
    expect(r.survivor.sent).toBeGreaterThan(40);
  });

  it("should free the dead process's budget slots within their TTL: a burst of the whole budget is admitted", () => {
    // The dead process held its streams' slots when it died...
    expect(r.slotsHeldAtKill).toBeGreaterThanOrEqual(6);
    // ...and a burst as large as the workspace's budget is then admitted in full.
    expect(r.burstAdmitted).toBe(24);
  });

  it('should lose no usage row written before the kill, and count every request the survivor served', () => {
    expect(r.usageRowsBefore).toBeGreaterThan(0);
    expect(r.usageRowsLost).toBe(0);
    expect(r.survivorCounted).toBe(r.survivor.sent);
  });
});
