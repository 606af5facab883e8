import { heartbeat, sleep } from '@temporalio/activity';
import { CHANNEL_ROUTES, notify } from '../src/database/notify';
import { ReplicaUnhealthyError } from '../src/domain/errors';
import type { ProviderAdapter } from '../src/providers/provider';
import { ActivityContext, handleOf, LoadedDeployment } from './context';

/** Deterministic replica ids make provisioning idempotent across retries. */
export const replicaId = (deploymentId: string, ordinal: number) => `${deploymentId}-r${ordinal}`;

/** Replicas: start, wait healthy, scale, drain and release; every call idempotent on the replica id. */
export function replicaActivities(ctx: ActivityContext) {
  const { prisma, event, loadDeployment, provider, pollMs, healthTimeoutSeconds } = ctx;

  /** Polls the deployment's STARTING replicas until all serve; marks each READY as it turns healthy. */
  async function waitReady(deploymentId: string, p: ProviderAdapter, timeoutSeconds: number): Promise<void> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const pending = await prisma.replica.findMany({ where: { deploymentId, state: 'STARTING' } });
      if (pending.length === 0) return;
      for (const r of pending) {
        const h = await p.health(handleOf(r));
        if (h === 'ready') {
          const now = new Date();
          await prisma.replica.update({
            where: { id: r.id },
            data: { state: 'READY', readyAt: now, coldStartMs: now.getTime() - r.startedAt.getTime() },
          });
          await event(deploymentId, 'replica.ready', `replica ${r.id} is ready after ${now.getTime() - r.startedAt.getTime()} ms`);
        } else if (h === 'gone') {
          await prisma.replica.update({ where: { id: r.id }, data: { state: 'FAILED', stoppedAt: new Date() } });
          throw new ReplicaUnhealthyError(`replica ${r.id} exited before it became healthy`);
        }
      }
      if (Date.now() > deadline) {
        throw new ReplicaUnhealthyError(`replica(s) ${pending.map((r) => r.id).join(', ')} not healthy after ${timeoutSeconds} s`);
      }
      heartbeat();
      await sleep(pollMs);
    }
  }

  /** Creates the replica's row (once) and asks the provider to run it (idempotent on the id). */
  async function startReplica(d: LoadedDeployment, p: ProviderAdapter, id: string): Promise<void> {
    await prisma.replica.upsert({
      where: { id },
      create: { id, deploymentId: d.id, state: 'STARTING', gpu: d.gpu, concurrency: d.variant.maxConcurrency },
      update: {},
    });
    const h = await p.ensureReplica({
      replicaId: id,
      deploymentId: d.id,
      pipelineId: d.pipelineId,
      variantId: d.variantId,
      model: d.pipeline.model,
      task: d.pipeline.task,
      gpu: d.gpu,
      maxConcurrency: d.variant.maxConcurrency,
    });
    await prisma.replica.update({ where: { id }, data: { providerId: h.providerId, address: h.address } });
  }

  return {
    async provisionReplicas({ deploymentId, count }: { deploymentId: string; count: number }): Promise<{ replicaIds: string[] }> {
      const d = await loadDeployment(deploymentId);
      const p = provider(d.target);
      const ids: string[] = [];
      for (let i = 0; i < count; i++) {
        const id = replicaId(deploymentId, i);
        ids.push(id);
        await startReplica(d, p, id);
      }
      await event(deploymentId, 'replicas.provisioning', `starting ${count} replica(s) on ${d.target} (${d.gpu})`, { replicaIds: ids });
      return { replicaIds: ids };
    },

    async waitReplicasReady({ deploymentId, timeoutSeconds }: { deploymentId: string; timeoutSeconds: number }): Promise<void> {
      const d = await loadDeployment(deploymentId);
      await waitReady(deploymentId, provider(d.target), timeoutSeconds);
    },

    /**
     * Brings the deployment to `desired` replicas. Up: start new replicas and
     * wait until they serve, then publish them. Down: mark the newest DRAINING
     * (gateways stop sending them work at once), wait until what they run has
     * finished or drainTimeoutMs passed, then stop them. No stream is cut.
     */
    async applyReplicaCount(input: { deploymentId: string; desired: number; reason: string; drainTimeoutMs: number }): Promise<void> {
      const { deploymentId, desired } = input;
      const d = await loadDeployment(deploymentId);
      const p = provider(d.target);
      const live = await prisma.replica.findMany({ where: { deploymentId, state: { in: ['STARTING', 'READY'] } }, orderBy: { startedAt: 'asc' } });
      if (desired > live.length) {
        // Ordinals continue after every replica this deployment ever had; a retry sees the rows it made.
        let ordinal = await prisma.replica.count({ where: { deploymentId } });
        const ids: string[] = [];
        for (let i = live.length; i < desired; i++, ordinal++) {
          const id = replicaId(deploymentId, ordinal);
          ids.push(id);
          await startReplica(d, p, id);
        }
        await event(deploymentId, 'scale.up', `${live.length} -> ${desired}: ${input.reason}`, { replicaIds: ids });
        await waitReady(deploymentId, p, healthTimeoutSeconds);
        await notify(prisma, CHANNEL_ROUTES, deploymentId);
        return;
      }
      if (desired < live.length) {
        // Starting replicas go first (they serve nothing), then the newest.
        const victims = [...live]
          .sort((a, b) => (a.state === b.state ? b.startedAt.getTime() - a.startedAt.getTime() : a.state === 'STARTING' ? -1 : 1))
          .slice(0, live.length - desired);
        await prisma.replica.updateMany({ where: { id: { in: victims.map((v) => v.id) } }, data: { state: 'DRAINING' } });
        await notify(prisma, CHANNEL_ROUTES, deploymentId);
        await event(deploymentId, 'scale.down', `${live.length} -> ${desired}: ${input.reason}`, { replicaIds: victims.map((v) => v.id) });
        const deadline = Date.now() + input.drainTimeoutMs;
        for (const v of victims) {
          // The gateways' route caches drop the replica on NOTIFY; give in-flight requests time to finish.
          for (;;) {
            const n = p.inFlight ? await p.inFlight(handleOf(v)) : null;
            if (n === 0 || Date.now() > deadline) break;
            heartbeat();
            await sleep(pollMs);
          }
          await p.stopReplica(v.id);
          await prisma.replica.update({ where: { id: v.id }, data: { state: 'STOPPED', stoppedAt: new Date() } });
        }
        await event(deploymentId, 'replicas.drained', `stopped ${victims.length} replica(s) after draining`);
      }
    },

    async releaseReplicas({ deploymentId, reason }: { deploymentId: string; reason: string }): Promise<void> {
      const d = await loadDeployment(deploymentId);
      const p = provider(d.target);
      const live = await prisma.replica.findMany({ where: { deploymentId, state: { notIn: ['STOPPED'] } } });
      for (const r of live) {
        await p.stopReplica(r.id);
        await prisma.replica.update({
          where: { id: r.id },
          data: { state: r.state === 'FAILED' ? 'FAILED' : 'STOPPED', stoppedAt: r.stoppedAt ?? new Date() },
        });
      }
      if (live.length) await event(deploymentId, 'replicas.released', `released ${live.length} replica(s): ${reason}`);
      await notify(prisma, CHANNEL_ROUTES, deploymentId);
    },
  };
}
