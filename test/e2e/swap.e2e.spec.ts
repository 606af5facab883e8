import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lifecycleProgressQuery, scalerStatusQuery, scalerWorkflowId } from '../../workflows/messages';
import {
  CHANGE_GPU,
  CREATE_VARIANT,
  createPipeline,
  deploy,
  Gql,
  GqlResult,
  must,
  OperationResult,
  ROLLBACK,
  STOP_DEPLOYMENT,
} from '../support/graphql';
import { chatLoad } from '../support/load';
import { Stack, startStack } from '../support/stack';
import { eventually, pidAlive } from '../support/wait';

const DEPLOYMENT = `query($id: ID!) { deployment(id: $id) {
  id status gpu variantId targetConcurrency
  replicas(includeStopped: true) { id state gpu revisionId }
  revisions { id status gpu variantId operationId servedFrom servedTo variant { name } }
  events { kind message }
  operations { id kind status workflowId error warning } } }`;

interface DeploymentView {
  id: string;
  status: string;
  gpu: string;
  variantId: string;
  targetConcurrency: number;
  replicas: Array<{ id: string; state: string; gpu: string; revisionId: string }>;
  revisions: Array<{
    id: string;
    status: string;
    gpu: string;
    variantId: string;
    operationId: string;
    servedFrom: string | null;
    servedTo: string | null;
    variant: { name: string };
  }>;
  events: Array<{ kind: string; message: string }>;
  operations: Array<OperationResult & { error: string | null }>;
}

/**
 * Change GPU and rollback on the real stack: the api, the worker, Temporal, the gateway and simulator
 * replicas, under a steady open-loop load of streamed and plain requests that must all succeed whole.
 */
