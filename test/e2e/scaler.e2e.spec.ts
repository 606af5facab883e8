import OpenAI from 'openai';
import { loadReportSignal, scalerStatusQuery, scalerWorkflowId, setPolicyUpdate } from '../../workflows/messages';
import { streamChat } from '../support/openai';
import { Stack, startStack } from '../support/stack';
import { testPolicy } from '../support/workflows';
import { eventually, pidAlive } from '../support/wait';

describe('the scaler workflow on a real Temporal server', () => {
  let stack: Stack;
  let token: string;
  beforeAll(async () => {
    // A long queue timeout: this test is about scaling, not about 503s.
    stack = await startStack({ env: { SCALER_DRAIN_TIMEOUT_SECONDS: '20', SIM_ITL_MS: '20', GATEWAY_QUEUE_TIMEOUT_MS: '20000' } });
    token = (await stack.workspace('TEAM')).token;
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should scale up on a burst of real traffic, drain without cutting a stream, idle to zero, and serve through a cold start', async () => {
    const { deploymentId: id, apiKey } = await stack.deployed(
      token,
      { name: 'scaled' },
      {
        mode: 'FLEX',
        minReplicas: 0,
        maxReplicas: 3,
        scaleDownWindowSeconds: 1,
        idleTimeoutSeconds: 3,
      },
    );
    const scaler = stack.temporal.workflow.getHandle(scalerWorkflowId(id));
    expect((await scaler.describe()).status.name).toBe('RUNNING');
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey, maxRetries: 0 });
    const stream = (maxTokens: number) => streamChat(client, maxTokens);

    // 70 streams at once on one replica of 30 slots: 30 run, 40 queue, and the gateway reports it.
    const burst = await Promise.all(Array.from({ length: 70 }, () => stream(60)));
    expect(burst.every((r) => r.tokens === 60 && r.finish === 'length')).toBe(true);
    expect(burst.filter((r) => r.queuedMs > 0).length).toBeGreaterThanOrEqual(40);
    // Up at once on the first report of the queue, then again as the rest of the burst is reported: 1 -> ... -> 3.
    const ups = (await scaler.query(scalerStatusQuery)).decisions;
    expect(ups.length).toBeGreaterThan(0);
    expect(ups.every((d) => d.to > d.from && /queued\): \d -> \d$/.test(d.reason))).toBe(true);
    expect(ups[0].from).toBe(1);
    // How far it goes depends on when the rest of the burst is reported: at least 2, at most the max of 3.
    const peak = ups.at(-1)!.to;
    expect(peak).toBeGreaterThanOrEqual(2);
    expect(peak).toBeLessThanOrEqual(3);

    // A long stream (150 tokens at 20 ms) runs while the burst's replicas are drained and stopped.
    // A replica the scaler has just asked for has a row before its process: wait until every row names its pid.
    const rows = await eventually(async () => {
      const rs = await stack.prisma.replica.findMany({ where: { deploymentId: id } });
      return rs.every((r) => r.providerId) && rs;
    });
    const pids = rows.map((r) => Number(r.providerId));
    expect(await stream(150)).toMatchObject({ tokens: 150, finish: 'length' });

    // No traffic: the gateway's heartbeats of zero take it down to 1 after the window, then to 0 after the idle timeout.
    await eventually(async () => (await scaler.query(scalerStatusQuery)).current === 0, 60_000, 200);
    await eventually(
      async () => (await stack.prisma.replica.count({ where: { deploymentId: id, state: { not: 'STOPPED' } } })) === 0,
      30_000,
    );
    // A row turns STOPPED (compare-and-set against a scale-up reusing it) just before its process is signalled: the processes follow.
    await eventually(async () => pids.every((pid) => !pidAlive(pid)), 10_000);
    const idle = await scaler.query(scalerStatusQuery);
    // Down only, each step from where the last left it: peak -> (2 while the burst's tail was in the window) -> 1, then 0 when idle.
    const downs = idle.decisions.slice(ups.length).map((d) => [d.from, d.to]);
    expect(downs[0][0]).toBe(peak);
    expect(downs.every(([from, to], i) => to < from && (i === 0 || from === downs[i - 1][1]))).toBe(true);
    expect(downs.at(-1)).toEqual([1, 0]);
    expect(idle.decisions.at(-1)!.reason).toMatch(/^idle for \d+ s, /);

    // The next request wakes the scaler at once and is served when the new replica is ready.
    const next = await stream(5);
    expect(next).toMatchObject({ tokens: 5, finish: 'length', cold: 'true' });
    expect(next.queuedMs).toBeGreaterThan(0);
    const woke = await scaler.query(scalerStatusQuery);
    expect(woke.decisions.at(-1)).toMatchObject({
      from: 0,
      to: 1,
      reason: expect.stringMatching(/^cold start: 0 in flight, 1 queued with 0 replicas/),
    });
    const warm = await stream(5);
    expect(warm).toMatchObject({ cold: 'false', queuedMs: 0 });

    const kinds = (await stack.prisma.deploymentEvent.findMany({ where: { deploymentId: id }, orderBy: { id: 'asc' } })).map((e) => e.kind);
    expect(kinds.filter((k) => k.startsWith('scale.'))).toEqual([
      ...ups.map(() => 'scale.up'),
      ...downs.map(() => 'scale.down'),
      'scale.up',
    ]);
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metrics).toMatch(/^infercp_gateway_cold_starts_total [1-9]/m);
    expect(metrics).toMatch(/^infercp_gateway_load_reports_total\{result="ok"\} [1-9]/m);
    // Every request has finished: the gauges read from the gateway's own counts are back to exactly zero.
    expect(metrics).toContain(`infercp_gateway_in_flight{deployment="${id}"} 0`);
    expect(metrics).toContain(`infercp_gateway_queue_depth{deployment="${id}"} 0`);
  });

  it('should refuse a bad policy naming the knob, apply a good one, and keep both across continue-as-new', async () => {
    const policy = testPolicy({ targetConcurrency: 30 });
    const workflowId = `scaler:can-${Date.now()}`;
    const handle = await stack.temporal.workflow.start('scalerWorkflow', {
      taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
      workflowId,
      args: [
        {
          deploymentId: 'dep_without_rows',
          policy,
          initialReplicas: 2,
          planMaxReplicas: 32,
          tickMs: 100,
          drainTimeoutMs: 1000,
          decisions: [{ at: 1, from: 1, to: 2, reason: 'earlier' }],
          forceContinueAsNewAfterTurns: 20,
        },
      ],
    });
    const firstRun = handle.firstExecutionRunId;
    await expect(handle.executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 40 }] })).rejects.toMatchObject({
      cause: { message: "maxReplicas=40: exceeds the plan's ceiling of 32" },
    });
    await expect(handle.executeUpdate(setPolicyUpdate, { args: [{ minReplicas: 5 }] })).rejects.toMatchObject({
      cause: { message: 'minReplicas=5: must not exceed maxReplicas (4)' },
    });
    expect(await handle.executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 6 }] })).toMatchObject({ maxReplicas: 6 });
    // Reports wake the loop (40-59 in flight still fits 2 replicas); the hook continues as new after 20 turns.
    let i = 0;
    await eventually(
      async () => {
        await handle.signal(loadReportSignal, {
          gatewayId: 'test-gw',
          inFlight: 40 + (i++ % 20),
          queued: 0,
          oldestQueuedMs: 0,
          at: Date.now(),
        });
        return (await stack.temporal.workflow.getHandle(workflowId).describe()).runId !== firstRun;
      },
      30_000,
      20,
    );
    const status = await stack.temporal.workflow.getHandle(workflowId).query(scalerStatusQuery);
    expect(status).toMatchObject({ current: 2, policy: { maxReplicas: 6 }, decisions: [{ from: 1, to: 2, reason: 'earlier' }] });
    await stack.temporal.workflow.getHandle(workflowId).terminate('test done');
  });
});
