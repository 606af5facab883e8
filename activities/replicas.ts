import { heartbeat, sleep } from '@temporalio/activity';
import { CHANNEL_ROUTES, notify } from '../src/database/notify';
import { planActuation } from '../src/domain/actuation';
import { ReplicaUnhealthyError } from '../src/domain/errors';
import type { ProviderAdapter } from '../src/providers/provider';
import { ActivityContext, handleOf, LoadedDeployment } from './context';

/** Deterministic replica ids make provisioning idempotent across retries. */
export const replicaId = (deploymentId: string, ordinal: number) => `${deploymentId}-r${ordinal}`;

/** What a replica runs: a revision's variant on its GPU. */
export interface ReplicaRevision {
  revisionId: string | null;
  variantId: string;
  gpu: string;
  maxConcurrency: number;
  engine: { quantization: string | null; settings: Record<string, unknown> };
}

/** A variant's engine settings as a replica starts with them. */
export const engineOf = (v: { quantization: string | null; engineConfig: unknown }) => ({
  quantization: v.quantization,
  settings: (v.engineConfig as Record<string, unknown> | null) ?? {},
});

/** The revision the deployment serves now (the one the scaler sizes and the gateways route to). */
export const servingRevision = (d: LoadedDeployment): ReplicaRevision => ({
  revisionId: d.revisionId,
  variantId: d.variantId,
  gpu: d.gpu,
  maxConcurrency: d.variant.maxConcurrency,
  engine: engineOf(d.variant),
});

/** Replica rows of the deployment's serving revision (all of them for a deployment from before revisions). */
export const ofServingRevision = (d: { id: string; revisionId: string | null }) => ({
  deploymentId: d.id,
  ...(d.revisionId ? { revisionId: d.revisionId } : {}),
});

/** The replica steps the activity groups build on: start one, wait for health, move a state with compare-and-set. */
export function replicaSteps(ctx: ActivityContext) {
  const { prisma, event, pollMs } = ctx;

  /** Polls the STARTING replicas (of the deployment, or of one revision) until all serve; marks each READY as it turns healthy. */
  async function waitReady(deploymentId: string, p: ProviderAdapter, timeoutSeconds: number, revisionId?: string): Promise<void> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const pending = await prisma.replica.findMany({ where: { deploymentId, state: 'STARTING', ...(revisionId ? { revisionId } : {}) } });
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
        const detail = p.healthDetail ? await p.healthDetail(handleOf(pending[0])).catch(() => null) : null;
        throw new ReplicaUnhealthyError(
          `replica(s) ${pending.map((r) => r.id).join(', ')} not healthy after ${timeoutSeconds} s${detail ? `: ${detail}` : ''}`,
        );
      }
      heartbeat();
      await sleep(pollMs);
    }
  }

  /** Creates the replica's row (once) and asks the provider to run it (idempotent on the id). */
  async function startReplica(
    d: LoadedDeployment,
    p: ProviderAdapter,
    id: string,
    rev: ReplicaRevision = servingRevision(d),
  ): Promise<void> {
    await prisma.replica.upsert({
      where: { id },
      create: { id, deploymentId: d.id, state: 'STARTING', gpu: rev.gpu, concurrency: rev.maxConcurrency, revisionId: rev.revisionId },
      update: {},
    });
    const h = await p.ensureReplica({
      replicaId: id,
      deploymentId: d.id,
      pipelineId: d.pipelineId,
      variantId: rev.variantId,
      model: d.pipeline.model,
      task: d.pipeline.task,
      gpu: rev.gpu,
      maxConcurrency: rev.maxConcurrency,
      revisionId: rev.revisionId,
      engine: rev.engine,
    });
    await prisma.replica.update({ where: { id }, data: { providerId: h.providerId, address: h.address } });
  }

  /** Moves a replica from one state to another only if it is still in the first; true when it was. */
  const transition = async (
    id: string,
    from: 'STARTING' | 'READY' | 'DRAINING',
    data: Parameters<typeof prisma.replica.updateMany>[0]['data'],
  ) => (await prisma.replica.updateMany({ where: { id, state: from }, data })).count === 1;

  return { waitReady, startReplica, transition };
}

