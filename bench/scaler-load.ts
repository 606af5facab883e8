/**
 * Benchmark 3, load: 100 deployments' scaler workflows on one worker and the
 * dev server, each receiving a load report every second (what 100 busy
 * deployments behind one gateway process send). Prints the CPU the worker
 * process and the Temporal server spend per second, against the same 100
 * scalers idle in the same run, and the latency of a report: the signal call
 * a gateway makes, and the round trip of an update through the workflow (a
 * report's processing lag is at most that).
 *
 *   npm run build && node dist/bench/scaler-load.js [deployments=100] [seconds=60]
 */
import { WorkflowHandle } from '@temporalio/client';
import { ScalingPolicy } from '../src/domain/scaling';
import { benchStack, cpuSeconds, percentile, progress } from './harness';
import { loadReportSignal, setPolicyUpdate } from '../workflows/messages';

const deployments = Number(process.argv[2] ?? 100);
const seconds = Number(process.argv[3] ?? 60);

async function main() {
  const s = await benchStack('load', {}, { app: false });
  const policy: ScalingPolicy = {
    mode: 'FLEX',
    minReplicas: 0,
    maxReplicas: 8,
    targetConcurrency: 30,
    scaleDownWindowSeconds: 30,
    idleTimeoutSeconds: 300,
    queueThresholdMs: 2000,
    reportTtlMs: 5000,
  };
  const handles: WorkflowHandle[] = [];
  for (let i = 0; i < deployments; i++) {
    handles.push(
      await s.temporal.workflow.start('scalerWorkflow', {
        taskQueue: s.config.TEMPORAL_TASK_QUEUE,
        workflowId: `scaler:bench-${i}`,
        // Loads of 31-60 in flight keep two replicas: the scalers decide, and never need a provider.
        args: [{ deploymentId: `bench-${i}`, policy, initialReplicas: 2, planMaxReplicas: 8, drainTimeoutMs: 1000 }],
      }),
    );
  }
  progress(`${deployments} scalers started`);

  const measure = async (label: string, work: (second: number) => Promise<void>) => {
    const w0 = process.cpuUsage();
    const s0 = cpuSeconds(s.server.process.pid!);
    const t0 = Date.now();
    for (let sec = 0; sec < seconds; sec++) {
      await work(sec);
      const due = t0 + (sec + 1) * 1000;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    }
    const wall = (Date.now() - t0) / 1000;
    const w = process.cpuUsage(w0);
    const out = {
      workerProcessCpuPercent: +(((w.user + w.system) / 1e6 / wall) * 100).toFixed(1),
      serverCpuPercent: +(((cpuSeconds(s.server.process.pid!) - s0) / wall) * 100).toFixed(1),
    };
    progress(`${label}: ${JSON.stringify(out)}`);
    return out;
  };

  const idle = await measure('idle', async () => {});
  const signalMs: number[] = [];
  const updateMs: number[] = [];
  const loaded = await measure('reports at 1 s', async (sec) => {
    await Promise.all(
      handles.map(async (h, i) => {
        const t = performance.now();
        await h.signal(loadReportSignal, {
          gatewayId: 'bench',
          inFlight: 31 + ((sec + i) % 30),
          queued: 0,
          oldestQueuedMs: 0,
          at: Date.now(),
        });
        signalMs.push(performance.now() - t);
      }),
    );
    const t = performance.now();
    await handles[sec % deployments].executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 8 }] });
    updateMs.push(performance.now() - t);
  });
  const r = (xs: number[]) => ({ p50: +percentile(xs, 50).toFixed(1), p99: +percentile(xs, 99).toFixed(1) });
  process.stdout.write(
    `${JSON.stringify(
      {
        deployments,
        seconds,
        reportsPerSecond: deployments,
        idle,
        loaded,
        signalCallMs: r(signalMs),
        updateRoundTripThroughWorkflowMs: r(updateMs),
        note: 'worker CPU includes this process sending the reports',
      },
      null,
      2,
    )}\n`,
  );
  await Promise.all(handles.map((h) => h.terminate('bench done')));
  await s.close();
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
