/**
 * Scaler reaction: how fast a burst gets its replicas, and how fast capacity comes back when load
 * returns during a drain. For each replica start time (600 ms and 3 s, the simulator's weight load
 * from the cache), bursts of streams that need 2, 4 and 8 replicas at target concurrency 4 reach a
 * Flex deployment with one warm replica; the bench reports the time from the burst to the final
 * desired count and to all replicas ready, beside the gateway's report interval and the replica
 * start the provider measured in the same run (the two targets: decided within one report
 * interval, all ready within one replica start plus 0.5 s). Then the drain case: three replicas each
 * hold a long stream, the short load ends, the scaler drains two of them, and a new burst arrives:
 * the time until both serve again, and how many replicas were started for it (target: under 1 s, none).
 *
 *   npm run build && node dist/bench/scaler-reaction.js [startsMs=600,3000] [needs=2,4,8] [trials=3]
 */
import { CREATE_PIPELINE, DEPLOY } from '../test/support/graphql';
import { scalerStatusQuery, scalerWorkflowId, setPolicyUpdate } from '../workflows/messages';
import { benchStack, median, progress } from './harness';

const starts = (process.argv[2] ?? '600,3000').split(',').map(Number);
const needs = (process.argv[3] ?? '2,4,8').split(',').map(Number);
const trials = Number(process.argv[4] ?? 3);
const TARGET = 4;
const ITL_MS = 20;

