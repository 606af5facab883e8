import OpenAI from 'openai';
import { LoadReport, ScalingPolicy } from '../src/domain/scaling';
import { loadReportSignal, scalerStatusQuery, scalerWorkflowId, setPolicyUpdate } from '../workflows/messages';
import { eventually, pidAlive, Stack, startStack } from './helpers';

const SCALING = `query($id: ID!) { deployment(id: $id) { scaling { desired current noData decisions { from to reason } } replicas { id state } } }`;

describe('the scaler workflow on a real Temporal server', () => {
  let stack: Stack;
  let token: string;
  beforeAll(async () => {
    stack = await startStack({ SCALER_TICK_MS: '200', SCALER_DRAIN_TIMEOUT_SECONDS: '20', SIM_ITL_MS: '20' });
    token = (await stack.workspace('TEAM')).token;
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should scale up on a burst, drain without cutting a stream, and idle to zero', async () => {
    const p = await stack.gql<{ createPipeline: { id: string } }>(`mutation { createPipeline(input: { name: "scaled", task: CHAT, model: "sim/tiny-chat" }) { id } }`, token);
    const dep = await stack.gql<{ deployPipeline: { deployment: { id: string }; apiKey: string } }>(
      `mutation($id: ID!) { deployPipeline(input: { pipelineId: $id, target: LOCAL, gpu: "sim", mode: FLEX, minReplicas: 0, maxReplicas: 3,
        scaleDownWindowSeconds: 1, idleTimeoutSeconds: 2 }) { deployment { id } apiKey } }`, token, { id: p.data.createPipeline.id });
    const id = dep.data.deployPipeline.deployment.id;
    await stack.temporal.workflow.getHandle(`deploy:${id}`).result();
    const scaler = stack.temporal.workflow.getHandle(scalerWorkflowId(id));
    expect((await scaler.describe()).status.name).toBe('RUNNING');

    // No gateway has reported yet: the scaler holds the one deployed replica.
    const before = await stack.gql<{ deployment: { scaling: { current: number; noData: boolean } } }>(SCALING, token, { id });
    expect(before.data.deployment.scaling).toMatchObject({ current: 1, noData: true });

    // A gateway reports 70 in flight: ceil(70 / 30) = 3 replicas.
    const report = (inFlight: number): LoadReport => ({ gatewayId: 'test-gw', inFlight, queued: 0, oldestQueuedMs: 0, at: Date.now() });
    await scaler.signal(loadReportSignal, report(70));
    // The count is recorded once the activity returns, after the replicas serve.
    await eventually(async () => (await scaler.query(scalerStatusQuery)).current === 3, 60_000);
    expect(await stack.prisma.replica.count({ where: { deploymentId: id, state: 'READY' } })).toBe(3);
    const up = await stack.gql<{ deployment: { scaling: { current: number; decisions: Array<{ from: number; to: number; reason: string }> } } }>(SCALING, token, { id });
    expect(up.data.deployment.scaling.current).toBe(3);
    expect(up.data.deployment.scaling.decisions).toEqual([
      { from: 1, to: 3, reason: 'average 70.0 in flight or queued per replica exceeds target 30 (70 in flight, 0 queued): 1 -> 3' },
    ]);

    // A long stream (150 tokens at 20 ms) runs while load drops to nothing.
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: dep.data.deployPipeline.apiKey, maxRetries: 0 });
    const streamed = (async () => {
      const s = await client.chat.completions.create({ model: 'default', stream: true, max_tokens: 150, messages: [{ role: 'user', content: 'long' }] });
      let tokens = 0;
      let finish: string | null = null;
      for await (const c of s) {
        if (c.choices[0]?.delta?.content) tokens++;
        finish = c.choices[0]?.finish_reason ?? finish;
      }
      return { tokens, finish };
    })();
    await scaler.signal(loadReportSignal, report(0));
    const pids = (await stack.prisma.replica.findMany({ where: { deploymentId: id } })).map((r) => Number(r.providerId));

    // Every stream finishes whole, though each replica is drained and stopped.
    expect(await streamed).toEqual({ tokens: 150, finish: 'length' });
    await eventually(async () => {
      // The gateway keeps reporting: no load.
      await scaler.signal(loadReportSignal, report(0));
      return (await scaler.query(scalerStatusQuery)).current === 0;
    }, 60_000, 300);
    await eventually(async () => (await stack.prisma.replica.count({ where: { deploymentId: id, state: { not: 'STOPPED' } } })) === 0, 30_000);
    expect(pids.every((pid) => !pidAlive(pid))).toBe(true);
    const status = await scaler.query(scalerStatusQuery);
    expect(status.decisions.map((d) => [d.from, d.to])).toEqual([[1, 3], [3, 1], [1, 0]]);
    expect(status.decisions[2].reason).toMatch(/^idle for \d+ s, /);
    const kinds = (await stack.prisma.deploymentEvent.findMany({ where: { deploymentId: id }, orderBy: { id: 'asc' } })).map((e) => e.kind);
    expect(kinds.filter((k) => k.startsWith('scale.'))).toEqual(['scale.up', 'scale.down', 'scale.down']);
  });

  it('should refuse a bad policy naming the knob, apply a good one, and keep both across continue-as-new', async () => {
    const policy: ScalingPolicy = {
      mode: 'FLEX', minReplicas: 0, maxReplicas: 4, targetConcurrency: 30, scaleDownWindowSeconds: 30,
      idleTimeoutSeconds: 300, queueThresholdMs: 2000, reportTtlMs: 5000,
    };
    const workflowId = `scaler:can-${Date.now()}`;
    const handle = await stack.temporal.workflow.start('scalerWorkflow', {
      taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
      workflowId,
      args: [{
        deploymentId: 'dep_without_rows', policy, initialReplicas: 2, planMaxReplicas: 32, tickMs: 100, drainTimeoutMs: 1000,
        decisions: [{ at: 1, from: 1, to: 2, reason: 'earlier' }], forceContinueAsNewAfterTurns: 20,
      }],
    });
    const firstRun = handle.firstExecutionRunId;
    await expect(handle.executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 40 }] })).rejects.toMatchObject({
      cause: { message: "maxReplicas=40: exceeds the plan's ceiling of 32" },
    });
    await expect(handle.executeUpdate(setPolicyUpdate, { args: [{ minReplicas: 5 }] })).rejects.toMatchObject({
      cause: { message: 'minReplicas=5: must not exceed maxReplicas (4)' },
    });
    expect(await handle.executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 6 }] })).toMatchObject({ maxReplicas: 6 });

    await eventually(async () => (await stack.temporal.workflow.getHandle(workflowId).describe()).runId !== firstRun, 30_000, 100);
    const status = await stack.temporal.workflow.getHandle(workflowId).query(scalerStatusQuery);
    expect(status).toMatchObject({ current: 2, policy: { maxReplicas: 6 }, decisions: [{ from: 1, to: 2, reason: 'earlier' }] });
    await stack.temporal.workflow.getHandle(workflowId).terminate('test done');
  });
});
