// `npm start` without a Modal account: the default workspace gets a demo MODAL credential bound to the in-process fake
// control plane (MODAL_FAKE), listed as demo, so a MODAL deploy works on this machine. A real token added through
// addProviderCredential replaces it; nothing in the code changes.
import { Config } from '../config/config';
import { MODAL_DEMO_ACCOUNT } from '../credentials/modal-validator';
import { secretsKey } from '../credentials/secrets-key';
import { last4Of, sealSecret } from '../credentials/store';
import { createPrisma } from '../database/prisma';
import { newId } from '../common/secrets';
import { sealModalAccount } from '../providers/modal';
import { DEFAULT_WORKSPACE_ID } from '../workspaces/workspaces.service';

export const MODAL_DEMO_CREDENTIAL_NAME = 'demo (local fake)';

/** Adds the demo credential to the default workspace once; returns its id. */
export async function ensureModalDemoCredential(config: Config): Promise<string> {
  const prisma = createPrisma(config.DATABASE_URL, 1);
  try {
    const found = await prisma.providerCredential.findFirst({
      where: { workspaceId: DEFAULT_WORKSPACE_ID, target: 'MODAL', accountId: MODAL_DEMO_ACCOUNT, deletedAt: null },
    });
    if (found) return found.id;
    const account = { tokenId: 'ak-demo-local', tokenSecret: 'as-demo-local-fake', environment: 'main' };
    const created = await prisma.providerCredential.create({
      data: {
        id: newId('pc'),
        workspaceId: DEFAULT_WORKSPACE_ID,
        target: 'MODAL',
        name: MODAL_DEMO_CREDENTIAL_NAME,
        sealed: sealSecret(secretsKey(config), sealModalAccount(account)),
        last4: last4Of(account.tokenSecret),
        accountId: MODAL_DEMO_ACCOUNT,
      },
    });
    return created.id;
  } finally {
    await prisma.$disconnect();
  }
}