type Stack = Awaited<ReturnType<typeof benchStack>>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One streamed chat completion of `tokens` tokens; resolves when it ends. */
function stream(s: Stack, key: string, tokens: number): Promise<string> {
  return fetch(`${s.app!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: 'default', stream: true, max_tokens: tokens, messages: [{ role: 'user', content: 'go' }] }),
  }).then((r) => r.text());
}

async function deployment(s: Stack, pipelineId: string, min: number, extra: Record<string, unknown> = {}) {
  const d = await s.gql(DEPLOY, {
    input: { pipelineId, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: min, maxReplicas: 8, targetConcurrency: TARGET, ...extra },
  });
  const id = d.deployPipeline.deployment!.id;
  await s.temporal.workflow.getHandle(`deploy:${id}`).result();
  return { id, key: d.deployPipeline.apiKey!, scaler: s.temporal.workflow.getHandle(scalerWorkflowId(id)) };
}

async function stopAll(s: Stack, id: string) {
  await s.temporal.workflow
    .getHandle(scalerWorkflowId(id))
    .terminate('bench trial done')
    .catch(() => {});
  for (const r of await s.prisma.replica.findMany({ where: { deploymentId: id, state: { not: 'STOPPED' } } }))
    await s.worker.providers.LOCAL!.stopReplica(r.id);
  await s.prisma.replica.updateMany({ where: { deploymentId: id }, data: { state: 'STOPPED' } });
}

/** A burst that needs `need` replicas on a deployment with one: burst -> final count decided, -> all ready. */
async function burstTrial(s: Stack, pipelineId: string, need: number, startMs: number) {
  const { id, key, scaler } = await deployment(s, pipelineId, 1);
  const t0 = Date.now();
  // Long enough that every stream still runs when the last replica is ready.
  const streams = Array.from({ length: need * TARGET }, () => stream(s, key, Math.ceil((startMs + 3000) / ITL_MS)));
  let decidedAt = 0;
  let allReadyAt = 0;
  while (!allReadyAt && Date.now() - t0 < 60_000) {
    if (!decidedAt) {
      const st = await scaler.query(scalerStatusQuery);
      const final = st.decisions.find((d) => d.to >= need);
      if (final) decidedAt = final.at;
    }
    const ready = await s.prisma.replica.findMany({ where: { deploymentId: id, state: 'READY' }, orderBy: { readyAt: 'asc' } });
    if (ready.length >= need) allReadyAt = ready.at(-1)!.readyAt!.getTime();
    else await sleep(10);
  }
  await Promise.all(streams);
  // A scaler that applies a count before it records it (before asynchronous actuation) logs it late: read it now.
  if (!decidedAt) decidedAt = (await scaler.query(scalerStatusQuery)).decisions.find((d) => d.to >= need)?.at ?? 0;
  const started = await s.prisma.replica.findMany({ where: { deploymentId: id, startedAt: { gte: new Date(t0) } } });
  await stopAll(s, id);
  return {
    decideMs: decidedAt - t0,
    allReadyMs: allReadyAt - t0,
    replicaStartMs: median(started.map((r) => r.coldStartMs ?? 0)),
    started: started.length,
  };
}

/** Load returns while two replicas drain long streams: how soon both serve again, and how many replicas were started. */
async function drainTrial(s: Stack, pipelineId: string) {
  // Three warm replicas to begin with, then a floor of one so that the scaler may drain two.
  const { id, key, scaler } = await deployment(s, pipelineId, 3, { scaleDownWindowSeconds: 1 });
  await scaler.executeUpdate(setPolicyUpdate, { args: [{ minReplicas: 1 }] });
  // One long stream per replica (the gateway spreads them by headroom), then short load that ends.
  const long = [0, 1, 2].map(() => stream(s, key, Math.ceil(30_000 / ITL_MS)));
  await sleep(300);
  await Promise.all(Array.from({ length: 9 }, () => stream(s, key, 20)));
  // Demand 3 fits one replica: after the 1 s window the scaler drains two, which still hold a long stream each.
  const drainStart = Date.now();
  while ((await s.prisma.replica.count({ where: { deploymentId: id, state: 'DRAINING' } })) < 2) {
    if (Date.now() - drainStart > 20_000) throw new Error('no scale-down to drain');
    await sleep(20);
  }
  const t0 = Date.now();
  const burst = Array.from({ length: 8 }, () => stream(s, key, 50));
  let backAt = 0;
  while (!backAt && Date.now() - t0 < 20_000) {
    const serving = await s.prisma.replica.count({ where: { deploymentId: id, state: 'READY' } });
    if (serving >= 3) backAt = Date.now();
    else await sleep(5);
  }
  await Promise.all(burst);
  const started = await s.prisma.replica.count({ where: { deploymentId: id, startedAt: { gte: new Date(t0) } } });
  const reused = (await scaler.query(scalerStatusQuery)).decisions.some((d) => d.reason.startsWith('scale-down cancelled'));
  await stopAll(s, id);
  await Promise.allSettled(long);
  return { capacityBackMs: backAt ? backAt - t0 : null, replicasStarted: started, reusedInDecisionLog: reused };
}

async function main() {
  const out: Record<string, unknown> = {};
  for (const startMs of starts) {
    const s = await benchStack(`reaction-${startMs}`, {
      SIM_COLD_START_MS: String(startMs),
      SIM_WARM_START_MS: String(startMs),
      SIM_ITL_MS: String(ITL_MS),
      SIM_TTFT_MS: '5',
      GATEWAY_QUEUE_TIMEOUT_MS: '60000',
      SCALER_DRAIN_TIMEOUT_SECONDS: '60',
    });
    try {
      const pipelineId = (await s.gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline
        .id;
      const rows: Record<string, unknown> = {};
      for (const need of needs) {
        const trialsOut = [];
        for (let i = 0; i < trials; i++) {
          const r = await burstTrial(s, pipelineId, need, startMs);
          progress(`start ${startMs} ms, need ${need}, trial ${i}: ${JSON.stringify(r)}`);
          trialsOut.push(r);
        }
        const replicaStartMs = median(trialsOut.map((r) => r.replicaStartMs));
        rows[`need${need}`] = {
          medianBurstToFinalCountMs: median(trialsOut.map((r) => r.decideMs)),
          medianBurstToAllReadyMs: median(trialsOut.map((r) => r.allReadyMs)),
          medianReplicaStartMs: replicaStartMs,
          allReadyBeyondOneReplicaStartMs: median(trialsOut.map((r) => r.allReadyMs - r.replicaStartMs)),
          replicasStarted: trialsOut.map((r) => r.started),
        };
      }
      const drains = [];
      for (let i = 0; i < trials; i++) {
        const r = await drainTrial(s, pipelineId);
        progress(`start ${startMs} ms, burst during a drain, trial ${i}: ${JSON.stringify(r)}`);
        drains.push(r);
      }
      rows.burstDuringDrain = {
        medianCapacityBackMs: median(drains.map((r) => r.capacityBackMs ?? Infinity)),
        replicasStarted: drains.map((r) => r.replicasStarted),
        reusedInDecisionLog: drains.map((r) => r.reusedInDecisionLog),
      };
      out[`replicaStart${startMs}ms`] = { reportIntervalMs: s.config.GATEWAY_REPORT_INTERVAL_MS, ...rows };
    } finally {
      await s.close();
    }
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
