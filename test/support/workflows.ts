import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type { Activities } from '../../activities';

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
