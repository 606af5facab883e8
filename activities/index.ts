import { heartbeat, sleep } from '@temporalio/activity';
import type { PrismaClient } from '../src/database/prisma';
import { planMaxReplicas, PlanName, planViolation, targetConcurrency } from '../src/domain/plans';
import { ScalingPolicy, scalingPolicy } from '../src/domain/scaling';
import type { ProviderAdapter, ReplicaHandle } from '../src/providers/provider';

/**
 * Activity factory: plain async functions over injected dependencies. Every
 * activity is idempotent, so Temporal may retry or replay it freely.
 */
export interface ActivityDeps {
  prisma: PrismaClient;
  providers: Partial<Record<'LOCAL' | 'RUNPOD' | 'MODAL' | 'CUSTOM', ProviderAdapter>>;
  publicBaseUrl: string;
  /** Poll interval of the health and drain waits, ms. */
  healthPollMs?: number;
  /** How long a scale-up waits for new replicas to serve. */
  healthTimeoutSeconds?: number;
}

// Error names become ApplicationFailure types; the permanent ones are listed
// in the workflows' nonRetryableErrorTypes.
export class PlanError extends Error {
  override name = 'PlanError';
}
export class NotFoundError extends Error {
  override name = 'NotFoundError';
}
export class ReplicaUnhealthyError extends Error {
  override name = 'ReplicaUnhealthyError';
}

export const CHANNEL_ROUTES = 'infercp_routes';
export const CHANNEL_KEYS = 'infercp_keys';

/** Deterministic replica ids make provisioning idempotent across retries. */
export const replicaId = (deploymentId: string, ordinal: number) => `${deploymentId}-r${ordinal}`;

