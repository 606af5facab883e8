import { AbuseReport, httpAbuse } from '../support/chaos';
import { Stack, startStack } from '../support/stack';

/**
 * Issue #20, scenario 5 (the HTTP part; the GraphQL depth and cost limits have their own tests): an api process with a
 * 2 s headers timeout gets a slowloris (a header one byte every 100 ms), 2,000 connections that never send a byte, and
 * heads past the 16 KiB header limit on /v1 and /graphql, while real requests are made beside them.
 */
describe('slowloris, idle connections and oversized headers on the api port (a real api process)', () => {
  let stack: Stack;
  let r: AbuseReport;

  beforeAll(async () => {
    stack = await startStack();
    const ws = await stack.workspace('TEAM');
    r = await httpAbuse(stack, ws, { headersTimeoutMs: 2000, idle: 2000, boundMs: 20_000 });
  }, 90_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('should cut a client that sends its headers one byte at a time, with a 408, within the bound', () => {
    expect(r.slowloris.closedByServer).toBe(true);
    expect(r.slowloris.status).toBe(408);
  });

  it('should close 2,000 idle connections after the headers timeout', () => {
    expect(r.idle.opened).toBe(2000);
    expect(r.idle.closedByServer).toBe(2000);
    expect(r.idle.still).toBe(0);
  });

  it('should answer real requests while the idle connections and the slowloris sit there', () => {
    expect(r.realDuringIdle.status).toBe(200);
    expect(r.realDuringSlowloris.status).toBe(200);
    expect(r.healthDuringIdle).toBe(200);
  });

  it('should answer a head past the header limit with a 431, on /v1 and on /graphql', () => {
    expect(r.oversizedV1.status).toBe(431);
    expect(r.oversizedGraphql.status).toBe(431);
  });

  it('should never answer a 5xx', () => {
    expect(r.any500).toBe(false);
  });
});
