import { SilentClientsReport, silentClients } from '../support/chaos';
import { Stack, startStack } from '../support/stack';

/**
 * Issue #20, clients that go silent mid-request, on the real api, worker and simulator replicas. One that stops reading
 * a stream (its socket full) is cut once it has taken nothing for GATEWAY_IDLE_TIMEOUT_MS; one that stops sending its
 * body gets a 408 at API_REQUEST_TIMEOUT_MS. Neither keeps its workspace's budget slot or its replica's work past that,
 * and the replica is not blamed for the client's silence. The replicas decode as fast as they can (SIM_ITL_MS=0), so a
 * stream fills the client's socket buffers (some MiB on loopback) within a second or two.
 */
describe('clients that go silent mid-request (real api, worker, simulator replicas)', () => {
  let stack: Stack;
  let r: SilentClientsReport;

  beforeAll(async () => {
    stack = await startStack({
      env: { SIM_ITL_MS: '0', GATEWAY_IDLE_TIMEOUT_MS: '1500', API_REQUEST_TIMEOUT_MS: '2000', API_HEADERS_TIMEOUT_MS: '2000' },
    });
    r = await silentClients(stack, await stack.workspace('TEAM'), { stalled: 2, boundMs: 60_000 });
  }, 120_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('should hold the budget slots of clients that stop reading only until they are cut', () => {
    expect(r.refusedWhileStalled).toEqual({ status: 429, code: 'concurrency_limit_exceeded' });
    expect(r.cut).toBe(2);
    expect(r.afterStatuses).toEqual([200, 200]);
  });

  it("should cancel their replicas' work and not eject the replicas for the client's silence", () => {
    expect(r.inFlightAfter).toBe(0);
    expect(r.replicasBusyAfter).toBe(0);
    expect(r.ejections).toBe(0);
  });

  it('should leave what they read as a stream cut short, not one that looks whole', () => {
    expect(r.readWhole).toBe(0);
  });

  it('should answer 408 to a client that stops sending its body, holding no budget slot meanwhile', () => {
    expect(r.wholeDuringHalfBody).toEqual([200, 200]);
    expect(r.halfBody).toMatchObject({ closedByServer: true, status: 408 });
  });
});
