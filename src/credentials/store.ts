// Sealing and reading provider credentials. The worker's activities read a key by credential id through
// readCredentialSecret, so that the key itself never enters a workflow's input or Temporal history.
import { createHmac } from 'node:crypto';
import { decrypt, encrypt } from '../common/secrets';
import type { Prisma, PrismaClient, ProviderCredential } from '../database/prisma';
import { notFound, NotFoundError } from '../domain/errors';

/** The sealed form stored in ProviderCredential.sealed (AES-256-GCM, see src/common/secrets.ts). */
export const sealSecret = (key: Buffer, plaintext: string): string => encrypt(key, plaintext);

/** How a key is shown: its last four characters after an ellipsis ("…a1b2"). */
export const last4Of = (plaintext: string): string => plaintext.slice(-4);

/**
 * The plaintext key of a credential, for a provider call in an activity. Throws NotFoundError (a permanent
 * activity failure) when the credential is missing or deleted. A key that does not decrypt (SECRETS_KEY changed,
 * or differs between hosts) is an Error naming the credential, never the key.
 */
export async function readCredentialSecret(prisma: PrismaClient, key: Buffer, credentialId: string): Promise<string> {
  const row = await prisma.providerCredential.findUnique({ where: { id: credentialId }, select: { sealed: true, deletedAt: true } });
  if (!row || row.deletedAt || !row.sealed) {
    throw new NotFoundError(`provider credential ${credentialId} ${row ? 'was deleted' : 'not found'}`);
  }
  try {
    return decrypt(key, row.sealed);
  } catch {
    throw new Error(
      `provider credential ${credentialId} does not decrypt with this host's SECRETS_KEY: every api and worker host must share the same SECRETS_KEY`,
    );
  }
}

/**
 * The workspace's live credential, locked FOR UPDATE until the transaction ends; NOT_FOUND otherwise. A deploy
 * naming it and its deletion take this lock, so a deployment never ends up on a deleted credential.
 */
export async function lockCredential(tx: Prisma.TransactionClient, workspaceId: string, id: string): Promise<ProviderCredential> {
  const rows = await tx.$queryRaw<Array<{ id: string }>>`
    SELECT id FROM "ProviderCredential" WHERE id = ${id} AND "workspaceId" = ${workspaceId} AND "deletedAt" IS NULL FOR UPDATE`;
  if (!rows.length) throw notFound('provider credential', id);
  return tx.providerCredential.findUniqueOrThrow({ where: { id } });
}

/**
 * The key one replica's server requires (a Modal Sandbox's vLLM --api-key, whose tunnel is public): an HMAC of the
 * replica id under the secrets key, so the worker that starts the replica and every gateway that routes to it compute
 * the same key without storing it. Never logged, never in workflow history.
 */
export const replicaKey = (secretsKey: Buffer, replicaId: string): string =>
  `rk-${createHmac('sha256', secretsKey).update(`modal-replica:${replicaId}`).digest('base64url')}`;
