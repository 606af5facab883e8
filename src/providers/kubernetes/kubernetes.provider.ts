// The CUSTOM target's Kubernetes mode as a pool provider: one revision = one Deployment + Service (+ a Secret holding
// the pool's key), named stably per revision so a retried create adopts what it made (409 AlreadyExists). The scaler's
// count goes to the scale subresource; the gateway reaches the pool at one URL (a LoadBalancer's ingress, or the
// credential's urlTemplate for an Ingress). ../shared/reference/providers-api.md §3.
//
// client-node 2.x is ESM-only. Node 24 loads it from our CommonJS output with require(esm), and jest (SWC to CommonJS,
// run with --experimental-vm-modules) loads it too, so a static import serves both; no dynamic import() is needed.
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  type V1Service,
} from '@kubernetes/client-node';
import { k8sManifests } from '../../bundle/bundle';
import { DomainError } from '../../domain/errors';
import { ProviderError, ProviderPermanentError } from '../errors';
import type { PoolAdapter, PoolHandle, PoolListing, PoolSpec, PoolStatus } from '../pool';
import { replicaInFlight } from '../replica-http';
import { type KubernetesAccount, kubeConfigOf } from './account';
import {
  DEPLOYMENT_LABEL,
  kubeErrorOf,
  kubeFailure,
  labelValue,
  MANAGED_BY,
  MANAGED_BY_US,
  poolObjectName,
  poolStatusOf,
  REVISION_LABEL,
  transientKube,
} from './mapping';

export interface KubernetesPoolsOptions {
  /** The Kubernetes account of a CUSTOM credential; null when the credential is a bare-box one. */
  accountOf(credentialId: string): Promise<KubernetesAccount | null>;
  /** The key a pool's server requires (the gateway sends it as Bearer): stable for a pool, so a retried create agrees. */
  poolKey(credentialId: string, poolName: string): string;
  /** Records (or, with a null key, forgets) a pool's URL and key where the gateway reads a CUSTOM credential's keys. */
  recordPool?(credentialId: string, url: string, apiKey: string | null): Promise<void>;
  /** The server image (vLLM's OpenAI server, a versioned tag); the container runs `vllm serve` with the variant's flags. */
  image: string;
  namePrefix?: string;
  /** Tries of one step before a transient failure goes to Temporal's retry policy (default 4). */
  attempts?: number;
  /** How long ensurePool waits for a LoadBalancer's address before the activity retries, ms (default 60 s). */
  addressTimeoutMs?: number;
}

interface Clients {
  account: KubernetesAccount;
  kc: KubeConfig;
  apps: AppsV1Api;
  core: CoreV1Api;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A pool's cached address, by cluster, namespace and name (two clusters may have namespaces of one name). */
const addressKey = (c: Clients, name: string) => `${c.kc.getCurrentCluster()?.server ?? ''} ${c.account.namespace}/${name}`;

/** The Secret of a pool: its server's key. */
const secretName = (pool: string) => `${pool}-key`.slice(0, 253);

/** Deployments and Services of one Kubernetes account (a CUSTOM credential's kubeconfig and namespace). */
export class KubernetesPools implements PoolAdapter {
  readonly target = 'CUSTOM' as const;
  readonly capabilities = { perReplicaUrls: false, exactReplicaControl: true, maxReplicaLifetimeSeconds: null, coldStartFromZero: true };
  private readonly clients = new Map<string, { kubeconfig: string; c: Clients }>();
  private readonly addresses = new Map<string, string>();
  private readonly prefix: string;

  constructor(private readonly o: KubernetesPoolsOptions) {
    this.prefix = o.namePrefix ?? 'infercp';
  }

  poolName(spec: Pick<PoolSpec, 'deploymentId' | 'revisionId'>): string {
    return poolObjectName(this.prefix, spec.deploymentId, spec.revisionId);
  }

  /** The clients of a credential's account; null when it is not a Kubernetes one. */
  private async maybeClients(credentialId: string | null): Promise<Clients | null> {
    if (!credentialId) return null;
    const account = await this.o.accountOf(credentialId);
    if (!account) return null;
    const hit = this.clients.get(credentialId);
    if (hit && hit.kubeconfig === account.kubeconfig) return hit.c;
    let kc: KubeConfig;
    try {
      kc = kubeConfigOf(account);
    } catch (e) {
      throw new ProviderPermanentError(`credential ${credentialId}: ${(e as DomainError).message}`);
    }
    const c = { account, kc, apps: kc.makeApiClient(AppsV1Api), core: kc.makeApiClient(CoreV1Api) };
    this.clients.set(credentialId, { kubeconfig: account.kubeconfig, c });
    return c;
  }

  private async clientsOf(credentialId: string | null): Promise<Clients> {
    const c = await this.maybeClients(credentialId);
    if (!c) {
      throw new ProviderPermanentError(
        credentialId
          ? `credential ${credentialId} is not a Kubernetes CUSTOM credential (it registers bare-box endpoints)`
          : 'a Kubernetes CUSTOM deployment needs a credential with a kubeconfig; deploy with a credentialId',
      );
    }
    return c;
  }

