import OpenAI from 'openai';
import { scalerStatusQuery, scalerWorkflowId } from '../../workflows/messages';
import {
  CREATE_VARIANT,
  createPipeline,
  DELETE_DEPLOYMENT,
  DEPLOY,
  deployAndWait,
  Gql,
  must,
  OperationResult,
  ROLLBACK,
  START_DEPLOYMENT,
  STOP_DEPLOYMENT,
} from '../support/graphql';
import { chatLoad } from '../support/load';
import { streamChat } from '../support/openai';
import { RUNPOD_MANAGED_KEY, Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

const USER_KEY = 'rpa_users_own_account_key_0001';

interface FakeEndpoint {
  id: string;
  name: string;
  type: string;
  flashboot: string;
  env: Record<string, string>;
  gpu: { pools: string[] };
  workers: { min: number; max: number };
}

/**
 * Managed RunPod end to end: the api, the worker and Temporal drive the RunPod fake's documented management API
 * (REST v2), and the gateway streams to the fake's runtime (/v2/<id>/openai/v1), where simulated workers serve.
 */
describe('managed RunPod through the RunPod fake (real api, worker, Temporal and gateway)', () => {
  let stack: Stack;
  let gql: Gql;
  let token: string;

  beforeAll(async () => {
    stack = await startStack({
      // The managed account's key, and a user's own account whose key the user stores as a credential.
      // Workers decode at 20 ms a token, so a burst outlasts the load reports that make the scaler act.
      runpod: {
        itlMs: 20,
        keys: [
          { key: RUNPOD_MANAGED_KEY, accountId: 'acct_managed' },
          { key: USER_KEY, accountId: 'acct_user' },
        ],
      },
      env: { SCALER_DRAIN_TIMEOUT_SECONDS: '20', SIM_ITL_MS: '10', GATEWAY_QUEUE_TIMEOUT_MS: '20000' },
    });
    token = (await stack.workspace('TEAM')).token;
    gql = stack.as(token);
  });
  afterAll(async () => {
    await stack?.close();
  });

  const endpointsOf = (deploymentId: string) => (stack.runpod!.endpoints() as FakeEndpoint[]).filter((e) => e.name.includes(deploymentId));
  const liveWorkers = (endpointId: string) => stack.runpod!.workers(endpointId).length;
  const operate = async (mutation: string, variables: Record<string, unknown>) => {
    const data = await must(gql<Record<string, OperationResult>>(mutation, variables));
    const op = Object.values(data)[0];
    await stack.temporal.workflow.getHandle(op.workflowId).result();
    return op;
  };
  const stream = streamChat;

  it('should deploy on an H100 endpoint, stream through the gateway, scale 0 -> N -> 0 by workers.min/max, and wake from zero', async () => {
    const { deploymentId: id, apiKey } = await stack.deployed(
      token,
      { name: 'rp-scaled' },
      { target: 'RUNPOD', gpu: 'H100', mode: 'FLEX', minReplicas: 0, maxReplicas: 3, scaleDownWindowSeconds: 1, idleTimeoutSeconds: 3 },
    );
    // One endpoint of the revision, on RunPod's H100 pool, FlashBoot on, held at exactly the scaler's count.
    const [ep] = endpointsOf(id);
    expect(ep).toMatchObject({ type: 'QUEUE', flashboot: 'FLASHBOOT', gpu: { pools: ['ADA_80_PRO'] }, workers: { min: 1, max: 1 } });
    expect(ep.env.MODEL_NAME).toBeTruthy();
    const [replica] = await stack.prisma.replica.findMany({ where: { deploymentId: id } });
    expect(replica).toMatchObject({ state: 'READY', providerId: ep.id, address: `${stack.runpod!.runtimeUrl}/v2/${ep.id}/openai` });

    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey, maxRetries: 0 });
    expect(await stream(client, 12)).toMatchObject({ tokens: 12, finish: 'length' });
    stack.runpod!.resetCalls();

    // A burst above one worker's 30 slots: the scaler raises the endpoint, every stream completes whole.
    const burst = await Promise.all(Array.from({ length: 70 }, () => stream(client, 60)));
    expect(burst.every((r) => r.tokens === 60 && r.finish === 'length')).toBe(true);
    const scaler = stack.temporal.workflow.getHandle(scalerWorkflowId(id));
    const peak = Math.max(...(await scaler.query(scalerStatusQuery)).decisions.map((d) => d.to));
    expect(peak).toBeGreaterThanOrEqual(2);

    // Idle: down to zero workers, the endpoint (and its URL) kept.
    await eventually(async () => (await scaler.query(scalerStatusQuery)).current === 0, 60_000, 200);
    await eventually(async () => endpointsOf(id)[0]?.workers.max === 0 && liveWorkers(ep.id) === 0, 30_000);
    expect(endpointsOf(id)[0]).toMatchObject({ id: ep.id, workers: { min: 0, max: 0 } });
    // The workers follow the rows, never more calls than slot changes: at most one PATCH per slot started or drained
    // (slots started together usually share one: test/integration/runpod-activities.spec.ts shows 3 in 1).
    const rows = await eventually(async () => {
      const rs = await stack.prisma.replica.findMany({ where: { deploymentId: id } });
      return rs.every((r) => r.state === 'STOPPED') && rs;
    });
    const patches = stack.runpod!.calls()['PATCH /v2/serverless/{id}'] ?? 0;
    expect(patches).toBeGreaterThan(0);
    // Started since the count was reset: every row but the deploy's; drained: every row.
    expect(patches).toBeLessThanOrEqual(rows.length - 1 + rows.length);

    // The next request wakes it: a cold start through the gateway, served by a new RunPod worker.
    expect(await stream(client, 5)).toMatchObject({ tokens: 5, finish: 'length', cold: 'true' });
    expect(endpointsOf(id)[0].workers).toMatchObject({ min: 1, max: 1 });
  });

  it('should stop to workers 0/0 keeping the URL, start again, roll back onto a new endpoint and delete every endpoint with the deployment', async () => {
    const d = await deployAndWait(gql, {
      pipelineId: await pipeline('rp-life'),
      target: 'RUNPOD',
      gpu: 'A100',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 2,
    });
    expect(d.status).toBe('ACTIVE');
    const [first] = endpointsOf(d.id);
    expect(first.gpu.pools).toEqual(['AMPERE_80']);

    await operate(STOP_DEPLOYMENT, { id: d.id });
    expect(endpointsOf(d.id)).toEqual([expect.objectContaining({ id: first.id, workers: { min: 0, max: 0, idleTimeout: 5 } })]);
    await eventually(async () => liveWorkers(first.id) === 0);

    await operate(START_DEPLOYMENT, { id: d.id });
    expect(endpointsOf(d.id)[0]).toMatchObject({ id: first.id, workers: { min: 1, max: 1 } });

    // Rollback to another variant under load: a new endpoint serves before the old one is drained and deleted.
    const pipelineId = (await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } })).pipelineId;
    const { createVariant } = await must(
      gql<{ createVariant: { id: string } }>(CREATE_VARIANT, {
        pipelineId,
        input: { name: 'older', gpu: 'A100', engine: 'vllm', maxConcurrency: 16 },
      }),
    );
    const load = chatLoad(stack.url, d.apiKey, { rate: 20 });
    await operate(ROLLBACK, { id: d.id, variantId: createVariant.id });
    const result = await load.stop();
    expect(result.failures).toEqual([]);
    expect(result.ok).toBeGreaterThan(0);
    await eventually(async () => endpointsOf(d.id).length === 1 && endpointsOf(d.id)[0].id !== first.id);
    const [second] = endpointsOf(d.id);
    expect(second.env.MAX_CONCURRENCY).toBe('16');
    expect(liveWorkers(first.id)).toBe(0);

    await operate(DELETE_DEPLOYMENT, { id: d.id });
    expect(endpointsOf(d.id)).toEqual([]);
  });

  it('should deploy every time with 30 % of management calls failing transiently, and leave nothing running after the deletes', async () => {
    stack.runpod!.faults.managementFailureRate = 0.3;
    stack.runpod!.faults.kinds = ['429', '500', '503'];
    try {
      const deployed = await Promise.all(
        ['rp-flaky-a', 'rp-flaky-b', 'rp-flaky-c'].map(async (name) =>
          deployAndWait(
            gql,
            { pipelineId: await pipeline(name), target: 'RUNPOD', gpu: 'L40S', mode: 'FLEX', minReplicas: 1, maxReplicas: 2 },
            120_000,
          ),
        ),
      );
      expect(deployed.map((d) => d.status)).toEqual(['ACTIVE', 'ACTIVE', 'ACTIVE']);
      // Retried creates adopted the endpoint they had made: one per deployment.
      for (const d of deployed) expect(endpointsOf(d.id)).toHaveLength(1);
      for (const d of deployed) await operate(DELETE_DEPLOYMENT, { id: d.id });
      for (const d of deployed) expect(endpointsOf(d.id)).toEqual([]);
    } finally {
      stack.runpod!.faults.managementFailureRate = 0;
    }
  });

  it('should hold an Active deployment at a warm floor of one worker (Team and up), and refuse Active on Pro', async () => {
    const d = await deployAndWait(gql, {
      pipelineId: await pipeline('rp-active'),
      target: 'RUNPOD',
      gpu: 'H200',
      mode: 'ACTIVE',
      minReplicas: 1,
      maxReplicas: 2,
      scaleDownWindowSeconds: 1,
      idleTimeoutSeconds: 1,
    });
    expect(d.status).toBe('ACTIVE');
    expect(endpointsOf(d.id)[0]).toMatchObject({ gpu: { pools: ['HOPPER_141'] }, workers: { min: 1, max: 1 } });
    // Idle well past its windows: Active never goes below its floor.
    await new Promise((r) => setTimeout(r, 3000));
    expect(endpointsOf(d.id)[0].workers).toMatchObject({ min: 1, max: 1 });
    expect(liveWorkers(endpointsOf(d.id)[0].id)).toBe(1);

    const pro = stack.as((await stack.workspace('PRO')).token);
    const pipelineId = await createPipeline(pro, { name: 'rp-pro' });
    const refused = await pro(DEPLOY, {
      input: { pipelineId, target: 'RUNPOD', gpu: 'H100', mode: 'ACTIVE', minReplicas: 1, maxReplicas: 1 },
    });
    expect(refused.errors?.[0]?.extensions?.code).toBe('PLAN_LIMIT');
  });

  it('should fail a deploy on a GPU RunPod has no pool for, naming the GPUs it has', async () => {
    const d = await deployAndWait(gql, {
      pipelineId: await pipeline('rp-tpu'),
      target: 'RUNPOD',
      gpu: 'TPU-v5',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 1,
    });
    expect(d.status).toBe('FAILED');
    expect(d.statusReason).toMatch(/GPU "TPU-v5" has no RunPod serverless pool; one of H200; H100/);
    expect(endpointsOf(d.id)).toEqual([]);
  });

  it("should deploy on the user's own RunPod account with its stored key, and fail the next deploy once RunPod revoked that key", async () => {
    const { addProviderCredential: cred } = await must(
      gql<{ addProviderCredential: { id: string; last4: string; accountId: string } }>(
        `mutation($input: AddProviderCredentialInput!) { addProviderCredential(input: $input) { id last4 accountId } }`,
        { input: { target: 'RUNPOD', name: 'ours', apiKey: USER_KEY } },
      ),
    );
    expect(cred).toMatchObject({ last4: '…0001', accountId: 'acct_user' });
    const own = await deployAndWait(gql, {
      pipelineId: await pipeline('rp-own'),
      target: 'RUNPOD',
      gpu: 'NVIDIA RTX 4090',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 1,
      credentialId: cred.id,
    });
    expect(own.status).toBe('ACTIVE');
    expect(endpointsOf(own.id)[0].gpu.pools).toEqual(['ADA_24']);
    // The gateway calls RunPod's runtime with the user's key, read by credential id.
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: own.apiKey, maxRetries: 0 });
    expect(await stream(client, 4)).toMatchObject({ tokens: 4, finish: 'length' });
    // RunPod bills the user's own account: its usage counts tokens at no cost to us.
    const usage = await eventually(async () => {
      const rows = await stack.prisma.usageRollup.findMany({ where: { deploymentId: own.id } });
      return rows.length > 0 && rows;
    });
    expect(usage.reduce((n, r) => n + Number(r.completionTokens), 0)).toBe(4);
    expect(usage.every((r) => Number(r.costUsd) === 0)).toBe(true);

    stack.runpod!.revokeKey(USER_KEY);
    const revoked = await deployAndWait(gql, {
      pipelineId: await pipeline('rp-own-revoked'),
      target: 'RUNPOD',
      gpu: 'RTX 4090',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 1,
      credentialId: cred.id,
    });
    expect(revoked.status).toBe('FAILED');
    expect(endpointsOf(revoked.id)).toEqual([]);
    expect(revoked.statusReason).toMatch(/RunPod rejected the API key \(401/);
    expect(revoked.statusReason).not.toContain(USER_KEY);
  });

  const pipeline = (name: string) => createPipeline(gql, { name });
});

