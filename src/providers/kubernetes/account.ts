// A CUSTOM credential's Kubernetes mode: the user's kubeconfig (a static token or a client certificate), the namespace
// the pools run in, and how the pools are reached from outside the cluster. Sealed as JSON; parsed and checked here.
import { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { DomainError, ErrorCode } from '../../domain/errors';

export interface KubernetesAccount {
  /** The kubeconfig YAML as given. */
  kubeconfig: string;
  namespace: string;
  /** The kubeconfig context to use; its current-context when absent. */
  context?: string | null;
  /**
   * The pool URL when the cluster exposes Services through an Ingress or Gateway: `{name}` is replaced by the pool's
   * name (e.g. https://{name}.inference.example.com). Absent: the Service is a LoadBalancer and its ingress is the URL.
   */
  urlTemplate?: string | null;
  /**
   * The pools' URLs and keys, recorded by the adapter once a pool has an address (the gateway reads a CUSTOM
   * credential's upstream keys from its sealed JSON, see parseCustomEndpoints).
   */
  pools?: { url: string; apiKey: string }[];
}

const bad = (field: string, message: string) =>
  new DomainError(ErrorCode.BAD_USER_INPUT, `${field}: ${message}`, { field, provider: 'CUSTOM' });

/** A DNS-1123 label: a Kubernetes namespace. */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The kubeconfig as KubeConfig, with its context selected; exec and auth-provider users refused (workers cannot run them). */
export function kubeConfigOf(account: Pick<KubernetesAccount, 'kubeconfig' | 'context'>): KubeConfig {
  let doc: unknown;
  try {
    doc = parseYaml(account.kubeconfig);
  } catch (e) {
    throw bad('kubeconfig', `is not YAML (${(e as Error).message.split('\n')[0]})`);
  }
  if (!doc || typeof doc !== 'object') throw bad('kubeconfig', 'is not a kubeconfig (expected a YAML map with clusters, users, contexts)');
  const users = ((doc as { users?: unknown[] }).users ?? []) as { name?: string; user?: Record<string, unknown> }[];
  for (const u of users) {
    if (u?.user?.exec || u?.user?.['auth-provider']) {
      throw bad(
        'kubeconfig',
        `user ${JSON.stringify(u.name ?? '')} authenticates with an ${u.user.exec ? 'exec' : 'auth-provider'} plugin, which our workers cannot run; give a ServiceAccount token (user.token) or a client certificate (client-certificate-data, client-key-data)`,
      );
    }
  }
  const kc = new KubeConfig();
  try {
    kc.loadFromString(account.kubeconfig);
  } catch (e) {
    throw bad('kubeconfig', `does not load (${(e as Error).message.split('\n')[0]})`);
  }
  if (account.context) {
    if (!kc.getContexts().some((c) => c.name === account.context)) {
      throw bad(
        'context',
        `the kubeconfig has no context ${JSON.stringify(account.context)} (it has ${
          kc
            .getContexts()
            .map((c) => c.name)
            .join(', ') || 'none'
        })`,
      );
    }
    kc.setCurrentContext(account.context);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw bad('kubeconfig', 'names no cluster for its current context (set current-context, or give context)');
  // client-node refuses plain http unless told to skip TLS verification; say so now rather than on the first call.
  if (/^http:\/\//i.test(cluster.server) && !cluster.skipTLSVerify) {
    throw bad(
      'kubeconfig',
      `cluster ${cluster.name} is served over plain http (${cluster.server}): use https, or set insecure-skip-tls-verify: true`,
    );
  }
  const user = kc.getCurrentUser();
  if (!user || !(user.token || user.certData || user.certFile)) {
    throw bad('kubeconfig', 'its user has no static credential: give a ServiceAccount token (user.token) or a client certificate');
  }
  if (user.certFile || user.keyFile || cluster.caFile) {
    throw bad('kubeconfig', 'refers to files (client-certificate, client-key or certificate-authority): inline them as *-data');
  }
  return kc;
}

/** The account as given to addProviderCredential, checked (no network): the kubeconfig loads, names are valid. */
export function kubernetesAccountOf(input: {
  kubeconfig?: string | null;
  namespace?: string | null;
  context?: string | null;
  urlTemplate?: string | null;
}): KubernetesAccount {
  const kubeconfig = input.kubeconfig ?? '';
  if (!kubeconfig.trim()) throw bad('kubeconfig', 'must not be empty');
  if (kubeconfig.length > 256 * 1024) throw bad('kubeconfig', 'must be at most 256 KiB');
  const namespace = input.namespace?.trim() ?? '';
  if (!namespace) throw bad('namespace', 'a Kubernetes CUSTOM credential needs the namespace the pools run in');
  if (namespace.length > 63 || !NAMESPACE.test(namespace))
    throw bad('namespace', `${JSON.stringify(namespace)} is not a namespace name (DNS-1123 label)`);
  const context = input.context?.trim() || null;
  const urlTemplate = input.urlTemplate?.trim() || null;
  if (urlTemplate) {
    if (!urlTemplate.includes('{name}'))
      throw bad('urlTemplate', 'must contain {name}, the pool name (e.g. https://{name}.inference.example.com)');
    let u: URL;
    try {
      u = new URL(urlTemplate.replace(/\{name\}/g, 'pool'));
    } catch {
      throw bad('urlTemplate', `${JSON.stringify(urlTemplate.slice(0, 200))} is not a URL template`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad('urlTemplate', `${u.protocol} is not http: or https:`);
    if (u.search || u.hash || u.username) throw bad('urlTemplate', 'a base URL has no query, fragment or credentials');
  }
  const account = { kubeconfig, namespace, context, urlTemplate };
  kubeConfigOf(account);
  return account;
}

/** What a Kubernetes CUSTOM credential seals. */
export const sealKubernetesAccount = (a: KubernetesAccount): string => JSON.stringify({ kubernetes: a });

/** The account of a sealed CUSTOM credential; null when it is a bare-box one (endpoints). */
export function kubernetesAccountIn(plaintext: string): KubernetesAccount | null {
  try {
    const j = JSON.parse(plaintext) as { kubernetes?: KubernetesAccount };
    if (j.kubernetes && typeof j.kubernetes.kubeconfig === 'string' && typeof j.kubernetes.namespace === 'string') return j.kubernetes;
  } catch {
    /* not JSON: not ours */
  }
  return null;
}

/** The account id a Kubernetes credential records: the API server's host and the namespace. */
export function kubernetesAccountId(account: KubernetesAccount): string {
  const server = kubeConfigOf(account).getCurrentCluster()!.server;
  let host = server;
  try {
    host = new URL(server).host;
  } catch {
    /* keep it as given */
  }
  return `${host}/${account.namespace}`;
}
