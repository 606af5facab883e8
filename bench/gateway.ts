/**
 * What the gateway adds on the request path, measured against the same
 * simulator replica called directly, in the same run, interleaved.
 *
 * - non-streamed: added latency p50/p99 at 500 and 1,000 requests/s, from an
 *   open-loop generator (requests leave at fixed times and latency counts from
 *   that time, so a slow response cannot hide the ones queued behind it);
 * - peak requests/s through the gateway (auth, limits, routing, usage, metrics on)
 *   as a ratio to a bare pass-through proxy (bench/passthrough.ts);
 * - streamed: added time to first token and added gap between chunks;
 * - 2,000 concurrent SSE streams at ~20 tokens/s: errors, dropped chunks, gateway
 *   CPU and memory per stream;
 * - aborts: client abort to upstream close p99 before and after the first token,
 *   and the gateway's file handles, RSS and live heap (after a full collection) after 10,000 abort cycles.
 *
 *   npm run build && node dist/bench/gateway.js [phaseSeconds=2] [streams=2000] [streamSeconds=60] [abortCycles=10000]
 * The gateway runs as its own process (`node dist/src/main.js`), so its CPU and
 * memory are its own; the load generator and the abort probe run here.
 * BENCH_GATEWAY_NODE_ARGS adds node flags to the gateway (e.g. --cpu-prof, or --trace-gc
 * with BENCH_GATEWAY_STDOUT naming a file for its output), and
 * BENCH_GATEWAY_ENV (JSON) overrides its configuration, to find what costs what;
 * BENCH_PROXY_NODE names another node binary for the gateway and the pass-through (the
 * load generator and the simulator keep this one), to compare Node versions;
 * BENCH_PHASES (comma-separated: unstreamed,peak,streamed,concurrent,aborts) runs some of them.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { Pool } from 'undici';
import { freePort } from '../src/common/net';
import { waitForPort } from '../src/temporal/dev-server';
import { benchStack, cpuSeconds, median, percentile, progress } from './harness';
import { CREATE_PIPELINE, DEPLOY } from '../test/support/graphql';

const [phaseSeconds, streamCount, streamSeconds, abortCycles] = [2, 2000, 60, 10_000].map((d, i) => Number(process.argv[2 + i] ?? d));
const PHASES = ['unstreamed', 'peak', 'streamed', 'concurrent', 'aborts'];
const phases = new Set((process.env.BENCH_PHASES ?? PHASES.join(',')).split(',').map((p) => p.trim()));
for (const p of phases) if (!PHASES.includes(p)) throw new Error(`BENCH_PHASES: unknown phase '${p}'; use any of ${PHASES.join(',')}`);
const ITL_MS = 50; // ~20 tokens/s per stream
const root = resolve(__dirname, '../..');

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const r1 = (n: number) => Math.round(n * 10) / 10;
const r2 = (n: number) => Math.round(n * 100) / 100;

/**
 * The live JS heap of a process started with --heapsnapshot-signal=SIGUSR2 in `dir`, in MB: a heap snapshot
 * collects garbage first, so the sum of its objects' sizes is what is still reachable. RSS cannot tell a leak
 * from a heap that has grown and not been handed back.
 */
async function liveHeapMb(pid: number, dir: string): Promise<number> {
  const snapshots = () => readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
  for (const f of snapshots()) rmSync(join(dir, f));
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(100);
    const [f] = snapshots();
    if (!f) continue;
    const size = statSync(join(dir, f)).size;
    await sleep(200);
    if (statSync(join(dir, f)).size !== size) continue;
    try {
      const snap = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { snapshot: { meta: { node_fields: string[] } }; nodes: number[] };
      const fields = snap.snapshot.meta.node_fields;
      const at = fields.indexOf('self_size');
      let bytes = 0;
      for (let n = at; n < snap.nodes.length; n += fields.length) bytes += snap.nodes[n];
      rmSync(join(dir, f));
      return bytes / 1024 / 1024;
    } catch {
      // still being written
    }
  }
  throw new Error(`no heap snapshot from ${pid} in ${dir}`);
}

/**
 * The q-quantile of what a Prometheus histogram gained between two scrapes, for
 * one route, interpolated inside its bucket as histogram_quantile does.
 */
