// The live check of a Kubernetes CUSTOM credential before it is stored (../shared/reference/providers-api.md §3.5): one
// SelfSubjectAccessReview per verb the adapter uses, in the credential's namespace. No side effects.
import { AuthorizationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { DomainError, ErrorCode } from '../../domain/errors';
import { KubernetesAccount, kubeConfigOf, kubernetesAccountId } from './account';
import { kubeErrorOf } from './mapping';

/** Every verb the adapter needs, as RBAC names them. */
export const REQUIRED_ACCESS: readonly { verb: string; group: string; resource: string; subresource?: string }[] = [
  { verb: 'create', group: 'apps', resource: 'deployments' },
  { verb: 'get', group: 'apps', resource: 'deployments' },
  { verb: 'list', group: 'apps', resource: 'deployments' },
  { verb: 'delete', group: 'apps', resource: 'deployments' },
  { verb: 'patch', group: 'apps', resource: 'deployments', subresource: 'scale' },
  { verb: 'create', group: '', resource: 'services' },
  { verb: 'get', group: '', resource: 'services' },
  { verb: 'delete', group: '', resource: 'services' },
  { verb: 'create', group: '', resource: 'secrets' },
  { verb: 'delete', group: '', resource: 'secrets' },
  { verb: 'list', group: '', resource: 'pods' },
];

const bad = (field: string, message: string, extra: Record<string, unknown> = {}) =>
  new DomainError(ErrorCode.BAD_USER_INPUT, `${field}: ${message}; nothing was stored`, { field, provider: 'CUSTOM', ...extra });

/** A failed check as the error the user sees; never the token. */
function refusal(e: unknown, server: string): DomainError {
  if (e instanceof DomainError) return e;
  const k = kubeErrorOf(e);
  if (k?.code === 401)
    return bad('kubeconfig', `the API server at ${server} refused the kubeconfig's token or client certificate (401 Unauthorized)`);
  if (k?.code === 429 || (k && k.code >= 500)) {
    const after = k.retryAfterSeconds ?? 1;
    return new DomainError(
      ErrorCode.UNAVAILABLE,
      `the Kubernetes API server at ${server} answered ${k.code} ${k.status.reason ?? ''} to the check; retry in ${after} s (nothing was stored)`,
      { provider: 'CUSTOM', retryAfterSeconds: after },
    );
  }
  if (k)
    return bad('kubeconfig', `the API server at ${server} answered ${k.code} ${k.status.reason ?? ''}: ${k.status.message ?? ''}`.trim());
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  return new DomainError(
    ErrorCode.UNAVAILABLE,
    `the Kubernetes API server at ${server} could not be reached (${err.cause?.code ?? err.cause?.message ?? err.message ?? String(e)}); nothing was stored, try again`,
    { provider: 'CUSTOM' },
  );
}

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref())]);

export async function validateKubernetesAccount(account: KubernetesAccount, timeoutMs = 10_000): Promise<{ accountId: string }> {
  const kc = kubeConfigOf(account);
  const server = kc.getCurrentCluster()!.server;
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const ns = account.namespace;
  try {
    // The namespace must exist; a token scoped to it usually may not read Namespaces (403), which proves nothing.
    try {
      await within(core.readNamespace({ name: ns }), timeoutMs, 'read the namespace');
    } catch (e) {
      const k = kubeErrorOf(e);
      if (k?.code === 404) throw bad('namespace', `namespace ${ns} does not exist on ${server}`);
      if (k?.code !== 403) throw e;
    }
    const answers = await Promise.all(
      REQUIRED_ACCESS.map(async (a) => {
        const r = await within(
          authz.createSelfSubjectAccessReview({
            body: {
              apiVersion: 'authorization.k8s.io/v1',
              kind: 'SelfSubjectAccessReview',
              spec: {
                resourceAttributes: { namespace: ns, verb: a.verb, group: a.group, resource: a.resource, subresource: a.subresource },
              },
            },
          }),
          timeoutMs,
          'SelfSubjectAccessReview',
        );
        return { a, allowed: r.status?.allowed === true };
      }),
    );
    const denied = answers.filter((x) => !x.allowed).map((x) => x.a);
    if (denied.length) {
      const list = denied.map(
        (a) => `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.group ? ` (API group ${a.group})` : ''}`,
      );
      throw bad(
        'kubeconfig',
        `the kubeconfig's user may not ${list.join(', ')} in namespace ${ns}; grant them with a Role and RoleBinding (README "Custom GPU on Kubernetes")`,
        {
          denied: denied.map((a) => ({
            verb: a.verb,
            group: a.group,
            resource: a.subresource ? `${a.resource}/${a.subresource}` : a.resource,
          })),
        },
      );
    }
  } catch (e) {
    throw refusal(e, server);
  }
  return { accountId: kubernetesAccountId(account) };
}
