import { WorkflowFailedError } from '@temporalio/client';
import type { Activities } from '../../activities';
import type { RunSettings } from '../../src/domain/optimization';
import { ReplicaUnhealthyError } from '../../src/domain/errors';
import { optimizeWorkflowId, SwapInput } from '../../workflows/messages';
import { recorder, swapFakes, workflowEnv, WorkflowEnv } from '../support/workflows';

const settings = { healthTimeoutSeconds: 5 } as RunSettings;

/** Fake optimization activities that log each call with its candidate; `failStart` names candidates whose replica never serves. */
function fakes(log: string[], o: { failStart?: string[]; redeploy?: string[]; winner?: string | null } = {}): Partial<Activities> {
  const step = recorder(log);
  const perCandidate = <K extends keyof Activities>(name: K, fail?: (v: string) => Error | null) =>
    (async ({ variantId }: { variantId: string }) => {
      log.push(`${name}:${variantId}`);
      const err = fail?.(variantId);
      if (err) throw err;
      return name === 'startCandidate'
        ? { address: 'http://x' }
        : name === 'measureCandidate'
          ? { status: 'MEASURED', reason: null }
          : undefined;
    }) as unknown as Activities[K];
  const broken = (v: string) =>
    o.failStart?.includes(v) ? new ReplicaUnhealthyError(`the candidate's replica exited before it became healthy`) : null;
  return {
    planRun: step('planRun', {
      candidates: [
        { variantId: 'a', name: 'run1-a' },
        { variantId: 'b', name: 'run1-b' },
        { variantId: 'c', name: 'run1-c' },
      ],
      settings,
    }),
    startCandidate: perCandidate('startCandidate'),
    waitCandidateReady: perCandidate('waitCandidateReady', broken),
    measureCandidate: perCandidate('measureCandidate'),
    stopCandidate: perCandidate('stopCandidate'),
    failCandidate: (async ({ variantId, reason }: { variantId: string; reason: string }) => {
      log.push(`failCandidate:${variantId}:${reason}`);
    }) as unknown as Activities['failCandidate'],
    releaseRun: step('releaseRun', { stopped: 0 }),
    finishRun: step('finishRun', {
      winnerVariantId: o.winner === undefined ? 'a' : o.winner,
      redeploy: o.redeploy ?? [],
      reason: o.winner === null ? 'no candidate met the constraints' : null,
    }),
    claimRedeploy: (async ({ deploymentId }: { deploymentId: string }) => {
      log.push(`claimRedeploy:${deploymentId}`);
      return deploymentId === 'busy'
        ? { input: null, skipped: 'deployment busy has a STOP operation in progress' }
        : {
            input: {
              deploymentId,
              operationId: 'op1',
              kind: 'ROLLBACK',
              revisionId: 'rev1',
              healthTimeoutSeconds: 5,
              drainTimeoutMs: 100,
            } satisfies SwapInput,
            skipped: null,
          };
    }) as unknown as Activities['claimRedeploy'],
    endRun: (async ({ error, redeployments }: { error: string | null; redeployments?: unknown[] }) => {
      log.push(`endRun:${error ?? 'ok'}:${JSON.stringify(redeployments ?? null)}`);
    }) as unknown as Activities['endRun'],
    // The rollback swap the redeploy runs as a child, with its own fakes: a deployment without a scaler.
    ...swapFakes(step, { count: 1, previousRevisionId: 'rev0', stopped: 1 }),
  };
}

describe('the optimize workflow (fake activities, real Temporal server)', () => {
  let env: WorkflowEnv;
  beforeAll(async () => {
    env = await workflowEnv();
  });
  afterAll(async () => {
    await env.close();
  });

  let seq = 0;
  const run = (activities: Partial<Activities>) =>
    env.withWorker(activities, (taskQueue) =>
      env.client.workflow.execute('optimizeWorkflow', {
        taskQueue,
        workflowId: optimizeWorkflowId('pl1', `run-${Date.now()}-${++seq}`),
        args: [{ runId: 'run1', pipelineId: 'pl1' }],
      }),
    );

  it('should start, wait for, measure and stop each candidate in turn, then rank, redeploy and end', async () => {
    const log: string[] = [];
    const out = await run(fakes(log, { redeploy: ['dep1', 'busy'] }));
    expect(out).toEqual({ winnerVariantId: 'a', redeployed: 1 });
    const perCandidate = (v: string) => [`startCandidate:${v}`, `waitCandidateReady:${v}`, `measureCandidate:${v}`, `stopCandidate:${v}`];
    expect(log).toEqual([
      'planRun',
      ...perCandidate('a'),
      ...perCandidate('b'),
      ...perCandidate('c'),
      'releaseRun',
      'finishRun',
      'claimRedeploy:dep1',
      'stageRevision',
      'waitRevisionReady',
      'switchRevision',
      'retireRevision',
      'finishSwap',
      'claimRedeploy:busy',
      `endRun:ok:${JSON.stringify([
        { deploymentId: 'dep1', outcome: 'moved by op:dep1:op1' },
        { deploymentId: 'busy', outcome: 'skipped: deployment busy has a STOP operation in progress' },
      ])}`,
    ]);
  });

  it('should mark a candidate that fails to start FAILED, stop its replica, and go on with the others', async () => {
    const log: string[] = [];
    await run(fakes(log, { failStart: ['b'] }));
    const b = log.filter((l) => l.includes(':b'));
    expect(b).toEqual([
      'startCandidate:b',
      'waitCandidateReady:b',
      "failCandidate:b:the candidate's replica exited before it became healthy",
      'stopCandidate:b',
    ]);
    expect(log).toContain('measureCandidate:c');
    expect(log).toContain('stopCandidate:c');
    expect(log.at(-1)).toBe('endRun:ok:[]');
  });

  it('should fail the run, still releasing its replicas, when no candidate met the constraints', async () => {
    const log: string[] = [];
    const err = await run(fakes(log, { failStart: ['a', 'b', 'c'], winner: null })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(String((err as WorkflowFailedError).cause?.message)).toMatch(/optimization run failed: no candidate met the constraints/);
    expect(log.filter((l) => l.startsWith('stopCandidate'))).toEqual(['stopCandidate:a', 'stopCandidate:b', 'stopCandidate:c']);
    expect(log.slice(-2)).toEqual(['releaseRun', 'endRun:no candidate met the constraints:null']);
  });
});
