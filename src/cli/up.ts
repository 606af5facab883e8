import { ChildProcess, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadConfigOrExit } from '../config/config';
import { DevServer, startDevServer, waitForPort } from '../temporal/dev-server';
import { localProvider } from '../providers/local';
import { RunpodFake, runpodFakeEnv, startRunpodFake } from '../providers/runpod/fake';
import { randomBytes } from 'node:crypto';
import { bootstrap } from './bootstrap';
import { ensureModalDemoCredential } from './modal-demo';
import { CUSTOM_DEMO_CREDENTIAL_NAME, customDemoBoxes, startCustomDemo } from './custom-demo';
import { modalFake } from '../providers/modal';
import { KUBERNETES_DEMO_CREDENTIAL_NAME, startKubernetesDemo } from '../providers/kubernetes/demo';
import type { KubernetesFake } from '../providers/kubernetes/fake';

/**
 * `npm start`: the whole product on one machine, with an embedded default for
 * every part: Postgres (DATABASE_URL, else the local server), Temporal
 * (TEMPORAL_ADDRESS, else `temporal server start-dev` with its UI), migrations,
 * the api and the worker. Ctrl-C stops all of it, replicas included.
 */
const root = resolve(__dirname, '../../..');
const say = (msg: string) => process.stderr.write(`\u001b[1m==>\u001b[0m ${msg}\n`);

