// The workspace audit trail: every change to a workspace's settings and keys, with the management token that made it.
import type { Prisma, PrismaClient } from '../database/prisma';

export interface AuditEntry {
  workspaceId: string;
  /** The management token behind the change; null for the system. */
  actorId: string | null;
  kind: string;
  message: string;
  data?: Prisma.InputJsonValue;
}

/** The audit row as a statement, to write in the same transaction as the change it records. */
export const audit = (prisma: PrismaClient | Prisma.TransactionClient, e: AuditEntry) =>
  prisma.auditEvent.create({ data: { workspaceId: e.workspaceId, actorId: e.actorId, kind: e.kind, message: e.message, data: e.data } });
