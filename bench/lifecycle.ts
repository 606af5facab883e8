/**
 * Each lifecycle operation on the local provider against its parts, and the requests a swap fails.
 *
 *   npm run build && node dist/bench/lifecycle.js [rate=200] [rounds=3]
 *
 * On an Enterprise workspace (its keys may go past Team's per-key rate), a deployment of 2 replicas (min = max, so the scaler holds the count) runs `rounds` rounds of:
 * change GPU sim -> sim-large, change GPU back, roll back onto a new variant (its weights not yet
 * cached: a cold start), roll back to the default variant (cached: a warm start), stop, start. Every
 * swap runs under an open-loop load of `rate` requests a second, half streamed, each checked whole
 * (test/support/load.ts); stop and start run without load (a stopped deployment answers 503 by design).
 *
 * For each operation: the time from the mutation to the operation's end, its replica start (the
 * slowest replica it started, spawn to /health 200), its drain (switch to the old replicas stopped, or
 * the stop's drain), and the rest (orchestration: workflow, activities, database, NOTIFY). The parts
 * are the baseline, measured in the same run: an operation can be no faster than them.
 */
import { CHANGE_GPU, CREATE_PIPELINE, CREATE_VARIANT, DEPLOY, ROLLBACK, START_DEPLOYMENT, STOP_DEPLOYMENT } from '../test/support/graphql';
import { chatLoad } from '../test/support/load';
import { benchStack, median, progress } from './harness';

const rate = Number(process.argv[2] ?? 200);
const rounds = Number(process.argv[3] ?? 3);

type Kind = 'changeGpu' | 'rollbackCold' | 'rollbackWarm' | 'stop' | 'start';
interface Sample {
  totalMs: number;
  replicaStartMs: number;
  drainMs: number;
  orchestrationMs: number;
}

async function main() {
  // Enterprise: a key may take more than Team's 10000 requests a minute (200/s is 12000).
  const s = await benchStack('lifecycle', {}, { plan: 'ENTERPRISE' });
  const { prisma, gql } = s;
  const pipelineId = (await gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline.id;
  const r = await gql(DEPLOY, { input: { pipelineId, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 2, maxReplicas: 2 } });
  const id = r.deployPipeline.deployment!.id;
  await s.temporal.workflow.getHandle(`deploy:${id}`).result();
  const key = await gql<{ createApiKey: { key: string } }>(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }`, {
    input: { name: 'load', scope: 'DEPLOYMENT', deploymentId: id, rateLimitPerMinute: rate * 60 * 2 },
  });
  const apiKey = key.createApiKey.key;
  const defaultVariant = (await prisma.deployment.findUniqueOrThrow({ where: { id } })).variantId;

  const samples: Record<Kind, Sample[]> = { changeGpu: [], rollbackCold: [], rollbackWarm: [], stop: [], start: [] };
  const load = { sent: 0, failed: 0, streams: 0, failures: [] as string[] };

  const at = async (kind: string, after: Date) =>
    (
      await prisma.deploymentEvent.findFirst({ where: { deploymentId: id, kind, at: { gte: after } }, orderBy: { id: 'asc' } })
    )?.at.getTime();

  /** Runs one operation to its end; returns its time and parts. */
  async function operation(kind: Kind, doc: string, field: string, vars: Record<string, unknown>, withLoad: boolean): Promise<void> {
    const traffic = withLoad ? chatLoad(s.url, apiKey, { rate, maxTokens: 10 }) : null;
    if (traffic) await new Promise((res) => setTimeout(res, 500));
    const t0 = performance.now();
    const since = new Date();
    const op = (await gql<Record<string, { id: string; workflowId: string }>>(doc, { id, ...vars }))[field];
    await s.temporal.workflow.getHandle(op.workflowId).result();
    const totalMs = performance.now() - t0;
    if (traffic) {
      await new Promise((res) => setTimeout(res, 500));
      const t = await traffic.stop();
      load.sent += t.sent;
      load.failed += t.failures.length;
      load.streams += t.streams;
      load.failures.push(...t.failures.slice(0, 5));
    }
    const started = await prisma.replica.findMany({ where: { deploymentId: id, startedAt: { gte: since } } });
    const replicaStartMs = Math.max(0, ...started.map((x) => x.coldStartMs ?? 0));
    const [drainFrom, drainTo] =
      kind === 'stop'
        ? [await at('replicas.draining', since), await at('replicas.stopped', since)]
        : kind === 'start'
          ? [0, 0]
          : [await at('revision.switched', since), await at('revision.retired', since)];
    const drainMs = drainFrom && drainTo ? drainTo - drainFrom : 0;
    const sample = { totalMs, replicaStartMs, drainMs, orchestrationMs: totalMs - replicaStartMs - drainMs };
    samples[kind].push(sample);
    progress(
      `${kind}: ${totalMs.toFixed(0)} ms (replica start ${replicaStartMs} ms, drain ${drainMs} ms)` +
        (traffic ? `, load so far ${load.sent} sent / ${load.failed} failed` : ''),
    );
  }

  for (let round = 1; round <= rounds; round++) {
    progress(`round ${round}/${rounds}`);
    await operation('changeGpu', CHANGE_GPU, 'changeGpu', { gpu: 'sim-large' }, true);
    await operation('changeGpu', CHANGE_GPU, 'changeGpu', { gpu: 'sim' }, true);
    const v = (await gql(CREATE_VARIANT, { pipelineId, input: { name: `v${round}`, gpu: 'any', engine: 'vllm' } })).createVariant.id;
    await operation('rollbackCold', ROLLBACK, 'rollbackDeployment', { variantId: v }, true);
    await operation('rollbackWarm', ROLLBACK, 'rollbackDeployment', { variantId: defaultVariant }, true);
    await operation('stop', STOP_DEPLOYMENT, 'stopDeployment', {}, false);
    await operation('start', START_DEPLOYMENT, 'startDeployment', {}, false);
  }
  const left = await prisma.replica.findMany({ where: { deploymentId: id, state: { not: 'STOPPED' } } });
  await s.close();

  const summary = Object.fromEntries(
    Object.entries(samples).map(([k, xs]) => {
      const m = (f: keyof Sample) => Math.round(median(xs.map((x) => x[f])));
      const parts = m('replicaStartMs') + m('drainMs');
      return [
        k,
        {
          runs: xs.length,
          medianTotalMs: m('totalMs'),
          medianReplicaStartMs: m('replicaStartMs'),
          medianDrainMs: m('drainMs'),
          medianOrchestrationMs: m('orchestrationMs'),
          ratioTotalToParts: parts ? Number((m('totalMs') / parts).toFixed(2)) : null,
        },
      ];
    }),
  );
  process.stdout.write(
    `${JSON.stringify(
      {
        rate,
        rounds,
        operations: summary,
        swapLoad: { sent: load.sent, failed: load.failed, streamsWhole: load.streams, firstFailures: load.failures.slice(0, 5) },
        replicasRunningBeyondTheTwoServing: left.length - 2,
      },
      null,
      2,
    )}\n`,
  );
}

void main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
