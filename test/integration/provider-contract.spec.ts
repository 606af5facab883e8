import pino from 'pino';
import { request } from 'undici';
import { loadConfig } from '../../src/config/config';
import { createPrisma } from '../../src/database/prisma';
import type { Prisma } from '../../src/database/prisma';
import type { Providers, ProviderAdapter } from '../../src/providers/provider';
import { runpodProvider } from '../../src/providers/runpod';
import { RunpodFake, runpodFakeEnv, startRunpodFake } from '../../src/providers/runpod/fake';
import { activityWorld } from '../support/activities';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newId } from '../../src/common/secrets';
import { ModalFake, ModalProvider, sealModalAccount } from '../../src/providers/modal';
import { WorkspacesService } from '../../src/workspaces/workspaces.service';
import { secretsKey } from '../../src/credentials/secrets-key';
import { sealSecret } from '../../src/credentials/store';
import { customProvider } from '../../src/providers/custom';
import { kubernetesAccountOf, sealKubernetesAccount } from '../../src/providers/kubernetes';
import { ALL, startKubernetesFake } from '../../src/providers/kubernetes/fake';

/**
 * One contract every provider adapter keeps, run through the replica activities on real Postgres against each
 * target's local stand-in: the local provider's simulator processes, and managed RunPod on the RunPod fake. A new
 * target adds one entry to TARGETS.
 */
interface Target {
  /** Providers for the activities (undefined: the world's own local provider), the deployment row, the upstream key. */
  providers?: Providers;
  row: Partial<Prisma.DeploymentUncheckedCreateInput>;
  authorization?: string;
  adapter: (providers: Providers | undefined) => ProviderAdapter | undefined;
  close(): Promise<void>;
}

const prisma = createPrisma(process.env.DATABASE_URL!, 2);
const KEY = 'rpa_contract_key_0001';

const TARGETS: [string, () => Promise<Target>][] = [
  ['local (simulator processes)', async () => ({ row: { target: 'LOCAL', gpu: 'sim' }, adapter: () => undefined, close: async () => {} })],
  [
    'RUNPOD (the RunPod fake)',
    async () => {
      const fake: RunpodFake = await startRunpodFake({ keys: [{ key: KEY }], coldStartMs: 200, flashbootStartMs: 50, ttftMs: 5, itlMs: 5 });
      const config = loadConfig({
        ...process.env,
        ...runpodFakeEnv(fake, KEY),
        RUNPOD_MIN_PATCH_INTERVAL_MS: '100',
        RUNPOD_DRIFT_INTERVAL_MS: '3600000',
      });
      const adapter = runpodProvider(config, { prisma, log: pino({ level: 'silent' }) });
      return {
        providers: { RUNPOD: adapter },
        row: { target: 'RUNPOD', gpu: 'H100' },
        authorization: `Bearer ${KEY}`,
        adapter: (p) => p?.RUNPOD,
        close: async () => {
          adapter.close();
          await fake.stop();
        },
      };
    },
  ],
  [
    'MODAL (the real modal SDK on an in-process fake control plane)',
    async () => {
      const account = { tokenId: 'ak-contract-0001', tokenSecret: 'as-contract-0001', environment: '' };
      const fake = new ModalFake({
        stateDir: mkdtempSync(join(tmpdir(), 'contract-modal-')),
        accepts: (id, secret) => id === account.tokenId && secret === account.tokenSecret,
        simulatorArgs: ['--cold-start-ms 200', '--warm-start-ms 50', '--ttft-ms 5', '--itl-ms 5'],
      });
      // The user's own Modal account, as a stored credential of a workspace.
      const { workspace } = await new WorkspacesService(prisma).create(`contract-modal-${Date.now()}`, 'TEAM');
      const credentialId = newId('pc');
      await prisma.providerCredential.create({
        data: { id: credentialId, workspaceId: workspace.id, target: 'MODAL', name: 'contract', sealed: 'unused', last4: '0001' },
      });
      const adapter = new ModalProvider({
        prisma,
        log: pino({ level: 'silent' }),
        secretOf: async (id) => {
          if (id !== credentialId) throw new Error(`credential ${id} is not this suite's`);
          return sealModalAccount(account);
        },
        controlPlane: (a) => ({ cpClient: fake.client(a.tokenId, a.tokenSecret), tunnelScheme: 'http' }),
        // Production keys differ per replica (modalReplicaKey); one key here, so the suite's one authorization serves all.
        replicaKey: () => KEY,
        image: 'vllm/vllm-openai:v0.11.0',
        appName: 'infercp-contract',
        sandboxTimeoutSeconds: 86_100,
      });
      return {
        providers: { MODAL: adapter },
        row: { target: 'MODAL', gpu: 'H100', credentialId },
        authorization: `Bearer ${KEY}`,
        adapter: (p) => p?.MODAL,
        close: async () => {
          await fake.stopAll();
        },
      };
    },
  ],
  [
    'CUSTOM on Kubernetes (the real @kubernetes/client-node on the fake API server)',
    async () => {
      const fake = await startKubernetesFake({
        users: [{ token: 'contract-token', name: 'contract', rules: ALL }],
        namespaces: ['ml'],
        gpus: 4,
      });
      const config = loadConfig({ ...process.env, KUBERNETES_MIN_SCALE_INTERVAL_MS: '100' });
      const { workspace } = await new WorkspacesService(prisma).create(`contract-k8s-${Date.now()}`, 'TEAM');
      const credentialId = newId('pc');
      const account = kubernetesAccountOf({ kubeconfig: fake.kubeconfig('contract-token'), namespace: 'ml' });
      await prisma.providerCredential.create({
        data: {
          id: credentialId,
          workspaceId: workspace.id,
          target: 'CUSTOM',
          name: 'contract',
          sealed: sealSecret(secretsKey(config), sealKubernetesAccount(account)),
          last4: 'e-ml',
        },
      });
      // Production keys differ per pool (kubernetesPoolKey); one key here, so the suite's one authorization serves all.
      const adapter = customProvider(config, { prisma, log: pino({ level: 'silent' }) }, { poolKey: () => KEY });
      return {
        providers: { CUSTOM: adapter },
        row: { target: 'CUSTOM', gpu: 'H100', credentialId },
        authorization: `Bearer ${KEY}`,
        adapter: (p) => p?.CUSTOM,
        close: async () => {
          adapter.close();
          await fake.stop();
        },
      };
    },
  ],
];

