// Claiming a deployment's one-operation-at-a-time lock, shared by the api (a user's stop, start, change of GPU or
// rollback) and the optimize workflow's redeploy (its activity claims a rollback onto the winner).
import { newId } from '../common/secrets';
import type { Deployment, PrismaClient } from '../database/prisma';
import { DomainError, ErrorCode } from '../domain/errors';
import { LifecycleKind, opWorkflowId } from '../../workflows/messages';

/** The statuses each lifecycle operation starts from. */
export const LIFECYCLE_FROM: Record<LifecycleKind, readonly string[]> = {
  STOP: ['ACTIVE', 'FAILED'],
  START: ['STOPPED', 'FAILED'], // FAILED: only by a start (lifecycle() checks)
  DELETE: ['ACTIVE', 'STOPPED', 'FAILED'],
  // A swap moves what serves: the old revision keeps serving until the switch.
  CHANGE_GPU: ['ACTIVE'],
  ROLLBACK: ['ACTIVE'],
};

export const LIFECYCLE_WORKFLOW: Record<LifecycleKind, string> = {
  STOP: 'stopWorkflow',
  START: 'startWorkflow',
  DELETE: 'deleteWorkflow',
  CHANGE_GPU: 'swapWorkflow',
  ROLLBACK: 'swapWorkflow',
};

/** What an operation's name reads as in a sentence ("cannot be stopped", "the rollback was not started"). */
export const PAST: Record<LifecycleKind, string> = {
  STOP: 'stopped',
  START: 'started',
  DELETE: 'deleted',
  CHANGE_GPU: 'moved to another GPU',
  ROLLBACK: 'rolled back',
};

/** The operation as a sentence names it: STOP -> stop, CHANGE_GPU -> change gpu. */
export const verbOf = (kind: LifecycleKind) => kind.toLowerCase().replace('_', ' ');

export interface Claim {
  operationId: string;
  revisionId: string | null;
  workflowId: string;
}

/**
 * Claims the deployment's operation lock with a conditional update and records the operation (and, for a swap, its
 * staged revision) in the same transaction; the caller starts op:<deploymentId>:<opId>. With `operationId` given
 * the claim is idempotent: an operation already recorded under it is returned as it is (a retried activity).
 */
export async function claimOperation(
  prisma: PrismaClient,
  d: Pick<Deployment, 'id' | 'status'>,
  kind: LifecycleKind,
  swap: { variantId?: string; gpu?: string; warning?: string | null; operationId?: string; why?: string },
): Promise<Claim> {
  const { id } = d;
  if (swap.operationId) {
    const had = await prisma.operation.findUnique({ where: { id: swap.operationId } });
    if (had) {
      const rev = await prisma.revision.findUnique({ where: { operationId: had.id } });
      return { operationId: had.id, revisionId: rev?.id ?? null, workflowId: had.workflowId };
    }
  }
  const operationId = swap.operationId ?? newId('op');
  const revisionId = swap.variantId ? newId('rev') : null;
  const workflowId = opWorkflowId(id, operationId);
  const verb = verbOf(kind);
  const claimed = await prisma.$transaction(async (tx) => {
    const { count } = await tx.deployment.updateMany({
      where: { id, activeOperationId: null, status: d.status },
      data: { activeOperationId: operationId },
    });
    if (count === 0) return false;
    await tx.operation.create({
      data: { id: operationId, deploymentId: id, kind, workflowId, status: 'RUNNING', warning: swap.warning ?? null },
    });
    if (revisionId) {
      await tx.revision.create({
        data: { id: revisionId, deploymentId: id, variantId: swap.variantId!, gpu: swap.gpu!, status: 'STAGED', operationId },
      });
    }
    await tx.deploymentEvent.create({
      data: {
        deploymentId: id,
        kind: `${kind.toLowerCase()}.requested`,
        message: `${verb} requested (${workflowId})${revisionId ? ` onto ${swap.gpu} as revision ${revisionId}` : ''}${swap.why ? `: ${swap.why}` : ''}`,
      },
    });
    if (swap.warning) await tx.deploymentEvent.create({ data: { deploymentId: id, kind: 'operation.warning', message: swap.warning } });
    return true;
  });
  if (!claimed) {
    // Another operation (or a status change) won the race: say which.
    const now = await prisma.deployment.findUniqueOrThrow({ where: { id } });
    if (now.activeOperationId) throw await operationInProgress(prisma, id, now.activeOperationId);
    throw new DomainError(ErrorCode.CONFLICT, `deployment ${id} is now ${now.status}; try again`, { status: now.status });
  }
  return { operationId, revisionId, workflowId };
}

/** The error for a deployment whose lock another operation holds, naming it and its workflow. */
export async function operationInProgress(prisma: PrismaClient, deploymentId: string, operationId: string) {
  const op = await prisma.operation.findUnique({ where: { id: operationId } });
  const what = op ? `a ${op.kind} operation (workflow ${op.workflowId})` : `operation ${operationId}`;
  return new DomainError(
    ErrorCode.OPERATION_IN_PROGRESS,
    `deployment ${deploymentId} has ${what} in progress; one operation runs at a time, try again when it ends`,
    { operationId, ...(op ? { kind: op.kind, workflowId: op.workflowId } : {}) },
  );
}
