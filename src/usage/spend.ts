import type { PrismaClient } from '../database/prisma';

/**
 * What a workspace has spent this calendar month (UTC), USD: tokens from the usage rollups plus warm replica time
 * from the capacity rollups (both written by this folder's recorder and accountant).
 */
export async function monthSpendUsd(prisma: PrismaClient, workspaceId: string, now = new Date()): Promise<number> {
  const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const [row] = await prisma.$queryRaw<Array<{ usd: string | null }>>`
    SELECT (
      COALESCE((SELECT SUM(u."costUsd") FROM "UsageRollup" u JOIN "Deployment" d ON d.id = u."deploymentId"
                WHERE d."workspaceId" = ${workspaceId} AND u.minute >= ${monthStart}), 0)
    + COALESCE((SELECT SUM(c."costUsd") FROM "CapacityRollup" c JOIN "Deployment" d ON d.id = c."deploymentId"
                WHERE d."workspaceId" = ${workspaceId} AND c.minute >= ${monthStart}), 0)
    )::text AS usd`;
  return Number(row?.usd ?? 0);
}
