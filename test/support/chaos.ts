// The chaos scenarios of issue #20, written once: the e2e tests run short versions and assert on the reports,
// bench/chaos.ts runs long versions and prints them. Everything here drives the product through its own surfaces
// (GraphQL, /v1, the RunPod fake, SIGKILL) and reads the outcome from what a user or an operator would see.
import { readdirSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import {
  CHANGE_GPU,
  CREATE_VARIANT,
  createPipeline,
  DELETE_DEPLOYMENT,
  deploy,
  Gql,
  must,
  OperationResult,
  ROLLBACK,
  START_DEPLOYMENT,
  STOP_DEPLOYMENT,
} from './graphql';
import { localProvider } from '../../src/providers/local';
import { chatLoad, LoadResult } from './load';
import type { Stack } from './stack';
import { eventually } from './wait';

/** Budget slots a gateway process holds in Redis now: its unexpired leases in a workspace's slot set (ids `<gateway id>#<n>`, the gateway id `<host>-<pid>-<hex>`). */
async function leasesOf(redis: Redis, slotsKey: string, pid: number): Promise<number> {
  const [sec, micro] = await redis.time();
  const now = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
  const ids = await redis.zrangebyscore(slotsKey, `(${now}`, '+inf');
  return ids.filter((id) => id.includes(`-${pid}-`)).length;
}

// ---------------------------------------------------------------------------------------------------------------
// Scenario 2: the provider's management API failing transiently, timing out, and a pool without capacity.

export interface ProviderChaosOptions {
  /** Deployments driven concurrently; each runs a deploy and then a chain of lifecycle operations. */
  deployments: number;
  /** Share of management calls that fail (default 0.3). */
  failureRate?: number;
  /** Fault kinds drawn from (repeat a kind to weigh it); default 429/500/503 with one 'timeout' in ten. */
  kinds?: Array<'429' | '500' | '503' | 'timeout' | 'html403'>;
  /** The pool without capacity at the start, and for how long (ms). */
  exhaustedPool?: string;
  exhaustedForMs: number;
  /** The bound on one operation: past it the operation counts as stuck. */
  operationBoundMs: number;
  /** Deployment i starts i * staggerMs after the first (default 0: all at once), so later ones meet the pool again. */
  staggerMs?: number;
}

/** How one operation ended, as its Operation row tells it. */
export interface OperationOutcome {
  deploymentId: string;
  kind: string;
  gpu: string;
  /** SUCCEEDED, FAILED, STUCK (still running at the bound) or REFUSED (the mutation answered an error). */
  status: string;
  reason: string | null;
}

export interface ProviderChaosReport {
  outcomes: OperationOutcome[];
  /** Management calls the fake answered, by route, and the faults it injected, by kind (counted from its log). */
  calls: Record<string, number>;
  faults: Record<string, number>;
  /** Fake endpoints whose deployment is gone or failed (or that belong to no deployment). */
  orphanedEndpoints: string[];
  /** Fake workers on endpoints of deployments that are stopped, deleted or failed. */
  orphanedWorkers: string[];
  /** Endpoints whose worker count disagrees with the live replica rows (slots) pointing at them. */
  slotMismatches: string[];
}

interface FakeEndpoint {
  id: string;
  name: string;
  workers: { min: number; max: number };
}

const DEPLOY_GPUS = ['H100', 'L40S', 'A100'];

/**
 * Runs `deployments` deploys at once (every third on the exhausted pool's GPU), each followed by its own chain of
 * operations (stop/start, change GPU, rollback, delete), all under the fake's faults; then clears the faults and
 * compares what the fake runs with the database. `faultLog` is the fake's log of injected faults (the stack's fake
 * takes a log callback only at start, so the caller counts them: see countingFakeLog()).
 */
export async function providerChaos(
  stack: Stack,
  gql: Gql,
  o: ProviderChaosOptions,
  faultLog: () => Record<string, number>,
): Promise<ProviderChaosReport> {
  const fake = stack.runpod!;
  const pool = o.exhaustedPool ?? 'ADA_80_PRO';
  fake.resetCalls();
  fake.faults.managementFailureRate = o.failureRate ?? 0.3;
  fake.faults.kinds = o.kinds ?? ['429', '500', '503', '429', '500', '503', '429', '500', '503', 'timeout'];
  fake.faults.exhaustedPools.add(pool);
  const restore = setTimeout(() => fake.faults.exhaustedPools.delete(pool), o.exhaustedForMs);
  const outcomes: OperationOutcome[] = [];

  const opRow = (id: string) => stack.prisma.operation.findUnique({ where: { id } });
  /** Waits for the operation's row to leave RUNNING, up to the bound. */
  const settle = async (deploymentId: string, kind: string, gpu: string, opId: string) => {
    const row = await eventually(
      async () => {
        const r = await opRow(opId);
        return r && r.status !== 'RUNNING' ? r : null;
      },
      o.operationBoundMs,
      200,
    ).catch(() => null);
    const out: OperationOutcome = row
      ? { deploymentId, kind, gpu, status: row.status, reason: row.error }
      : { deploymentId, kind, gpu, status: 'STUCK', reason: (await opRow(opId))?.status ?? null };
    outcomes.push(out);
    return out.status === 'SUCCEEDED';
  };
  const operate = async (deploymentId: string, kind: string, gpu: string, mutation: string, variables: Record<string, unknown>) => {
    const res = await gql<Record<string, OperationResult>>(mutation, variables);
    if (res.errors?.length) {
      outcomes.push({ deploymentId, kind, gpu, status: 'REFUSED', reason: res.errors[0].message });
      return false;
    }
    return settle(deploymentId, kind, gpu, Object.values(res.data)[0].id);
  };

  const one = async (i: number) => {
    await new Promise((r) => setTimeout(r, i * (o.staggerMs ?? 0)));
    const gpu = DEPLOY_GPUS[i % DEPLOY_GPUS.length];
    const pipelineId = await createPipeline(gql, { name: `chaos-${i}` });
    const { deployPipeline } = await must(deploy(gql, { pipelineId, target: 'RUNPOD', gpu, mode: 'FLEX', minReplicas: 1, maxReplicas: 1 }));
    const id = deployPipeline.deployment.id;
    const d = await stack.prisma.deployment.findUniqueOrThrow({ where: { id }, select: { activeOperationId: true } });
    if (!(await settle(id, 'DEPLOY', gpu, d.activeOperationId!))) return;
    const chain = i % 4;
    if (chain === 0) {
      if (!(await operate(id, 'STOP', gpu, STOP_DEPLOYMENT, { id }))) return;
      if (!(await operate(id, 'START', gpu, START_DEPLOYMENT, { id }))) return;
      await operate(id, 'DELETE', gpu, DELETE_DEPLOYMENT, { id });
    } else if (chain === 1) {
      const to = gpu === 'A100' ? 'L40S' : 'A100';
      if (!(await operate(id, 'CHANGE_GPU', to, CHANGE_GPU, { id, gpu: to }))) return;
      await operate(id, 'STOP', to, STOP_DEPLOYMENT, { id });
    } else if (chain === 2) {
      const { createVariant } = await must(
        gql<{ createVariant: { id: string } }>(CREATE_VARIANT, {
          pipelineId,
          input: { name: 'older', gpu, engine: 'vllm', maxConcurrency: 16 },
        }),
      );
      if (!(await operate(id, 'ROLLBACK', gpu, ROLLBACK, { id, variantId: createVariant.id }))) return;
      await operate(id, 'DELETE', gpu, DELETE_DEPLOYMENT, { id });
    } else {
      // Left serving: the end state must hold its one worker.
    }
  };
  try {
    await Promise.all(Array.from({ length: o.deployments }, (_, i) => one(i)));
  } finally {
    clearTimeout(restore);
    fake.faults.managementFailureRate = 0;
    fake.faults.exhaustedPools.delete(pool);
  }
  const calls = fake.calls();
  const faults = faultLog();

  // What runs now, against the database. The fake converges on its own (workers stop as their endpoint shrinks).
  const check = async () => {
    const endpoints = fake.endpoints() as FakeEndpoint[];
    const deployments = await stack.prisma.deployment.findMany({ select: { id: true, status: true } });
    const status = new Map(deployments.map((d) => [d.id, d.status]));
    const orphanedEndpoints: string[] = [];
    const orphanedWorkers: string[] = [];
    const slotMismatches: string[] = [];
    for (const ep of endpoints) {
      const owner = deployments.find((d) => ep.name.includes(d.id));
      const st = owner ? status.get(owner.id)! : 'none';
      const workers = fake.workers(ep.id);
      // What the owner went through, and the endpoint's revision (its name ends with the revision id): for the report.
      const history = owner
        ? (await stack.prisma.operation.findMany({ where: { deploymentId: owner.id }, orderBy: { startedAt: 'asc' } }))
            .map((op) => `${op.kind}:${op.status}`)
            .join(',')
        : '';
      const rev = owner
        ? await stack.prisma.revision.findFirst({
            where: { deploymentId: owner.id, id: ep.name.slice(ep.name.indexOf(owner.id) + owner.id.length + 1) },
          })
        : null;
      const about = `deployment ${st} after ${history || 'nothing'}, revision ${rev?.status ?? 'unknown'}`;
      if (!owner || st === 'DELETED' || st === 'FAILED') orphanedEndpoints.push(`${ep.id} (${ep.name}, ${about})`);
      if (workers.length && (!owner || ['STOPPED', 'DELETED', 'FAILED'].includes(st)))
        orphanedWorkers.push(`${ep.id}: ${workers.length} worker(s), ${about}`);
      const slots = await stack.prisma.replica.count({ where: { providerId: ep.id, state: { in: ['STARTING', 'READY', 'DRAINING'] } } });
      if (slots !== workers.length || ep.workers.max !== slots)
        slotMismatches.push(`${ep.id}: ${slots} live slot(s), workers.max ${ep.workers.max}, ${workers.length} fake worker(s); ${about}`);
    }
    return { orphanedEndpoints, orphanedWorkers, slotMismatches };
  };
  let last = await check();
  // Converged or not within 30 s: the report says what is left.
  await eventually(
    async () => {
      last = await check();
      return last.orphanedEndpoints.length + last.orphanedWorkers.length + last.slotMismatches.length === 0;
    },
    30_000,
    250,
  ).catch(() => undefined);
  return { outcomes, calls, faults, ...last };
}

/** A RunPod fake log callback that counts the injected management faults by kind. */
export function countingFakeLog() {
  const counts: Record<string, number> = {};
  return {
    log: (msg: string, fields?: Record<string, unknown>) => {
      if (msg === 'runpod fake: injected management failure') {
        const k = String(fields?.kind);
        counts[k] = (counts[k] ?? 0) + 1;
      }
    },
    counts: () => ({ ...counts }),
  };
}

/** A FAILED operation's reason a user can act on: it names RunPod's answer or the capacity problem, nothing internal. */
export const READABLE_FAILURE = /RunPod|capacity/;

// ---------------------------------------------------------------------------------------------------------------
// Scenario 3: one of two gateway processes SIGKILLed mid-stream.

export interface GatewayKillOptions {
  /** The workspace's concurrency budget (set on the workspace); a burst this size must be admitted after the TTL. */
  budget: number;
  /** Long streams open on the gateway that is killed. */
  streamsOnKilled: number;
  /** Tokens of each long stream (the stack's SIM_ITL_MS apart): long enough to be cut. */
  longTokens: number;
  /** Open-loop rate on the survivor, requests a second, and how long it runs after the kill (ms). */
  survivorRate: number;
  survivorAfterKillMs: number;
  /** The bound within which every request of the killed gateway's clients must settle. */
  settleBoundMs: number;
  redisUrl: string;
}

export interface GatewayKillReport {
  /** The survivor's load, whole. */
  survivor: LoadResult;
  /** The killed gateway's clients: the long streams and the load's requests in flight at the kill. */
  killedStreams: number;
  killedCleanErrors: number;
  /** Requests of the killed gateway's clients that did not settle within the bound, or settled as if whole. */
  killedHung: number;
  killedUnclean: string[];
  /** Slots the killed process held in Redis right after the kill, and whether a full-budget burst was then admitted. */
  slotsHeldAtKill: number;
  burstAdmitted: number;
  burstRefusedBeforeTtl: number;
  /** Usage: the killed gateway's rows before the kill against after; the survivor's requests against its rows. */
  usageRowsBefore: number;
  usageRowsLost: number;
  survivorCounted: number;
}

const STREAM = (maxTokens: number) =>
  JSON.stringify({ model: 'default', stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] });