/** Replicas: start, wait healthy, scale, drain and release; every call idempotent on the replica id. */
export function replicaActivities(ctx: ActivityContext) {
  const { prisma, event, loadDeployment, provider, pollMs, healthTimeoutSeconds } = ctx;
  const { waitReady, startReplica, transition } = replicaSteps(ctx);

  return {
    /**
     * The scaler's actuation, step one of two: brings the live replicas (starting or ready) to
     * `desired` and returns at once. Up: draining replicas go back to serving first, then every
     * missing replica is started in parallel. Down: the chosen replicas are marked DRAINING (the
     * gateways stop sending them work on the NOTIFY). The caller then watches each started replica
     * (awaitReplicaReady) and each draining one (drainReplica): the lists name every replica now
     * starting or draining, so a scaler that restarts finds the ones it must watch. Idempotent: a
     * retry recounts.
     */
    async reconcileReplicaCount(input: {
      deploymentId: string;
      desired: number;
      reason: string;
    }): Promise<{ started: string[]; reused: string[]; starting: string[]; draining: string[] }> {
      const { deploymentId, desired } = input;
      const d = await loadDeployment(deploymentId);
      const p = provider(d.target);
      // Only the serving revision is sized: a revision staged beside it (a swap) is the swap's own.
      const all = await prisma.replica.findMany({ where: { ...ofServingRevision(d), state: { in: ['STARTING', 'READY', 'DRAINING'] } } });
      // A replica being rotated out (its replacement is starting or serving) is leaving: the replacement counts instead.
      const replaced = new Set(all.filter((r) => r.replacesId && r.state !== 'DRAINING').map((r) => r.replacesId!));
      const rows = all.filter((r) => !(replaced.has(r.id) && r.state === 'READY'));
      // What the caller must watch: the serving revision's starting replicas, and every draining one (a swap
      // that could not finish draining the revision it left hands those to the scaler this way).
      const watch = async () => {
        const now = await prisma.replica.findMany({
          where: { deploymentId, OR: [{ ...ofServingRevision(d), state: 'STARTING' }, { state: 'DRAINING' }] },
          orderBy: { startedAt: 'asc' },
        });
        const ids = (state: string) => now.filter((r) => r.state === state).map((r) => r.id);
        return { starting: ids('STARTING'), draining: ids('DRAINING') };
      };
      if (d.status === 'STOPPING' || d.status === 'STOPPED' || d.status === 'DELETED') {
        // A lifecycle stop owns the replicas (a count decided just before the scaler paused arrives late): change nothing.
        return { started: [], reused: [], ...(await watch()) };
      }
      const plan = planActuation(
        desired,
        rows.map((r) => ({ id: r.id, state: r.state as 'STARTING' | 'READY' | 'DRAINING', startedAt: r.startedAt.getTime() })),
      );
      const live = rows.length - rows.filter((r) => r.state === 'DRAINING').length;
      const reused: string[] = [];
      for (const id of plan.reuse) {
        const r = rows.find((x) => x.id === id)!;
        if (await transition(id, 'DRAINING', { state: r.readyAt ? 'READY' : 'STARTING' })) reused.push(id);
      }
      // A retry after an attempt that made a row but failed to start its replica (the row has no address): start
      // it now (ensureReplica is idempotent on the id), or it would sit STARTING until its health timeout.
      const unplaced = rows.filter((r) => r.state === 'STARTING' && !r.address && !plan.drain.includes(r.id));
      // Ordinals continue after every replica this deployment ever had; a retry sees the rows it made.
      const first = await prisma.replica.count({ where: { deploymentId } });
      const started = Array.from({ length: plan.start + plan.reuse.length - reused.length }, (_, i) => replicaId(deploymentId, first + i));
      await Promise.all([...unplaced.map((r) => r.id), ...started].map((id) => startReplica(d, p, id)));
      if (plan.drain.length) await prisma.replica.updateMany({ where: { id: { in: plan.drain } }, data: { state: 'DRAINING' } });
      if (reused.length || started.length || plan.drain.length) await notify(prisma, CHANNEL_ROUTES, deploymentId);
      if (reused.length)
        await event(deploymentId, 'scale.reused', `scale-down cancelled: ${reused.length} draining replica(s) back to serving`, {
          replicaIds: reused,
        });
      if (started.length)
        await event(deploymentId, 'scale.up', `${live} -> ${desired}: ${input.reason}`, { replicaIds: started, from: live, to: desired });
      if (plan.drain.length)
        await event(deploymentId, 'scale.down', `${live} -> ${desired}: ${input.reason}`, {
          replicaIds: plan.drain,
          from: live,
          to: desired,
        });
      return { started, reused, ...(await watch()) };
    },

    /**
     * Waits until one started replica serves, then marks it READY and publishes it at once (capacity
     * arrives replica by replica). 'cancelled' when a scale-down took it first. A replica that exits
     * or stays unhealthy past the timeout is stopped and marked FAILED: ReplicaUnhealthyError.
     */
    async awaitReplicaReady(input: { deploymentId: string; replicaId: string; timeoutSeconds?: number }): Promise<'ready' | 'cancelled'> {
      const d = await loadDeployment(input.deploymentId);
      const p = provider(d.target);
      const timeoutSeconds = input.timeoutSeconds ?? healthTimeoutSeconds;
      for (;;) {
        const r = await prisma.replica.findUnique({ where: { id: input.replicaId } });
        if (!r || r.state !== 'STARTING') return r?.state === 'READY' ? 'ready' : 'cancelled';
        const h = await p.health(handleOf(r));
        if (h === 'ready') {
          const now = new Date();
          const coldStartMs = now.getTime() - r.startedAt.getTime();
          if (!(await transition(r.id, 'STARTING', { state: 'READY', readyAt: now, coldStartMs }))) continue;
          await notify(prisma, CHANNEL_ROUTES, input.deploymentId);
          await event(input.deploymentId, 'replica.ready', `replica ${r.id} is ready after ${coldStartMs} ms`);
          return 'ready';
        }
        const late = Date.now() - r.startedAt.getTime() > timeoutSeconds * 1000;
        if (h === 'gone' || late) {
          // Why, asked before the stop takes the evidence away (a pool's throttled or crash-looping workers).
          const detail = p.healthDetail ? await p.healthDetail(handleOf(r)).catch(() => null) : null;
          await p.stopReplica(r.id);
          await transition(r.id, 'STARTING', { state: 'FAILED', stoppedAt: new Date() });
          const why = `${h === 'gone' ? 'exited before it became healthy' : `not healthy after ${timeoutSeconds} s`}${detail ? `: ${detail}` : ''}`;
          await event(input.deploymentId, 'replica.failed', `replica ${r.id} ${why}`);
          throw new ReplicaUnhealthyError(`replica ${r.id} ${why}`);
        }
        heartbeat();
        await sleep(pollMs);
      }
    },

    /**
     * Drains one replica: waits until what it serves has finished (or drainTimeoutMs), then stops
     * it. 'reused' when a scale-up took it back to serving meanwhile; a replica that never served
     * is stopped at once.
     */
    async drainReplica(input: { deploymentId: string; replicaId: string; drainTimeoutMs: number }): Promise<'stopped' | 'reused'> {
      const d = await loadDeployment(input.deploymentId);
      const p = provider(d.target);
      const deadline = Date.now() + input.drainTimeoutMs;
      for (;;) {
        const r = await prisma.replica.findUnique({ where: { id: input.replicaId } });
        if (!r || r.state === 'READY' || r.state === 'STARTING') return 'reused';
        if (r.state !== 'DRAINING') {
          // Stopped by an earlier attempt of this activity: make sure the process is gone too.
          await p.stopReplica(r.id);
          return 'stopped';
        }
        const n = r.readyAt && p.inFlight ? await p.inFlight(handleOf(r)) : 0;
        if (n === 0 || !r.readyAt || Date.now() > deadline) {
          // Compare-and-set: a scale-up that reuses this replica at the same moment wins or loses cleanly.
          if (!(await transition(r.id, 'DRAINING', { state: 'STOPPED', stoppedAt: new Date() }))) continue;
          await p.stopReplica(r.id);
          await event(
            input.deploymentId,
            'replica.drained',
            `replica ${r.id} stopped after draining${n ? ` (${n} request(s) still running at the drain timeout)` : ''}`,
          );
          return 'stopped';
        }
        heartbeat();
        await sleep(pollMs);
      }
    },

    /**
     * Rotation before the provider's lifetime cap ends a replica (Modal: 24 h per Sandbox): each serving replica
     * within `rotateBeforeSeconds` of its end gets a replacement started beside it; once the replacement serves, the
     * old one is marked DRAINING (the gateways stop routing to it at once) and handed to the caller to drain, so
     * capacity never dips and no request is cut. Idempotent: a replacement is found by the row it replaces. Returns
     * what to watch and when to look again (null: never, the provider has no cap or nothing runs).
     */
    async rotateAgedReplicas(input: {
      deploymentId: string;
    }): Promise<{ starting: string[]; draining: string[]; nextCheckAt: number | null }> {
      const d = await loadDeployment(input.deploymentId);
      const p = provider(d.target);
      const lifetime = p.capabilities.maxReplicaLifetimeSeconds;
      if (lifetime === null || d.status !== 'ACTIVE') return { starting: [], draining: [], nextCheckAt: null };
      const margin = Math.min(ctx.rotateBeforeSeconds, lifetime / 2) * 1000;
      const rows = await prisma.replica.findMany({ where: { ...ofServingRevision(d), state: { in: ['STARTING', 'READY'] } } });
      const now = Date.now();
      const dueAt = (r: { startedAt: Date }) => r.startedAt.getTime() + lifetime * 1000 - margin;
      const starting: string[] = [];
      const draining: string[] = [];
      let busy = false;
      for (const old of rows.filter((r) => r.state === 'READY' && dueAt(r) <= now)) {
        const next = rows.find((r) => r.replacesId === old.id);
        if (!next) {
          const first = await prisma.replica.count({ where: { deploymentId: d.id } });
          const id = replicaId(d.id, first);
          await prisma.replica.create({
            data: {
              id,
              deploymentId: d.id,
              state: 'STARTING',
              gpu: d.gpu,
              concurrency: d.variant.maxConcurrency,
              revisionId: d.revisionId,
              replacesId: old.id,
            },
          });
          await startReplica(d, p, id);
          await event(
            d.id,
            'replica.rotating',
            `replica ${old.id} reaches the provider's ${lifetime} s limit soon: replacement ${id} is starting`,
            {
              replicaId: old.id,
              replacementId: id,
            },
          );
          starting.push(id);
          busy = true;
        } else if (next.state === 'STARTING') {
          starting.push(next.id);
          busy = true;
        } else if (await transition(old.id, 'READY', { state: 'DRAINING' })) {
          await notify(prisma, CHANNEL_ROUTES, d.id);
          await event(d.id, 'replica.rotated', `replica ${next.id} serves in place of ${old.id}, which drains and stops`, {
            replicaId: old.id,
            replacementId: next.id,
          });
          draining.push(old.id);
        }
      }
      const upcoming = rows.filter((r) => dueAt(r) > now).map(dueAt);
      const nextCheckAt = busy ? now + Math.max(pollMs, 1000) : upcoming.length ? Math.min(...upcoming) : null;
      return { starting, draining, nextCheckAt };
    },

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
     * Scalers recorded before asynchronous actuation (patch 'scaler-async-actuation') apply a count
     * through this one blocking activity. Brings the deployment to `desired` replicas. Up: start new replicas and
     * wait until they serve, then publish them. Down: mark the newest DRAINING
     * (gateways stop sending them work at once), wait until what they run has
     * finished or drainTimeoutMs passed, then stop them. No stream is cut.
     */
    async applyReplicaCount(input: { deploymentId: string; desired: number; reason: string; drainTimeoutMs: number }): Promise<void> {
      const { deploymentId, desired } = input;
      const d = await loadDeployment(deploymentId);
      const p = provider(d.target);
      const live = await prisma.replica.findMany({
        where: { ...ofServingRevision(d), state: { in: ['STARTING', 'READY'] } },
        orderBy: { startedAt: 'asc' },
      });
      if (desired > live.length) {
        // Ordinals continue after every replica this deployment ever had; a retry sees the rows it made.
        let ordinal = await prisma.replica.count({ where: { deploymentId } });
        const ids: string[] = [];
        for (let i = live.length; i < desired; i++, ordinal++) {
          const id = replicaId(deploymentId, ordinal);
          ids.push(id);
          await startReplica(d, p, id);
        }
        await event(deploymentId, 'scale.up', `${live.length} -> ${desired}: ${input.reason}`, {
          replicaIds: ids,
          from: live.length,
          to: desired,
        });
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
        await event(deploymentId, 'scale.down', `${live.length} -> ${desired}: ${input.reason}`, {
          replicaIds: victims.map((v) => v.id),
          from: live.length,
          to: desired,
        });
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
