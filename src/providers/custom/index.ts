// The CUSTOM target. Two modes, chosen per deployment by its credential's kind:
// - bare boxes: the user runs the bundle (src/bundle) on their own GPUs and registers the servers' URLs and keys; each
//   replica is one registered URL (fixed capacity, nothing here scales) — CustomProvider;
// - Kubernetes: the credential seals a kubeconfig and namespace; each revision is a Deployment + Service we apply and
//   scale in the user's cluster — PooledReplicas over KubernetesPools (src/providers/kubernetes).
import type { Logger } from 'pino';
import type { Config } from '../../config/config';
import { readCredentialSecret } from '../../credentials/store';
import { secretsKey } from '../../credentials/secrets-key';
import type { PrismaClient } from '../../database/prisma';
import type { PooledReplicas } from '../pool';
import type {
  ProviderAdapter,
  ProviderCapabilities,
  ProviderDeps,
  ProviderModule,
  ReplicaHandle,
  ReplicaHealth,
  ReplicaSpec,
} from '../provider';
import { kubernetesAccountIn, kubernetesMode, KubernetesModeOptions, reconcileKubernetes } from '../kubernetes';
import { CustomProvider } from './custom.provider';

export { CustomProvider } from './custom.provider';
export type { CustomProviderOptions } from './custom.provider';
export * from './endpoints';

/** One CUSTOM adapter that hands each deployment to its mode's adapter. */
export class CustomTarget implements ProviderAdapter {
  readonly target = 'CUSTOM' as const;
  /** The bare boxes' (the registry's default); capabilitiesOf says a deployment's own. */
  readonly capabilities: ProviderCapabilities;
  private readonly kinds = new Map<string, boolean>();
  private readonly deployments = new Map<string, string | null>();

  constructor(
    readonly boxes: CustomProvider,
    readonly kubernetes: PooledReplicas,
    private readonly prisma: PrismaClient,
    private readonly plaintextOf: (credentialId: string) => Promise<string>,
  ) {
    this.capabilities = boxes.capabilities;
  }

  /** Whether a credential is a Kubernetes one; its kind never changes (CUSTOM credentials are not rotated). */
  async isKubernetes(credentialId: string): Promise<boolean> {
    const hit = this.kinds.get(credentialId);
    if (hit !== undefined) return hit;
    const k = kubernetesAccountIn(await this.plaintextOf(credentialId)) !== null;
    this.kinds.set(credentialId, k);
    return k;
  }

  private async modeOf(deploymentId: string): Promise<ProviderAdapter> {
    let credentialId = this.deployments.get(deploymentId);
    if (credentialId === undefined) {
      const d = await this.prisma.deployment.findUnique({ where: { id: deploymentId }, select: { credentialId: true } });
      credentialId = d?.credentialId ?? null;
      if (d) this.deployments.set(deploymentId, credentialId);
    }
    return credentialId && (await this.isKubernetes(credentialId)) ? this.kubernetes : this.boxes;
  }

  async capabilitiesOf(deploymentId: string): Promise<ProviderCapabilities> {
    return (await this.modeOf(deploymentId)).capabilities;
  }

  async ensureReplica(spec: ReplicaSpec): Promise<ReplicaHandle> {
    return (await this.modeOf(spec.deploymentId)).ensureReplica(spec);
  }

  async health(handle: ReplicaHandle): Promise<ReplicaHealth> {
    return (await this.modeOf(handle.deploymentId)).health(handle);
  }

  async healthDetail(handle: ReplicaHandle): Promise<string | null> {
    const m = await this.modeOf(handle.deploymentId);
    return m.healthDetail ? m.healthDetail(handle) : null;
  }

  async inFlight(handle: ReplicaHandle): Promise<number | null> {
    const m = await this.modeOf(handle.deploymentId);
    return m.inFlight ? m.inFlight(handle) : null;
  }

  async stopReplica(replicaId: string): Promise<void> {
    const row = await this.prisma.replica.findUnique({ where: { id: replicaId }, select: { deploymentId: true } });
    if (!row) return;
    await (await this.modeOf(row.deploymentId)).stopReplica(replicaId);
  }

  async release(deploymentId: string, revisionId: string | null): Promise<void> {
    const m = await this.modeOf(deploymentId);
    if (m.release) await m.release(deploymentId, revisionId);
  }

  /** The bare boxes' held URLs and the Kubernetes slots whose pool exists. */
  async listReplicas(): Promise<ReplicaHandle[]> {
    const boxes: ReplicaHandle[] = [];
    for (const h of await this.boxes.listReplicas()) if ((await this.modeOf(h.deploymentId)) === this.boxes) boxes.push(h);
    return [...boxes, ...(await this.kubernetes.listReplicas())];
  }

  close(): void {
    this.kubernetes.close();
  }
}

/** The CUSTOM adapter as configured (`kubernetes` overrides the Kubernetes mode's pool key, for tests). */
export function customProvider(config: Config, deps: ProviderDeps, kubernetes: Partial<KubernetesModeOptions> = {}): CustomTarget {
  let key: Buffer | null = null;
  const sealKey = () => (key ??= secretsKey(config, deps.log));
  const plaintextOf = (credentialId: string) => readCredentialSecret(deps.prisma, sealKey(), credentialId);
  const boxes = new CustomProvider({ prisma: deps.prisma, log: deps.log, secretOf: plaintextOf });
  return new CustomTarget(boxes, kubernetesMode(config, deps, { secretsKey: sealKey, ...kubernetes }), deps.prisma, plaintextOf);
}

/** At worker start: the Kubernetes mode's pools against the rows (bare boxes run nothing of ours to reconcile). */
async function reconcileCustom(prisma: PrismaClient, adapter: ProviderAdapter, log: Logger) {
  if (!(adapter instanceof CustomTarget)) return null;
  return reconcileKubernetes(prisma, adapter.kubernetes, (id) => adapter.isKubernetes(id), log);
}

export const custom: ProviderModule = { target: 'CUSTOM', create: customProvider, reconcile: reconcileCustom };
