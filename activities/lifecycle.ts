import { heartbeat } from '@temporalio/activity';
import { CHANNEL_KEYS, CHANNEL_ROUTES, notify } from '../src/database/notify';
import type { ActivityContext } from './context';
import { replicaActivities } from './replicas';

/**
 * The deployment's stop, start and delete steps (op:<deploymentId>:<opId>). Each is idempotent: a
 * retry finds the rows the first attempt wrote and does only what is left.
 */
export function lifecycleActivities(ctx: ActivityContext) {
  const { prisma, event, loadDeployment, provider, endOperation } = ctx;
  const replicas = replicaActivities(ctx);

  return {
    /**
     * Stop, step one: the deployment turns STOPPING, so every gateway answers its requests with 503
     * `deployment_stopped` from the NOTIFY on (no new request reaches a replica, none wakes the scaler).
     * `alreadyStopped` when it was STOPPED before: nothing changes then.
     */
    async beginStop({ deploymentId }: { deploymentId: string }): Promise<{ alreadyStopped: boolean }> {
      const d = await loadDeployment(deploymentId);
      if (d.status === 'STOPPED') return { alreadyStopped: true };
      if (d.status !== 'STOPPING') {
        await prisma.$transaction([
          prisma.deployment.update({ where: { id: deploymentId }, data: { status: 'STOPPING', statusReason: 'stop requested' } }),
          prisma.deploymentEvent.create({
            data: { deploymentId, kind: 'deployment.stopping', message: `deployment is STOPPING (was ${d.status}): new requests get 503` },
          }),
          notify(prisma, CHANNEL_ROUTES, deploymentId),
        ]);
      }
      return { alreadyStopped: false };
    },

    /**
     * Stop, step two: every live replica drains (by its live in-flight count, up to drainTimeoutMs, as a
     * scale-down drains) and stops; a replica still starting stops at once. Returns the replicas stopped.
     */
    async stopReplicas({ deploymentId, drainTimeoutMs }: { deploymentId: string; drainTimeoutMs: number }): Promise<{ stopped: number }> {
      const d = await loadDeployment(deploymentId);
      const p = provider(d.target);
      let stopped = 0;
      // A replica the scaler started just before it paused may turn up after the first pass: stop until none is live.
      for (let pass = 0; pass < 3; pass++) {
        await prisma.replica.updateMany({ where: { deploymentId, state: { in: ['STARTING', 'READY'] } }, data: { state: 'DRAINING' } });
        const draining = await prisma.replica.findMany({ where: { deploymentId, state: 'DRAINING' } });
        if (!draining.length) break;
        await notify(prisma, CHANNEL_ROUTES, deploymentId);
        await event(deploymentId, 'replicas.draining', `draining ${draining.length} replica(s) before they stop`, {
          replicaIds: draining.map((r) => r.id),
        });
        await Promise.all(draining.map((r) => replicas.drainReplica({ deploymentId, replicaId: r.id, drainTimeoutMs })));
        stopped += draining.length;
      }
      // A replica that failed earlier may still have a process: make sure nothing is left running.
      const failed = await prisma.replica.findMany({ where: { deploymentId, state: 'FAILED' } });
      for (const r of failed) await p.stopReplica(r.id);
      heartbeat();
      if (stopped) await event(deploymentId, 'replicas.stopped', `stopped ${stopped} replica(s)`);
      return { stopped };
    },

    /** Stop, last step: the deployment is STOPPED (no replica runs, nothing is billed); ends the operation when `endOp`. */
    async finishStop({ deploymentId, operationId, endOp }: { deploymentId: string; operationId: string; endOp: boolean }): Promise<void> {
      await prisma.$transaction([
        prisma.deployment.update({ where: { id: deploymentId }, data: { status: 'STOPPED', statusReason: 'stopped by request' } }),
        ...(endOp ? endOperation(deploymentId, operationId, 'SUCCEEDED') : []),
        prisma.deploymentEvent.create({
          data: {
            deploymentId,
            kind: 'deployment.stopped',
            message: 'deployment is STOPPED: no replica runs; startDeployment serves it again',
          },
        }),
        notify(prisma, CHANNEL_ROUTES, deploymentId),
      ]);
    },

    /**
     * Undo of a stop that failed half-way: replicas still draining serve again and the deployment is
     * ACTIVE again if any replica serves (STOPPED otherwise). Returns the replicas serving or starting.
     */
    async abortStop({ deploymentId, reason }: { deploymentId: string; reason: string }): Promise<{ live: number }> {
      const draining = await prisma.replica.findMany({ where: { deploymentId, state: 'DRAINING' } });
      for (const r of draining) {
        await prisma.replica.updateMany({ where: { id: r.id, state: 'DRAINING' }, data: { state: r.readyAt ? 'READY' : 'STARTING' } });
      }
      const live = await prisma.replica.count({ where: { deploymentId, state: { in: ['STARTING', 'READY'] } } });
      const status = live > 0 ? 'ACTIVE' : 'STOPPED';
      await prisma.$transaction([
        prisma.deployment.update({ where: { id: deploymentId }, data: { status, statusReason: `stop failed: ${reason}` } }),
        prisma.deploymentEvent.create({
          data: {
            deploymentId,
            kind: 'stop.aborted',
            message: `stop failed (${reason}); ${live} replica(s) serve, deployment is ${status}`,
          },
        }),
        notify(prisma, CHANNEL_ROUTES, deploymentId),
      ]);
      return { live };
    },

    /**
     * Start: brings the deployment to `count` live replicas the way the scaler does (reconcileReplicaCount:
     * fresh ids whose ordinals continue after every replica the deployment ever had, so a retry sees the
     * rows it made and starts nothing twice). Returns the live replicas.
     */
    async startReplicas({ deploymentId, count }: { deploymentId: string; count: number }): Promise<{ replicaIds: string[] }> {
      const live = await prisma.replica.count({ where: { deploymentId, state: { in: ['STARTING', 'READY'] } } });
      if (live < count) await replicas.reconcileReplicaCount({ deploymentId, desired: count, reason: 'start requested' });
      const rows = await prisma.replica.findMany({
        where: { deploymentId, state: { in: ['STARTING', 'READY'] } },
        orderBy: { startedAt: 'asc' },
      });
      return { replicaIds: rows.map((r) => r.id) };
    },

    /** Ends the operation FAILED with the reason (the deployment's status is left as the undos set it). */
    async failOperation({
      deploymentId,
      operationId,
      reason,
    }: {
      deploymentId: string;
      operationId: string;
      reason: string;
    }): Promise<void> {
      await prisma.$transaction([
        ...endOperation(deploymentId, operationId, 'FAILED', reason),
        prisma.deploymentEvent.create({ data: { deploymentId, kind: 'operation.failed', message: reason } }),
      ]);
    },

    /** Delete, last step: the deployment is DELETED and its operation ends; its rows stay for the usage history. */
    async markDeleted({ deploymentId, operationId }: { deploymentId: string; operationId: string }): Promise<void> {
      const d = await loadDeployment(deploymentId);
      // A pool provider's endpoint goes with the deployment (its replicas stopped in the step before).
      await provider(d.target).release?.(deploymentId, null);
      await prisma.$transaction([
        prisma.deployment.update({
          where: { id: deploymentId },
          data: { status: 'DELETED', statusReason: 'deleted by request', url: null },
        }),
        ...endOperation(deploymentId, operationId, 'SUCCEEDED'),
        prisma.deploymentEvent.create({ data: { deploymentId, kind: 'deployment.deleted', message: 'deployment is DELETED' } }),
        notify(prisma, CHANNEL_ROUTES, deploymentId),
        notify(prisma, CHANNEL_KEYS, deploymentId),
      ]);
    },
  };
}
