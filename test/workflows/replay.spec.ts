import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { temporal } from '@temporalio/proto';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { loadReportSignal, scalerStatusQuery, setPolicyUpdate } from '../../workflows/messages';
import {
  CHANGE_GPU,
  CREATE_VARIANT,
  createPipeline,
  deploy,
  DELETE_DEPLOYMENT,
  must,
  ROLLBACK,
  START_DEPLOYMENT,
  STOP_DEPLOYMENT,
} from '../support/graphql';
import { startStack } from '../support/stack';
import { testPolicy } from '../support/workflows';
import { eventually } from '../support/wait';

/**
 * Saved histories of finished workflows, replayed against today's workflow
 * code: a change that would break running workflows (non-determinism) fails
 * here. RECORD_HISTORIES=1 npm test records fresh ones from a real run.
 */
const dir = resolve(__dirname, '../histories');
const bundlePath = resolve(__dirname, '../../dist/workflow-bundle.js');

describe('workflow determinism', () => {
  beforeAll(() => {
    try {
      Runtime.install({ logger: new DefaultLogger('WARN') });
    } catch {
      /* installed by another file in this process */
    }
  });

  // Recording needs a live deploy; every other run replays what was recorded.
  if (process.env.RECORD_HISTORIES === '1')
    it('records histories of a successful and a failed deploy', async () => {
      for (const [name, env] of [
        ['deploy-succeeded', {}],
        ['deploy-failed', { LOCAL_REPLICA_COMMAND: '/bin/false {port}' }],
      ] as const) {
        const stack = await startStack({ env });
        try {
          const ws = await stack.workspace('TEAM');
          const pipelineId = await createPipeline(stack.as(ws.token), { name: 'r' });
          const d = await must(deploy(stack.as(ws.token), { pipelineId, mode: 'FLEX', minReplicas: 1, maxReplicas: 1 }));
          const handle = stack.temporal.workflow.getHandle(`deploy:${d.deployPipeline.deployment.id}`);
          await eventually(async () => (await handle.describe()).status.name !== 'RUNNING');
          const history = await handle.fetchHistory();
          const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
          expect(bytes.toString('latin1')).not.toMatch(/sk_[A-Za-z0-9_-]{20,}/); // secrets never enter workflow history
          writeFileSync(join(dir, `${name}.pb`), bytes);
        } finally {
          await stack.close();
        }
      }
    });

  // A scaler that held, took a policy change and began a scale-down window; RECORD_SUFFIX names the code version.
  if (process.env.RECORD_HISTORIES === '1')
    it('records the history of a running scaler', async () => {
      const stack = await startStack();
      try {
        const handle = await stack.temporal.workflow.start('scalerWorkflow', {
          taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
          workflowId: `scaler:replay-${Date.now()}`,
          args: [
            {
              deploymentId: 'dep_replay',
              policy: testPolicy({ targetConcurrency: 30 }),
              initialReplicas: 2,
              planMaxReplicas: 32,
              tickMs: 100,
              drainTimeoutMs: 1000,
            },
          ],
        });
        const report = (inFlight: number) => ({ gatewayId: 'g', inFlight, queued: 0, oldestQueuedMs: 0, at: Date.now() });
        await handle.signal(loadReportSignal, report(50));
        await new Promise((r) => setTimeout(r, 400));
        await handle.executeUpdate(setPolicyUpdate, { args: [{ maxReplicas: 6 }] });
        await handle.signal(loadReportSignal, report(20));
        await new Promise((r) => setTimeout(r, 400));
        expect(await handle.query(scalerStatusQuery)).toMatchObject({ current: 2, noData: false, policy: { maxReplicas: 6 } });
        const history = await handle.fetchHistory();
        writeFileSync(
          join(dir, `scaler-running${process.env.RECORD_SUFFIX ?? ''}.pb`),
          Buffer.from(temporal.api.history.v1.History.encode(history).finish()),
        );
        await handle.terminate('recorded');
      } finally {
        await stack.close();
      }
    });

  // A stop, a start, a change of GPU, a rollback and a delete of one deployment, each its own op:<deploymentId>:<opId> workflow.
  if (process.env.RECORD_HISTORIES === '1')
    it('records the histories of a stop, a start, a change of GPU, a rollback and a delete', async () => {
      const stack = await startStack();
      try {
        const ws = await stack.workspace('TEAM');
        const gql = stack.as(ws.token);
        const { deploymentId, pipelineId } = await stack.deployed(
          ws.token,
          { name: 'lifecycle' },
          { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
        );
        const variant = await must(
          gql<{ createVariant: { id: string } }>(CREATE_VARIANT, { pipelineId, input: { name: 'v2', gpu: 'any', engine: 'vllm' } }),
        );
        for (const [name, doc, field, vars] of [
          ['lifecycle-stop', STOP_DEPLOYMENT, 'stopDeployment', {}],
          ['lifecycle-start', START_DEPLOYMENT, 'startDeployment', {}],
          ['lifecycle-change-gpu', CHANGE_GPU, 'changeGpu', { gpu: 'sim-large' }],
          ['lifecycle-rollback', ROLLBACK, 'rollbackDeployment', { variantId: variant.createVariant.id }],
          ['lifecycle-delete', DELETE_DEPLOYMENT, 'deleteDeployment', {}],
        ] as const) {
          const op = await must(gql<Record<string, { workflowId: string }>>(doc, { id: deploymentId, ...vars }));
          const handle = stack.temporal.workflow.getHandle(op[field].workflowId);
          await handle.result();
          const bytes = Buffer.from(temporal.api.history.v1.History.encode(await handle.fetchHistory()).finish());
          expect(bytes.toString('latin1')).not.toMatch(/sk_[A-Za-z0-9_-]{20,}/); // secrets never enter workflow history
          writeFileSync(join(dir, `${name}.pb`), bytes);
        }
      } finally {
        await stack.close();
      }
    });

  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.pb')) : [];
  it.each(files)('should replay %s with the current workflow code', async (file) => {
    // Binary protobuf: the SDK's JSON reader trips over the two protobufjs copies npm installs.
    const history = temporal.api.history.v1.History.decode(readFileSync(join(dir, file)));
    await Worker.runReplayHistory({ workflowBundle: { code: readFileSync(bundlePath, 'utf8') } }, history);
  });

  it('should have recorded histories to replay', () => {
    expect(files.sort()).toEqual([
      'deploy-failed-v1.pb',
      'deploy-failed.pb',
      'deploy-succeeded-v1.pb',
      'deploy-succeeded.pb',
      'lifecycle-change-gpu.pb',
      'lifecycle-delete.pb',
      'lifecycle-rollback.pb',
      'lifecycle-start.pb',
      'lifecycle-stop.pb',
      'scaler-running-v1.pb',
      'scaler-running-v2.pb',
      'scaler-running.pb',
    ]);
  });
});