async function main() {
  const config = loadConfigOrExit();
  const dataDir = resolve(root, config.DATA_DIR);
  await mkdir(dataDir, { recursive: true });

  let temporal: DevServer | null = null;
  let runpod: RunpodFake | null = null;
  let kubernetes: KubernetesFake | null = null;
  const children: ChildProcess[] = [];
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping api and worker');
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((r) => {
            if (c.exitCode !== null || c.signalCode !== null) return r();
            c.once('exit', () => r());
            c.kill('SIGTERM');
            setTimeout(() => c.kill('SIGKILL'), 10_000).unref();
          }),
      ),
    );
    const local = localProvider(config);
    const replicas = await local.listReplicas();
    if (replicas.length) say(`stopping ${replicas.length} local replica(s)`);
    await Promise.all(replicas.map((r) => local.stopReplica(r.replicaId)));
    if (runpod) {
      say('stopping the embedded RunPod fake');
      await runpod.stop();
    }
    await customDemoBoxes({ DATA_DIR: dataDir }).stopAll();
    if (kubernetes) {
      say('stopping the embedded Kubernetes fake (its pods are simulators in this process)');
      await kubernetes.stop();
    }
    // Sandboxes of the in-process Modal fake run as simulator processes too (demo credentials).
    const sandboxes = await modalFake({ ...config, DATA_DIR: dataDir }).stopAll();
    if (sandboxes) say(`stopped ${sandboxes} sandbox(es) of the Modal fake`);
    if (temporal) {
      say('stopping the Temporal dev server');
      await temporal.stop();
    }
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));

  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir };
  if (!process.env.TEMPORAL_ADDRESS) {
    const cliPath = process.env.TEMPORAL_CLI_PATH;
    if (!cliPath) throw new Error('TEMPORAL_CLI_PATH is not set; run through `npm start`, which installs the CLI');
    const [host, port] = config.TEMPORAL_ADDRESS.split(':');
    say(`starting the Temporal dev server on ${config.TEMPORAL_ADDRESS} (SQLite: ${config.DATA_DIR}/temporal.sqlite)`);
    temporal = await startDevServer({
      cliPath,
      host,
      port: Number(port),
      uiPort: Number(process.env.TEMPORAL_UI_PORT ?? 8233),
      dbFile: resolve(dataDir, 'temporal.sqlite'),
      logFile: resolve(dataDir, 'temporal.log'),
    });
    env.TEMPORAL_ADDRESS = temporal.address;
    // The console links operations to this dev server's Web UI unless TEMPORAL_UI_URL says otherwise.
    if (temporal.uiUrl) env.TEMPORAL_UI_URL ??= temporal.uiUrl;
  }

  // Managed RunPod without credentials: the embedded fake of RunPod's documented API, so a RUNPOD deploy works here.
  if (!config.RUNPOD_API_KEY) {
    const key = `rpa_embedded_${randomBytes(12).toString('hex')}`;
    runpod = await startRunpodFake({
      keys: [{ key, accountId: 'embedded' }],
      stateDir: resolve(dataDir, 'runpod-fake'),
      coldStartMs: config.SIM_COLD_START_MS,
      flashbootStartMs: config.SIM_WARM_START_MS,
      ttftMs: config.SIM_TTFT_MS,
      itlMs: config.SIM_ITL_MS,
    });
    Object.assign(env, runpodFakeEnv(runpod, key));
    say(
      `managed RunPod: no RUNPOD_API_KEY, so the embedded RunPod fake serves it at ${runpod.managementUrl} (runtime ${runpod.runtimeUrl})`,
    );
  }

  const { token } = await bootstrap(config, say, resolve(dataDir, 'bootstrap-token'));
  // MODAL without an account: demo tokens reach the in-process fake control plane; the default workspace gets one.
  if (!process.env.MODAL_FAKE) env.MODAL_FAKE = 'true';
  if (env.MODAL_FAKE === 'true') {
    const modalDemo = await ensureModalDemoCredential({ ...config, DATA_DIR: dataDir });
    say(`MODAL: demo credential ${modalDemo} ("demo (local fake)") deploys to the in-process Modal fake; add a real token to use Modal`);
  }

  // CUSTOM without servers of one's own: a demo box (the simulator behind a key) registered as the default workspace's demo credential.
  const customDemo = await startCustomDemo({ ...config, DATA_DIR: dataDir });
  say(`CUSTOM: demo credential ${customDemo.credentialId} ("${CUSTOM_DEMO_CREDENTIAL_NAME}") registers a box at ${customDemo.url}`);

  // CUSTOM on Kubernetes without a cluster: the fake API server in this process, and a demo credential with its kubeconfig.
  const kubeDemo = await startKubernetesDemo({ ...config, DATA_DIR: dataDir });
  kubernetes = kubeDemo.fake;
  say(
    `CUSTOM on Kubernetes: demo credential ${kubeDemo.credentialId} ("${KUBERNETES_DEMO_CREDENTIAL_NAME}") holds a kubeconfig of the embedded fake cluster at ${kubernetes.url} (${config.KUBERNETES_DEMO_GPUS} GPUs); add a real kubeconfig to use your cluster`,
  );

  for (const [name, entry] of [
    ['worker', 'dist/src/worker.js'],
    ['api', 'dist/src/main.js'],
  ] as const) {
    const child = spawn(process.execPath, [resolve(root, entry)], { env, stdio: 'inherit', cwd: root });
    child.once('exit', (code, signal) => {
      if (!stopping) {
        say(`${name} exited (code ${code}, signal ${signal}); stopping the stack`);
        void stop(code || 1);
      }
    });
    children.push(child);
  }
  await waitForPort(config.API_HOST, config.API_PORT, 60_000);

  const lines = [
    '',
    'infer-control-plane is up.',
    `  GraphQL      ${config.PUBLIC_BASE_URL}/graphql   (GraphiQL: ${config.PUBLIC_BASE_URL}/graphiql)`,
    `  Gateway      ${config.PUBLIC_BASE_URL}/v1`,
    `  Console      ${config.PUBLIC_BASE_URL}/console/   (sign in with the token below)`,
    `  Temporal UI  ${temporal?.uiUrl ?? `(external cluster at ${env.TEMPORAL_ADDRESS})`}`,
    `  Metrics      ${config.PUBLIC_BASE_URL}/metrics`,
    runpod
      ? `  RunPod       embedded fake at ${runpod.managementUrl}; for the real RunPod set RUNPOD_API_KEY (README "Running on real GPUs")`
      : `  RunPod       ${config.RUNPOD_API_URL} (managed account from RUNPOD_API_KEY)`,
    `  Token        ${token}   (workspace "default", Team plan; send as Authorization: Bearer <token>)`,
    '',
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

main().catch((err) => {
  process.stderr.write(`npm start failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
