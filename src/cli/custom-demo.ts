// `npm start` without GPUs of one's own: a "bare box" on this machine (the replica simulator behind an API key, as the
// pipelineBundle's serve.sh runs a real engine) and a demo CUSTOM credential in the default workspace that registers
// it, listed as demo, so a CUSTOM deploy works here. Registering real servers replaces it; nothing in the code changes.
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { Config } from '../config/config';
import { CUSTOM_DEMO_ACCOUNT } from '../credentials/modal-validator';
import { secretsKey } from '../credentials/secrets-key';
import { last4Of, sealSecret } from '../credentials/store';
import { newId } from '../common/secrets';
import { createPrisma } from '../database/prisma';
import { sealCustomEndpoints } from '../providers/custom/endpoints';
import { LocalProvider } from '../providers/local';
import { DEFAULT_WORKSPACE_ID } from '../workspaces/workspaces.service';

export const CUSTOM_DEMO_CREDENTIAL_NAME = 'demo box (local simulator)';

/** The demo box's processes, under <DATA_DIR>/custom-demo. */
export const customDemoBoxes = (config: Pick<Config, 'DATA_DIR'>, simulatorArgs: string[] = []) =>
  new LocalProvider({
    stateDir: resolve(config.DATA_DIR, 'custom-demo'),
    cacheDir: resolve(config.DATA_DIR, 'weights'),
    command: '',
    simulatorArgs,
  });

/** Starts the demo box (model sim/tiny-chat) and points the default workspace's demo CUSTOM credential at it; returns the credential id and the box's URL. */
export async function startCustomDemo(config: Config): Promise<{ credentialId: string; url: string }> {
  const apiKey = `bx_${randomBytes(18).toString('base64url')}`;
  const boxes = customDemoBoxes(config, [
    `--cold-start-ms ${config.SIM_COLD_START_MS}`,
    `--warm-start-ms ${config.SIM_WARM_START_MS}`,
    `--ttft-ms ${config.SIM_TTFT_MS}`,
    `--itl-ms ${config.SIM_ITL_MS}`,
    `--api-key ${apiKey}`,
  ]);
  // A box left by an earlier run had another key: start afresh.
  await boxes.stopAll();
  const box = await boxes.ensureReplica({
    replicaId: 'custom-demo-box',
    deploymentId: 'custom-demo',
    pipelineId: 'custom-demo',
    variantId: 'default',
    model: 'sim/tiny-chat',
    task: 'CHAT',
    gpu: 'sim',
    maxConcurrency: 30,
    revisionId: null,
  });
  const prisma = createPrisma(config.DATABASE_URL, 1);
  try {
    const data = {
      sealed: sealSecret(secretsKey(config), sealCustomEndpoints([{ url: box.address, apiKey }])),
      last4: last4Of(apiKey),
    };
    const found = await prisma.providerCredential.findFirst({
      where: { workspaceId: DEFAULT_WORKSPACE_ID, target: 'CUSTOM', accountId: CUSTOM_DEMO_ACCOUNT, deletedAt: null },
    });
    if (found) {
      await prisma.providerCredential.update({ where: { id: found.id }, data });
      return { credentialId: found.id, url: box.address };
    }
    const created = await prisma.providerCredential.create({
      data: {
        id: newId('pc'),
        workspaceId: DEFAULT_WORKSPACE_ID,
        target: 'CUSTOM',
        name: CUSTOM_DEMO_CREDENTIAL_NAME,
        accountId: CUSTOM_DEMO_ACCOUNT,
        ...data,
      },
    });
    return { credentialId: created.id, url: box.address };
  } finally {
    await prisma.$disconnect();
  }
}
