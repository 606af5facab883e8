import { CHANNEL_KEYS, notify } from '../src/database/notify';
import type { ActivityContext } from './context';

/**
 * Deployment-scoped keys. The api creates the key hashed and inactive (the plaintext is returned to
 * the user once and never enters workflow history); these activities only switch it on and off.
 */
export function keyActivities({ prisma, event }: ActivityContext) {
  return {
    async issueDeploymentKeys({ deploymentId }: { deploymentId: string }): Promise<void> {
      const { count } = await prisma.apiKey.updateMany({
        where: { deploymentId, issuedAt: null, revokedAt: null },
        data: { issuedAt: new Date() },
      });
      if (count > 0) await event(deploymentId, 'key.issued', `issued ${count} deployment-scoped API key(s)`);
      await notify(prisma, CHANNEL_KEYS, deploymentId);
    },

    async revokeDeploymentKeys({ deploymentId }: { deploymentId: string }): Promise<void> {
      await prisma.apiKey.updateMany({ where: { deploymentId, revokedAt: null }, data: { revokedAt: new Date() } });
      await event(deploymentId, 'key.revoked', 'deployment-scoped API keys revoked');
      await notify(prisma, CHANNEL_KEYS, deploymentId);
    },
  };
}
