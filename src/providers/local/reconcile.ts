import type { Logger } from 'pino';
import type { PrismaClient } from '../../database/prisma';
import type { ProviderAdapter } from '../provider';

/**
 * Replicas outlive a worker restart. At boot: replicas the database still wants
 * are adopted as they are; processes nobody wants are stopped; replicas that
 * died while the worker was away are marked FAILED (the scaler replaces them).
 */
export async function reconcileReplicas(
  prisma: PrismaClient,
  provider: ProviderAdapter,
  log: Logger,
): Promise<{ adopted: number; reaped: number; lost: number }> {
  const running = await provider.listReplicas();
  const rows = await prisma.replica.findMany({
    where: { deployment: { target: provider.target }, state: { in: ['STARTING', 'READY', 'DRAINING'] } },
    include: { deployment: { select: { status: true } } },
  });
  const wanted = new Map(rows.filter((r) => ['PENDING', 'PROVISIONING', 'ACTIVE'].includes(r.deployment.status)).map((r) => [r.id, r]));
  // An optimization run's candidate (deployment run:<runId>) is wanted while its run is in progress.
  const runIds = [...new Set(running.filter((h) => h.deploymentId.startsWith('run:')).map((h) => h.deploymentId.slice(4)))];
  const measuring = new Set(
    runIds.length
      ? (await prisma.optimizationRun.findMany({ where: { id: { in: runIds }, status: { in: ['PENDING', 'RUNNING'] } } })).map(
          (r) => `run:${r.id}`,
        )
      : [],
  );
  let adopted = 0;
  let reaped = 0;
  let lost = 0;
  for (const h of running) {
    if (wanted.has(h.replicaId) || measuring.has(h.deploymentId)) adopted++;
    else {
      await provider.stopReplica(h.replicaId);
      reaped++;
    }
  }
  const alive = new Set(running.map((h) => h.replicaId));
  for (const r of rows) {
    if (alive.has(r.id) && wanted.has(r.id)) continue;
    await prisma.replica.update({ where: { id: r.id }, data: { state: wanted.has(r.id) ? 'FAILED' : 'STOPPED', stoppedAt: new Date() } });
    if (wanted.has(r.id)) {
      lost++;
      await prisma.deploymentEvent.create({
        data: { deploymentId: r.deploymentId, kind: 'replica.lost', message: `replica ${r.id} was gone when the worker started` },
      });
    }
  }
  if (adopted || reaped || lost) log.info({ target: provider.target, adopted, reaped, lost }, 'reconciled replicas');
  return { adopted, reaped, lost };
}
