// The CUSTOM target's Kubernetes mode: a CUSTOM credential that seals a kubeconfig and a namespace runs each revision
// as a Deployment + Service in the user's cluster (KubernetesPools under PooledReplicas). The CUSTOM module
// (src/providers/custom) dispatches a deployment here or to the bare boxes by its credential's kind.
import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import type { Config } from '../../config/config';
import { decrypt } from '../../common/secrets';
import { readCredentialSecret, sealSecret } from '../../credentials/store';
import type { PrismaClient } from '../../database/prisma';
import { PooledReplicas } from '../pool';
import type { ProviderDeps } from '../provider';
import { KubernetesAccount, kubernetesAccountIn } from './account';
import { KubernetesPools } from './kubernetes.provider';

export * from './account';
export { KubernetesPools } from './kubernetes.provider';
export type { KubernetesPoolsOptions } from './kubernetes.provider';
export { kubeFailure, poolObjectName, poolStatusOf } from './mapping';

/**
 * The key a pool's server requires: an HMAC of the credential and pool name under the secrets key, so a retried
 * create writes the same Secret. Never logged; the gateway reads it from the credential's sealed pools.
 */
export const kubernetesPoolKey = (secretsKey: Buffer, credentialId: string, poolName: string): string =>
  `pk-${createHmac('sha256', secretsKey).update(`kubernetes-pool:${credentialId}:${poolName}`).digest('base64url')}`;

/**
 * Records (apiKey) or forgets (null) a pool's URL in the credential's sealed JSON, where the gateway reads a CUSTOM
 * credential's upstream keys (parseCustomEndpoints). Row-locked, so pools of one credential made at once all land.
 */
export async function recordKubernetesPool(
  prisma: PrismaClient,
  secretsKey: Buffer,
  credentialId: string,
  url: string,
  apiKey: string | null,
): Promise<void> {
  await prisma.$transaction(async (tx) => {
    const rows = await tx.$queryRaw<Array<{ sealed: string | null }>>`
      SELECT sealed FROM "ProviderCredential" WHERE id = ${credentialId} AND "deletedAt" IS NULL FOR UPDATE`;
    if (!rows[0]?.sealed) return;
    const plaintext = decrypt(secretsKey, rows[0].sealed);
    const account = kubernetesAccountIn(plaintext);
    if (!account) return;
    const others = (account.pools ?? []).filter((p) => p.url !== url);
    const pools = apiKey ? [...others, { url, apiKey }] : others;
    if (JSON.stringify(pools) === JSON.stringify(account.pools ?? [])) return;
    await tx.providerCredential.update({
      where: { id: credentialId },
      data: { sealed: sealSecret(secretsKey, JSON.stringify({ kubernetes: { ...account, pools } })) },
    });
  });
}

export interface KubernetesModeOptions {
  secretsKey: () => Buffer;
  /** Overrides the per-pool key (tests that send one key to every pool). */
  poolKey?: (credentialId: string, poolName: string) => string;
}

/** The Kubernetes mode as configured: PooledReplicas over the pools of every Kubernetes CUSTOM credential. */
export function kubernetesMode(config: Config, deps: ProviderDeps, o: KubernetesModeOptions): PooledReplicas {
  // A credential's kubeconfig never changes (CUSTOM credentials are not rotated); the pools in its JSON do, and are
  // not read from here. A short TTL still notices a deleted credential.
  const accounts = new LRUCache<string, { a: KubernetesAccount | null }>({ max: 1000, ttl: 30_000 });
  const pools = new KubernetesPools({
    accountOf: async (credentialId) => {
      const hit = accounts.get(credentialId);
      if (hit) return hit.a;
      const a = kubernetesAccountIn(await readCredentialSecret(deps.prisma, o.secretsKey(), credentialId));
      accounts.set(credentialId, { a });
      return a;
    },
    poolKey: o.poolKey ?? ((credentialId, name) => kubernetesPoolKey(o.secretsKey(), credentialId, name)),
    recordPool: (credentialId, url, apiKey) => recordKubernetesPool(deps.prisma, o.secretsKey(), credentialId, url, apiKey),
    image: config.KUBERNETES_IMAGE,
    addressTimeoutMs: config.KUBERNETES_ADDRESS_TIMEOUT_MS,
  });
  return new PooledReplicas(pools, deps.prisma, deps.log, { minResizeIntervalMs: config.KUBERNETES_MIN_SCALE_INTERVAL_MS });
}

/** Live replica states. */
const LIVE = ['STARTING', 'READY', 'DRAINING'] as const;

