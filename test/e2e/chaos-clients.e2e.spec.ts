import * as net from 'node:net';
import { rawConnection } from '../support/chaos';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

/**
 * Issue #20: clients that go silent mid-request, on the real api, worker and simulator replicas. One that stops
 * reading a stream (its socket full) is cut once it has taken nothing for GATEWAY_IDLE_TIMEOUT_MS; one that stops
 * sending its body gets a 408 at API_REQUEST_TIMEOUT_MS. Neither keeps its workspace's budget slot or its replica's
 * work past that, and the replica is not blamed for the client's silence. The replicas decode as fast as they can
 * (SIM_ITL_MS=0), so a stream fills the client's socket buffers (some MiB on loopback) within a second or two.
 */
describe('clients that go silent mid-request (real api, worker, simulator replicas)', () => {
  let stack: Stack;
  let key: string;
  let deploymentId: string;

  beforeAll(async () => {
    stack = await startStack({
      env: {
        SIM_ITL_MS: '0',
        GATEWAY_IDLE_TIMEOUT_MS: '1500',
        API_REQUEST_TIMEOUT_MS: '2000',
        API_HEADERS_TIMEOUT_MS: '2000',
      },
    });
    const ws = await stack.workspace('TEAM');
    await stack.prisma.workspace.update({ where: { id: ws.id }, data: { maxConcurrency: 2 } });
    ({ deploymentId, apiKey: key } = await stack.deployed(
      ws.token,
      { name: 'silent-clients' },
      { mode: 'ACTIVE', minReplicas: 2, maxReplicas: 2 },
    ));
  });
  afterAll(async () => {
    await stack?.close();
  });

  const port = () => Number(new URL(stack.url).port);
  const body = (maxTokens: number) =>
    JSON.stringify({ model: 'default', stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: 'go on' }] });
  const head = (length: number) =>
    `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
  const metric = async (line: RegExp) => {
    const text = await (await fetch(`${stack.url}/metrics`)).text();
    const m = text.split('\n').find((l) => line.test(l));
    return m ? Number(m.split(' ').pop()) : 0;
  };
  const stalledCount = () => metric(/^infercp_gateway_requests_total\{route="chat",status="200",code="client_stalled"\}/);
  const ejections = () => metric(new RegExp(`^infercp_gateway_replica_ejections_total\\{deployment="${deploymentId}"\\}`));
  const inFlight = () => metric(new RegExp(`^infercp_gateway_in_flight\\{deployment="${deploymentId}"\\}`));
  /** Requests the deployment's replicas are working on, from their own /stats. */
  const replicasBusy = async () => {
    const rows = await stack.prisma.replica.findMany({ where: { deploymentId, state: 'READY' } });
    let n = 0;
    for (const r of rows) n += ((await (await fetch(`${r.address}/stats`)).json()) as { active: number; queued: number }).active;
    return n;
  };
  const chat = (maxTokens: number) =>
    fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: body(maxTokens),
    });

  /** A stream whose client reads its first event and then reads nothing more, its connection left open. */
  const stalledClient = () =>
    new Promise<{ socket: net.Socket; text: () => string }>((resolve, reject) => {
      const b = body(500_000);
      const socket = net.connect(port(), '127.0.0.1');
      let text = '';
      socket.on('error', () => {});
      socket.on('data', (chunk) => {
        text += chunk.toString('latin1');
        if (text.includes('\r\n\r\n') && !text.startsWith('HTTP/1.1 200')) reject(new Error(text.slice(0, 300)));
        if (text.includes('data: ')) {
          socket.pause();
          resolve({ socket, text: () => text });
        }
      });
      socket.write(head(Buffer.byteLength(b)) + b);
    });

  it('should cut a client that stops reading a stream, give its budget slot back, cancel its replica request, and not eject the replica', async () => {
    const ejectedBefore = await ejections();
    const stalledBefore = await stalledCount();
    const clients = [await stalledClient(), await stalledClient()];
    // While they sit there they hold the workspace's whole budget of 2.
    const refused = await chat(5);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('concurrency_limit_exceeded');

    // Each is cut once its socket has been full for the idle timeout, as a client's stall, not the replica's.
    await eventually(async () => (await stalledCount()) - stalledBefore === 2 || null, 60_000, 200);
    expect(await inFlight()).toBe(0);
    await eventually(async () => (await replicasBusy()) === 0 || null, 10_000, 100);
    expect(await ejections()).toBe(ejectedBefore);
    // The server is done with them: what they had read is a stream cut short (no [DONE]). (Whether the kernel still
    // delivers what it had buffered for a socket closed under a zero window is the kernel's business, not asserted.)
    for (const c of clients) {
      expect(c.text()).toContain('data: {');
      expect(c.text()).not.toContain('data: [DONE]');
      c.socket.destroy();
    }

    // Both slots are back, and both replicas take requests.
    const next = await Promise.all([chat(200), chat(200)]);
    expect(next.map((r) => r.status)).toEqual([200, 200]);
    for (const r of next) expect(await r.text()).toContain('data: [DONE]');
  });

  it('should answer 408 to a client that stops sending its body, holding no budget slot meanwhile', async () => {
    const b = body(5);
    // Headers and the first ten bytes of the body, then nothing.
    const silent = rawConnection(port(), head(Buffer.byteLength(b)) + b.slice(0, 10), null, 0, 20_000);
    // Meanwhile the whole budget of 2 is free for requests that arrive whole.
    const whole = await Promise.all([chat(5), chat(5)]);
    expect(whole.map((r) => r.status)).toEqual([200, 200]);
    await Promise.all(whole.map((r) => r.text()));
    const r = await silent;
    expect(r).toMatchObject({ closedByServer: true, status: 408 });
    expect(await inFlight()).toBe(0);
  });
});