function histogramQuantile(before: string, after: string, name: string, route: string, q: number): number {
  const buckets = (text: string) => {
    const out = new Map<number, number>();
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}_bucket{`) || !line.includes(`route="${route}"`)) continue;
      const le = /le="([^"]+)"/.exec(line)?.[1];
      if (le) out.set(le === '+Inf' ? Infinity : Number(le), Number(line.split(' ').pop()));
    }
    return out;
  };
  const [b0, b1] = [buckets(before), buckets(after)];
  const les = [...b1.keys()].sort((a, b) => a - b);
  const total = (b1.get(Infinity) ?? 0) - (b0.get(Infinity) ?? 0);
  if (!total) return NaN;
  let prevLe = 0;
  let prevCount = 0;
  for (const le of les) {
    const count = b1.get(le)! - (b0.get(le) ?? 0);
    if (count >= q * total) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (q * total - prevCount)) / Math.max(1, count - prevCount);
    }
    [prevLe, prevCount] = [le, count];
  }
  return prevLe;
}

interface Target {
  name: string;
  pool: Pool;
  headers: Record<string, string>;
  model: string;
}

/** Fires `fire(intendedStart)` `rate` times a second for `seconds`, on schedule whatever the responses do. */
async function openLoop(rate: number, seconds: number, fire: (intended: number) => Promise<void>) {
  const t0 = performance.now();
  const total = Math.round(rate * seconds);
  const pending: Array<Promise<void>> = [];
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
    for (; sent < due; sent++) pending.push(fire(t0 + (sent * 1000) / rate));
    await sleep(1);
  }
  await Promise.all(pending);
}

function chatBody(t: Target, extra: Record<string, unknown>) {
  return JSON.stringify({ model: t.model, messages: [{ role: 'user', content: 'hello there' }], ...extra });
}

/** Non-streamed latencies (ms from the intended start) at `rate` for each target, in alternating phases. */
async function unstreamed(targets: Target[], rate: number, pairs: number) {
  const lat = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  let errors = 0;
  for (let p = 0; p < pairs; p++) {
    for (const t of p % 2 ? [...targets].reverse() : targets) {
      await openLoop(rate, phaseSeconds, async (intended) => {
        try {
          const res = await t.pool.request({
            path: '/v1/chat/completions',
            method: 'POST',
            headers: t.headers,
            body: chatBody(t, { max_tokens: 1 }),
          });
          await res.body.text();
          if (res.statusCode !== 200) errors++;
          else lat.get(t.name)!.push(performance.now() - intended);
        } catch {
          errors++;
        }
      });
    }
  }
  return { lat, errors };
}

/** Requests/s with `concurrency` requests always outstanding, for `seconds`. */
async function closedLoop(t: Target, concurrency: number, seconds: number) {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const res = await t.pool.request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: t.headers,
          body: chatBody(t, { max_tokens: 1 }),
        });
        await res.body.text();
        if (res.statusCode === 200) done++;
      }
    }),
  );
  return done / seconds;
}

/** One stream: time to first chunk from the intended start, the gaps between chunks, data events seen, and whether it ended in error. */
async function oneStream(t: Target, maxTokens: number, intended: number) {
  const gaps: number[] = [];
  let ttft = -1;
  let last = 0;
  let events = 0;
  let failed: string | null = null;
  try {
    const res = await t.pool.request({
      path: '/v1/chat/completions',
      method: 'POST',
      headers: t.headers,
      body: chatBody(t, { max_tokens: maxTokens, stream: true }),
    });
    if (res.statusCode !== 200) failed = `${res.statusCode} ${(await res.body.text()).slice(0, 200)}`;
    else
      for await (const chunk of res.body) {
        const now = performance.now();
        if (ttft < 0) ttft = now - intended;
        else gaps.push(now - last);
        last = now;
        const s = (chunk as Buffer).toString();
        for (let i = s.indexOf('data: '); i >= 0; i = s.indexOf('data: ', i + 6)) events++;
        if (s.includes('"error"')) failed = s.slice(s.indexOf('"error"'), 200);
      }
  } catch (err) {
    failed = (err as Error).message;
  }
  return { ttft, gaps, events, failed };
}

/** An upstream that records when each request's connection closes: where an abort lands. */
function startProbe() {
  const opened = new Map<string, (at: number) => void>();
  const closed = new Map<string, number>();
  let open = 0;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET') return res.end('ok');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { user: string; metadata?: { firstTokenAfterMs?: number } };
      const id = body.user;
      open++;
      res.on('close', () => {
        open--;
        closed.set(id, performance.now());
        clearInterval(tick);
      });
      let tick: NodeJS.Timeout | undefined;
      const first = Number(body.metadata?.firstTokenAfterMs ?? 0);
      opened.get(id)?.(performance.now());
      setTimeout(() => {
        if (res.destroyed) return;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = () => res.write(`data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n`);
        chunk();
        tick = setInterval(chunk, 20);
      }, first);
    });
  });
  return {
    server,
    opened,
    closed,
    openCount: () => open,
    listen: () =>
      new Promise<string>((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))),
  };
}

async function main() {
  const stack = await benchStack('gateway', {
    LOCAL_REPLICA_COMMAND: [
      process.execPath,
      resolve(root, 'dist/src/simulator/main.js'),
      '--host {host} --port {port} --model {model} --task {task} --max-concurrency {maxConcurrency} --cache-dir {cacheDir} --weights-key {weights}',
      `--ttft-ms 2 --itl-ms ${ITL_MS} --slowdown-per-seq 0 --warm-start-ms 100 --cold-start-ms 100`,
    ].join(' '),
  });
  const { prisma, gql } = stack;
  const procs: ChildProcess[] = [];
  // Where the gateway writes a heap snapshot when sent SIGUSR2 (liveHeapMb).
  const diagnosticDir = mkdtempSync(join(tmpdir(), 'infercp-bench-heap-'));
  try {
    // A workspace and key whose limits are far above the load: limits are checked on every request, never hit.
    const ws = await prisma.workspace.findFirstOrThrow();
    await prisma.workspace.update({ where: { id: ws.id }, data: { plan: 'ENTERPRISE', maxConcurrency: 1_000_000, maxReplicas: 4 } });
    const pipelineId = (await gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline.id;
    await prisma.variant.updateMany({ where: { pipelineId }, data: { maxConcurrency: streamCount + 100 } });
    const d = await gql(DEPLOY, {
      input: { pipelineId, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
    });
    const deploymentId = d.deployPipeline.deployment!.id;
    await stack.temporal.workflow.getHandle(`deploy:${deploymentId}`).result();
    await prisma.apiKey.updateMany({ where: { deploymentId }, data: { rateLimitPerMinute: 100_000_000 } });
    const replica = await prisma.replica.findFirstOrThrow({ where: { deploymentId, state: 'READY' } });
    progress(`deployed ${deploymentId}; replica ${replica.address}`);

    // The gateway under test, in its own process; a fresh one for each phase that measures its memory.
    const env = Object.fromEntries(
      Object.entries(stack.config)
        .filter(([, v]) => typeof v === 'string' || typeof v === 'number')
        .map(([k, v]) => [k, String(v)]),
    );
    // BENCH_GATEWAY_NODE_ARGS: flags for the gateway's node, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it.
    const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
    // BENCH_PROXY_NODE: another node binary for both proxies (gateway and pass-through), to compare Node versions.
    const proxyNode = process.env.BENCH_PROXY_NODE || process.execPath;
    const json = { 'content-type': 'application/json' };
    const pool = (url: string) => new Pool(url, { connections: null, pipelining: 1 });
    const startGateway = async () => {
      const port = await freePort();
      const snapshotArgs = ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${diagnosticDir}`];
      const proc = spawn(proxyNode, [...snapshotArgs, ...nodeArgs, resolve(root, 'dist/src/main.js')], {
        env: {
          ...process.env,
          ...env,
          ...JSON.parse(process.env.BENCH_GATEWAY_ENV ?? '{}'),
          API_PORT: String(port),
          PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
          LOG_LEVEL: 'error',
          GRAPHQL_SCHEMA_FILE: '',
        },
        // BENCH_GATEWAY_STDOUT: a file for the gateway's stdout (where --trace-gc and friends write).
        stdio: ['ignore', process.env.BENCH_GATEWAY_STDOUT ? openSync(process.env.BENCH_GATEWAY_STDOUT, 'a') : 'ignore', 'inherit'],
      });
      procs.push(proc);
      await waitForPort('127.0.0.1', port, 30_000);
      const target: Target = {
        name: 'gateway',
        pool: pool(`http://127.0.0.1:${port}`),
        headers: { ...json, authorization: `Bearer ${d.deployPipeline.apiKey}` },
        model: 'default',
      };
      return {
        pid: proc.pid!,
        port,
        target,
        metrics: async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
        stop: async () => {
          await target.pool.close();
          proc.kill('SIGTERM');
          await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
        },
      };
    };
    let gw = await startGateway();
    const ptPort = await freePort();
    const pt = spawn(proxyNode, [resolve(__dirname, 'passthrough.js'), String(ptPort), replica.address!], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    procs.push(pt);
    await waitForPort('127.0.0.1', ptPort, 30_000);

    const direct: Target = { name: 'direct', pool: pool(replica.address!), headers: json, model: 'sim/tiny-chat' };
    let gateway = gw.target;
    const passthrough: Target = { name: 'passthrough', pool: pool(`http://127.0.0.1:${ptPort}`), headers: json, model: 'sim/tiny-chat' };

    // Steady state: JIT-compiled paths, caches filled, the first rollup writes and scaler reports done.
    progress('warming up: 5 s at 500/s on each path');
    await unstreamed([direct, gateway, passthrough], 500, 5 / phaseSeconds);

    // 1. Non-streamed, open loop.
    const unstreamedOut: Record<string, unknown> = {};
    for (const rate of phases.has('unstreamed') ? [500, 1000] : []) {
      progress(`non-streamed at ${rate}/s: ${phaseSeconds} s phases, direct, gateway and bare pass-through alternating`);
      const cpu0 = [cpuSeconds(gw.pid), cpuSeconds(pt.pid!)];
      const metrics0 = await gw.metrics();
      const { lat, errors } = await unstreamed([direct, gateway, passthrough], rate, 6);
      const [dl, gl, pl] = [lat.get('direct')!, lat.get('gateway')!, lat.get('passthrough')!];
      // CPU per request of each proxy process (in a 10 ms tick, so over thousands of requests): steadier than latency here.
      const [gwCpuUs, ptCpuUs] = [((cpuSeconds(gw.pid) - cpu0[0]) / gl.length) * 1e6, ((cpuSeconds(pt.pid!) - cpu0[1]) / pl.length) * 1e6];
      unstreamedOut[`${rate}rps`] = {
        requests: dl.length + gl.length + pl.length,
        errors,
        directP50Ms: r2(median(dl)),
        gatewayP50Ms: r2(median(gl)),
        addedP50Ms: r2(median(gl) - median(dl)),
        directP99Ms: r2(percentile(dl, 99)),
        gatewayP99Ms: r2(percentile(gl, 99)),
        addedP99Ms: r2(percentile(gl, 99) - percentile(dl, 99)),
        // The same extra hop with nothing in it: what one more process on this machine costs the tail by itself.
        passthroughAddedP50Ms: r2(median(pl) - median(dl)),
        passthroughAddedP99Ms: r2(percentile(pl, 99) - percentile(dl, 99)),
        gatewayCpuUsPerRequest: Math.round(gwCpuUs),
        passthroughCpuUsPerRequest: Math.round(ptCpuUs),
        cpuRatio: r2(gwCpuUs / ptCpuUs),
      };
      const m = await gw.metrics();
      // The gateway's own account of what it added (its metric infercp_gateway_overhead_seconds): free of the load
      // generator's and the kernel's share, but blind to delays before its request handler ran.
      Object.assign(unstreamedOut[`${rate}rps`] as Record<string, unknown>, {
        gatewayOwnOverheadP50Ms: r2(histogramQuantile(metrics0, m, 'infercp_gateway_overhead_seconds', 'chat', 0.5) * 1000),
        gatewayOwnOverheadP99Ms: r2(histogramQuantile(metrics0, m, 'infercp_gateway_overhead_seconds', 'chat', 0.99) * 1000),
      });
      const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(m)?.[1] ?? NaN);
      // Since the gateway started: what its event loop and garbage collector cost the tail.
      (unstreamedOut[`${rate}rps`] as Record<string, unknown>).gatewayEventLoopLagMs = {
        p99: r2(gauge('infercp_nodejs_eventloop_lag_p99_seconds') * 1000),
        max: r2(gauge('infercp_nodejs_eventloop_lag_max_seconds') * 1000),
      };
      progress(`  ${JSON.stringify(unstreamedOut[`${rate}rps`])}`);
    }

    let peakOut: Record<string, unknown> | undefined;
    if (phases.has('peak')) {
      // 2. Peak throughput, closed loop, alternating; the best of three each.
      progress('peak requests/s: gateway vs bare pass-through vs direct');
      const peak: Record<string, number[]> = { direct: [], passthrough: [], gateway: [] };
      for (let i = 0; i < 3; i++) for (const t of [passthrough, gateway, direct]) peak[t.name].push(await closedLoop(t, 128, phaseSeconds));
      const best = (xs: number[]) => Math.round(Math.max(...xs));
      peakOut = {
        directRps: best(peak.direct),
        passthroughRps: best(peak.passthrough),
        gatewayRps: best(peak.gateway),
        gatewayToPassthrough: r2(best(peak.gateway) / best(peak.passthrough)),
      };
      progress(`  ${JSON.stringify(peakOut)}`);
    }
    let streamedOut: Record<string, unknown> | undefined;
    if (phases.has('streamed')) {
      // 3. Streams: time to first token and gaps between chunks, open loop, alternating.
      progress('streamed: 50 streams/s of 6 tokens, direct and gateway alternating');
      const ttft: Record<string, number[]> = { direct: [], gateway: [] };
      const gaps: Record<string, number[]> = { direct: [], gateway: [] };
      let streamErrors = 0;
      for (let p = 0; p < 6; p++) {
        for (const t of p % 2 ? [gateway, direct] : [direct, gateway]) {
          await openLoop(50, phaseSeconds, async (intended) => {
            const s = await oneStream(t, 6, intended);
            if (s.failed) streamErrors++;
            ttft[t.name].push(s.ttft);
            gaps[t.name].push(...s.gaps);
          });
        }
      }
      streamedOut = {
        streams: ttft.direct.length + ttft.gateway.length,
        errors: streamErrors,
        directTtftP50Ms: r2(median(ttft.direct)),
        addedTtftP50Ms: r2(median(ttft.gateway) - median(ttft.direct)),
        addedTtftP99Ms: r2(percentile(ttft.gateway, 99) - percentile(ttft.direct, 99)),
        directGapP50Ms: r2(median(gaps.direct)),
        addedGapP50Ms: r2(median(gaps.gateway) - median(gaps.direct)),
        addedGapP99Ms: r2(percentile(gaps.gateway, 99) - percentile(gaps.direct, 99)),
      };
      progress(`  ${JSON.stringify(streamedOut)}`);
    }
    let concurrentOut: Record<string, unknown> | undefined;
    if (phases.has('concurrent')) {
      // 4. Many concurrent streams: straight to the replica (what the replica itself manages), then through a fresh gateway.
      const tokens = Math.round((streamSeconds * 1000) / ITL_MS);
      const manyStreams = async (t: Target, pid: number | null) => {
        progress(`${streamCount} concurrent streams of ${tokens} tokens (~${streamSeconds} s each) to ${t.name}, opened over 4 s`);
        const rssBefore = pid ? rssKb(pid) : 0;
        const cpu0 = pid ? cpuSeconds(pid) : 0;
        const t0 = performance.now();
        let peakRss = rssBefore;
        const sampler = setInterval(() => (peakRss = pid ? Math.max(peakRss, rssKb(pid)) : 0), 500);
        const results = await Promise.all(
          Array.from({ length: streamCount }, async (_, i) => {
            await sleep((i * 4000) / streamCount);
            return oneStream(t, tokens, performance.now());
          }),
        );
        clearInterval(sampler);
        const wall = (performance.now() - t0) / 1000;
        const expected = tokens + 3; // role chunk, one per token, the finish chunk, [DONE]
        const out: Record<string, unknown> = {
          wallSeconds: r1(wall),
          errors: results.filter((r) => r.failed).length,
          errorKinds: [...new Set(results.map((r) => r.failed).filter(Boolean))].slice(0, 5),
          droppedChunks: results.reduce((s, r) => s + Math.max(0, expected - r.events), 0),
          gapP50Ms: r1(median(results.flatMap((r) => r.gaps))),
          gapP99Ms: r1(
            percentile(
              results.flatMap((r) => r.gaps),
              99,
            ),
          ),
        };
        if (pid) {
          const cpu = cpuSeconds(pid) - cpu0;
          Object.assign(out, {
            gatewayCpuPercent: r1((cpu / wall) * 100),
            gatewayCpuMsPerStreamSecond: r2((cpu * 1000) / (streamCount * wall)),
            gatewayRssMb: { before: r1(rssBefore / 1024), peak: r1(peakRss / 1024) },
            gatewayKbPerStream: r1((peakRss - rssBefore) / streamCount),
          });
        }
        progress(`  ${JSON.stringify(out)}`);
        return out;
      };
      await gw.stop();
      gw = await startGateway();
      gateway = gw.target;
      await unstreamed([gateway], 200, 1); // the same warm start as every gateway gets
      concurrentOut = {
        streams: streamCount,
        tokensPerStream: tokens,
        direct: await manyStreams(direct, null),
        gateway: await manyStreams(gateway, gw.pid),
      };
    }
    let abortsOut: Record<string, unknown> | undefined;
    if (phases.has('aborts')) {
      // 5. Aborts, against a probe upstream that records when each connection closes.
      const probe = startProbe();
      const probeUrl = await probe.listen();
      await prisma.replica.update({ where: { id: replica.id }, data: { address: probeUrl } });
      await prisma.$executeRaw`SELECT pg_notify('infercp_routes', ${deploymentId})`;
      await gw.stop();
      gw = await startGateway();
      gateway = gw.target;
      let seq = 0;
      /** Client abort to upstream close, ms; `afterFirst`: abort once a token arrived, else while the upstream has not answered. */
      const abortOnce = async (afterFirst: boolean): Promise<number> => {
        const id = `a${++seq}`;
        const ac = new AbortController();
        const opened = new Promise<number>((r) => probe.opened.set(id, r));
        const body = JSON.stringify({
          model: 'default',
          stream: true,
          user: id,
          metadata: { firstTokenAfterMs: afterFirst ? 0 : 60_000 },
          messages: [{ role: 'user', content: 'x' }],
        });
        const req = gateway.pool.request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: gateway.headers,
          body,
          signal: ac.signal,
        });
        let abortAt: number;
        if (afterFirst) {
          const res = await req;
          const it = res.body[Symbol.asyncIterator]();
          await it.next();
          abortAt = performance.now();
          ac.abort();
          await it.next().catch(() => {});
        } else {
          await opened;
          abortAt = performance.now();
          ac.abort();
          await req.catch(() => {});
        }
        for (let i = 0; !probe.closed.has(id) && i < 400; i++) await sleep(5);
        probe.opened.delete(id);
        const closedAt = probe.closed.get(id);
        probe.closed.delete(id);
        return closedAt === undefined ? Infinity : closedAt - abortAt;
      };
      progress('aborts: 300 before and 300 after the first token');
      const before: number[] = [];
      const after: number[] = [];
      for (let i = 0; i < 300; i++) {
        before.push(await abortOnce(false));
        after.push(await abortOnce(true));
      }
      const cycles = async (n: number) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: 100 }, async () => {
            while (next < n) {
              const i = next++;
              await abortOnce(i % 2 === 0);
              if (i % 1000 === 999) progress(`  ${i + 1}/${n}`);
            }
          }),
        );
        await sleep(1000);
      };
      progress(`${abortCycles} abort cycles, 100 at a time, after 1,000 to warm up`);
      await cycles(1000);
      // Handles are counted straight after cycles (the snapshot's pause lets idle client connections close). Writing a
      // snapshot grows RSS, so both RSS readings come after exactly one: the first's.
      const fd0 = fds(gw.pid);
      const heap0 = await liveHeapMb(gw.pid, diagnosticDir);
      const rss0 = rssKb(gw.pid);
      await cycles(abortCycles);
      const [fd1, rss1] = [fds(gw.pid), rssKb(gw.pid)];
      const heap1 = await liveHeapMb(gw.pid, diagnosticDir);
      const metrics = await gw.metrics();
      const inFlight = Number(new RegExp(`infercp_gateway_in_flight\\{deployment="${deploymentId}"\\} (\\d+)`).exec(metrics)?.[1] ?? NaN);
      abortsOut = {
        beforeFirstTokenP50Ms: r2(median(before)),
        beforeFirstTokenP99Ms: r2(percentile(before, 99)),
        afterFirstTokenP50Ms: r2(median(after)),
        afterFirstTokenP99Ms: r2(percentile(after, 99)),
        cycles: abortCycles,
        gatewayFds: { before: fd0, after: fd1 },
        gatewayRssMb: { before: r1(rss0 / 1024), after: r1(rss1 / 1024) },
        // What is still reachable, after a full collection: a leak shows here, not in RSS.
        gatewayLiveHeapMb: { before: r1(heap0), after: r1(heap1) },
        gatewayInFlightAfter: inFlight,
        upstreamOpenAfter: probe.openCount(),
      };
      progress(`  ${JSON.stringify(abortsOut)}`);
      probe.server.close();
    }
    process.stdout.write(
      `${JSON.stringify({ phaseSeconds, unstreamed: unstreamedOut, peak: peakOut, streamed: streamedOut, concurrentStreams: concurrentOut, aborts: abortsOut }, null, 2)}\n`,
    );
    await Promise.all([direct, passthrough].map((t) => t.pool.close()));
    await gw.stop();
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    rmSync(diagnosticDir, { recursive: true, force: true });
    await stack.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
