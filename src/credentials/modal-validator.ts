// The live check of a Modal token pair before it is stored (providers-api.md §2.4): one read-only call, EnvironmentList
// (the first call of a real client also runs AuthTokenGet), then the environment the user named. No side effects: no
// App is created. Demo tokens reach the in-process fake when MODAL_FAKE is on, as the worker's calls do.
import { ModalClient, NotFoundError } from 'modal';
import { ClientError, Status } from 'nice-grpc';
import type { Config } from '../config/config';
import { DomainError, ErrorCode } from '../domain/errors';
import { DEMO_TOKEN_PREFIX, modalControlPlane } from '../providers/modal';
import type { ModalAccount } from '../providers/modal';

/** The accountId a demo Modal credential records: it marks the credential as demo wherever it is listed. */
export const MODAL_DEMO_ACCOUNT = 'modal-demo (local fake)';

/** The accountId of the demo CUSTOM credential `npm start` registers (a simulator on this machine as the user's box). */
export const CUSTOM_DEMO_ACCOUNT = 'custom-demo (local simulator)';

/** The accountId of the demo Kubernetes CUSTOM credential `npm start` registers (a kubeconfig of the embedded fake cluster). */
export const KUBERNETES_DEMO_ACCOUNT = 'kubernetes-demo (local fake cluster)';

/** How long the check waits for Modal; the user is waiting on the mutation. */
const CHECK_TIMEOUT_MS = 10_000;

export async function validateModalAccount(config: Config, account: ModalAccount): Promise<{ accountId: string | null }> {
  const plane = modalControlPlane(config)(account);
  const client = new ModalClient({
    tokenId: account.tokenId,
    tokenSecret: account.tokenSecret,
    ...(account.environment ? { environment: account.environment } : {}),
    ...(plane.cpClient ? { cpClient: plane.cpClient as never } : {}),
    timeoutMs: CHECK_TIMEOUT_MS,
  });
  try {
    const names: string[] = [];
    for await (const e of client.environments.objects.list()) names.push(e.name);
    if (account.environment) await client.environments.fromName(account.environment);
    return { accountId: plane.cpClient && account.tokenId.startsWith(DEMO_TOKEN_PREFIX) ? MODAL_DEMO_ACCOUNT : null };
  } catch (err) {
    throw modalRefusal(err, account);
  } finally {
    client.close();
  }
}

/** A Modal failure as the error the user sees: names the token id (not secret) or the environment; the secret never. */
export function modalRefusal(err: unknown, account: ModalAccount): DomainError {
  const scrub = (s: string) => s.split(account.tokenSecret).join('[the secret]');
  if (err instanceof NotFoundError) {
    return new DomainError(
      ErrorCode.BAD_USER_INPUT,
      `environment: Modal has no environment ${account.environment} for token ${account.tokenId}; nothing was stored`,
      { field: 'environment', provider: 'MODAL' },
    );
  }
  if (err instanceof ClientError) {
    if (err.code === Status.UNAUTHENTICATED || err.code === Status.PERMISSION_DENIED) {
      return new DomainError(
        ErrorCode.BAD_USER_INPUT,
        `tokenId: Modal refused token ${account.tokenId} (${Status[err.code]}: ${scrub(err.details)}); check the token id and secret; nothing was stored`,
        { field: 'tokenId', provider: 'MODAL' },
      );
    }
    return new DomainError(
      ErrorCode.UNAVAILABLE,
      `Modal could not be reached to check the token (${Status[err.code]}: ${scrub(err.details)}); nothing was stored, try again`,
      { provider: 'MODAL' },
    );
  }
  return new DomainError(
    ErrorCode.UNAVAILABLE,
    `Modal could not be reached to check the token: ${scrub(err instanceof Error ? err.message : String(err))}; nothing was stored, try again`,
    { provider: 'MODAL' },
  );
}