describe.each(TARGETS)('the provider contract: %s', (_name, make) => {
  let world: Awaited<ReturnType<typeof activityWorld>>;
  let target: Target;
  beforeAll(async () => {
    world = await activityWorld('contract');
    target = await make();
  });
  afterAll(async () => {
    await target?.close();
    await world?.close();
  });

  const chat = async (address: string) => {
    try {
      const res = await request(`${address}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(target.authorization ? { authorization: target.authorization } : {}) },
        body: JSON.stringify({ model: 'sim/tiny-chat', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
        headersTimeout: 5000,
      });
      const body = (await res.body.json().catch(() => null)) as { usage?: { completion_tokens?: number } } | null;
      return { status: res.statusCode, tokens: body?.usage?.completion_tokens };
    } catch (e) {
      return { status: 0, error: (e as Error).message };
    }
  };

  it('should start replicas once however often asked, turn each ready, and serve OpenAI requests at each address', async () => {
    const { deploymentId, run, rows } = await world.deployment({ providers: target.providers, row: target.row });
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 2, reason: 'contract' });
    expect(up.started).toHaveLength(2);
    expect((await run('reconcileReplicaCount', { deploymentId, desired: 2, reason: 'retry' })).started).toEqual([]);
    expect(await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })))).toEqual([
      'ready',
      'ready',
    ]);
    for (const r of await rows()) {
      expect(r.address).toMatch(/^http:\/\//);
      expect(await chat(r.address!)).toEqual({ status: 200, tokens: 5 });
    }
  });

  it('should drain and stop a replica without a failed request, find the live ones again, and serve nothing once released', async () => {
    const { deploymentId, run, rows } = await world.deployment({ providers: target.providers, row: target.row });
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 2, reason: 'contract' });
    await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })));
    // A request sent straight to the replica while it drains (the gateways stopped routing to it) still completes.
    const down = await run('reconcileReplicaCount', { deploymentId, desired: 1, reason: 'contract down' });
    const address = (await rows()).find((r) => r.id === down.draining[0])!.address!;
    const during = chat(address);
    expect(await run('drainReplica', { deploymentId, replicaId: down.draining[0], drainTimeoutMs: 10_000 })).toBe('stopped');
    expect(await during).toEqual({ status: 200, tokens: 5 });

    const adapter = target.adapter(target.providers);
    if (adapter) {
      // What a restarted worker compares with its rows: the live replica is listed, the stopped one is not.
      const listed = (await adapter.listReplicas()).filter((h) => h.deploymentId === deploymentId).map((h) => h.replicaId);
      expect(listed).toEqual(up.started.filter((id) => id !== down.draining[0]));
      await adapter.stopReplica(down.draining[0]); // idempotent
    }
    await run('releaseReplicas', { deploymentId, reason: 'contract done' });
    await run('markDeleted', { deploymentId, operationId: 'op_contract' });
    expect((await rows()).every((r) => r.state === 'STOPPED')).toBe(true);
    expect((await chat(address)).status).not.toBe(200);
  });
});
