// `npm start` without a cluster: the fake Kubernetes API server (./fake.ts) on this machine, and a demo CUSTOM
// credential in the default workspace that seals a kubeconfig of it, listed as demo, so a CUSTOM deploy on Kubernetes
// works here. A real kubeconfig added as a credential replaces it; nothing in the code changes.
import { randomBytes } from 'node:crypto';
import type { Config } from '../../config/config';
import { newId } from '../../common/secrets';
import { KUBERNETES_DEMO_ACCOUNT } from '../../credentials/modal-validator';
import { secretsKey } from '../../credentials/secrets-key';
import { last4Of, sealSecret } from '../../credentials/store';
import { createPrisma } from '../../database/prisma';
import { DEFAULT_WORKSPACE_ID } from '../../workspaces/workspaces.service';
import { kubernetesAccountOf, sealKubernetesAccount } from './account';
import { ALL, KubernetesFake, startKubernetesFake } from './fake';

export const KUBERNETES_DEMO_CREDENTIAL_NAME = 'demo cluster (local fake Kubernetes)';
const NAMESPACE = 'infercp-demo';

/** Starts the fake cluster and points the default workspace's demo Kubernetes credential at it (a fresh token each run). */
export async function startKubernetesDemo(config: Config): Promise<{ fake: KubernetesFake; credentialId: string }> {
  const token = `demo-${randomBytes(18).toString('base64url')}`;
  const fake = await startKubernetesFake({
    users: [{ token, name: `system:serviceaccount:${NAMESPACE}:infercp`, rules: ALL }],
    namespaces: [NAMESPACE],
    gpus: config.KUBERNETES_DEMO_GPUS,
    coldStartMs: config.SIM_COLD_START_MS,
    ttftMs: config.SIM_TTFT_MS,
    itlMs: config.SIM_ITL_MS,
  });
  const account = kubernetesAccountOf({ kubeconfig: fake.kubeconfig(token, NAMESPACE), namespace: NAMESPACE });
  const prisma = createPrisma(config.DATABASE_URL, 1);
  try {
    const data = { sealed: sealSecret(secretsKey(config), sealKubernetesAccount(account)), last4: last4Of(NAMESPACE) };
    const found = await prisma.providerCredential.findFirst({
      where: { workspaceId: DEFAULT_WORKSPACE_ID, target: 'CUSTOM', accountId: KUBERNETES_DEMO_ACCOUNT, deletedAt: null },
    });
    if (found) {
      await prisma.providerCredential.update({ where: { id: found.id }, data });
      return { fake, credentialId: found.id };
    }
    const id = newId('pc');
    await prisma.providerCredential.create({
      data: {
        id,
        workspaceId: DEFAULT_WORKSPACE_ID,
        target: 'CUSTOM',
        name: KUBERNETES_DEMO_CREDENTIAL_NAME,
        accountId: KUBERNETES_DEMO_ACCOUNT,
        ...data,
      },
    });
    return { fake, credentialId: id };
  } catch (e) {
    await fake.stop();
    throw e;
  } finally {
    await prisma.$disconnect();
  }
}