describe('change GPU and roll back a deployment under load (real api, worker, Temporal, gateway and replicas)', () => {
  let stack: Stack;
  let gql: Gql;
  const errorOf = (r: GqlResult<unknown>) => r.errors?.[0];

  beforeAll(async () => {
    // Weights load in 1.5 s on a cold cache, 100 ms from it: the swap is long enough to overlap the load.
    stack = await startStack({ env: { SIM_COLD_START_MS: '1500', SIM_WARM_START_MS: '100', SIM_ITL_MS: '5' } });
    const ws = await stack.workspace('TEAM');
    gql = stack.as(ws.token);
  });
  afterAll(async () => {
    await stack?.close();
  });

  const view = async (id: string) => (await must(gql<{ deployment: DeploymentView }>(DEPLOYMENT, { id }))).deployment;
  const settled = (id: string, opId: string) =>
    eventually(async () => {
      const d = await view(id);
      const op = d.operations.find((o) => o.id === opId);
      return op && op.status !== 'RUNNING' && d.status !== 'PROVISIONING' ? { d, op } : null;
    }, 60_000);
  const live = (d: DeploymentView) => d.replicas.filter((r) => r.state !== 'STOPPED' && r.state !== 'FAILED');
  /** Every replica the local provider runs for the deployment: none may be left once a swap settles. */
  const running = async (id: string) =>
    (await stack.prisma.replica.findMany({ where: { deploymentId: id, state: { not: 'STOPPED' } } })).filter((r) =>
      pidAlive(Number(r.providerId)),
    );

  async function deployed(name: string) {
    const pipelineId = await createPipeline(gql, { name });
    const { deployPipeline } = await must(deploy(gql, { pipelineId, mode: 'FLEX', minReplicas: 2, maxReplicas: 3 }));
    const id = deployPipeline.deployment.id;
    await stack.temporal.workflow.getHandle(`deploy:${id}`).result();
    return { id, pipelineId, apiKey: deployPipeline.apiKey };
  }

  it('should move to sim-large with zero failed requests and every stream whole, refusing a second operation meanwhile', async () => {
    const { id, apiKey } = await deployed('swap-gpu');
    const before = await view(id);
    expect(live(before)).toHaveLength(2);

    const load = chatLoad(stack.url, apiKey, { rate: 40, maxTokens: 20 });
    await new Promise((r) => setTimeout(r, 300));
    const { changeGpu: op } = await must(gql<{ changeGpu: OperationResult }>(CHANGE_GPU, { id, gpu: 'sim-large' }));
    expect(op).toMatchObject({ kind: 'CHANGE_GPU', status: 'RUNNING', workflowId: `op:${id}:${op.id}`, warning: null });

    // One operation at a time: a rollback while the change runs is refused, naming it.
    const second = errorOf(await gql(ROLLBACK, { id, variantId: before.variantId }));
    expect(second?.extensions).toMatchObject({ code: 'OPERATION_IN_PROGRESS', kind: 'CHANGE_GPU', workflowId: op.workflowId });

    const { d, op: done } = await settled(id, op.id);
    await new Promise((r) => setTimeout(r, 300));
    const tally = await load.stop();
    expect(done).toMatchObject({ status: 'SUCCEEDED', error: null });
    expect(tally.failures).toEqual([]);
    expect(tally.ok).toBe(tally.sent);
    expect(tally.streams).toBeGreaterThan(10);

    // One revision serves, on sim-large, with as many replicas as served before; the old ones are stopped.
    expect(d).toMatchObject({ status: 'ACTIVE', gpu: 'sim-large', variantId: before.variantId });
    const [now, was] = d.revisions;
    expect(d.revisions).toHaveLength(2);
    expect(now).toMatchObject({ status: 'SERVING', gpu: 'sim-large', operationId: op.id, servedTo: null });
    expect(was).toMatchObject({ status: 'RETIRED', gpu: 'sim', servedTo: expect.any(String) });
    expect(live(d).map((r) => [r.gpu, r.revisionId, r.state])).toEqual([
      ['sim-large', now.id, 'READY'],
      ['sim-large', now.id, 'READY'],
    ]);
    expect((await running(id)).map((r) => r.revisionId)).toEqual([now.id, now.id]);
    expect(d.events.map((e) => e.kind).filter((k) => k.startsWith('revision.'))).toEqual([
      'revision.staging',
      'revision.switched',
      'revision.retired',
      'revision.serving',
    ]);
    // The scaler runs again, counting the new replicas.
    const scaler = await stack.temporal.workflow.getHandle(scalerWorkflowId(id)).query(scalerStatusQuery);
    expect(scaler).toMatchObject({ paused: false, current: 2 });

    // Moving to the GPU it runs on is refused, as is a name that is not a GPU id.
    expect(errorOf(await gql(CHANGE_GPU, { id, gpu: 'sim-large' }))).toMatchObject({
      message: `deployment ${id} already runs on sim-large: name another GPU`,
      extensions: { code: 'CONFLICT' },
    });
    expect(errorOf(await gql(CHANGE_GPU, { id, gpu: '../etc' }))).toMatchObject({
      message: 'gpu: must be 1-64 characters of letters, digits, space, ., _ or -',
      extensions: { code: 'BAD_USER_INPUT', field: 'gpu' },
    });
  });

  it('should roll back to a variant added by hand and back again, warm from the cache, with a warning for a variant tuned elsewhere', async () => {
    const { id, pipelineId, apiKey } = await deployed('swap-rollback');
    const first = await view(id);

    // createVariant: its rules name the field; a name is unique in the pipeline.
    const badName = errorOf(await gql(CREATE_VARIANT, { pipelineId, input: { name: '-x', gpu: 'H100', engine: 'vllm' } }));
    expect(badName?.extensions.code).toBe('BAD_USER_INPUT');
    expect(badName?.message).toMatch(/^name: must be 1-63 characters/);
    const badTarget = errorOf(
      await gql(CREATE_VARIANT, { pipelineId, input: { name: 'x', gpu: 'H100', engine: 'vllm', maxConcurrency: 8, targetConcurrency: 9 } }),
    );
    expect(badTarget).toMatchObject({
      message: 'targetConcurrency: 9 is above what one replica serves (maxConcurrency 8)',
      extensions: { code: 'BAD_USER_INPUT', field: 'targetConcurrency' },
    });
    const input = {
      name: 'fp8',
      gpu: 'H100',
      engine: 'vllm',
      quantization: 'fp8',
      engineConfig: { 'max-num-seqs': 20 },
      maxConcurrency: 20,
    };
    const { createVariant: fp8 } = await must(
      gql<{ createVariant: { id: string } & Record<string, unknown> }>(CREATE_VARIANT, { pipelineId, input }),
    );
    expect(fp8).toMatchObject({ ...input, targetConcurrency: null });
    expect(errorOf(await gql(CREATE_VARIANT, { pipelineId, input }))).toMatchObject({
      message: 'pipeline swap-rollback already has a variant named fp8',
      extensions: { code: 'CONFLICT', field: 'name' },
    });

    // Onto fp8 (tuned for H100, served on sim): the operation warns.
    const load = chatLoad(stack.url, apiKey, { rate: 40, maxTokens: 20 });
    const { rollbackDeployment: toFp8 } = await must(gql<{ rollbackDeployment: OperationResult }>(ROLLBACK, { id, variantId: fp8.id }));
    expect(toFp8.warning).toBe(
      'variant fp8 was optimized for H100, not sim: its engine settings may not fit sim; re-optimize the pipeline for sim',
    );
    const one = await settled(id, toFp8.id);
    expect(one.op).toMatchObject({ status: 'SUCCEEDED', warning: toFp8.warning });
    // The new variant brings its per-replica target (the chat default 32, capped at its 20 slots).
    expect(one.d).toMatchObject({ variantId: fp8.id, gpu: 'sim', targetConcurrency: 20 });

    // Back to the default variant: its weights are in the cache, so its replicas start warm.
    const { rollbackDeployment: back } = await must(
      gql<{ rollbackDeployment: OperationResult }>(ROLLBACK, { id, variantId: first.variantId }),
    );
    expect(back.warning).toBeNull();
    const two = await settled(id, back.id);
    const tally = await load.stop();
    expect(two.op.status).toBe('SUCCEEDED');
    expect(tally.failures).toEqual([]);
    expect(two.d).toMatchObject({ variantId: first.variantId, gpu: 'sim' });
    expect(two.d.revisions.map((r) => [r.variant.name, r.status])).toEqual([
      ['default', 'SERVING'],
      ['fp8', 'RETIRED'],
      ['default', 'RETIRED'],
    ]);
    const servingId = two.d.revisions[0].id;
    for (const r of live(two.d)) {
      expect(r.revisionId).toBe(servingId);
      const lines = readFileSync(join(stack.dataDir, 'local', 'logs', `${r.id}.log`), 'utf8');
      expect(lines).toMatch(/"msg":"simulator ready".*"cached":true/);
    }

    // Rolling back to what serves is refused; a variant of another pipeline is not found.
    expect(errorOf(await gql(ROLLBACK, { id, variantId: first.variantId }))).toMatchObject({
      message: `deployment ${id} already serves variant default on sim`,
      extensions: { code: 'CONFLICT' },
    });
    expect(errorOf(await gql(ROLLBACK, { id, variantId: 'var_none' }))?.extensions.code).toBe('NOT_FOUND');

    // A stopped deployment is started before it moves.
    const { stopDeployment: stop } = await must(gql<{ stopDeployment: OperationResult }>(STOP_DEPLOYMENT, { id }));
    await settled(id, stop.id);
    expect(errorOf(await gql(CHANGE_GPU, { id, gpu: 'sim-large' }))).toMatchObject({
      message: `deployment ${id} is STOPPED: change gpu needs it ACTIVE`,
      extensions: { code: 'CONFLICT' },
    });
  });

  it('should end with exactly one revision serving and no orphaned replica when the worker is SIGKILLed mid-swap', async () => {
    const { id, pipelineId, apiKey } = await deployed('swap-kill');
    const { createVariant: v2 } = await must(
      gql<{ createVariant: { id: string } }>(CREATE_VARIANT, { pipelineId, input: { name: 'v2', gpu: 'any', engine: 'vllm' } }),
    );
    let worker = await stack.spawnWorker();
    const load = chatLoad(stack.url, apiKey, { rate: 20, maxTokens: 10 });
    const { rollbackDeployment: op } = await must(gql<{ rollbackDeployment: OperationResult }>(ROLLBACK, { id, variantId: v2.id }));
    // Kill it while the new replicas load (v2's weights are not cached yet: 1.5 s).
    const handle = stack.temporal.workflow.getHandle(op.workflowId);
    await eventually(async () => (await handle.query(lifecycleProgressQuery)).step === 'waiting-healthy', 20_000, 20);
    await worker.kill();
    // The serving revision still serves while no worker runs.
    await new Promise((r) => setTimeout(r, 500));
    worker = await stack.spawnWorker();

    const { d, op: done } = await settled(id, op.id);
    const tally = await load.stop();
    expect(done.status).toBe('SUCCEEDED');
    expect(tally.failures).toEqual([]);
    expect(d.revisions.filter((r) => r.status === 'SERVING').map((r) => r.variantId)).toEqual([v2.id]);
    const serving = d.revisions.find((r) => r.status === 'SERVING')!;
    // Exactly the serving revision's replicas run: the old ones stopped, none started twice.
    const procs = await running(id);
    expect(procs.length).toBe(2);
    expect(procs.every((r) => r.revisionId === serving.id && r.state === 'READY')).toBe(true);
    const all = await stack.prisma.replica.findMany({ where: { deploymentId: id } });
    expect(all.filter((r) => r.revisionId !== serving.id).every((r) => r.state === 'STOPPED' && !pidAlive(Number(r.providerId)))).toBe(
      true,
    );
    await worker.kill();
  }, 120_000);
});
