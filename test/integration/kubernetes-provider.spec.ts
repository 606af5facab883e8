import pino from 'pino';
import { request } from 'undici';
import { loadConfig } from '../../src/config/config';
import { newId } from '../../src/common/secrets';
import { DomainError } from '../../src/domain/errors';
import { secretsKey } from '../../src/credentials/secrets-key';
import { readCredentialSecret, sealSecret } from '../../src/credentials/store';
import { custom, customProvider, CustomTarget, parseCustomEndpoints } from '../../src/providers/custom';
import { ProviderPermanentError } from '../../src/providers/errors';
import { KubernetesPools, kubernetesAccountOf, sealKubernetesAccount } from '../../src/providers/kubernetes';
import { ALL, KubernetesFake, startKubernetesFake } from '../../src/providers/kubernetes/fake';
import { validateKubernetesAccount } from '../../src/providers/kubernetes/validate';
import type { PoolSpec } from '../../src/providers/pool';
import { activityWorld } from '../support/activities';
import { eventually } from '../support/wait';
import { chatReplica } from '../support/replica';

/**
 * The Kubernetes mode of the CUSTOM target: the adapter (real @kubernetes/client-node calls) against the fake API
 * server, whose pods are replica simulators behind a LoadBalancer proxy; and the live check of a kubeconfig.
 */
const NS = 'ml';
const KEY = 'pk-test-key-0001';
const viewer = {
  token: 'viewer-token',
  name: 'system:serviceaccount:ml:viewer',
  rules: [{ verbs: ['get', 'list', 'watch'], groups: ['', 'apps'], resources: ['*'] }],
};

