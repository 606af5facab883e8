import { heartbeat } from '@temporalio/activity';
import { CHANNEL_ROUTES, notify } from '../src/database/notify';
import { NotFoundError, StateError } from '../src/domain/errors';
import { targetConcurrency } from '../src/domain/plans';
import type { ActivityContext } from './context';
import { engineOf, ReplicaRevision, replicaActivities, replicaSteps } from './replicas';

/** A staged revision's replica ids: named after the revision, so they never meet the ids the scaler gives. */
export const stagedReplicaId = (revisionId: string, ordinal: number) => `${revisionId}-r${ordinal}`;

/**
 * The blue/green swap of a change of GPU or a rollback (op:<deploymentId>:<opId>): the staged revision
 * comes up beside the serving one, the routes switch in one transaction, the old one drains. Each step
 * is idempotent: a retry, or a new worker after a crash, finds the rows the first attempt wrote.
 */
export function revisionActivities(ctx: ActivityContext) {
  const { prisma, event, loadDeployment, provider, endOperation } = ctx;
  const steps = replicaSteps(ctx);
  const replicas = replicaActivities(ctx);

  async function loadRevision(revisionId: string) {
    const r = await prisma.revision.findUnique({ where: { id: revisionId }, include: { variant: true } });
    if (!r) throw new NotFoundError(`revision ${revisionId} not found`);
    return r;
  }

  return {
    /**
     * Brings up the staged revision's replicas beside the serving ones: as many as the serving revision
     * runs now (at least one). Replicas already made by an earlier attempt count; one that lost its
     * process (a worker killed mid-start) is replaced. Returns the count.
     */
    async stageRevision({ deploymentId, revisionId }: { deploymentId: string; revisionId: string }): Promise<{ count: number }> {
      const d = await loadDeployment(deploymentId);
      const rev = await loadRevision(revisionId);
      if (rev.deploymentId !== deploymentId) throw new StateError(`revision ${revisionId} belongs to another deployment`);
      if (rev.status !== 'STAGED') throw new StateError(`revision ${revisionId} is ${rev.status}, not STAGED: it cannot be brought up`);
      const p = provider(d.target);
      const serving = d.revisionId
        ? await prisma.replica.count({ where: { deploymentId, revisionId: d.revisionId, state: { in: ['STARTING', 'READY'] } } })
        : 0;
      // The count is written once: a retry after the scaler's count moved still brings up what the first attempt chose.
      const count = rev.replicaCount ?? Math.max(1, serving);
      if (rev.replicaCount === null) await prisma.revision.update({ where: { id: revisionId }, data: { replicaCount: count } });
      const spec: ReplicaRevision = {
        revisionId,
        variantId: rev.variantId,
        gpu: rev.gpu,
        maxConcurrency: rev.variant.maxConcurrency,
        engine: engineOf(rev.variant),
      };
      const made = await prisma.replica.findMany({ where: { revisionId }, orderBy: { startedAt: 'asc' } });
      const live = made.filter((r) => r.state === 'STARTING' || r.state === 'READY');
      const fresh = Array.from({ length: Math.max(0, count - live.length) }, (_, i) => stagedReplicaId(revisionId, made.length + i));
      // ensureReplica is idempotent on the id: a STARTING row whose process was never spawned gets one now.
      await Promise.all(
        [...live.filter((r) => r.state === 'STARTING').map((r) => r.id), ...fresh].map((id) => steps.startReplica(d, p, id, spec)),
      );
      if (fresh.length) {
        await event(
          deploymentId,
          'revision.staging',
          `starting ${fresh.length} replica(s) of ${rev.variant.name} on ${rev.gpu} beside the serving revision`,
          {
            revisionId,
            replicaIds: fresh,
          },
        );
      }
      return { count };
    },

    /** Waits until every staged replica serves (they are not routed to yet: the gateways route the serving revision only). */
    async waitRevisionReady({
      deploymentId,
      revisionId,
      timeoutSeconds,
    }: {
      deploymentId: string;
      revisionId: string;
      timeoutSeconds: number;
    }) {
      const d = await loadDeployment(deploymentId);
      await steps.waitReady(deploymentId, provider(d.target), timeoutSeconds, revisionId);
    },

    /**
     * The switch, in one transaction: the staged revision serves (the deployment's variant and GPU are
     * its), the old one is RETIRED and its replicas DRAINING, and the NOTIFY tells every gateway. Requests
     * in flight on the old replicas finish there; new ones go to the new. Idempotent: a retry after the
     * commit returns what the first did.
     */
    async switchRevision({
      deploymentId,
      revisionId,
    }: {
      deploymentId: string;
      revisionId: string;
    }): Promise<{ previousRevisionId: string | null; targetConcurrency: number | null }> {
      const d = await loadDeployment(deploymentId);
      const rev = await loadRevision(revisionId);
      if (d.revisionId === revisionId) {
        return { previousRevisionId: rev.previousRevisionId, targetConcurrency: d.targetConcurrency };
      }
      if (rev.status !== 'STAGED') throw new StateError(`revision ${revisionId} is ${rev.status}, not STAGED: it cannot serve`);
      const ready = await prisma.replica.count({ where: { revisionId, state: 'READY' } });
      if (ready === 0) throw new StateError(`revision ${revisionId} has no ready replica: the routes stay where they are`);
      // A new variant brings its own per-replica target; a new GPU alone keeps the deployment's.
      const target =
        rev.variantId === d.variantId
          ? d.targetConcurrency
          : targetConcurrency(d.pipeline.task, rev.variant.maxConcurrency, rev.variant.targetConcurrency);
      const now = new Date();
      await prisma.$transaction([
        ...(d.revisionId
          ? [
              prisma.revision.update({ where: { id: d.revisionId }, data: { status: 'RETIRED', servedTo: now } }),
              prisma.replica.updateMany({
                where: { revisionId: d.revisionId, state: { in: ['STARTING', 'READY'] } },
                data: { state: 'DRAINING' },
              }),
            ]
          : []),
        prisma.revision.update({
          where: { id: revisionId },
          data: { status: 'SERVING', servedFrom: now, previousRevisionId: d.revisionId },
        }),
        prisma.deployment.update({
          where: { id: deploymentId },
          data: { revisionId, variantId: rev.variantId, gpu: rev.gpu, targetConcurrency: target },
        }),
        prisma.deploymentEvent.create({
          data: {
            deploymentId,
            kind: 'revision.switched',
            message: `routes switched to ${rev.variant.name} on ${rev.gpu} (revision ${revisionId}); the previous revision drains`,
            data: { revisionId, previousRevisionId: d.revisionId },
          },
        }),
        notify(prisma, CHANNEL_ROUTES, deploymentId),
      ]);
      return { previousRevisionId: d.revisionId, targetConcurrency: target };
    },

    /**
     * After the switch: every replica of the revision left behind drains (by its live in-flight count, up
     * to drainTimeoutMs) and stops. Returns the replicas stopped.
     */
    async retireRevision({
      deploymentId,
      revisionId,
      drainTimeoutMs,
    }: {
      deploymentId: string;
      revisionId: string;
      drainTimeoutMs: number;
    }): Promise<{ stopped: number }> {
      const d = await loadDeployment(deploymentId);
      if (d.revisionId === revisionId) throw new StateError(`revision ${revisionId} serves: it cannot be retired`);
      await prisma.replica.updateMany({ where: { revisionId, state: { in: ['STARTING', 'READY'] } }, data: { state: 'DRAINING' } });
      const draining = await prisma.replica.findMany({ where: { revisionId, state: 'DRAINING' } });
      await Promise.all(draining.map((r) => replicas.drainReplica({ deploymentId, replicaId: r.id, drainTimeoutMs })));
      const failed = await prisma.replica.findMany({ where: { revisionId, state: 'FAILED' } });
      for (const r of failed) await provider(d.target).stopReplica(r.id);
      await provider(d.target).release?.(deploymentId, revisionId);
      heartbeat();
      if (draining.length)
        await event(deploymentId, 'revision.retired', `stopped ${draining.length} replica(s) of the previous revision after draining`, {
          revisionId,
        });
      return { stopped: draining.length };
    },

    /**
     * Undo before the switch: the staged revision's replicas stop and it is FAILED with the reason; the
     * serving revision never stopped serving. A no-op once the revision serves (the switch is not undone).
     */
    async abortRevision({ deploymentId, revisionId, reason }: { deploymentId: string; revisionId: string; reason: string }): Promise<void> {
      const d = await loadDeployment(deploymentId);
      if (d.revisionId === revisionId) return;
      const p = provider(d.target);
      const left = await prisma.replica.findMany({ where: { revisionId, state: { not: 'STOPPED' } } });
      for (const r of left) {
        await p.stopReplica(r.id);
        await prisma.replica.update({
          where: { id: r.id },
          data: { state: r.state === 'FAILED' ? 'FAILED' : 'STOPPED', stoppedAt: r.stoppedAt ?? new Date() },
        });
      }
      await p.release?.(deploymentId, revisionId);
      await prisma.$transaction([
        prisma.revision.updateMany({ where: { id: revisionId, status: 'STAGED' }, data: { status: 'FAILED', reason } }),
        prisma.deploymentEvent.create({
          data: {
            deploymentId,
            kind: 'revision.aborted',
            message: `staged revision ${revisionId} released (${left.length} replica(s)): ${reason}; the serving revision kept serving`,
            data: { revisionId },
          },
        }),
      ]);
    },

    /** The swap's last step: the operation ends and the deployment's lock is released. */
    async finishSwap({ deploymentId, operationId, revisionId }: { deploymentId: string; operationId: string; revisionId: string }) {
      const rev = await loadRevision(revisionId);
      await prisma.$transaction([
        ...endOperation(deploymentId, operationId, 'SUCCEEDED'),
        prisma.deploymentEvent.create({
          data: {
            deploymentId,
            kind: 'revision.serving',
            message: `serving ${rev.variant.name} on ${rev.gpu} alone (revision ${revisionId})`,
          },
        }),
      ]);
    },
  };
}