/** One streamed request read to its end: 'whole', or the error it failed with (headers, status or connection). */
async function streamOnce(pool: Pool, key: string, maxTokens: number, started?: () => void): Promise<{ ok: boolean; detail: string }> {
  try {
    const res = await pool.request({
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: STREAM(maxTokens),
    });
    if (res.statusCode !== 200) return { ok: false, detail: `status ${res.statusCode} ${(await res.body.text()).slice(0, 200)}` };
    let text = '';
    let first = true;
    for await (const chunk of res.body) {
      if (first) started?.();
      first = false;
      text += String(chunk);
    }
    return text.trimEnd().endsWith('data: [DONE]') ? { ok: true, detail: 'whole' } : { ok: false, detail: 'ended without [DONE]' };
  } catch (err) {
    return { ok: false, detail: `error: ${(err as Error).message}` };
  }
}

/** A connection error as an HTTP client reports a peer that vanished: nothing that reads as an answer. */
export const CONNECTION_ERROR = /^error: .*(other side closed|ECONNRESET|ECONNREFUSED|terminated|socket hang up|SocketError)/i;

const createKey = async (gql: Gql, deploymentId: string, name: string) =>
  (
    await must(
      gql<{ createApiKey: { key: string; apiKey: { id: string } } }>(
        `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id } } }`,
        { i: { name, scope: 'DEPLOYMENT', deploymentId } },
      ),
    )
  ).createApiKey;

/**
 * Two gateway processes sharing Redis over one LOCAL deployment, each client on its own key (so that each one's usage
 * rows can be told apart); long streams and a load run through the first, a load through the second; the first is
 * SIGKILLed mid-stream.
 */