describe('the Kubernetes adapter against the fake API server', () => {
  let fake: KubernetesFake;
  const accounts = new Map<string, ReturnType<typeof kubernetesAccountOf>>();

  beforeAll(async () => {
    fake = await startKubernetesFake({ users: [{ token: 'admin-token', name: 'admin', rules: ALL }, viewer], namespaces: [NS], gpus: 2 });
    accounts.set('admin', kubernetesAccountOf({ kubeconfig: fake.kubeconfig('admin-token'), namespace: NS }));
    accounts.set('viewer', kubernetesAccountOf({ kubeconfig: fake.kubeconfig('viewer-token'), namespace: NS }));
  });
  afterAll(async () => {
    await fake?.stop();
  });

  const pools = (image = 'vllm/vllm-openai:v0.11.0') =>
    new KubernetesPools({ accountOf: async (id) => accounts.get(id) ?? null, poolKey: () => KEY, image, addressTimeoutMs: 5000 });

  const spec = (p: KubernetesPools, credentialId = 'admin'): PoolSpec => {
    const deploymentId = newId('dep');
    const revisionId = newId('rev');
    return {
      name: p.poolName({ deploymentId, revisionId }),
      deploymentId,
      revisionId,
      credentialId,
      model: 'sim/tiny-chat',
      task: 'CHAT',
      gpu: 'H100',
      variantId: newId('var'),
      pipelineId: newId('pl'),
      maxConcurrency: 8,
    };
  };

  const chat = chatReplica;

  it('should create a Deployment, Service and Secret once, scale it, serve through the LoadBalancer only with the pool key, and delete it', async () => {
    const p = pools();
    const s = spec(p);
    const h = await p.ensurePool(s);
    expect(h).toEqual({ poolId: s.name, address: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), workers: 0 });
    // A retried create adopts what exists (409 AlreadyExists on each object).
    expect(await p.ensurePool(s)).toEqual(h);
    const d = fake.deployment(NS, s.name)!;
    expect(d.spec.template.spec.containers[0].resources).toEqual({ limits: { 'nvidia.com/gpu': '1' } });
    expect(d.spec.template.spec.containers[0].args).toEqual(
      expect.arrayContaining(['sim/tiny-chat', '--max-num-seqs', '8', '--api-key', '$(API_KEY)']),
    );

    await p.resizePool('admin', h.poolId, 2);
    const up = await eventually(async () => {
      const st = await p.poolStatus('admin', h.poolId);
      return st && st.serviceable === 2 ? st : null;
    });
    expect(up).toMatchObject({ serviceable: 2, throttled: 0, unhealthy: 0, initializing: 0, inFlight: 0 });
    expect(await chat(h.address, `Bearer ${KEY}`)).toEqual({ status: 200, tokens: 3 });
    expect((await chat(h.address)).status).toBe(401);
    expect(await p.listPools('admin')).toContainEqual({ poolId: s.name, name: s.name, workersMin: 2, workersMax: 2 });

    await p.deletePool('admin', h.poolId);
    await eventually(async () => (await p.poolStatus('admin', h.poolId)) === null);
    await eventually(async () => !fake.deployment(NS, s.name));
    expect((await p.listPools('admin')).map((x) => x.name)).not.toContain(s.name);
    await p.deletePool('admin', h.poolId); // gone already: fine
  });

  it('should report pods past the GPU budget as throttled with the scheduler message', async () => {
    const p = pools();
    const h = await p.ensurePool(spec(p));
    await p.resizePool('admin', h.poolId, 3);
    const st = await eventually(async () => {
      const x = await p.poolStatus('admin', h.poolId);
      return x && x.serviceable === 2 && x.throttled === 1 ? x : null;
    });
    expect(st.reasons).toEqual([
      'Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.',
    ]);
    await p.deletePool('admin', h.poolId);
    await eventually(async () => !fake.deployment(NS, h.poolId));
  });

  it('should report an image that cannot be pulled, and a crash loop, as unhealthy with the reason', async () => {
    const bad = pools('registry.invalid/nope:1');
    const h = await bad.ensurePool(spec(bad));
    await bad.resizePool('admin', h.poolId, 1);
    const pulled = await eventually(async () => {
      const x = await bad.poolStatus('admin', h.poolId);
      return x?.unhealthy === 1 && x.reasons?.[0]?.startsWith('ImagePullBackOff') ? x : null;
    });
    expect(pulled.reasons).toEqual(['ImagePullBackOff: Back-off pulling image "registry.invalid/nope:1"']);
    await bad.deletePool('admin', h.poolId);

    const p = pools();
    fake.crashLoop = true;
    try {
      const c = await p.ensurePool(spec(p));
      await p.resizePool('admin', c.poolId, 1);
      const crashed = await eventually(async () => {
        const x = await p.poolStatus('admin', c.poolId);
        return x?.unhealthy === 1 ? x : null;
      });
      expect(crashed.reasons?.[0]).toMatch(/^CrashLoopBackOff: back-off 10s restarting failed container=server pod=/);
      await p.deletePool('admin', c.poolId);
    } finally {
      fake.crashLoop = false;
    }
    await eventually(async () => fake.listDeployments().length === 0);
  });

  it('should retry a 429 after its Retry-After, and fail a 403 permanently with the RBAC message', async () => {
    const p = pools();
    fake.rateLimitNext(2, 1);
    const before = fake.calls.length;
    const h = await p.ensurePool(spec(p));
    expect(fake.calls.length - before).toBeGreaterThanOrEqual(5);
    await p.deletePool('admin', h.poolId);

    const denied = pools();
    const err = await denied.ensurePool(spec(denied, 'viewer')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderPermanentError);
    expect((err as Error).message).toContain(
      `Forbidden: secrets is forbidden: User "system:serviceaccount:ml:viewer" cannot create resource "secrets" in API group "" in the namespace "ml"`,
    );
  });

  it('should give the urlTemplate address and a ClusterIP Service when the credential routes through an Ingress', async () => {
    accounts.set(
      'ingress',
      kubernetesAccountOf({
        kubeconfig: fake.kubeconfig('admin-token'),
        namespace: NS,
        urlTemplate: 'https://{name}.inference.example.com/',
      }),
    );
    const p = pools();
    const s = spec(p, 'ingress');
    expect(await p.ensurePool(s)).toEqual({ poolId: s.name, address: `https://${s.name}.inference.example.com`, workers: 0 });
    await p.deletePool('ingress', s.name);
    await eventually(async () => !fake.deployment(NS, s.name));
  });

  it('should name a bare-box credential instead of treating it as a cluster', async () => {
    const p = pools();
    await expect(p.ensurePool(spec(p, 'bare'))).rejects.toThrow(/not a Kubernetes CUSTOM credential/);
    expect(await p.listPools('bare')).toEqual([]);
  });

  describe('the live check of a kubeconfig', () => {
    const check = (kubeconfig: string, namespace = NS) => validateKubernetesAccount(kubernetesAccountOf({ kubeconfig, namespace }), 5000);
    const refused = async (p: Promise<unknown>) => {
      const e = await p.catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DomainError);
      return e as DomainError;
    };

    it('should accept a token that may do every verb and name the account by server and namespace', async () => {
      expect(await check(fake.kubeconfig('admin-token'))).toEqual({ accountId: `127.0.0.1:${fake.port}/${NS}` });
    });

    it('should refuse a token denied a verb, naming the verb and resource', async () => {
      const e = await refused(check(fake.kubeconfig('viewer-token')));
      expect(e.code).toBe('BAD_USER_INPUT');
      expect(e.message).toMatch(/^kubeconfig: the kubeconfig's user may not create deployments \(API group apps\), delete deployments/);
      expect(e.message).toContain('patch deployments/scale (API group apps)');
      expect(e.message).toContain('create secrets');
    });

    it('should refuse a token the API server does not know (401)', async () => {
      const e = await refused(check(fake.kubeconfig('nobody')));
      expect(e.message).toBe(
        `kubeconfig: the API server at ${fake.url} refused the kubeconfig's token or client certificate (401 Unauthorized); nothing was stored`,
      );
    });

    it('should refuse a namespace that does not exist', async () => {
      const e = await refused(check(fake.kubeconfig('admin-token'), 'nope'));
      expect(e.message).toMatch(/^namespace: namespace nope does not exist/);
    });

    it('should refuse exec and auth-provider plugins before any call', () => {
      const exec = fake
        .kubeconfig('x')
        .replace(
          '    token: x',
          '    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      args: ["eks", "get-token"]',
        );
      expect(() => kubernetesAccountOf({ kubeconfig: exec, namespace: NS })).toThrow(
        /^kubeconfig: user "infercp" authenticates with an exec plugin, which our workers cannot run/,
      );
      expect(() => kubernetesAccountOf({ kubeconfig: 'not: [yaml', namespace: NS })).toThrow(/^kubeconfig: is not YAML/);
      expect(() => kubernetesAccountOf({ kubeconfig: fake.kubeconfig('x'), namespace: 'Bad_NS' })).toThrow(/^namespace: /);
    });
  });
});

