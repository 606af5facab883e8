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
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { createApp } from '../src/app';
import { freePort } from '../src/common/net';
import { loadConfig } from '../src/config/config';
import { dropDatabase, ensureDatabase, migrate } from '../src/database/migrate';
import { createPrisma } from '../src/database/prisma';
import { LocalProvider } from '../src/providers/local.provider';
import { startDevServer } from '../src/temporal/dev-server';
import { startWorker } from '../src/temporal/worker-runtime';
import { WorkspacesService } from '../src/workspaces/workspaces.service';

const runs = Number(process.argv[2] ?? 7);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const progress = (m: string) => process.stderr.write(`${m}\n`);

async function main() {
  const root = resolve(__dirname, '../..');
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-deploy-'));
  const base = new URL(process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres');
  base.pathname = `/infercp_bench_${Date.now().toString(36)}`;
  const databaseUrl = base.toString();
  await ensureDatabase(databaseUrl);
  await migrate(databaseUrl, resolve(root, 'prisma/migrations'));
  const cliPath = process.env.TEMPORAL_CLI_PATH ?? execFileSync('bash', [resolve(root, 'scripts/temporal-cli.sh')], { encoding: 'utf8' }).trim();
  const temporal = await startDevServer({ cliPath, port: await freePort() });
  const apiPort = await freePort();
  const config = loadConfig({
    ...process.env, DATABASE_URL: databaseUrl, TEMPORAL_ADDRESS: temporal.address, API_PORT: String(apiPort),
    DATA_DIR: dataDir, LOG_LEVEL: 'error', TEMPORAL_TASK_QUEUE: 'bench',
  });
  const log = pino({ level: 'error' });
  const worker = await startWorker(config, log);
  const app = await createApp(config, log);
  const prisma = createPrisma(databaseUrl, 2);
  const { token } = await new WorkspacesService(prisma).create('bench', 'TEAM');
  const gql = async (query: string, variables: Record<string, unknown>) => {
    const r = await fetch(`${app.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query, variables }) });
    return (await r.json()) as { data: Record<string, { id: string; deployment?: { id: string } }> };
  };

  // Baseline: the same simulator replica, spawned and polled by hand, weights already cached.
  const local = new LocalProvider({
    stateDir: join(dataDir, 'baseline'), cacheDir: resolve(dataDir, 'weights'), command: '',
    simulatorArgs: [`--cold-start-ms ${config.SIM_COLD_START_MS}`, `--warm-start-ms ${config.SIM_WARM_START_MS}`],
  });
  const baseline: number[] = [];
  const rows: Array<{ total: number; replica: number; orchestration: number; cold: boolean }> = [];
  const pipeline = (await gql(`mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }`, { i: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).data.createPipeline.id;

  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await gql(`mutation($i: DeployPipelineInput!) { deployPipeline(input: $i) { deployment { id } } }`, {
      i: { pipelineId: pipeline, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
    });
    const id = r.data.deployPipeline.deployment!.id;
    let status = '';
    while (status !== 'ACTIVE' && status !== 'FAILED') {
      status = (await prisma.deployment.findUniqueOrThrow({ where: { id }, select: { status: true } })).status;
      if (status !== 'ACTIVE') await new Promise((res) => setTimeout(res, 5));
    }
    const total = performance.now() - t0;
    const replica = await prisma.replica.findFirstOrThrow({ where: { deploymentId: id } });
    rows.push({ total, replica: replica.coldStartMs ?? 0, orchestration: total - (replica.coldStartMs ?? 0), cold: i === 0 });
    progress(`deploy ${i + 1}/${runs}: ${status} in ${total.toFixed(0)} ms (replica start ${replica.coldStartMs} ms)`);
    await worker.providers.LOCAL.stopReplica(replica.id);

    const b0 = performance.now();
    const h = await local.ensureReplica({ replicaId: `base-${i}`, deploymentId: 'base', pipelineId: 'pl_base', variantId: 'var', model: 'sim/tiny-chat', task: 'CHAT', gpu: 'sim', maxConcurrency: 30 });
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

  await app.close();
  await worker.shutdown();
  await prisma.$disconnect();
  await temporal.stop();
  await dropDatabase(databaseUrl);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
