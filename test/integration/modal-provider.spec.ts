import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Status } from 'nice-grpc';
import pino from 'pino';
import { newId } from '../../src/common/secrets';
import { ProviderError, ProviderPermanentError } from '../../src/providers/errors';
import { ModalAccount, ModalFake, modalReplicaKey, ModalProvider, RecordedCall, sealModalAccount } from '../../src/providers/modal';
import type { ReplicaSpec } from '../../src/providers/provider';
import { activityWorld } from '../support/activities';
import { chatReplica } from '../support/replica';

/**
 * The Modal adapter drives the real `modal` SDK (0.11.1) against the in-process fake of Modal's control plane,
 * injected as cpClient; the fake's Sandboxes run the replica simulator and their tunnels point at it.
 */
const ACCOUNT: ModalAccount = { tokenId: 'ak-test-0001', tokenSecret: 'as-test-secret-0001', environment: 'main' };
const SEALING_KEY = Buffer.alloc(32, 7);
/** The checked-in list of RPCs (and their request fields) one create / tunnels / poll / list / terminate cycle sends. */
const CALLS_FILE = resolve(__dirname, 'modal-sdk-calls.json');

describe('the Modal adapter: the real modal SDK on an in-process fake control plane', () => {
  let world: Awaited<ReturnType<typeof activityWorld>>;
  let fake: ModalFake;
  let credentialId: string;
  const tokens = new Map<string, ModalAccount>();

  const adapter = (o: { fake?: ModalFake } = {}) =>
    new ModalProvider({
      prisma: world.prisma,
      log: pino({ level: 'silent' }),
      secretOf: async (id) => {
        const a = tokens.get(id);
        if (!a) throw new Error(`credential ${id} is not this test's`);
        return sealModalAccount(a);
      },
      controlPlane: (a) => ({ cpClient: (o.fake ?? fake).client(a.tokenId, a.tokenSecret), tunnelScheme: 'http' }),
      replicaKey: (id) => modalReplicaKey(SEALING_KEY, id),
      image: 'vllm/vllm-openai:v0.11.0',
      appName: 'infercp-test',
      sandboxTimeoutSeconds: 86_100,
    });

  const credential = async (account: ModalAccount) => {
    const id = newId('pc');
    await world.prisma.providerCredential.create({
      data: { id, workspaceId: world.workspaceId, target: 'MODAL', name: id, sealed: 'unused', last4: account.tokenSecret.slice(-4) },
    });
    tokens.set(id, account);
    return id;
  };

  const spec = async (credential: string, gpu = 'H100'): Promise<ReplicaSpec> => {
    const { deploymentId, pipelineId, variantId, revisionId } = await world.deployment({
      row: { target: 'MODAL', gpu, credentialId: credential },
    });
    return {
      replicaId: `${deploymentId}-r0`,
      deploymentId,
      pipelineId,
      variantId,
      revisionId,
      model: 'sim/tiny-chat',
      task: 'CHAT',
      gpu,
      maxConcurrency: 8,
    };
  };

  const chat = chatReplica;

  const untilReady = async (p: ModalProvider, h: Parameters<ModalProvider['health']>[0]) => {
    for (;;) {
      const state = await p.health(h);
      if (state !== 'starting') return state;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    world = await activityWorld('modal');
    fake = new ModalFake({
      stateDir: mkdtempSync(join(tmpdir(), 'modal-fake-')),
      accepts: (id, secret) => id === ACCOUNT.tokenId && secret === ACCOUNT.tokenSecret,
      simulatorArgs: ['--cold-start-ms 100', '--warm-start-ms 50', '--ttft-ms 5', '--itl-ms 5'],
    });
    credentialId = await credential(ACCOUNT);
  });
  afterAll(async () => {
    await fake?.stopAll();
    await world?.close();
  });

  it('should create a GPU Sandbox, serve OpenAI requests at its tunnel only with the replica key, and terminate it', async () => {
    const p = adapter();
    const s = await spec(credentialId);
    const h = await p.ensureReplica(s);
    expect(h.providerId).toMatch(/^sb-[0-9A-Za-z]{22}$/);
    expect(h.address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await untilReady(p, h)).toBe('ready');

    const key = modalReplicaKey(SEALING_KEY, s.replicaId);
    expect(await chat(h.address, `Bearer ${key}`)).toEqual({ status: 200, tokens: 3 });
    // The tunnel is public: without the replica's key, or with another replica's, it serves nothing.
    expect((await chat(h.address)).status).toBe(401);
    expect((await chat(h.address, `Bearer ${modalReplicaKey(SEALING_KEY, `${s.deploymentId}-r1`)}`)).status).toBe(401);
    const running = await fake.running();
    expect(running.find((r) => r.sandboxId === h.providerId)?.tags).toMatchObject({
      infercp_deployment: s.deploymentId,
      infercp_replica: s.replicaId,
    });

    await p.stopReplica(s.replicaId);
    expect((await fake.running()).map((r) => r.sandboxId)).not.toContain(h.providerId);
    expect(await p.health(h)).toBe('gone');
    await p.stopReplica(s.replicaId); // idempotent
  });

  it('should adopt the Sandbox a retried create made, by its name, instead of starting a second', async () => {
    const s = await spec(credentialId);
    const first = await adapter().ensureReplica(s);
    // A retried activity on a fresh worker: the create finds the name taken (ALREADY_EXISTS) and adopts by fromName.
    const again = await adapter().ensureReplica(s);
    expect(again).toEqual(first);
    expect((await fake.running()).filter((r) => r.tags.infercp_replica === s.replicaId)).toHaveLength(1);
    await adapter().stopReplica(s.replicaId);
  });

  it('should make Modal capacity a transient error that says so, and a refused token a permanent one naming it', async () => {
    const s = await spec(credentialId);
    fake.capacity = 0;
    try {
      const err = await adapter()
        .ensureReplica(s)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProviderError);
      expect((err as Error).message).toMatch(/^Modal capacity: no H100 GPU available for a Sandbox right now .*retrying$/);
    } finally {
      fake.capacity = null;
    }

    const revoked = await credential({ ...ACCOUNT, tokenSecret: 'as-revoked-0001' });
    const err = await adapter()
      .ensureReplica(await spec(revoked))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderPermanentError);
    expect((err as Error).message).toMatch(/^Modal refused token ak-test-0001 \(UNAUTHENTICATED: .*\); rotate the credential/);
    expect((err as Error).message).not.toContain('as-revoked-0001');

    // An outage is retried by Temporal: transient.
    fake.failNext('appGetOrCreate', Status.UNAVAILABLE, 'upstream connect error');
    const outage = await adapter()
      .ensureReplica(s)
      .catch((e: unknown) => e);
    expect(outage).toBeInstanceOf(ProviderError);
    expect((outage as Error).message).toMatch(/UNAVAILABLE: upstream connect error/);
  });

  it('should refuse a GPU Modal does not have, naming the ones it has', async () => {
    const err = await adapter()
      .ensureReplica(await spec(credentialId, 'sim'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderPermanentError);
    expect((err as Error).message).toMatch(/^GPU "sim" is not a Modal GPU; one of T4, L4, .*H100/);
  });

  it('should refuse a MODAL deployment without a credential, naming addProviderCredential', async () => {
    const { deploymentId, pipelineId, variantId, revisionId } = await world.deployment({ row: { target: 'MODAL', gpu: 'H100' } });
    const err = await adapter()
      .ensureReplica({
        replicaId: `${deploymentId}-r0`,
        deploymentId,
        pipelineId,
        variantId,
        revisionId,
        model: 'm',
        task: 'CHAT',
        gpu: 'H100',
        maxConcurrency: 1,
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderPermanentError);
    expect((err as Error).message).toContain('addProviderCredential');
  });

  it('should find its Sandboxes again by their tags after a restart, and report a crashed one gone', async () => {
    const a = await spec(credentialId);
    const b = await spec(credentialId);
    const ha = await adapter().ensureReplica(a);
    const hb = await adapter().ensureReplica(b);
    // A new adapter (a restarted worker) knows nothing but the credentials: it lists the Sandboxes by tag.
    const restarted = adapter();
    const listed = (await restarted.listReplicas()).filter((h) => [a.deploymentId, b.deploymentId].includes(h.deploymentId));
    expect(listed.sort((x, y) => x.replicaId.localeCompare(y.replicaId))).toEqual(
      [ha, hb].sort((x, y) => x.replicaId.localeCompare(y.replicaId)),
    );

    await fake.crash(hb.providerId);
    expect(await restarted.health(hb)).toBe('gone');
    // The restarted adapter stops by replica id alone.
    await restarted.stopReplica(a.replicaId);
    expect((await restarted.listReplicas()).filter((h) => [a.deploymentId, b.deploymentId].includes(h.deploymentId))).toEqual([]);
  });

  it('should send the RPCs and request fields the checked-in list names (a modal SDK upgrade that changes them fails here)', async () => {
    const recording = new ModalFake({
      stateDir: mkdtempSync(join(tmpdir(), 'modal-fake-rec-')),
      accepts: (id, secret) => id === ACCOUNT.tokenId && secret === ACCOUNT.tokenSecret,
      simulatorArgs: ['--cold-start-ms 50', '--warm-start-ms 50'],
    });
    try {
      const p = adapter({ fake: recording });
      const s = await spec(credentialId);
      const h = await p.ensureReplica(s);
      await p.ensureReplica(s); // a retry: the create finds the name taken and adopts the Sandbox by name
      await untilReady(p, h);
      // A restarted worker finds the Sandbox by its tags.
      expect((await p.listReplicas()).map((x) => x.replicaId)).toContain(s.replicaId);
      await p.stopReplica(s.replicaId);
      const shape = (c: RecordedCall) => ({
        method: c.method,
        fields: Object.keys(c.request).sort(),
        ...(c.method === 'sandboxCreate' ? { definition: Object.keys((c.request.definition ?? {}) as object).sort() } : {}),
      });
      const seen: ReturnType<typeof shape>[] = [];
      for (const c of recording.calls.map(shape)) if (!seen.some((x) => JSON.stringify(x) === JSON.stringify(c))) seen.push(c);
      if (process.env.UPDATE_MODAL_CALLS) writeFileSync(CALLS_FILE, `${JSON.stringify(seen, null, 2)}\n`);
      // On a difference: read the new SDK's calls, make the fake (src/providers/modal/fake.ts) answer them as Modal
      // does, then rerun with UPDATE_MODAL_CALLS=1 and review the diff of the list.
      expect(seen).toEqual(JSON.parse(readFileSync(CALLS_FILE, 'utf8')));
      // The create carries what the adapter depends on.
      const create = recording.calls.find((c) => c.method === 'sandboxCreate')!.request as {
        definition: {
          resources: { gpuConfig: { gpuType: string } };
          openPorts: { ports: { port: number; unencrypted: boolean }[] };
          timeoutSecs: number;
          name: string;
        };
        tags: { tagName: string; tagValue: string }[];
      };
      expect(create.definition.resources.gpuConfig.gpuType).toBe('H100');
      expect(create.definition.openPorts.ports).toEqual([expect.objectContaining({ port: 8000, unencrypted: false })]);
      expect(create.definition.timeoutSecs).toBe(86_100);
      expect(create.tags).toEqual(expect.arrayContaining([{ tagName: 'infercp_replica', tagValue: s.replicaId }]));
      // The replica key travels in an ephemeral Secret, never on the command line.
      expect(JSON.stringify(create)).not.toContain(modalReplicaKey(SEALING_KEY, s.replicaId));
    } finally {
      await recording.stopAll();
    }
  });
});