/**
 * At worker start, for the Kubernetes CUSTOM deployments: rows whose pool is gone are marked FAILED (the scaler
 * replaces them) or, when no longer wanted, STOPPED; each pool is held to its revision's live slots again (a resize
 * lost to a crash); our Deployments (found by label) that no revision needs any more are deleted.
 */
export async function reconcileKubernetes(
  prisma: PrismaClient,
  pooled: PooledReplicas,
  isKubernetes: (credentialId: string) => Promise<boolean>,
  log: Logger,
): Promise<{ adopted: number; lost: number; reaped: number; restored: number }> {
  const pools = pooled.pool as KubernetesPools;
  const deployments = await prisma.deployment.findMany({
    where: { target: 'CUSTOM', credentialId: { not: null } },
    select: { id: true, status: true, credentialId: true },
  });
  const kube = new Map<string, boolean>();
  for (const d of deployments)
    if (!kube.has(d.credentialId!)) kube.set(d.credentialId!, await isKubernetes(d.credentialId!).catch(() => false));
  const mine = deployments.filter((d) => kube.get(d.credentialId!));
  const byId = new Map(mine.map((d) => [d.id, d]));
  const rows = await prisma.replica.findMany({ where: { deploymentId: { in: [...byId.keys()] }, state: { in: [...LIVE] } } });
  const alive = new Set((await pooled.listReplicas().catch(() => [])).map((h) => h.replicaId));
  let adopted = 0;
  let lost = 0;
  for (const r of rows) {
    const wanted = ['PENDING', 'PROVISIONING', 'ACTIVE'].includes(byId.get(r.deploymentId)!.status);
    if (wanted && alive.has(r.id)) {
      adopted++;
      continue;
    }
    if (!wanted && alive.has(r.id)) await pooled.stopReplica(r.id).catch(() => undefined);
    await prisma.replica.update({ where: { id: r.id }, data: { state: wanted ? 'FAILED' : 'STOPPED', stoppedAt: new Date() } });
    if (wanted) {
      lost++;
      await prisma.deploymentEvent.create({
        data: { deploymentId: r.deploymentId, kind: 'replica.lost', message: `replica ${r.id} was gone when the worker started` },
      });
    }
  }
  // Every revision that may have a pool: serving or staged of a deployment not deleted, or with live slots.
  const revisions = await prisma.revision.findMany({
    where: {
      deploymentId: { in: [...byId.keys()] },
      OR: [
        { status: { in: ['SERVING', 'STAGED'] }, deployment: { status: { not: 'DELETED' } } },
        { replicas: { some: { state: { in: [...LIVE] } } } },
      ],
    },
    select: { id: true, deploymentId: true },
  });
  const wanted = new Map(revisions.map((r) => [pools.poolName({ deploymentId: r.deploymentId, revisionId: r.id }), r]));
  const every = await prisma.revision.findMany({
    where: { deploymentId: { in: [...byId.keys()] } },
    select: { id: true, deploymentId: true },
  });
  const ours = new Set(every.map((r) => pools.poolName({ deploymentId: r.deploymentId, revisionId: r.id })));
  let reaped = 0;
  let restored = 0;
  for (const credentialId of new Set(mine.map((d) => d.credentialId!))) {
    let listed;
    try {
      listed = await pools.listPools(credentialId);
    } catch (e) {
      log.warn({ credentialId, err: (e as Error).message }, 'Kubernetes reconciliation skipped a credential');
      continue;
    }
    for (const p of listed) {
      const rev = wanted.get(p.name);
      if (!rev) {
        // Only pools of this installation's revisions are reaped: another installation's pools in the namespace stay.
        if (!ours.has(p.name)) continue;
        await pools.deletePool(credentialId, p.poolId);
        reaped++;
        log.info({ poolId: p.poolId }, 'deleted a Kubernetes pool no revision needs');
        continue;
      }
      const key = { deploymentId: rev.deploymentId, revisionId: rev.id };
      const level = await pooled.level(key);
      if (p.workersMax !== level) {
        pooled.forgetApplied(p.poolId, key);
        await pooled.resize(credentialId, p.poolId, key);
        restored++;
        await prisma.deploymentEvent.create({
          data: {
            deploymentId: key.deploymentId,
            kind: 'provider.drift',
            message: `Kubernetes Deployment ${p.poolId} had ${p.workersMax} replica(s), the scaler's count is ${level}: restored`,
            data: { poolId: p.poolId, replicas: p.workersMax, restored: level },
          },
        });
      }
    }
  }
  if (adopted || lost || reaped || restored)
    log.info({ target: 'CUSTOM', mode: 'kubernetes', adopted, lost, reaped, restored }, 'reconciled Kubernetes pools');
  return { adopted, lost, reaped, restored };
}