export async function gatewayKill(stack: Stack, ws: { id: string; token: string }, o: GatewayKillOptions): Promise<GatewayKillReport> {
  const gql = stack.as(ws.token);
  await stack.prisma.workspace.update({ where: { id: ws.id }, data: { maxConcurrency: o.budget } });
  const { deploymentId, apiKey: keyA } = await stack.deployed(
    ws.token,
    { name: 'gw-kill' },
    { target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
  );
  const keyB = await createKey(gql, deploymentId, 'survivor');
  const keyC = await createKey(gql, deploymentId, 'burst');
  const keyAId = (await stack.prisma.apiKey.findFirstOrThrow({ where: { deploymentId, name: { notIn: ['survivor', 'burst'] } } })).id;
  const env = { REDIS_URL: o.redisUrl };
  const a = await stack.spawnApi(env);
  const b = await stack.spawnApi(env);
  const redis = new Redis(o.redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 });
  const poolA = new Pool(a.url, { connections: o.streamsOnKilled + 8 });
  const poolB = new Pool(b.url, { connections: o.budget + 8 });
  try {
    // Usage the killed gateway recorded and wrote before the kill: a short load, then its flush.
    const warm = await (async () => {
      const l = chatLoad(a.url, keyA, { rate: 20, maxTokens: 5 });
      await new Promise((r) => setTimeout(r, 1500));
      return l.stop();
    })();
    const rowsA = () => stack.prisma.usageRollup.findMany({ where: { apiKeyId: keyAId } });
    const before = await eventually(
      async () => {
        const rows = await rowsA();
        return rows.reduce((n, r) => n + r.requests, 0) >= warm.ok ? rows : null;
      },
      15_000,
      100,
    );

    // Long streams on A, a load on A and one on B.
    let startedA = 0;
    const long = Array.from({ length: o.streamsOnKilled }, () => streamOnce(poolA, keyA, o.longTokens, () => startedA++));
    const loadA = chatLoad(a.url, keyA, { rate: 5, maxTokens: 50 });
    const survivor = chatLoad(b.url, keyB.key, { rate: o.survivorRate, maxTokens: 20 });
    await eventually(async () => startedA === o.streamsOnKilled, 15_000, 20);

    const slotsKey = `infercp:slots:${ws.id}`;
    process.kill(a.pid, 'SIGKILL');
    // The killed process's unexpired leases in the workspace's slot set.
    const slotsHeldAtKill = await leasesOf(redis, slotsKey, a.pid);
    const loadAResult = loadA.stop();
    let bound: NodeJS.Timeout | undefined;
    const settled = await Promise.race([
      Promise.all([Promise.all(long), loadAResult]).then(([l, r]) => ({ l, r })),
      new Promise<null>((r) => (bound = setTimeout(() => r(null), o.settleBoundMs))),
    ]);
    clearTimeout(bound);
    const killedUnclean: string[] = [];
    let killedCleanErrors = 0;
    let killedHung = 0;
    let killedStreams = o.streamsOnKilled;
    if (!settled) killedHung = o.streamsOnKilled;
    else {
      for (const s of settled.l) {
        if (CONNECTION_ERROR.test(s.detail)) killedCleanErrors++;
        else killedUnclean.push(s.detail);
      }
      // The load on A: the ones that failed at all failed cleanly; whole ones finished before the kill.
      killedStreams += settled.r.failures.length;
      for (const f of settled.r.failures) {
        if (CONNECTION_ERROR.test(f.replace(/^(stream|plain): /, 'error: '))) killedCleanErrors++;
        else killedUnclean.push(f);
      }
    }

    await new Promise((r) => setTimeout(r, o.survivorAfterKillMs));
    const survivorResult = await survivor.stop();

    // The budget: a burst of `budget` streams at once on B is admitted in full once the killed process's slots expire.
    let burstRefusedBeforeTtl = -1;
    const burstAdmitted = await eventually(
      async () => {
        const rs = await Promise.all(Array.from({ length: o.budget }, () => streamOnce(poolB, keyC.key, 40)));
        const refused = rs.filter((r) => r.detail.startsWith('status 429')).length;
        if (burstRefusedBeforeTtl < 0) burstRefusedBeforeTtl = refused;
        return refused === 0 && rs.every((r) => r.ok) ? rs.length : null;
      },
      30_000,
      500,
    ).catch(() => 0);

    // Usage: the survivor's requests all counted after its flush; nothing the killed one wrote is gone.
    const keyBId = keyB.apiKey.id;
    const counted = async () =>
      (await stack.prisma.usageRollup.findMany({ where: { apiKeyId: keyBId } })).reduce((n, r) => n + r.requests, 0);
    const survivorCounted = await eventually(
      async () => {
        const n = await counted();
        return n >= survivorResult.sent ? n : null;
      },
      15_000,
      200,
    ).catch(counted);
    const after = await rowsA();
    const usageRowsLost = before.filter((r) => {
      const now = after.find((x) => x.minute.getTime() === r.minute.getTime() && x.deploymentId === r.deploymentId);
      return !now || now.requests < r.requests || now.completionTokens < r.completionTokens;
    }).length;
    return {
      survivor: survivorResult,
      killedStreams,
      killedCleanErrors,
      killedHung,
      killedUnclean,
      slotsHeldAtKill,
      burstAdmitted,
      burstRefusedBeforeTtl,
      usageRowsBefore: before.length,
      usageRowsLost,
      survivorCounted,
    };
  } finally {
    await poolA.destroy().catch(() => {});
    await poolB.close().catch(() => {});
    redis.disconnect();
    await b.kill();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scenario 4: Postgres, Redis or Temporal unreachable from a gateway process, through a TCP proxy that can be cut.

/** A TCP proxy in front of one service: cut() resets every connection and refuses new ones, resume() forwards again. */
export interface CutProxy {
  port: number;
  /** Connections reset and refused since the first cut. */
  resets: number;
  cut(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function cutProxy(targetHost: string, targetPort: number): Promise<CutProxy> {
  const open = new Set<net.Socket>();
  let down = false;
  const p: CutProxy = {
    port: 0,
    resets: 0,
    cut() {
      down = true;
      for (const s of open) s.resetAndDestroy();
      p.resets += open.size;
      open.clear();
    },
    resume() {
      down = false;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy();
        server.close(() => r());
      }),
  };
  const server = net.createServer((client) => {
    if (down) {
      p.resets++;
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    open.add(client);
    open.add(upstream);
    const drop = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  p.port = (server.address() as net.AddressInfo).port;
  return p;
}

/** One chat completion: its status and error code (or the client error), and how long it took to settle, ms. */
export async function chatOnce(url: string, key: string, boundMs = 15_000): Promise<{ status: number; code: string; ms: number }> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
      signal: AbortSignal.timeout(boundMs),
    });
    const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
    return { status: res.status, code: body.error?.code ?? '', ms: performance.now() - t0 };
  } catch (err) {
    const hung = (err as Error).name === 'TimeoutError';
    return { status: 0, code: hung ? 'hung' : `error: ${(err as Error).message}`, ms: performance.now() - t0 };
  }
}

/** A Prometheus counter or gauge of a process, summed over the series matching `labels` (a substring). */
export async function metric(url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{')) || !rest.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const usageRequests = async (stack: Stack, apiKeyId: string) =>
  (await stack.prisma.usageRollup.findMany({ where: { apiKeyId } })).reduce((n, r) => n + r.requests, 0);

const keyId = async (stack: Stack, deploymentId: string, name?: string) =>
  (
    await stack.prisma.apiKey.findFirstOrThrow({
      where: { deploymentId, ...(name ? { name } : { name: { notIn: ['fresh', 'revoked', 'second-gateway'] } }) },
    })
  ).id;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface PostgresOutageOptions {
  outageMs: number;
  rate: number;
  /** The serving gateway's stale bound (longer than the outage) and cache TTL (shorter, so it serves past it). */
  staleServeMs: number;
  cacheTtlMs: number;
}

export interface PostgresOutageReport {
  load: LoadResult;
  /** Requests of the load sent while Postgres was cut (load.failures: any request of the load that failed). */
  sentDuringOutage: number;
  /** What the usage rows count for the load's key once Postgres is back, and again a few flushes later. */
  counted: number;
  countedLater: number;
  /** A key created before the outage and first used during it: its answer. */
  freshKey: { status: number; code: string; ms: number };
  /** A gateway with a short stale bound (1 s past a 1 s TTL): what a cached key got once the bound passed, during the outage. */
  pastBound: { status: number; code: string; ms: number } | null;
  /** Its first answer after Postgres was back. */
  pastBoundAfter: { status: number; code: string; ms: number };
  /** A key revoked after Postgres was back: refused by the serving gateway within this many ms (LISTEN reconnected), or null. */
  revokedRefusedMs: number | null;
  connectionsReset: number;
}

/**
 * Postgres cut for outageMs under a steady load through a gateway process whose DATABASE_URL goes through a proxy:
 * its cached keys and routes keep serving (past their TTL, within GATEWAY_STALE_SERVE_MS), its usage is held and
 * written once Postgres is back, counted exactly once; a key it never saw gets a 503; a second gateway with a short
 * bound answers 503 database_unavailable past it. After the restore, a revocation reaches the gateway by NOTIFY.
 */
export async function postgresOutage(
  stack: Stack,
  ws: { id: string; token: string },
  o: PostgresOutageOptions,
): Promise<PostgresOutageReport> {
  const gql = stack.as(ws.token);
  const { deploymentId, apiKey } = await stack.deployed(
    ws.token,
    { name: 'pg-outage' },
    { target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
  );
  const loadKeyId = await keyId(stack, deploymentId);
  const fresh = await createKey(gql, deploymentId, 'fresh');
  const revoked = await createKey(gql, deploymentId, 'revoked');
  const second = await createKey(gql, deploymentId, 'second-gateway');
  const db = new URL(stack.config.DATABASE_URL);
  const proxy = await cutProxy(db.hostname, Number(db.port || 5432));
  const proxied = new URL(stack.config.DATABASE_URL);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  const common = { DATABASE_URL: proxied.toString(), USAGE_FLUSH_INTERVAL_MS: '500', GATEWAY_DB_READ_TIMEOUT_MS: '2000' };
  const a = await stack.spawnApi({
    ...common,
    GATEWAY_STALE_SERVE_MS: String(o.staleServeMs),
    GATEWAY_CACHE_TTL_MS: String(o.cacheTtlMs),
  });
  const b = await stack.spawnApi({ ...common, GATEWAY_STALE_SERVE_MS: '1000', GATEWAY_CACHE_TTL_MS: '1000' });
  // C caches keys for 60 s: after the restore, only a NOTIFY (its LISTEN connection back) makes it refuse a revoked key sooner.
  const c = await stack.spawnApi({ ...common, GATEWAY_CACHE_TTL_MS: '60000' });
  try {
    // Warm: the load's key and route are cached on A; the revoked key too; B has the load's key.
    const load = chatLoad(a.url, apiKey, { rate: o.rate, maxTokens: 5 });
    await chatOnce(c.url, revoked.key);
    await chatOnce(b.url, second.key);
    await sleep(1500);
    const sentBefore = load.result.sent;
    proxy.cut();
    const cutAt = Date.now();
    const freshKey = await chatOnce(a.url, fresh.key);
    // B, past its bound (1 s TTL + 1 s stale): a cached key gets the 503 too.
    let pastBound: PostgresOutageReport['pastBound'] = null;
    while (Date.now() - cutAt < o.outageMs - 250) {
      const r = await chatOnce(b.url, second.key);
      if (r.code === 'database_unavailable') {
        pastBound = r;
        break;
      }
      await sleep(200);
    }
    await sleep(Math.max(0, o.outageMs - (Date.now() - cutAt)));
    const sentDuring = load.result.sent - sentBefore;
    proxy.resume();
    const pastBoundAfter = await eventually(
      async () => {
        const r = await chatOnce(b.url, second.key);
        return r.status === 200 ? r : null;
      },
      20_000,
      200,
    ).catch(() => ({ status: -1, code: 'not back', ms: 0 }));
    await sleep(1500);
    const result = await load.stop();

    // Revoked now: C (60 s TTL) refuses it within the bound only if its LISTEN connection came back.
    await must(gql(`mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: revoked.apiKey.id }));
    const revokedAt = Date.now();
    const revokedRefusedMs = await eventually(
      async () => ((await chatOnce(c.url, revoked.key)).status === 401 ? Date.now() - revokedAt : null),
      5000,
      50,
    ).catch(() => null);

    const counted = await eventually(
      async () => {
        const n = await usageRequests(stack, loadKeyId);
        return n >= result.sent ? n : null;
      },
      20_000,
      200,
    ).catch(() => usageRequests(stack, loadKeyId));
    await sleep(2000); // four more flush intervals: nothing is written twice
    const countedLater = await usageRequests(stack, loadKeyId);
    return {
      load: result,
      sentDuringOutage: sentDuring,
      counted,
      countedLater,
      freshKey,
      pastBound,
      pastBoundAfter,
      revokedRefusedMs,
      connectionsReset: proxy.resets,
    };
  } finally {
    await a.kill();
    await b.kill();
    await c.kill();
    await proxy.close();
  }
}

export interface RedisOutageReport {
  load: LoadResult;
  sentDuringOutage: number;
  /** The gateway's degraded gauge during the outage and once Redis was back (eventually). */
  degradedDuring: number;
  degradedAfter: number;
  /** This gateway's slots in Redis after the load finished: 0 when every release landed (none leaked, none twice). */
  slotsLeft: number;
  /** Limits are shared again after the restore: with the budget held in Redis by another gateway's field, a request is refused 429. */
  sharedAgain: boolean;
  connectionsReset: number;
}

/** Redis cut for outageMs under a steady load through a gateway process whose REDIS_URL goes through a proxy. */
export async function redisOutage(
  stack: Stack,
  ws: { id: string; token: string },
  o: { outageMs: number; rate: number; redisUrl: string },
): Promise<RedisOutageReport> {
  const { apiKey } = await stack.deployed(
    ws.token,
    { name: 'redis-outage' },
    { target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
  );
  const target = new URL(o.redisUrl);
  const proxy = await cutProxy(target.hostname, Number(target.port || 6379));
  const proxied = new URL(o.redisUrl);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  const a = await stack.spawnApi({ REDIS_URL: proxied.toString() });
  const redis = new Redis(o.redisUrl, { maxRetriesPerRequest: 1 });
  const slotsKey = `infercp:slots:${ws.id}`;
  try {
    const load = chatLoad(a.url, apiKey, { rate: o.rate, maxTokens: 20 });
    await sleep(1500);
    const sentBefore = load.result.sent;
    proxy.cut();
    await sleep(Math.min(1500, o.outageMs / 2));
    const degradedDuring = await metric(a.url, 'infercp_gateway_limit_store_degraded');
    await sleep(o.outageMs - Math.min(1500, o.outageMs / 2));
    const sentDuring = load.result.sent - sentBefore;
    proxy.resume();
    const degradedAfter = await eventually(
      async () => ((await metric(a.url, 'infercp_gateway_limit_store_degraded')) === 0 ? 1 : null),
      15_000,
      200,
    )
      .then(() => 0)
      .catch(() => 1);
    await sleep(1500);
    const result = await load.stop();
    // Owed releases are paid with the next heartbeat (every 2.5 s).
    const mine = () => leasesOf(redis, slotsKey, a.pid);
    const slotsLeft = await eventually(async () => ((await mine()) === 0 ? 'zero' : null), 10_000, 200)
      .then(() => 0)
      .catch(mine);
    // Shared again: another gateway's field holding the whole budget (with a live liveness key) refuses this one's request.
    const budget = (await stack.prisma.workspace.findUniqueOrThrow({ where: { id: ws.id } })).maxConcurrency ?? 0;
    const other = `chaos-other-${process.pid}`;
    const [sec] = await redis.time();
    const others = Array.from({ length: budget > 0 ? budget : 10_000 }, (_, i) => `${other}#${i}`);
    await redis.zadd(slotsKey, ...others.flatMap((id) => [Number(sec) * 1000 + 10_000, id]));
    const refused = await chatOnce(a.url, apiKey);
    await redis.zrem(slotsKey, ...others);
    return {
      load: result,
      sentDuringOutage: sentDuring,
      degradedDuring,
      degradedAfter,
      slotsLeft,
      sharedAgain: refused.status === 429 && refused.code === 'concurrency_limit_exceeded',
      connectionsReset: proxy.resets,
    };
  } finally {
    redis.disconnect();
    await a.kill();
    await proxy.close();
  }
}

export interface TemporalOutageReport {
  load: LoadResult;
  sentDuringOutage: number;
  /** Load reports this gateway delivered to the scaler before the outage, failed from its start on, delivered after it. */
  reportsOkBeforeOutage: number;
  reportsFailedDuring: number;
  reportsOkAfter: number;
  connectionsReset: number;
}

/** Temporal cut for outageMs under a steady load through a gateway process whose TEMPORAL_ADDRESS goes through a proxy. */
export async function temporalOutage(
  stack: Stack,
  ws: { id: string; token: string },
  o: { outageMs: number; rate: number; catchUpBoundMs: number },
): Promise<TemporalOutageReport> {
  const { apiKey } = await stack.deployed(
    ws.token,
    { name: 'temporal-outage' },
    { target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 2 },
  );
  const [host, port] = stack.config.TEMPORAL_ADDRESS.split(':');
  const proxy = await cutProxy(host, Number(port));
  const a = await stack.spawnApi({ TEMPORAL_ADDRESS: `127.0.0.1:${proxy.port}` });
  try {
    const load = chatLoad(a.url, apiKey, { rate: o.rate, maxTokens: 20 });
    await sleep(2000);
    const sentBefore = load.result.sent;
    const errorsBefore = await metric(a.url, 'infercp_gateway_load_reports_total', 'result="error"');
    const okBefore = await metric(a.url, 'infercp_gateway_load_reports_total', 'result="ok"');
    proxy.cut();
    await sleep(o.outageMs);
    const sentDuring = load.result.sent - sentBefore;
    const okAtResume = await metric(a.url, 'infercp_gateway_load_reports_total', 'result="ok"');
    proxy.resume();
    // The scaler catches up: reports are delivered again (the client reconnects with its own backoff).
    const reportsOkAfter = await eventually(
      async () => {
        const n = (await metric(a.url, 'infercp_gateway_load_reports_total', 'result="ok"')) - okAtResume;
        return n >= 3 ? n : null;
      },
      o.catchUpBoundMs,
      250,
    ).catch(async () => (await metric(a.url, 'infercp_gateway_load_reports_total', 'result="ok"')) - okAtResume);
    const result = await load.stop();
    // Reports sent during the outage fail (an error, or no answer within the sink's bound, which may end after it).
    const reportsFailedDuring = (await metric(a.url, 'infercp_gateway_load_reports_total', 'result="error"')) - errorsBefore;
    return {
      load: result,
      sentDuringOutage: sentDuring,
      reportsOkBeforeOutage: okBefore,
      reportsFailedDuring,
      reportsOkAfter,
      connectionsReset: proxy.resets,
    };
  } finally {
    await a.kill();
    await proxy.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scenario 5 (the HTTP part): slowloris, idle connections and oversized headers on the api port.

/** What the server sent on a raw connection before it closed it, and whether it did within the bound. */
export interface RawOutcome {
  closedByServer: boolean;
  /** The status line's code, when the server answered (0: closed without a response). */
  status: number;
  ms: number;
}

/** Opens a raw connection, writes `head`, then one byte of `drip` every dripMs, until the server closes it or boundMs passes. */
export function rawConnection(port: number, head: string, drip: string | null, dripMs: number, boundMs: number): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(bound);
      sock.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      resolve({ closedByServer, status: m ? Number(m[1]) : 0, ms: performance.now() - t0 });
    };
    const bound = setTimeout(() => finish(false), boundMs);
    sock.on('data', (b) => (data += b.toString()));
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
    sock.on('connect', () => {
      if (head) sock.write(head);
      if (drip !== null) {
        let i = 0;
        timer = setInterval(() => {
          if (!sock.destroyed) sock.write(drip[i++ % drip.length]);
        }, dripMs);
      }
    });
  });
}

export interface AbuseReport {
  slowloris: RawOutcome;
  /** A request sent whole while the slowloris and the idle connections were open. */
  realDuringSlowloris: { status: number; code: string; ms: number };
  idle: { opened: number; closedByServer: number; still: number; statuses: Record<string, number> };
  realDuringIdle: { status: number; code: string; ms: number };
  healthDuringIdle: number;
  oversizedV1: RawOutcome;
  oversizedGraphql: RawOutcome;
  /** The api's resident memory with the idle connections open, MiB (read from /metrics). */
  rssWithIdleMiB: number;
  any500: boolean;
}

/**
 * Against one api process (headers timeout `headersTimeoutMs`): a slowloris (headers one byte at a time), `idle`
 * connections that send nothing, and heads past the header limit on /v1 and /graphql; real requests go on meanwhile.
 */
export async function httpAbuse(
  stack: Stack,
  ws: { id: string; token: string },
  o: { headersTimeoutMs: number; idle: number; boundMs: number },
): Promise<AbuseReport> {
  const { apiKey } = await stack.deployed(
    ws.token,
    { name: 'abuse' },
    { target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
  );
  const a = await stack.spawnApi({ API_HEADERS_TIMEOUT_MS: String(o.headersTimeoutMs) });
  const port = Number(new URL(a.url).port);
  try {
    const head = 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n';
    const slow = rawConnection(port, head, 'X-Slow-Header: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 100, o.boundMs);
    // Idle connections: opened, never sending a byte.
    const idle: Array<Promise<RawOutcome>> = [];
    for (let i = 0; i < o.idle; i++) {
      idle.push(rawConnection(port, '', null, 0, o.boundMs));
      if (i % 200 === 199) await sleep(10);
    }
    await sleep(200);
    const realDuringIdle = await chatOnce(a.url, apiKey);
    const healthDuringIdle = (await fetch(`${a.url}/healthz`).catch(() => ({ status: 0 }))).status;
    const rssWithIdleMiB = (await metric(a.url, 'infercp_process_resident_memory_bytes')) / 1024 / 1024;
    const realDuringSlowloris = await chatOnce(a.url, apiKey);
    const big = `X-Big: ${'a'.repeat(32 * 1024)}\r\n`;
    const oversizedV1 = await rawConnection(
      port,
      `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${apiKey}\r\n${big}Content-Length: 2\r\n\r\n{}`,
      null,
      0,
      o.boundMs,
    );
    const oversizedGraphql = await rawConnection(
      port,
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n${big}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      null,
      0,
      o.boundMs,
    );
    const slowloris = await slow;
    const idleOut = await Promise.all(idle);
    const statuses: Record<string, number> = {};
    for (const r of [...idleOut, slowloris, oversizedV1, oversizedGraphql]) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    const idleStatuses: Record<string, number> = {};
    for (const r of idleOut) idleStatuses[r.status] = (idleStatuses[r.status] ?? 0) + 1;
    return {
      slowloris,
      realDuringSlowloris,
      idle: {
        opened: idleOut.length,
        closedByServer: idleOut.filter((r) => r.closedByServer).length,
        still: idleOut.filter((r) => !r.closedByServer).length,
        statuses: idleStatuses,
      },
      realDuringIdle,
      healthDuringIdle,
      oversizedV1,
      oversizedGraphql,
      rssWithIdleMiB: Math.round(rssWithIdleMiB),
      any500: Object.keys(statuses).some((s) => s.startsWith('5')) || [realDuringIdle, realDuringSlowloris].some((r) => r.status >= 500),
    };
  } finally {
    await a.kill();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scenario 1: the worker SIGKILLed every few seconds (and the Temporal dev server restarted once) during deploys,
// lifecycle operations and scale events.

export interface WorkerKillsOptions {
  /** LOCAL deployments driven concurrently, each through one chain of operations (see workerKills). */
  deployments: number;
  /** RUNPOD deployments (the stack must run the RunPod fake): chains 0 (stop/start/delete) and 4 (left serving). */
  runpodDeployments?: number;
  /** Deployment i starts i * staggerMs after the first, so that operations keep arriving while the kills go on. */
  staggerMs?: number;
  /** A SIGKILL every killEveryMs, `kills` times; then one worker is left running for the rest. */
  killEveryMs: number;
  kills: number;
  /** Restart the Temporal dev server (same port, same database file) once, this long after the start (stack.restartTemporal). */
  restartTemporalAtMs?: number;
  /** The bound on one operation, and on the whole end state's convergence afterwards. */
  operationBoundMs: number;
  /** The open-loop load on every serving deployment's gateway route, requests a second (default 4). */
  loadRate?: number;
  /** Told a line after each kill (the bench prints them: the run takes many minutes). */
  onProgress?: (line: string) => void;
}

export interface WorkerKillsReport {
  outcomes: OperationOutcome[];
  /** Each deployment's status at the end against the one its chain asked for. */
  endStates: Array<{ deploymentId: string; target: string; chain: number; wanted: string; status: string }>;
  /** Scale-ups seen on the scaled deployments (live replica rows reaching 2), of how many asked for. */
  scaleUps: number;
  scaleUpsAsked: number;
  kills: number;
  /** Operations RUNNING at each kill: what the kills interrupted. */
  inFlightAtKills: number[];
  temporalRestarts: number;
  /** The load through the gateway on the deployments left serving, summed. */
  load: LoadResult;
  /** Replicas that run twice (two processes carrying one replica id, or more live rows than maxReplicas). */
  duplicates: string[];
  /** Processes (or fake workers) the database does not hold as live, and live rows nothing runs. */
  orphaned: string[];
}

/** Processes on this machine carrying INFERCP_REPLICA_ID / INFERCP_DEPLOYMENT_ID in their environment (Linux /proc). */
export function replicaProcesses(): Array<{ pid: number; replicaId: string; deploymentId: string }> {
  const out: Array<{ pid: number; replicaId: string; deploymentId: string }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${name}/environ`, 'utf8');
    } catch {
      continue;
    }
    const vars = new Map(
      env
        .split('\0')
        .filter((kv) => kv.startsWith('INFERCP_'))
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    const replicaId = vars.get('INFERCP_REPLICA_ID');
    const deploymentId = vars.get('INFERCP_DEPLOYMENT_ID');
    if (replicaId && deploymentId) out.push({ pid: Number(name), replicaId, deploymentId });
  }
  return out;
}

const LIVE = ['STARTING', 'READY', 'DRAINING'] as const;

/**
 * What each provider runs for `deploymentIds` against the database: for LOCAL, the simulator processes (the local
 * provider's pid files, and every process carrying a replica id in its environment) against the live replica rows;
 * for RUNPOD, the fake's workers per endpoint against the live slots pointing at it.
 */
export async function replicasAgainstDatabase(
  stack: Stack,
  deploymentIds: string[],
): Promise<{ duplicates: string[]; orphaned: string[] }> {
  const duplicates: string[] = [];
  const orphaned: string[] = [];
  const mine = new Set(deploymentIds);
  const deployments = await stack.prisma.deployment.findMany({
    where: { id: { in: deploymentIds } },
    select: { id: true, status: true, target: true, maxReplicas: true },
  });
  const rows = await stack.prisma.replica.findMany({
    where: { deploymentId: { in: deploymentIds }, state: { in: [...LIVE] } },
    select: { id: true, deploymentId: true, state: true, providerId: true },
  });
  const target = new Map(deployments.map((d) => [d.id, d.target]));
  const liveRows = new Map(rows.map((r) => [r.id, r]));
  for (const d of deployments) {
    const n = rows.filter((r) => r.deploymentId === d.id).length;
    if (n > d.maxReplicas) duplicates.push(`${d.id} (${d.status}): ${n} live replica rows, maxReplicas ${d.maxReplicas}`);
    if (n > 0 && ['STOPPED', 'DELETED', 'FAILED'].includes(d.status)) orphaned.push(`${d.id} (${d.status}): ${n} live replica rows`);
  }

  // LOCAL: processes by replica id.
  const procs = replicaProcesses().filter((p) => mine.has(p.deploymentId));
  const handles = await localProvider(stack.config).listReplicas();
  const byReplica = new Map<string, number[]>();
  for (const p of procs) byReplica.set(p.replicaId, [...(byReplica.get(p.replicaId) ?? []), p.pid]);
  for (const [replicaId, pids] of byReplica) {
    if (pids.length > 1) duplicates.push(`replica ${replicaId}: ${pids.length} processes (${pids.join(', ')})`);
    const row = liveRows.get(replicaId);
    if (!row) orphaned.push(`replica ${replicaId}: process ${pids.join(', ')} runs, its row is not live`);
  }
  for (const h of handles.filter((x) => mine.has(x.deploymentId) && !liveRows.has(x.replicaId)))
    if (!byReplica.has(h.replicaId)) orphaned.push(`replica ${h.replicaId}: pid file of a live process, row not live`);
  for (const r of rows.filter((x) => target.get(x.deploymentId) === 'LOCAL')) {
    const pids = byReplica.get(r.id);
    if (!pids) orphaned.push(`replica ${r.id} (${r.state}): live row, no process`);
    else if (r.providerId && !pids.includes(Number(r.providerId)))
      duplicates.push(`replica ${r.id}: row names pid ${r.providerId}, runs as ${pids.join(', ')}`);
  }

  // RUNPOD: the fake's workers per endpoint against the live slots.
  const fake = stack.runpod;
  if (fake) {
    for (const ep of fake.endpoints() as FakeEndpoint[]) {
      const owner = deployments.find((d) => ep.name.includes(d.id));
      if (!owner) continue;
      const workers = fake.workers(ep.id).length;
      const slots = rows.filter((r) => r.providerId === ep.id).length;
      if (workers > slots)
        (slots === 0 ? orphaned : duplicates).push(`endpoint ${ep.id} (${owner.status}): ${workers} worker(s), ${slots} live slot(s)`);
      if (workers < slots) orphaned.push(`endpoint ${ep.id} (${owner.status}): ${slots} live slot(s), ${workers} worker(s)`);
      if (['DELETED', 'FAILED'].includes(owner.status)) orphaned.push(`endpoint ${ep.id}: left behind by a ${owner.status} deployment`);
    }
  }
  return { duplicates, orphaned };
}

/**
 * The worker moved into a child process and SIGKILLed every killEveryMs (`kills` times, then left running), while
 * deployments run their chains concurrently. Chains, by i % 5: 0 stop, start, delete; 1 change GPU (sim -> sim-large)
 * then stop; 2 a variant created and rolled back to, then delete; 3 scale events (FLEX 1..2, bursts through the gateway
 * until a second replica is live) and left serving; 4 left serving. Every serving deployment carries a steady load
 * through the gateway. Afterwards each deployment must reach its chain's end state, and the providers must run what
 * the database holds (see replicasAgainstDatabase), both within operationBoundMs.
 */
export async function workerKills(stack: Stack, gql: Gql, o: WorkerKillsOptions): Promise<WorkerKillsReport> {
  const outcomes: OperationOutcome[] = [];
  const endWanted: WorkerKillsReport['endStates'] = [];
  const ids: string[] = [];
  const loads: Array<ReturnType<typeof chatLoad>> = [];
  let scaleUps = 0;
  let scaleUpsAsked = 0;
  let chainsDone = false;

  // The kills, and the one restart of the Temporal dev server.
  let worker = await stack.spawnWorker();
  let kills = 0;
  let temporalRestarts = 0;
  const inFlightAtKills: number[] = [];
  const t0 = Date.now();
  const killer = (async () => {
    while (kills < o.kills && !chainsDone) {
      await sleep(o.killEveryMs);
      inFlightAtKills.push(await stack.prisma.operation.count({ where: { deploymentId: { in: ids }, status: 'RUNNING' } }));
      await worker.kill();
      kills++;
      if (o.restartTemporalAtMs !== undefined && temporalRestarts === 0 && Date.now() - t0 >= o.restartTemporalAtMs) {
        await stack.restartTemporal();
        temporalRestarts++;
      }
      worker = await stack.spawnWorker();
      o.onProgress?.(
        `  kill ${kills}/${o.kills} at ${Math.round((Date.now() - t0) / 1000)} s: ${inFlightAtKills.at(-1)} operations were running; ${outcomes.length} settled so far${temporalRestarts ? ', Temporal restarted' : ''}`,
      );
    }
  })();

  const opRow = (id: string) => stack.prisma.operation.findUnique({ where: { id } });
  const settle = async (deploymentId: string, kind: string, gpu: string, opId: string) => {
    const row = await eventually(
      async () => {
        const r = await opRow(opId);
        return r && r.status !== 'RUNNING' ? r : null;
      },
      o.operationBoundMs,
      200,
    ).catch(() => null);
    outcomes.push(
      row
        ? { deploymentId, kind, gpu, status: row.status, reason: row.error }
        : { deploymentId, kind, gpu, status: 'STUCK', reason: (await opRow(opId))?.status ?? null },
    );
    return row?.status === 'SUCCEEDED';
  };
  const operate = async (deploymentId: string, kind: string, gpu: string, mutation: string, variables: Record<string, unknown>) => {
    // The previous operation's row may turn SUCCEEDED a moment before the deployment takes the next one.
    for (let attempt = 0; ; attempt++) {
      const res = await gql<Record<string, OperationResult>>(mutation, variables).catch((err: Error) => ({
        data: {} as Record<string, OperationResult>,
        errors: [{ message: err.message, extensions: { code: 'NETWORK' } }],
      }));
      if (!res.errors?.length) return settle(deploymentId, kind, gpu, Object.values(res.data)[0].id);
      if (res.errors[0].extensions?.code === 'OPERATION_IN_PROGRESS' && attempt < 50) {
        await sleep(200);
        continue;
      }
      outcomes.push({ deploymentId, kind, gpu, status: 'REFUSED', reason: `${res.errors[0].extensions?.code}: ${res.errors[0].message}` });
      return false;
    }
  };

  const one = async (i: number, target: 'LOCAL' | 'RUNPOD') => {
    await sleep(i * (o.staggerMs ?? 0));
    const chain = target === 'RUNPOD' ? (i % 2 === 0 ? 0 : 4) : i % 5;
    const gpu = target === 'RUNPOD' ? 'A100' : 'sim';
    const wanted = ['DELETED', 'STOPPED', 'DELETED', 'ACTIVE', 'ACTIVE'][chain];
    const pipelineId = await createPipeline(gql, { name: `kills-${target.toLowerCase()}-${i}` });
    const scaled = chain === 3;
    const { deployPipeline } = await must(
      deploy(gql, {
        pipelineId,
        target,
        gpu,
        mode: 'FLEX',
        minReplicas: 1,
        maxReplicas: scaled ? 2 : 1,
        ...(scaled ? { scaleDownWindowSeconds: 1 } : {}),
      }),
    );
    const id = deployPipeline.deployment.id;
    ids.push(id);
    endWanted.push({ deploymentId: id, target, chain, wanted, status: '' });
    const d = await stack.prisma.deployment.findUniqueOrThrow({ where: { id }, select: { activeOperationId: true } });
    if (!(await settle(id, 'DEPLOY', gpu, d.activeOperationId!))) return;
    if (wanted === 'ACTIVE') loads.push(chatLoad(stack.url, deployPipeline.apiKey, { rate: o.loadRate ?? 4, maxTokens: 5 }));
    if (chain === 0) {
      if (!(await operate(id, 'STOP', gpu, STOP_DEPLOYMENT, { id }))) return;
      if (!(await operate(id, 'START', gpu, START_DEPLOYMENT, { id }))) return;
      await operate(id, 'DELETE', gpu, DELETE_DEPLOYMENT, { id });
    } else if (chain === 1) {
      if (!(await operate(id, 'CHANGE_GPU', 'sim-large', CHANGE_GPU, { id, gpu: 'sim-large' }))) return;
      await operate(id, 'STOP', 'sim-large', STOP_DEPLOYMENT, { id });
    } else if (chain === 2) {
      const { createVariant } = await must(
        gql<{ createVariant: { id: string } }>(CREATE_VARIANT, {
          pipelineId,
          input: { name: 'older', gpu, engine: 'vllm', maxConcurrency: 16 },
        }),
      );
      if (!(await operate(id, 'ROLLBACK', gpu, ROLLBACK, { id, variantId: createVariant.id }))) return;
      await operate(id, 'DELETE', gpu, DELETE_DEPLOYMENT, { id });
    } else if (chain === 3) {
      // Scale events: a burst past the replica's slots (queued requests are reported to the scaler), until a second
      // replica is live; the burst ends, and the window takes it back to one.
      scaleUpsAsked++;
      const pool = new Pool(stack.url, { connections: 80 });
      try {
        const up = await eventually(
          async () => {
            const burst = Promise.all(Array.from({ length: 60 }, () => streamOnce(pool, deployPipeline.apiKey, 150)));
            const seen = await eventually(
              async () => (await stack.prisma.replica.count({ where: { deploymentId: id, state: { in: ['STARTING', 'READY'] } } })) >= 2,
              5000,
              100,
            ).catch(() => false);
            await burst;
            return seen;
          },
          o.operationBoundMs,
          100,
        ).catch(() => false);
        if (up) scaleUps++;
      } finally {
        await pool.close();
      }
    }
  };

  let load: LoadResult = { sent: 0, ok: 0, streams: 0, failures: [] };
  try {
    await Promise.all([
      ...Array.from({ length: o.deployments }, (_, i) => one(i, 'LOCAL')),
      ...Array.from({ length: o.runpodDeployments ?? 0 }, (_, i) => one(i, 'RUNPOD')),
    ]);
  } finally {
    chainsDone = true;
    await killer;
    for (const l of loads) {
      const r = await l.stop();
      load = {
        sent: load.sent + r.sent,
        ok: load.ok + r.ok,
        streams: load.streams + r.streams,
        failures: [...load.failures, ...r.failures],
      };
    }
  }

  // The end state: each deployment where its chain asked (a scaled one back to its one replica), and the providers
  // running exactly what the database holds.
  const endStates = async () => {
    const rows = await stack.prisma.deployment.findMany({ where: { id: { in: ids } }, select: { id: true, status: true } });
    return endWanted.map((e) => ({ ...e, status: rows.find((r) => r.id === e.deploymentId)?.status ?? 'missing' }));
  };
  let ends = await endStates();
  let left = await replicasAgainstDatabase(stack, ids);
  await eventually(
    async () => {
      ends = await endStates();
      left = await replicasAgainstDatabase(stack, ids);
      return ends.every((e) => e.status === e.wanted) && left.duplicates.length + left.orphaned.length === 0;
    },
    o.operationBoundMs,
    250,
  ).catch(() => undefined);
  await worker.kill();
  return { outcomes, endStates: ends, scaleUps, scaleUpsAsked, kills, inFlightAtKills, temporalRestarts, load, ...left };
}

// ---------------------------------------------------------------------------------------------------------------
// Scenario 5 (clients): clients that go silent mid-request.

export interface SilentClientsReport {
  stalled: number;
  /** A request while the stalled clients held the whole budget: 429 concurrency_limit_exceeded expected. */
  refusedWhileStalled: { status: number; code: string };
  /** Cut by the gateway as client_stalled. */
  cut: number;
  /** Once cut: the gateway's in flight, the replicas' own active requests, replicas ejected for it. */
  inFlightAfter: number;
  replicasBusyAfter: number;
  ejections: number;
  /** What the stalled clients had read ended without [DONE]: a stream cut short, not one that looks whole. */
  readWhole: number;
  /** The whole budget right after: statuses of `stalled` streamed requests. */
  afterStatuses: number[];
  /** A client that sends half its body and goes silent: its answer, and the whole requests served meanwhile. */
  halfBody: RawOutcome;
  wholeDuringHalfBody: number[];
  /** How long the cut took after the clients stopped reading, ms. */
  cutMs: number;
}

/**
 * On `stack` (its gateway's idle timeout and request timeout are the caller's env; its replicas should decode fast,
 * SIM_ITL_MS=0, so a stream fills a client's socket buffers within a second or two): a workspace with a budget of
 * `stalled`, a deployment of two replicas, and `stalled` clients that read a stream's first event and then nothing.
 */
export async function silentClients(
  stack: Stack,
  ws: { id: string; token: string },
  o: { stalled: number; boundMs: number },
): Promise<SilentClientsReport> {
  await stack.prisma.workspace.update({ where: { id: ws.id }, data: { maxConcurrency: o.stalled } });
  const { deploymentId, apiKey } = await stack.deployed(
    ws.token,
    { name: `silent-clients-${o.stalled}` },
    { mode: 'ACTIVE', minReplicas: 2, maxReplicas: 2 },
  );
  const port = Number(new URL(stack.url).port);
  const body = (maxTokens: number) =>
    JSON.stringify({ model: 'default', stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: 'go on' }] });
  const head = (length: number) =>
    `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${apiKey}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
  const chat = (maxTokens: number) =>
    fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: body(maxTokens),
    });
  const stalledCount = () => metric(stack.url, 'infercp_gateway_requests_total', 'code="client_stalled"');
  const busy = async () => {
    let n = 0;
    for (const r of await stack.prisma.replica.findMany({ where: { deploymentId, state: 'READY' } }))
      n += ((await (await fetch(`${r.address}/stats`)).json()) as { active: number }).active;
    return n;
  };
  /** A stream whose client reads its first event and then nothing more, its connection left open. */
  const stalledClient = () =>
    new Promise<{ socket: net.Socket; text: () => string }>((resolve, reject) => {
      const b = body(1_000_000);
      const socket = net.connect(port, '127.0.0.1');
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

  const ejectedBefore = await metric(stack.url, 'infercp_gateway_replica_ejections_total', `deployment="${deploymentId}"`);
  const cutBefore = await stalledCount();
  const clients = await Promise.all(Array.from({ length: o.stalled }, stalledClient));
  const t0 = performance.now();
  const refused = await chat(5);
  const refusedWhileStalled = { status: refused.status, code: ((await refused.json()) as { error?: { code: string } }).error?.code ?? '' };
  const cut = await eventually(
    async () => ((await stalledCount()) - cutBefore >= o.stalled ? (await stalledCount()) - cutBefore : null),
    o.boundMs,
    100,
  ).catch(async () => (await stalledCount()) - cutBefore);
  const cutMs = performance.now() - t0;
  const inFlightAfter = await metric(stack.url, 'infercp_gateway_in_flight', `deployment="${deploymentId}"`);
  const replicasBusyAfter = await eventually(async () => ((await busy()) === 0 ? 'idle' : null), 10_000, 100)
    .then(() => 0)
    .catch(busy);
  const ejections = (await metric(stack.url, 'infercp_gateway_replica_ejections_total', `deployment="${deploymentId}"`)) - ejectedBefore;
  const readWhole = clients.filter((c) => c.text().includes('data: [DONE]')).length;
  for (const c of clients) c.socket.destroy();
  const after = await Promise.all(Array.from({ length: o.stalled }, () => chat(50)));
  const afterStatuses = await Promise.all(after.map(async (r) => ((await r.text()).includes('data: [DONE]') ? r.status : -r.status)));

  // Headers and the first ten bytes of a body, then nothing: it holds no budget slot while it sits there.
  const b = body(5);
  const half = rawConnection(port, head(Buffer.byteLength(b)) + b.slice(0, 10), null, 0, o.boundMs);
  const whole = await Promise.all(Array.from({ length: o.stalled }, () => chat(5)));
  const wholeDuringHalfBody = await Promise.all(whole.map(async (r) => (await r.text(), r.status)));
  return {
    stalled: o.stalled,
    refusedWhileStalled,
    cut,
    inFlightAfter,
    replicasBusyAfter,
    ejections,
    readWhole,
    afterStatuses,
    halfBody: await half,
    wholeDuringHalfBody,
    cutMs,
  };
}
