import { PlanError } from '../src/domain/errors';
import { planMaxReplicas, PlanName, planViolation, targetConcurrency } from '../src/domain/plans';
import { ScalingPolicy, scalingPolicy } from '../src/domain/scaling';
import { CHANNEL_ROUTES, notify } from '../src/database/notify';
import type { ActivityContext } from './context';

/** The deployment row's lifecycle: plan check, going ACTIVE, ending FAILED. */
export function deploymentActivities(ctx: ActivityContext) {
  const { prisma, deps, event, loadDeployment, endOperation } = ctx;
  return {
    async checkPlan({
      deploymentId,
    }: {
      deploymentId: string;
    }): Promise<{ initialReplicas: number; planMaxReplicas: number; policy: ScalingPolicy }> {
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
          targetConcurrency:
            d.targetConcurrency ?? targetConcurrency(d.pipeline.task, d.variant.maxConcurrency, d.variant.targetConcurrency),
        }),
      };
    },

    /** Publishes the routes and ends the operation ACTIVE, in one transaction: no window where ACTIVE is seen with the operation still running. */
    async publishRoutes({ deploymentId, operationId }: { deploymentId: string; operationId: string }): Promise<{ url: string }> {
      const url = `${deps.publicBaseUrl.replace(/\/$/, '')}/v1`;
      await prisma.$transaction([
        prisma.deployment.update({ where: { id: deploymentId }, data: { url, status: 'ACTIVE', statusReason: null } }),
        // The deploy's revision serves from its first publication on (a start publishes again: its servedFrom stays).
        prisma.revision.updateMany({ where: { deploymentId, status: 'SERVING', servedFrom: null }, data: { servedFrom: new Date() } }),
        ...endOperation(deploymentId, operationId, 'SUCCEEDED'),
        prisma.deploymentEvent.create({ data: { deploymentId, kind: 'routes.published', message: `routes published at ${url}` } }),
        prisma.deploymentEvent.create({ data: { deploymentId, kind: 'deployment.active', message: 'deployment is ACTIVE' } }),
        notify(prisma, CHANNEL_ROUTES, deploymentId),
      ]);
      return { url };
    },

    /** Ends the deployment FAILED with the reason and closes its operation, in one transaction. */
    async markFailed({ deploymentId, operationId, reason }: { deploymentId: string; operationId: string; reason: string }): Promise<void> {
      // A pool provider's endpoint goes with the failed deploy (its replicas were released by the undo before). Not
      // fatal: an endpoint left over is deleted by the next worker's reconciliation, as no revision needs it.
      const d = await loadDeployment(deploymentId);
      await Promise.resolve(deps.providers[d.target]?.release?.(deploymentId, null)).catch((e: Error) =>
        event(
          deploymentId,
          'provider.release_failed',
          `could not free the provider's resources now (${e.message}); the next worker start will`,
        ),
      );
      await prisma.$transaction([
        prisma.deployment.update({ where: { id: deploymentId }, data: { status: 'FAILED', statusReason: reason, url: null } }),
        // A deploy's revision that never served failed with it; one that served stays what it was.
        prisma.revision.updateMany({ where: { deploymentId, status: 'SERVING', servedFrom: null }, data: { status: 'FAILED', reason } }),
        ...endOperation(deploymentId, operationId, 'FAILED', reason),
        prisma.deploymentEvent.create({ data: { deploymentId, kind: 'deployment.failed', message: reason } }),
      ]);
    },
  };
}
