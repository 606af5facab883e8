import { WorkflowFailedError } from '@temporalio/client';
import type { Activities } from '../../activities';
import { ProviderPermanentError, ReplicaUnhealthyError, StateError } from '../../src/domain/errors';
import { scalerStatusQuery, scalerWorkflowId, SwapInput, SwapKind } from '../../workflows/messages';
import { eventually } from '../support/wait';
import { recorder, runOperation, swapFakes, testPolicy, workflowEnv, WorkflowEnv } from '../support/workflows';

const policy = testPolicy();

/** Fake swap activities that log each call: the staged revision brings up 3 replicas, the new variant's target is 12. */
function fakes(log: string[], fail: Partial<Record<keyof Activities, Error>> = {}): Partial<Activities> {
  return swapFakes(recorder(log, fail), { count: 3, previousRevisionId: 'rev-old', stopped: 2 });
}

describe('the swap workflow of change GPU and rollback (fake activities, real Temporal server)', () => {
  let env: WorkflowEnv;
  beforeAll(async () => {
    env = await workflowEnv();
  });
  afterAll(async () => {
    await env.close();
  });

  let seq = 0;
  const newId = (what: string) => `dep-swap-${what}-${Date.now()}-${++seq}`;

  /** Runs swapWorkflow beside a real scaler of 2 replicas (or none); `scaler` is its status once resumed. */
  const run = async (id: string, activities: Partial<Activities>, o: { kind?: SwapKind; scaler?: boolean } = {}) => {
    const args: SwapInput = {
      deploymentId: id,
      operationId: 'op1',
      healthTimeoutSeconds: 5,
      drainTimeoutMs: 1000,
      kind: o.kind ?? 'CHANGE_GPU',
      revisionId: 'rev-new',
    };
    // The resume is a signal: the scaler takes it on its next workflow task.
    const status = () => env.client.workflow.getHandle(scalerWorkflowId(id)).query(scalerStatusQuery);
    const resumed = () =>
      eventually(async () => {
        const s = await status();
        return !s.paused && s;
      }, 10_000);
    const out = await runOperation(
      env,
      'swapWorkflow',
      args,
      activities,
      o.scaler === false ? null : { policy },
      o.scaler === false ? undefined : resumed,
    );
    return { ...out, scaler: out.after ?? null };
  };

  it('should stage, wait healthy, switch, retire the old revision, then resume the scaler at the new count and target', async () => {
    const log: string[] = [];
    const r = await run(newId('ok'), fakes(log));
    expect(r.error).toBeUndefined();
    expect(r.result).toEqual({ replicas: 3 });
    expect(r.progress).toEqual({ kind: 'CHANGE_GPU', step: 'done' });
    expect(log).toEqual(['stageRevision', 'waitRevisionReady', 'switchRevision', 'retireRevision', 'finishSwap']);
    expect(r.scaler).toMatchObject({ paused: false, current: 3, policy: { targetConcurrency: 12 } });
  });

  it('should swap a deployment that has no scaler', async () => {
    const log: string[] = [];
    const r = await run(newId('noscaler'), fakes(log), { kind: 'ROLLBACK', scaler: false });
    expect(r.error).toBeUndefined();
    expect(r.progress).toEqual({ kind: 'ROLLBACK', step: 'done' });
    expect(log).toEqual(['stageRevision', 'waitRevisionReady', 'switchRevision', 'retireRevision', 'finishSwap']);
  });

  // Before the switch, every failure releases the staged replicas and the scaler resumes on the old revision's count.
  it.each([
    ['stageRevision', new ProviderPermanentError('no capacity for sim-large'), ['stageRevision']],
    [
      'waitRevisionReady',
      new ReplicaUnhealthyError('replica rev-new-r0 exited before it became healthy'),
      ['stageRevision', 'waitRevisionReady'],
    ],
    ['switchRevision', new StateError('revision rev-new has no ready replica'), ['stageRevision', 'waitRevisionReady', 'switchRevision']],
  ] as const)(
    'should undo a failure at %s: release the staged replicas, keep the old revision serving, resume the scaler as it was',
    async (at, err, ran) => {
      const log: string[] = [];
      const r = await run(newId(at), fakes(log, { [at]: err }), { kind: 'ROLLBACK' });
      expect(log).toEqual([...ran, 'abortRevision', 'failOperation']);
      expect(r.error).toBeInstanceOf(WorkflowFailedError);
      expect(r.error!.cause).toMatchObject({ type: 'RollbackFailed', message: `rollback failed: ${err.message}` });
      expect(r.progress).toEqual({ kind: 'ROLLBACK', step: 'failed', error: err.message });
      expect(r.scaler).toMatchObject({ paused: false, current: 2, policy: { targetConcurrency: 4 } });
    },
  );

  // From the switch on, the new revision serves: nothing is undone, but the scaler runs again on it.
  it.each([
    ['retireRevision', ['stageRevision', 'waitRevisionReady', 'switchRevision', 'retireRevision']],
    ['finishSwap', ['stageRevision', 'waitRevisionReady', 'switchRevision', 'retireRevision', 'finishSwap']],
  ] as const)('should not undo the switch when %s fails, and still resume the scaler on the new revision', async (at, ran) => {
    const log: string[] = [];
    const r = await run(newId(at), fakes(log, { [at]: new StateError(`${at} refused`) }));
    expect(log).toEqual([...ran, 'failOperation']);
    expect(r.error!.cause).toMatchObject({ type: 'ChangeGpuFailed', message: `change gpu failed: ${at} refused` });
    expect(r.scaler).toMatchObject({ paused: false, current: 3, policy: { targetConcurrency: 12 } });
  });
});