export function createActivities(deps: ActivityDeps) {
  const { prisma } = deps;
  const pollMs = deps.healthPollMs ?? 50;
  const healthTimeoutSeconds = deps.healthTimeoutSeconds ?? 300;

  const event = (deploymentId: string, kind: string, message: string, data?: object) =>
    prisma.deploymentEvent.create({ data: { deploymentId, kind, message, data: data ?? undefined } });

  const notify = (channel: string, payload: string) => prisma.$executeRaw`SELECT pg_notify(${channel}, ${payload})`;

  async function loadDeployment(deploymentId: string) {
    const d = await prisma.deployment.findUnique({
      where: { id: deploymentId },
      include: { workspace: true, pipeline: true, variant: true },
    });
    if (!d) throw new NotFoundError(`deployment ${deploymentId} not found`);
    return d;
  }

  /** Closes an operation and releases the deployment's one-operation-at-a-time lock. */
  const endOperation = (deploymentId: string, operationId: string, status: 'SUCCEEDED' | 'FAILED', error?: string) => [
    prisma.operation.updateMany({
      where: { id: operationId, finishedAt: null },
      data: { status, error: error ?? null, finishedAt: new Date() },
    }),
    prisma.deployment.updateMany({ where: { id: deploymentId, activeOperationId: operationId }, data: { activeOperationId: null } }),
  ];

  function provider(target: string): ProviderAdapter {
    const p = deps.providers[target as keyof ActivityDeps['providers']];
    if (!p) throw new PlanError(`target ${target} is not configured on this worker`);
    return p;
  }

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

  type LoadedDeployment = Awaited<ReturnType<typeof loadDeployment>>;

  /** Creates the replica's row (once) and asks the provider to run it (idempotent on the id). */
  async function startReplica(d: LoadedDeployment, p: ProviderAdapter, id: string): Promise<void> {
    await prisma.replica.upsert({
      where: { id },
      create: { id, deploymentId: d.id, state: 'STARTING', gpu: d.gpu, concurrency: d.variant.maxConcurrency },
      update: {},
    });
    const h = await p.ensureReplica({
      replicaId: id, deploymentId: d.id, pipelineId: d.pipelineId, variantId: d.variantId, model: d.pipeline.model,
      task: d.pipeline.task, gpu: d.gpu, maxConcurrency: d.variant.maxConcurrency,
    });
    await prisma.replica.update({ where: { id }, data: { providerId: h.providerId, address: h.address } });
  }

  const handleOf = (r: { id: string; deploymentId: string; providerId: string | null; address: string | null }): ReplicaHandle => ({
    replicaId: r.id,
    deploymentId: r.deploymentId,
    providerId: r.providerId ?? '',
    address: r.address ?? '',
  });

  return {
    async checkPlan({ deploymentId }: { deploymentId: string }): Promise<{ initialReplicas: number; planMaxReplicas: number; policy: ScalingPolicy }> {
      const d = await loadDeployment(deploymentId);
      const plan = d.workspace.plan as PlanName;
      const violation = planViolation(plan, d.mode, d.maxReplicas, d.workspace.maxReplicas);
      if (violation) throw new PlanError(violation.message);
      const cap = planMaxReplicas(plan, d.workspace.maxReplicas);
      if (!deps.providers[d.target]) throw new PlanError(`target ${d.target} is not configured on this worker`);
      await prisma.deployment.update({ where: { id: deploymentId }, data: { status: 'PROVISIONING' } });
      await event(deploymentId, 'plan.checked', `plan ${plan} allows ${d.mode} with up to ${cap} replicas`);
      // A Flex deployment with min 0 still proves one replica healthy before it is ACTIVE;
      // the scaler idles it down later.
      return {
        initialReplicas: Math.max(1, d.minReplicas),
        planMaxReplicas: cap,
        policy: scalingPolicy({
          ...d,
          targetConcurrency: d.targetConcurrency ?? targetConcurrency(d.pipeline.task, d.variant.maxConcurrency, d.variant.targetConcurrency),
        }),
      };
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
        await notify(CHANNEL_ROUTES, deploymentId);
        return;
      }
      if (desired < live.length) {
        // Starting replicas go first (they serve nothing), then the newest.
        const victims = [...live].sort((a, b) => (a.state === b.state ? b.startedAt.getTime() - a.startedAt.getTime() : a.state === 'STARTING' ? -1 : 1)).slice(0, live.length - desired);
        await prisma.replica.updateMany({ where: { id: { in: victims.map((v) => v.id) } }, data: { state: 'DRAINING' } });
        await notify(CHANNEL_ROUTES, deploymentId);
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

    async issueDeploymentKeys({ deploymentId }: { deploymentId: string }): Promise<void> {
      const { count } = await prisma.apiKey.updateMany({
        where: { deploymentId, issuedAt: null, revokedAt: null },
        data: { issuedAt: new Date() },
      });
      if (count > 0) await event(deploymentId, 'key.issued', `issued ${count} deployment-scoped API key(s)`);
      await notify(CHANNEL_KEYS, deploymentId);
    },

    async revokeDeploymentKeys({ deploymentId }: { deploymentId: string }): Promise<void> {
      await prisma.apiKey.updateMany({ where: { deploymentId, revokedAt: null }, data: { revokedAt: new Date() } });
      await event(deploymentId, 'key.revoked', 'deployment-scoped API keys revoked');
      await notify(CHANNEL_KEYS, deploymentId);
    },

    /** Publishes the routes and ends the operation ACTIVE, in one transaction: no window where ACTIVE is seen with the operation still running. */
    async publishRoutes({ deploymentId, operationId }: { deploymentId: string; operationId: string }): Promise<{ url: string }> {
      const url = `${deps.publicBaseUrl.replace(/\/$/, '')}/v1`;
      await prisma.$transaction([
        prisma.deployment.update({ where: { id: deploymentId }, data: { url, status: 'ACTIVE', statusReason: null } }),
        ...endOperation(deploymentId, operationId, 'SUCCEEDED'),
        prisma.deploymentEvent.create({ data: { deploymentId, kind: 'routes.published', message: `routes published at ${url}` } }),
        prisma.deploymentEvent.create({ data: { deploymentId, kind: 'deployment.active', message: 'deployment is ACTIVE' } }),
        prisma.$executeRaw`SELECT pg_notify(${CHANNEL_ROUTES}, ${deploymentId})`,
      ]);
      return { url };
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
      await notify(CHANNEL_ROUTES, deploymentId);
    },

    /** Ends the deployment FAILED with the reason and closes its operation, in one transaction. */
    async markFailed({ deploymentId, operationId, reason }: { deploymentId: string; operationId: string; reason: string }): Promise<void> {
      await prisma.$transaction([
        prisma.deployment.update({ where: { id: deploymentId }, data: { status: 'FAILED', statusReason: reason, url: null } }),
        ...endOperation(deploymentId, operationId, 'FAILED', reason),
        prisma.deploymentEvent.create({ data: { deploymentId, kind: 'deployment.failed', message: reason } }),
      ]);
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
