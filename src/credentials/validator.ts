// The live check of a provider key before it is stored (providers-api.md §1.10), behind an interface the module provides.
import { Inject, Injectable } from '@nestjs/common';
import { Config, CONFIG } from '../config/config';
import { DomainError, ErrorCode } from '../domain/errors';
import type { Target } from '../graphql/enums';
import { parseModalAccount } from '../providers/modal';
import { RunpodClient, RunpodError } from '../providers/runpod/client';
import { validateModalAccount } from './modal-validator';
import { parseCustomEndpoints, validateCustomEndpoints } from '../providers/custom/endpoints';
import { kubernetesAccountIn } from '../providers/kubernetes/account';
import { validateKubernetesAccount } from '../providers/kubernetes/validate';

export const CREDENTIAL_VALIDATOR = Symbol('CREDENTIAL_VALIDATOR');

export interface CredentialValidator {
  /**
   * Checks `apiKey` against the provider with a cheap read and returns the account it belongs to (null when the
   * provider names none). Throws DomainError naming what failed: BAD_USER_INPUT for a key the provider refuses,
   * UNAVAILABLE when the provider could not answer (rate limit, outage).
   */
  validate(target: Target, apiKey: string): Promise<{ accountId: string | null }>;
}

/** How long the check waits for RunPod; the user is waiting on the mutation. */
const CHECK_TIMEOUT_MS = 10_000;

/**
 * The default validator. RUNPOD: RunpodClient.validateKey (GET /v2/serverless, then GraphQL myself { id }); MODAL:
 * EnvironmentList and the named environment through the modal SDK (./modal-validator.ts); CUSTOM: GET /health and
 * /v1/models of each registered server with its key.
 */
@Injectable()
export class RunpodCredentialValidator implements CredentialValidator {
  constructor(@Inject(CONFIG) private readonly config: Config) {}

  async validate(target: Target, apiKey: string): Promise<{ accountId: string | null }> {
    // MODAL: `apiKey` is the sealed form, a JSON token pair and environment (src/providers/modal, sealModalAccount).
    if (target === 'MODAL') return validateModalAccount(this.config, parseModalAccount(apiKey, 'being added'));
    // CUSTOM on Kubernetes: the sealed account; one SelfSubjectAccessReview per verb the adapter needs.
    const kube = target === 'CUSTOM' ? kubernetesAccountIn(apiKey) : null;
    if (kube) return validateKubernetesAccount(kube, CHECK_TIMEOUT_MS);
    // CUSTOM: `apiKey` is the sealed form, the endpoints as JSON (src/providers/custom): each server is probed.
    if (target === 'CUSTOM') return validateCustomEndpoints(parseCustomEndpoints(apiKey, 'being added'), CHECK_TIMEOUT_MS);
    if (target !== 'RUNPOD') throw new DomainError(ErrorCode.BAD_USER_INPUT, `target: ${target} credentials are not supported yet`);
    const client = new RunpodClient({
      apiUrl: this.config.RUNPOD_API_URL,
      graphqlUrl: this.config.RUNPOD_GRAPHQL_URL,
      runtimeUrl: this.config.RUNPOD_RUNTIME_URL,
      apiKey,
      timeoutMs: CHECK_TIMEOUT_MS,
    });
    try {
      return await client.validateKey();
    } catch (err) {
      if (err instanceof RunpodError) throw refusal(err, apiKey);
      throw err;
    }
  }
}

/** A RunPod failure as the error the user sees; RunPod's own detail is kept, the key never (should it be echoed). */
export function refusal(err: RunpodError, apiKey: string): DomainError {
  const said = err.message
    .replace(/^(check the key|read the account): /, '')
    .split(apiKey)
    .join('[the key]');
  switch (err.kind) {
    case 'unauthorized':
    case 'forbidden':
    case 'invalid':
      return new DomainError(ErrorCode.BAD_USER_INPUT, `apiKey: ${said}; nothing was stored`, { field: 'apiKey', provider: 'RUNPOD' });
    case 'rate_limited': {
      const after = err.retryAfterSeconds ?? 1;
      return new DomainError(ErrorCode.UNAVAILABLE, `RunPod rate-limited the check; retry in ${after} s (nothing was stored)`, {
        provider: 'RUNPOD',
        retryAfterSeconds: after,
      });
    }
    default:
      return new DomainError(
        ErrorCode.UNAVAILABLE,
        `RunPod could not be reached to check the key: ${said.replace(/^RunPod could not be reached /, '')}; nothing was stored, try again`,
        { provider: 'RUNPOD' },
      );
  }
}