describe('the CUSTOM adapter dispatching by credential kind', () => {
  let world: Awaited<ReturnType<typeof activityWorld>>;
  let fake: KubernetesFake;
  let adapter: CustomTarget;
  const config = loadConfig({ ...process.env, KUBERNETES_MIN_SCALE_INTERVAL_MS: '0' });
  /** A Kubernetes CUSTOM credential of the world's workspace, on the fake cluster as its admin. */
  const kubernetesCredential = async () => {
    const credentialId = newId('pc');
    const account = kubernetesAccountOf({ kubeconfig: fake.kubeconfig('admin-token'), namespace: NS });
    await world.prisma.providerCredential.create({
      data: {
        id: credentialId,
        workspaceId: world.workspaceId,
        target: 'CUSTOM',
        name: credentialId,
        sealed: sealSecret(secretsKey(config), sealKubernetesAccount(account)),
        last4: 'e-ml',
      },
    });
    return credentialId;
  };

  beforeAll(async () => {
    world = await activityWorld('k8s-dispatch');
    fake = await startKubernetesFake({ users: [{ token: 'admin-token', name: 'admin', rules: ALL }], namespaces: [NS], gpus: 4 });
    adapter = customProvider(config, { prisma: world.prisma, log: pino({ level: 'silent' }) });
  });
  afterAll(async () => {
    adapter?.close();
    await fake?.stop();
    await world?.close();
  });

  it('should run a Kubernetes credential deployment as a pool, record its URL and key for the gateway, and release it', async () => {
    const credentialId = await kubernetesCredential();
    const { deploymentId, run, rows } = await world.deployment({
      providers: { CUSTOM: adapter },
      row: { target: 'CUSTOM', gpu: 'H100', credentialId },
    });
    const up = await run('reconcileReplicaCount', { deploymentId, desired: 2, reason: 'test' });
    expect(await Promise.all(up.started.map((id) => run('awaitReplicaReady', { deploymentId, replicaId: id })))).toEqual([
      'ready',
      'ready',
    ]);
    const [a, b] = await rows();
    expect(a.address).toBe(b.address);
    // The gateway reads the pool's key by its URL from the credential, as it reads a bare box's.
    const endpoints = parseCustomEndpoints(await readCredentialSecret(world.prisma, secretsKey(config), credentialId), credentialId);
    const key = endpoints.find((e) => e.url === a.address)?.apiKey;
    expect(key).toMatch(/^pk-/);
    const res = await request(`${a.address}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(await adapter.capabilitiesOf(deploymentId)).toEqual({
      perReplicaUrls: false,
      exactReplicaControl: true,
      maxReplicaLifetimeSeconds: null,
      coldStartFromZero: true,
    });

    await run('releaseReplicas', { deploymentId, reason: 'test done' });
    await run('markDeleted', { deploymentId, operationId: 'op_test' });
    await eventually(async () => fake.listDeployments().length === 0);
    const after = parseCustomEndpoints(await readCredentialSecret(world.prisma, secretsKey(config), credentialId), credentialId);
    expect(after).toEqual([]);
  });

  it('should reconcile at worker start: restore a count changed behind our back, mark replicas of a vanished pool lost, reap a pool no revision needs', async () => {
    const credentialId = await kubernetesCredential();
    const start = async () => {
      const d = await world.deployment({ providers: { CUSTOM: adapter }, row: { target: 'CUSTOM', gpu: 'H100', credentialId } });
      const up = await d.run('reconcileReplicaCount', { deploymentId: d.deploymentId, desired: 1, reason: 'test' });
      await d.run('awaitReplicaReady', { deploymentId: d.deploymentId, replicaId: up.started[0] });
      const name = (await d.rows())[0].providerId!;
      return { ...d, name };
    };
    const drifted = await start();
    const vanished = await start();
    const orphan = await start();
    fake.deployment(NS, drifted.name)!.spec.replicas = 3;
    // Deleted behind our back (and gone at once: no foreground wait).
    await request(`${fake.url}/apis/apps/v1/namespaces/${NS}/deployments/${vanished.name}`, {
      method: 'DELETE',
      headers: { authorization: 'Bearer admin-token' },
    }).then((r) => r.body.dump());
    // A deployment deleted while the worker was away, whose pool stayed.
    await world.prisma.replica.updateMany({ where: { deploymentId: orphan.deploymentId }, data: { state: 'STOPPED' } });
    await world.prisma.deployment.update({ where: { id: orphan.deploymentId }, data: { status: 'DELETED' } });

    const restarted = customProvider(config, { prisma: world.prisma, log: pino({ level: 'silent' }) });
    try {
      const r = await custom.reconcile!(world.prisma, restarted, pino({ level: 'silent' }));
      expect(r).toMatchObject({ lost: 1, reaped: 1, restored: 1 });
      expect(fake.deployment(NS, drifted.name)!.spec.replicas).toBe(1);
      expect((await vanished.rows()).map((x) => x.state)).toEqual(['FAILED']);
      await eventually(async () => !fake.deployment(NS, orphan.name));
      const events = await world.prisma.deploymentEvent.findMany({ where: { deploymentId: drifted.deploymentId, kind: 'provider.drift' } });
      expect(events[0].message).toMatch(/had 3 replica\(s\), the scaler's count is 1: restored$/);
    } finally {
      restarted.close();
    }
    for (const d of [drifted, vanished]) {
      await d.run('releaseReplicas', { deploymentId: d.deploymentId, reason: 'test done' });
      await d.run('markDeleted', { deploymentId: d.deploymentId, operationId: 'op_test' });
    }
  });

  it('should fail a replica whose image cannot be pulled with the kubelet reason, and say why one waits for a GPU', async () => {
    const credentialId = await kubernetesCredential();
    const badImage = customProvider(
      loadConfig({ ...process.env, KUBERNETES_IMAGE: 'registry.invalid/vllm:0', KUBERNETES_MIN_SCALE_INTERVAL_MS: '0' }),
      {
        prisma: world.prisma,
        log: pino({ level: 'silent' }),
      },
    );
    try {
      const d = await world.deployment({ providers: { CUSTOM: badImage }, row: { target: 'CUSTOM', gpu: 'H100', credentialId } });
      const up = await d.run('reconcileReplicaCount', { deploymentId: d.deploymentId, desired: 1, reason: 'test' });
      await expect(d.run('awaitReplicaReady', { deploymentId: d.deploymentId, replicaId: up.started[0] })).rejects.toThrow(
        /exited before it became healthy: CUSTOM endpoint infercp-[a-z0-9-]+: 1 worker\(s\) failing their health checks \((ErrImagePull|ImagePullBackOff): /,
      );
      await d.run('releaseReplicas', { deploymentId: d.deploymentId, reason: 'test done' });
      await d.run('markDeleted', { deploymentId: d.deploymentId, operationId: 'op_test' });
    } finally {
      badImage.close();
    }

    // Five replicas of one GPU each on a four-GPU cluster: four serve, the fifth waits with the scheduler's words.
    const d = await world.deployment({ providers: { CUSTOM: adapter }, row: { target: 'CUSTOM', gpu: 'H100', credentialId } });
    await eventually(async () => fake.listDeployments().length === 0);
    const up = await d.run('reconcileReplicaCount', { deploymentId: d.deploymentId, desired: 5, reason: 'test' });
    expect(up.started).toHaveLength(5);
    const rows = await eventually(async () => {
      const r = await d.rows();
      return r.every((x) => x.providerId) ? r : null;
    });
    const handle = { replicaId: rows[4].id, deploymentId: d.deploymentId, providerId: rows[4].providerId!, address: rows[4].address! };
    const detail = await eventually(async () => {
      const t = await adapter.healthDetail(handle);
      return t?.includes('throttled') ? t : null;
    });
    expect(detail).toMatch(
      /1 worker\(s\) waiting for GPU capacity the provider does not have \(throttled\).* \(Unschedulable: 0\/1 nodes are available: 1 Insufficient nvidia\.com\/gpu\. preemption: /,
    );
    await d.run('releaseReplicas', { deploymentId: d.deploymentId, reason: 'test done' });
    await d.run('markDeleted', { deploymentId: d.deploymentId, operationId: 'op_test' });
    await eventually(async () => fake.listDeployments().length === 0);
  });
});
