/**
 * Benchmark 1, reaction: a burst of streams reaches the gateway of a Flex
 * deployment with one warm replica; how long until the scaler decides to scale
 * up, and until the new replicas serve. Compared in the same run with the
 * gateway's report interval and the replica start time the provider measured.
 *
 *   npm run build && node dist/bench/scaler-reaction.js [trials=5] [burst=90]
 */
import { benchStack, median, progress } from './harness';
import { CREATE_PIPELINE, DEPLOY } from '../test/support/graphql';
import { scalerStatusQuery, scalerWorkflowId } from '../workflows/messages';

const trials = Number(process.argv[2] ?? 5);
const burst = Number(process.argv[3] ?? 90);

async function main() {
  const s = await benchStack('reaction', { GATEWAY_QUEUE_TIMEOUT_MS: '60000', SIM_ITL_MS: '20' });
  const pipeline = (await s.gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline.id;
  const rows: Array<{ decideMs: number; firstReadyMs: number; allReadyMs: number; replicaStartMs: number; to: number }> = [];
  for (let i = 0; i <= trials; i++) {
    const d = await s.gql(DEPLOY, {
      input: { pipelineId: pipeline, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 4 },
    });
    const id = d.deployPipeline.deployment!.id;
    await s.temporal.workflow.getHandle(`deploy:${id}`).result();
    const scaler = s.temporal.workflow.getHandle(scalerWorkflowId(id));
    const t0 = Date.now();
    const requests = Array.from({ length: burst }, () =>
      fetch(`${s.app!.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${d.deployPipeline.apiKey}` },
        body: JSON.stringify({ model: 'default', stream: true, max_tokens: 200, messages: [{ role: 'user', content: 'go' }] }),
      }).then((r) => r.text()),
    );
    let decidedAt = 0;
    let to = 0;
    while (!decidedAt) {
      const st = await scaler.query(scalerStatusQuery);
      const up = st.decisions.find((x) => x.to > x.from);
      if (up) {
        decidedAt = up.at;
        to = Math.max(...st.decisions.map((x) => x.to));
      } else await new Promise((r) => setTimeout(r, 5));
    }
    let firstReadyAt = 0;
    let allReadyAt = 0;
    while (!allReadyAt) {
      const ready = await s.prisma.replica.findMany({ where: { deploymentId: id, state: 'READY', startedAt: { gte: new Date(t0) } }, orderBy: { readyAt: 'asc' } });
      if (ready.length && !firstReadyAt) firstReadyAt = ready[0].readyAt!.getTime();
      if (ready.length >= burst / 30 - 1) allReadyAt = ready.at(-1)!.readyAt!.getTime();
      else await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(requests);
    const started = await s.prisma.replica.findMany({ where: { deploymentId: id, startedAt: { gte: new Date(t0) } } });
    const row = { decideMs: decidedAt - t0, firstReadyMs: firstReadyAt - t0, allReadyMs: allReadyAt - t0, replicaStartMs: median(started.map((r) => r.coldStartMs ?? 0)), to };
    // The first trial pays the cold weight cache; the rest start from cached weights.
    if (i > 0) rows.push(row);
    progress(`trial ${i}${i === 0 ? ' (warming the weight cache, not counted)' : ''}: ${JSON.stringify(row)}`);
    await scaler.terminate('bench trial done');
    for (const r of await s.prisma.replica.findMany({ where: { deploymentId: id, state: { not: 'STOPPED' } } })) await s.worker.providers.LOCAL!.stopReplica(r.id);
  }
  const out = {
    trials: rows.length,
    burstStreams: burst,
    configured: { reportIntervalMs: s.config.GATEWAY_REPORT_INTERVAL_MS, simulatedWarmStartMs: s.config.SIM_WARM_START_MS },
    medianBurstToDecisionMs: median(rows.map((r) => r.decideMs)),
    medianBurstToFirstNewReplicaReadyMs: median(rows.map((r) => r.firstReadyMs)),
    medianBurstToAllNewReplicasReadyMs: median(rows.map((r) => r.allReadyMs)),
    medianReplicaStartMs: median(rows.map((r) => r.replicaStartMs)),
    decisionOverReportInterval: +(median(rows.map((r) => r.decideMs)) / s.config.GATEWAY_REPORT_INTERVAL_MS).toFixed(2),
    orchestrationBeyondReplicaStartMs: median(rows.map((r) => r.firstReadyMs - r.replicaStartMs)),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  await s.close();
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
