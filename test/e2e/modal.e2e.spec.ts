import OpenAI from 'openai';
import { secretsKey } from '../../src/credentials/secrets-key';
import { modalFake, modalReplicaKey } from '../../src/providers/modal';
import {
  createPipeline,
  DELETE_DEPLOYMENT,
  deployAndWait,
  Gql,
  must,
  OperationResult,
  START_DEPLOYMENT,
  STOP_DEPLOYMENT,
} from '../support/graphql';
import { chatLoad } from '../support/load';
import { streamChat } from '../support/openai';
import { Stack, startStack } from '../support/stack';

const ADD = `mutation($input: AddProviderCredentialInput!) {
  addProviderCredential(input: $input) { id target name last4 accountId demo } }`;

/**
 * The user's own Modal account end to end: a token pair stored through GraphQL (checked live against the fake control
 * plane, which MODAL_FAKE binds demo tokens to, in the api as in the worker), a deploy on an H100 Sandbox, lifecycle.
 */
describe('MODAL through the real modal SDK on the fake control plane (real api, worker, Temporal)', () => {
  let stack: Stack;
  let gql: Gql;

  beforeAll(async () => {
    // Sandboxes end 12 s after they start; the scaler rotates a replica out 8 s before (the rotation test).
    stack = await startStack({ env: { MODAL_FAKE: 'true', MODAL_SANDBOX_TIMEOUT_SECONDS: '12', REPLICA_ROTATE_BEFORE_SECONDS: '8' } });
    gql = stack.as((await stack.workspace('TEAM')).token);
  });
  afterAll(async () => {
    await modalFake(stack.config).stopAll();
    await stack?.close();
  });

  const operate = async (mutation: string, variables: Record<string, unknown>) => {
    const data = await must(gql<Record<string, OperationResult>>(mutation, variables));
    await stack.temporal.workflow.getHandle(Object.values(data)[0].workflowId).result();
  };
  const sandboxesOf = async (deploymentId: string) =>
    (await modalFake(stack.config).running()).filter((s) => s.tags.infercp_deployment === deploymentId);

  it('should refuse a token Modal refuses, naming it, and store nothing', async () => {
    const r = await gql(ADD, {
      input: { target: 'MODAL', name: 'bad', tokenId: 'ak-demo-e2e', tokenSecret: 'as-demo-revoked', environment: 'main' },
    });
    expect(r.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(r.errors?.[0].message).toMatch(/^tokenId: Modal refused token ak-demo-e2e \(UNAUTHENTICATED/);
    expect(r.errors?.[0].message).not.toContain('as-demo-revoked');
    const missing = await gql(ADD, { input: { target: 'MODAL', name: 'half', tokenId: 'ak-demo-e2e' } });
    expect(missing.errors?.[0]).toMatchObject({ message: expect.stringMatching(/^tokenSecret: must not be empty/) });
    expect(await stack.prisma.providerCredential.count({ where: { name: { in: ['bad', 'half'] } } })).toBe(0);
  });

  it('should deploy on an H100 Sandbox, serve at its tunnel, stop and start, and leave no Sandbox once deleted', async () => {
    const { addProviderCredential: cred } = await must(
      gql<{ addProviderCredential: { id: string; last4: string; demo: boolean } }>(ADD, {
        input: {
          target: 'MODAL',
          name: 'demo (local fake)',
          tokenId: 'ak-demo-e2e',
          tokenSecret: 'as-demo-e2e-secret',
          environment: 'main',
        },
      }),
    );
    expect(cred).toMatchObject({ last4: '…cret', demo: true });

    const noCred = await gql(`mutation($input: DeployPipelineInput!) { deployPipeline(input: $input) { deployment { id } } }`, {
      input: { pipelineId: await createPipeline(gql, { name: 'modal-nocred' }), target: 'MODAL', gpu: 'H100', credentialId: 'pc_nope' },
    });
    expect(noCred.errors?.[0].extensions?.code).toBe('NOT_FOUND');
    const without = await gql(`mutation($input: DeployPipelineInput!) { deployPipeline(input: $input) { deployment { id } } }`, {
      input: { pipelineId: await createPipeline(gql, { name: 'modal-without' }), target: 'MODAL', gpu: 'H100' },
    });
    expect(without.errors?.[0]).toMatchObject({
      message: expect.stringContaining('credentialId: a MODAL deployment runs on your own Modal account'),
      extensions: { code: 'BAD_USER_INPUT' },
    });

    const d = await deployAndWait(gql, {
      pipelineId: await createPipeline(gql, { name: 'modal-e2e' }),
      target: 'MODAL',
      gpu: 'H100',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 1,
      credentialId: cred.id,
    });
    expect(d.status).toBe('ACTIVE');
    expect(await sandboxesOf(d.id)).toHaveLength(1);
    const [replica] = await stack.prisma.replica.findMany({ where: { deploymentId: d.id, state: 'READY' } });
    expect(replica.providerId).toMatch(/^sb-/);

    // The tunnel serves the replica's key only: the official client streams with it.
    const direct = new OpenAI({
      baseURL: `${replica.address}/v1`,
      apiKey: modalReplicaKey(secretsKey(stack.config), replica.id),
      maxRetries: 0,
    });
    expect(await streamChat(direct, 4)).toMatchObject({ tokens: 4, finish: 'length' });
    const stranger = new OpenAI({ baseURL: `${replica.address}/v1`, apiKey: 'rk-guess', maxRetries: 0 });
    await expect(streamChat(stranger, 1)).rejects.toMatchObject({ status: 401 });

    // Through the gateway, which sends each Sandbox its own key.
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: d.apiKey, maxRetries: 0 });
    expect(await streamChat(client, 4)).toMatchObject({ tokens: 4, finish: 'length' });

    await operate(STOP_DEPLOYMENT, { id: d.id });
    expect(await sandboxesOf(d.id)).toEqual([]);
    await operate(START_DEPLOYMENT, { id: d.id });
    expect(await sandboxesOf(d.id)).toHaveLength(1);
    expect((await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } })).status).toBe('ACTIVE');

    await operate(DELETE_DEPLOYMENT, { id: d.id });
    expect(await sandboxesOf(d.id)).toEqual([]);
  });

  it('should replace a replica before Modal ends its Sandbox, with no failed request and never fewer replicas serving', async () => {
    const cred = await stack.prisma.providerCredential.findFirstOrThrow({ where: { name: 'demo (local fake)' } });
    const d = await deployAndWait(gql, {
      pipelineId: await createPipeline(gql, { name: 'modal-rotation' }),
      target: 'MODAL',
      gpu: 'H100',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 1,
      credentialId: cred.id,
    });
    expect(d.status).toBe('ACTIVE');
    const load = chatLoad(stack.url, d.apiKey, { rate: 10, maxTokens: 8 });
    // Past two Sandbox lifetimes: each replica is rotated 4 s into its 12 s.
    let fewest = Infinity;
    const until = Date.now() + 26_000;
    while (Date.now() < until) {
      fewest = Math.min(fewest, await stack.prisma.replica.count({ where: { deploymentId: d.id, state: 'READY' } }));
      await new Promise((r) => setTimeout(r, 100));
    }
    const result = await load.stop();
    expect(result.failures).toEqual([]);
    expect(result.ok).toBeGreaterThan(100);
    expect(fewest).toBeGreaterThanOrEqual(1);
    const rotated = await stack.prisma.deploymentEvent.findMany({ where: { deploymentId: d.id, kind: 'replica.rotated' } });
    expect(rotated.length).toBeGreaterThanOrEqual(2);
    // No replica reached its Sandbox's end while serving: every old one was drained and stopped first.
    const rows = await stack.prisma.replica.findMany({ where: { deploymentId: d.id } });
    expect(rows.filter((r) => r.state === 'FAILED')).toEqual([]);
    expect(rows.filter((r) => r.replacesId).length).toBeGreaterThanOrEqual(2);
    expect(await sandboxesOf(d.id)).toHaveLength(1);
    await operate(DELETE_DEPLOYMENT, { id: d.id });
  });
});
