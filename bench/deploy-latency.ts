/**
 * Time from the deployPipeline mutation to ACTIVE on the local provider, split
 * into replica start (spawn -> /health 200) and orchestration (everything else:
 * workflow start, activities, database writes, key issue, route publish).
 * Baseline in the same run: the same replica started by hand (spawn + poll).
 *
 *   npm run build && node dist/bench/deploy-latency.js [runs=7]
 * Needs Postgres (DATABASE_URL's server) and a Temporal CLI (TEMPORAL_CLI_PATH or
 * scripts/temporal-cli.sh); starts its own dev server and a scratch database.
 */
import { join, resolve } from 'node:path';
import { LocalProvider } from '../src/providers/local';
import { benchStack, median, progress } from './harness';
import { CREATE_PIPELINE, DEPLOY } from '../test/support/graphql';

const runs = Number(process.argv[2] ?? 7);

async function main() {
  const { config, dataDir, worker, prisma, gql, close } = await benchStack('deploy');

  // Baseline: the same simulator replica, spawned and polled by hand, weights already cached.
  const local = new LocalProvider({
    stateDir: join(dataDir, 'baseline'),
    cacheDir: resolve(dataDir, 'weights'),
    command: '',
    simulatorArgs: [`--cold-start-ms ${config.SIM_COLD_START_MS}`, `--warm-start-ms ${config.SIM_WARM_START_MS}`],
  });
  const baseline: number[] = [];
  const rows: Array<{ total: number; replica: number; orchestration: number; cold: boolean }> = [];
  const pipeline = (await gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline.id;

  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await gql(DEPLOY, {
      input: { pipelineId: pipeline, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
    });
    const id = r.deployPipeline.deployment!.id;
    let status = '';
    while (status !== 'ACTIVE' && status !== 'FAILED') {
      status = (await prisma.deployment.findUniqueOrThrow({ where: { id }, select: { status: true } })).status;
      if (status !== 'ACTIVE') await new Promise((res) => setTimeout(res, 5));
    }
    const total = performance.now() - t0;
    const replica = await prisma.replica.findFirstOrThrow({ where: { deploymentId: id } });
    rows.push({ total, replica: replica.coldStartMs ?? 0, orchestration: total - (replica.coldStartMs ?? 0), cold: i === 0 });
    progress(`deploy ${i + 1}/${runs}: ${status} in ${total.toFixed(0)} ms (replica start ${replica.coldStartMs} ms)`);
    await worker.providers.LOCAL!.stopReplica(replica.id);

    const b0 = performance.now();
    const h = await local.ensureReplica({
      replicaId: `base-${i}`,
      deploymentId: 'base',
      pipelineId: 'pl_base',
      variantId: 'var',
      model: 'sim/tiny-chat',
      task: 'CHAT',
      gpu: 'sim',
      maxConcurrency: 30,
      revisionId: null,
    });
    while ((await local.health(h)) !== 'ready') await new Promise((res) => setTimeout(res, 5));
    baseline.push(performance.now() - b0);
    await local.stopReplica(h.replicaId);
  }

  const warm = rows.filter((r) => !r.cold);
  const out = {
    runs,
    simulatedWeightLoadMs: { cold: config.SIM_COLD_START_MS, warm: config.SIM_WARM_START_MS },
    firstDeployMs: Math.round(rows[0].total),
    warmDeploy: {
      medianTotalMs: Math.round(median(warm.map((r) => r.total))),
      medianReplicaStartMs: Math.round(median(warm.map((r) => r.replica))),
      medianOrchestrationMs: Math.round(median(warm.map((r) => r.orchestration))),
    },
    baselineBareReplicaStartMs: Math.round(median(baseline.slice(1))),
    ratioDeployToBareStart: +(median(warm.map((r) => r.total)) / median(baseline.slice(1))).toFixed(2),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);

  await close();
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