  /**
   * Runs one step (each is safe to repeat). 429, 5xx, a Conflict and a broken connection are retried here a few
   * times with jittered backoff, or after the server's Retry-After when it is short; past that Temporal retries.
   */
  private async guard<T>(what: string, f: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await f();
      } catch (e) {
        if (transientKube(e) && attempt < (this.o.attempts ?? 4)) {
          const after = kubeErrorOf(e)?.retryAfterSeconds;
          const waitMs = after !== undefined ? after * 1000 : 200 * 2 ** (attempt - 1) * (0.5 + Math.random());
          if (waitMs <= 5000) {
            await sleep(waitMs);
            continue;
          }
        }
        throw kubeFailure(e, what);
      }
    }
  }

  /** A create that adopts what exists: 409 AlreadyExists is the object a retried activity made. */
  private async create(f: () => Promise<unknown>): Promise<'created' | 'existed'> {
    try {
      await f();
      return 'created';
    } catch (e) {
      if (kubeErrorOf(e)?.status.reason === 'AlreadyExists' || kubeErrorOf(e)?.code === 409) return 'existed';
      throw e;
    }
  }

  /** null on 404 NotFound. */
  private async orNull<T>(f: () => Promise<T>): Promise<T | null> {
    try {
      return await f();
    } catch (e) {
      if (kubeErrorOf(e)?.code === 404) return null;
      throw e;
    }
  }

  /** The manifests of a pool, from the bundle's builder, so what the bundle documents is what runs. */
  manifests(spec: PoolSpec, serviceType: 'LoadBalancer' | 'ClusterIP') {
    const labels = {
      [MANAGED_BY]: MANAGED_BY_US,
      [DEPLOYMENT_LABEL]: labelValue(spec.deploymentId),
      [REVISION_LABEL]: labelValue(spec.revisionId ?? 'r0'),
    };
    let built;
    try {
      built = k8sManifests(
        { id: spec.pipelineId, name: spec.pipelineId, task: spec.task, model: spec.model },
        {
          id: spec.variantId,
          name: spec.variantId,
          gpu: spec.gpu,
          engine: 'vllm',
          quantization: spec.engine?.quantization ?? null,
          engineConfig: spec.engine?.settings ?? null,
          maxConcurrency: spec.maxConcurrency,
          targetConcurrency: null,
        },
        spec.name,
        {
          image: this.o.image,
          command: ['vllm', 'serve'],
          replicas: 0,
          labels,
          apiKeySecret: { name: secretName(spec.name), optional: false },
          serviceType,
        },
      );
    } catch (e) {
      if (e instanceof DomainError) throw new ProviderPermanentError(`pool ${spec.name}: ${e.message}`);
      throw e;
    }
    const container = built.deployment.spec.template.spec.containers[0] as Record<string, unknown>;
    container.args = [...built.runtime.engine.args, '--host', '0.0.0.0', '--port', String(built.runtime.port), '--api-key', '$(API_KEY)'];
    return built;
  }

  ensurePool(spec: PoolSpec): Promise<PoolHandle> {
    return this.guard(`create pool ${spec.name}`, async () => {
      const c = await this.clientsOf(spec.credentialId);
      const namespace = c.account.namespace;
      const key = this.o.poolKey(spec.credentialId!, spec.name);
      const { deployment, service } = this.manifests(spec, c.account.urlTemplate ? 'ClusterIP' : 'LoadBalancer');
      // The key first: the pods cannot start without it (secretKeyRef, not optional).
      await this.create(() =>
        c.core.createNamespacedSecret({
          namespace,
          body: {
            metadata: { name: secretName(spec.name), labels: deployment.metadata.labels },
            type: 'Opaque',
            stringData: { 'api-key': key },
          },
        }),
      );
      await this.create(() => c.core.createNamespacedService({ namespace, body: service as V1Service }));
      let workers: number | null = 0;
      if ((await this.create(() => c.apps.createNamespacedDeployment({ namespace, body: deployment as V1Deployment }))) === 'existed') {
        const found = await c.apps.readNamespacedDeployment({ name: spec.name, namespace });
        workers = found.spec?.replicas ?? null;
      }
      const address = await this.addressOf(c, spec.name);
      await this.o.recordPool?.(spec.credentialId!, address, key);
      return { poolId: spec.name, address, workers };
    });
  }

  /** The pool's URL: the credential's urlTemplate, else the LoadBalancer's ingress (waited for; the cloud assigns it). */
  private async addressOf(c: Clients, name: string): Promise<string> {
    if (c.account.urlTemplate) return c.account.urlTemplate.replace(/\{name\}/g, name).replace(/\/+$/, '');
    const cached = this.addresses.get(addressKey(c, name));
    if (cached) return cached;
    const deadline = Date.now() + (this.o.addressTimeoutMs ?? 60_000);
    for (;;) {
      const svc = await c.core.readNamespacedService({ name, namespace: c.account.namespace });
      const ingress = svc.status?.loadBalancer?.ingress?.[0];
      const host = ingress?.ip ?? ingress?.hostname;
      if (host) {
        // The port the load balancer answers on: the ingress's when it reports one, else the Service port.
        const port = ingress?.ports?.[0]?.port ?? svc.spec?.ports?.[0]?.port ?? 80;
        const address = `http://${host.includes(':') ? `[${host}]` : host}${port === 80 ? '' : `:${port}`}`;
        this.addresses.set(addressKey(c, name), address);
        return address;
      }
      if (Date.now() > deadline) {
        throw new ProviderError(
          `Service ${name} has no LoadBalancer address yet (status.loadBalancer.ingress is empty); does the cluster provision LoadBalancers? Otherwise give the credential a urlTemplate`,
        );
      }
      await sleep(250);
    }
  }

  resizePool(credentialId: string | null, poolId: string, workers: number): Promise<void> {
    return this.guard(`scale pool ${poolId} to ${workers}`, async () => {
      const c = await this.clientsOf(credentialId);
      // The client's default patch type is JSON Patch: a merge-patch body needs the header option (§3.2).
      const patched = await this.orNull(() =>
        c.apps.patchNamespacedDeploymentScale(
          { name: poolId, namespace: c.account.namespace, body: { spec: { replicas: workers } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
      );
      // A pool deleted behind our back runs nothing, which is what a scale to 0 asks; anything more cannot be done.
      if (!patched && workers > 0) {
        throw new ProviderPermanentError(
          `Kubernetes Deployment ${poolId} is gone from namespace ${c.account.namespace}: it cannot be scaled to ${workers}`,
        );
      }
    });
  }

  poolStatus(credentialId: string | null, poolId: string): Promise<PoolStatus | null> {
    return this.guard(`read pool ${poolId}`, async () => {
      const c = await this.clientsOf(credentialId);
      const namespace = c.account.namespace;
      const d = await this.orNull(() => c.apps.readNamespacedDeployment({ name: poolId, namespace }));
      if (!d || d.metadata?.deletionTimestamp) return null;
      const pods = await c.core.listNamespacedPod({ namespace, labelSelector: `app.kubernetes.io/name=${poolId}` });
      const s = poolStatusOf(d, pods.items, null);
      s.inFlight = s.serviceable ? await this.inFlightOf(c, credentialId!, poolId, s.serviceable) : 0;
      return s;
    });
  }

  /**
   * Requests the pool runs, estimated: the Service hands one read to one pod, whose gauges (the simulator's /stats or
   * vLLM's /metrics) are scaled by the serving pods (the Service spreads requests evenly). null when unreadable.
   */
  private async inFlightOf(c: Clients, credentialId: string, poolId: string, serving: number): Promise<number | null> {
    const address = await this.addressOf(c, poolId).catch(() => null);
    if (!address) return null;
    const one = await replicaInFlight(address, `Bearer ${this.o.poolKey(credentialId, poolId)}`);
    return one === null ? null : one * serving;
  }

  deletePool(credentialId: string | null, poolId: string): Promise<void> {
    return this.guard(`delete pool ${poolId}`, async () => {
      const c = await this.clientsOf(credentialId);
      const namespace = c.account.namespace;
      const address = c.account.urlTemplate ? await this.addressOf(c, poolId) : (this.addresses.get(addressKey(c, poolId)) ?? null);
      // Foreground: the Deployment goes once its pods are gone, so a listing never shows a pool whose pods still run.
      await this.orNull(() => c.apps.deleteNamespacedDeployment({ name: poolId, namespace, propagationPolicy: 'Foreground' }));
      const svc = await this.orNull(() => c.core.readNamespacedService({ name: poolId, namespace }));
      const ingress = svc?.status?.loadBalancer?.ingress?.[0];
      await this.orNull(() => c.core.deleteNamespacedService({ name: poolId, namespace }));
      await this.orNull(() => c.core.deleteNamespacedSecret({ name: secretName(poolId), namespace }));
      this.addresses.delete(addressKey(c, poolId));
      const url =
        address ??
        (ingress && (ingress.ip ?? ingress.hostname)
          ? `http://${ingress.ip ?? ingress.hostname}${(ingress.ports?.[0]?.port ?? 80) === 80 ? '' : `:${ingress.ports![0].port}`}`
          : null);
      if (url) await this.o.recordPool?.(credentialId!, url, null);
    });
  }

  /** Our Deployments in the credential's namespace (by label); none for a bare-box credential. */
  listPools(credentialId: string | null): Promise<PoolListing[]> {
    return this.guard('list pools', async () => {
      const c = await this.maybeClients(credentialId);
      if (!c) return [];
      const list = await c.apps.listNamespacedDeployment({
        namespace: c.account.namespace,
        labelSelector: `${MANAGED_BY}=${MANAGED_BY_US},${DEPLOYMENT_LABEL}`,
      });
      return list.items
        .filter((d) => !d.metadata?.deletionTimestamp)
        .map((d) => ({
          poolId: d.metadata!.name!,
          name: d.metadata!.name!,
          workersMin: d.spec?.replicas ?? 0,
          workersMax: d.spec?.replicas ?? 0,
        }));
    });
  }
}