describe('managed RunPod with a key RunPod rejects', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ runpod: true, env: { RUNPOD_API_KEY: 'rpa_revoked_key_0000' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should fail the deploy with RunPod 401 in the reason, without retrying it for minutes', async () => {
    const gql = stack.as((await stack.workspace('TEAM')).token);
    const pipelineId = await createPipeline(gql, { name: 'rp-badkey' });
    const d = await deployAndWait(gql, {
      pipelineId,
      target: 'RUNPOD',
      gpu: 'H100',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 1,
    });
    expect(d.status).toBe('FAILED');
    expect(d.statusReason).toMatch(/RunPod rejected the API key \(401/);
    expect(stack.runpod!.endpoints()).toEqual([]);
  });
});

describe('managed RunPod out of GPU capacity', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ runpod: true, env: { DEPLOY_HEALTH_TIMEOUT_SECONDS: '3' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should fail a deploy whose pool has no capacity, saying so, and delete the endpoint it made', async () => {
    stack.runpod!.faults.exhaustedPools.add('AMPERE_16');
    const gql = stack.as((await stack.workspace('TEAM')).token);
    const pipelineId = await createPipeline(gql, { name: 'rp-full' });
    const d = await deployAndWait(gql, {
      pipelineId,
      target: 'RUNPOD',
      gpu: 'A4000',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 1,
    });
    expect(d.status).toBe('FAILED');
    expect(d.statusReason).toMatch(
      /not healthy after 3 s: RUNPOD endpoint \w+: 1 worker\(s\) waiting for GPU capacity the provider does not have \(throttled\)/,
    );
    expect(stack.runpod!.endpoints()).toEqual([]);
  });
});
