// The chaos scenarios of issue #20, written once: the e2e tests run short versions and assert on the reports,
// bench/chaos.ts runs long versions and prints them. Everything here drives the product through its own surfaces
// (GraphQL, /v1, the RunPod fake, SIGKILL) and reads the outcome from what a user or an operator would see.
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
import { chatLoad, LoadResult } from './load';
import type { Stack } from './stack';
import { eventually } from './wait';

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
    // The killed process's field of the workspace's slot hash (its gateway id is host-pid-random).
    const held = await redis.hgetall(slotsKey);
    const slotsHeldAtKill = Object.entries(held)
      .filter(([gw]) => gw.includes(`-${a.pid}-`))
      .reduce((n, [, v]) => n + Number(v), 0);
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
