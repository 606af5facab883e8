import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type { Activities } from '../../activities';
import type { ScalingPolicy } from '../../src/domain/scaling';
import {
  LifecycleInput,
  LifecycleProgress,
  lifecycleProgressQuery,
  opWorkflowId,
  ScalerInput,
  scalerWorkflowId,
  SwapInput,
} from '../../workflows/messages';

/**
 * The workflow tier: today's workflow code, bundled once per test file, run on the run's real
 * Temporal dev server by a worker whose activities are fakes the test writes. Each test gets its
 * own task queue, so tests cannot see each other's workflows.
 */
export interface WorkflowEnv {
  client: Client;
  /** Runs `fn` while a worker with these activities serves a fresh task queue; then stops the worker. */
  withWorker<T>(activities: Partial<Activities>, fn: (taskQueue: string) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

let runtimeInstalled = false;
let seq = 0;

export async function workflowEnv(): Promise<WorkflowEnv> {
  if (!runtimeInstalled) {
    runtimeInstalled = true;
    try {
      Runtime.install({ logger: new DefaultLogger('ERROR') });
    } catch {
      /* installed by another file in this process */
    }
  }
  const address = process.env.TEMPORAL_ADDRESS!;
  const [bundle, native, connection] = await Promise.all([
    bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: new DefaultLogger('ERROR') }),
    NativeConnection.connect({ address }),
    Connection.connect({ address }),
  ]);
  const client = new Client({ connection });
  return {
    client,
    async withWorker(activities, fn) {
      const taskQueue = `wf-${process.pid}-${++seq}-${Date.now().toString(36)}`;
      const worker = await Worker.create({ connection: native, taskQueue, workflowBundle: bundle, activities });
      return worker.runUntil(fn(taskQueue));
    },
    async close() {
      await connection.close();
      await native.close();
    },
  };
}

/**
 * A fake activity that logs its name and returns `result`, or throws what `fail` gives for it:
 * with these the workflow tier asserts the exact order a workflow calls its activities in.
 */
export function recorder(log: string[], fail: Partial<Record<keyof Activities, Error>> = {}) {
  return <K extends keyof Activities>(name: K, result: unknown) =>
    (async () => {
      log.push(name);
      if (fail[name]) throw fail[name];
      return result;
    }) as unknown as Activities[K];
}

/**
 * The swap workflow's activities (change GPU, rollback), each logging its call through `step`: the staged revision
 * brings up `count` replicas, the switch retires `previousRevisionId` and hands over the new variant's target of 12.
 */
export function swapFakes(
  step: ReturnType<typeof recorder>,
  o: { count: number; previousRevisionId: string; stopped: number },
): Partial<Activities> {
  return {
    stageRevision: step('stageRevision', { count: o.count }),
    waitRevisionReady: step('waitRevisionReady', undefined),
    switchRevision: step('switchRevision', { previousRevisionId: o.previousRevisionId, targetConcurrency: 12 }),
    retireRevision: step('retireRevision', { stopped: o.stopped }),
    finishSwap: step('finishSwap', undefined),
    abortRevision: step('abortRevision', undefined),
    failOperation: step('failOperation', undefined),
  };
}

/** The scaler's activity for a real scaler beside a lifecycle workflow: a resumed scaler at its count reconciles nothing new. */
export const idleScaler: Partial<Activities> = {
  reconcileReplicaCount: (async () => ({
    started: [],
    reused: [],
    starting: [],
    draining: [],
  })) as unknown as Activities['reconcileReplicaCount'],
  rotateAgedReplicas: (async () => ({ starting: [], draining: [], nextCheckAt: null })) as unknown as Activities['rotateAgedReplicas'],
};

export interface OperationOutcome<T> {
  result?: unknown;
  error?: WorkflowFailedError;
  progress: LifecycleProgress;
  /** What `after` returned. */
  after?: T;
}

/**
 * Runs one op:<deploymentId>:op1 workflow (stop, start, delete, swap) to its end on a fresh worker with
 * these activities (and idleScaler's); with `scaler`, a real scaler workflow of the deployment runs first,
 * and `after` runs once the operation ended, before that scaler is terminated.
 */
export function runOperation<T = void>(
  env: WorkflowEnv,
  workflow: 'stopWorkflow' | 'startWorkflow' | 'deleteWorkflow' | 'swapWorkflow',
  args: LifecycleInput | SwapInput,
  activities: Partial<Activities>,
  scaler: { policy: ScalingPolicy; paused?: boolean; current?: number } | null,
  after?: () => Promise<T>,
): Promise<OperationOutcome<T>> {
  const id = args.deploymentId;
  return env.withWorker({ ...idleScaler, ...activities }, async (taskQueue) => {
    if (scaler) {
      const input: ScalerInput = {
        deploymentId: id,
        policy: scaler.policy,
        initialReplicas: scaler.current ?? 2,
        planMaxReplicas: 8,
        drainTimeoutMs: 1000,
        paused: scaler.paused,
      };
      await env.client.workflow.start('scalerWorkflow', { taskQueue, workflowId: scalerWorkflowId(id), args: [input] });
    }
    const handle = await env.client.workflow.start(workflow, { taskQueue, workflowId: opWorkflowId(id, args.operationId), args: [args] });
    let out: OperationOutcome<T>;
    try {
      out = { result: await handle.result(), progress: await handle.query(lifecycleProgressQuery) };
    } catch (err) {
      out = { error: err as WorkflowFailedError, progress: await handle.query(lifecycleProgressQuery) };
    }
    try {
      if (after) out.after = await after();
    } finally {
      await env.client.workflow
        .getHandle(scalerWorkflowId(id))
        .terminate('test over')
        .catch(() => {});
    }
    return out;
  });
}

/** A Flex scaling policy for the workflow tier (0-4 replicas, target 4 in flight, 30 s window, 300 s idle), with `o` over it. */
export const testPolicy = (o: Partial<ScalingPolicy> = {}): ScalingPolicy => ({
  mode: 'FLEX',
  minReplicas: 0,
  maxReplicas: 4,
  targetConcurrency: 4,
  scaleDownWindowSeconds: 30,
  idleTimeoutSeconds: 300,
  queueThresholdMs: 2000,
  reportTtlMs: 5000,
  ...o,
});
