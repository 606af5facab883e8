import type { PrismaClient } from '../src/database/prisma';
import type { PriceTable } from '../src/domain/pricing';
import { NotFoundError, PlanError } from '../src/domain/errors';
import type { ProviderAdapter, Providers, ReplicaHandle } from '../src/providers/provider';

/** What every activity is built over: plain dependencies, injected once at worker start. */
export interface ActivityDeps {
  prisma: PrismaClient;
  providers: Providers;
  publicBaseUrl: string;
  /** Poll interval of the health and drain waits, ms. */
  healthPollMs?: number;
  /** How long a scale-up waits for new replicas to serve. */
  healthTimeoutSeconds?: number;
  /** How long before a provider's lifetime cap a replica is rotated out (REPLICA_ROTATE_BEFORE_SECONDS). */
  rotateBeforeSeconds?: number;
  /** GPU prices (PRICING_FILE): an optimization run's cost per million tokens. */
  prices?: PriceTable;
}

/** The helpers the activity groups share, over one set of dependencies. */
export function activityContext(deps: ActivityDeps) {
  const { prisma } = deps;

  const event = (deploymentId: string, kind: string, message: string, data?: object) =>
    prisma.deploymentEvent.create({ data: { deploymentId, kind, message, data: data ?? undefined } });

  async function loadDeployment(deploymentId: string) {
    const d = await prisma.deployment.findUnique({
      where: { id: deploymentId },
      include: { workspace: true, pipeline: true, variant: true },
    });
    if (!d) throw new NotFoundError(`deployment ${deploymentId} not found`);
    return d;
  }

  function provider(target: string): ProviderAdapter {
    const p = deps.providers[target as keyof Providers];
    if (!p) throw new PlanError(`target ${target} is not configured on this worker`);
    return p;
  }

  /** Closes an operation and releases the deployment's one-operation-at-a-time lock (statements for $transaction). */
  const endOperation = (deploymentId: string, operationId: string, status: 'SUCCEEDED' | 'FAILED', error?: string) => [
    prisma.operation.updateMany({
      where: { id: operationId, finishedAt: null },
      data: { status, error: error ?? null, finishedAt: new Date() },
    }),
    prisma.deployment.updateMany({ where: { id: deploymentId, activeOperationId: operationId }, data: { activeOperationId: null } }),
  ];

  return {
    deps,
    prisma,
    pollMs: deps.healthPollMs ?? 50,
    healthTimeoutSeconds: deps.healthTimeoutSeconds ?? 300,
    rotateBeforeSeconds: deps.rotateBeforeSeconds ?? 1800,
    event,
    loadDeployment,
    provider,
    endOperation,
  };
}

export type ActivityContext = ReturnType<typeof activityContext>;
export type LoadedDeployment = Awaited<ReturnType<ActivityContext['loadDeployment']>>;

export const handleOf = (r: { id: string; deploymentId: string; providerId: string | null; address: string | null }): ReplicaHandle => ({
  replicaId: r.id,
  deploymentId: r.deploymentId,
  providerId: r.providerId ?? '',
  address: r.address ?? '',
});
