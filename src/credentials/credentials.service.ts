import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { audit } from '../audit/audit';
import { PRISMA } from '../common/core.module';
import { newId } from '../common/secrets';
import type { Prisma, PrismaClient, Workspace } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import type { Target } from '../graphql/enums';
import type { AddProviderCredentialInput } from './credentials.types';
import { ModalAccount, sealModalAccount } from '../providers/modal';
import { customEndpointsOf, sealCustomEndpoints } from '../providers/custom/endpoints';
import { kubernetesAccountOf, sealKubernetesAccount } from '../providers/kubernetes/account';
import { last4Of, lockCredential, readCredentialSecret, sealSecret } from './store';
import { CREDENTIAL_VALIDATOR, CredentialValidator } from './validator';

/** The AES-256-GCM key credentials are sealed with (src/credentials/secrets-key.ts), provided by CredentialsModule. */
export const SECRETS_KEY_BUFFER = Symbol('SECRETS_KEY_BUFFER');

/** The targets a credential can be added for. */
const SUPPORTED: readonly Target[] = ['RUNPOD', 'MODAL', 'CUSTOM'];

const nameSchema = z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters');

/** The key as pasted, without surrounding whitespace; refused with a message that never repeats it. */
function apiKeyOf(raw: string): string {
  const key = raw.trim();
  if (key === '') throw new DomainError(ErrorCode.BAD_USER_INPUT, 'apiKey: must not be empty or whitespace', { field: 'apiKey' });
  if (/\s/.test(key)) throw new DomainError(ErrorCode.BAD_USER_INPUT, 'apiKey: must not contain whitespace', { field: 'apiKey' });
  if (key.length < 16) {
    throw new DomainError(ErrorCode.BAD_USER_INPUT, `apiKey: ${key.length} characters is too short for a provider API key`, {
      field: 'apiKey',
    });
  }
  if (key.length > 512) throw new DomainError(ErrorCode.BAD_USER_INPUT, 'apiKey: must be at most 512 characters', { field: 'apiKey' });
  return key;
}

const MODAL_TOKEN_ID = /^ak-[A-Za-z0-9_-]{4,200}$/;
const MODAL_TOKEN_SECRET = /^as-[A-Za-z0-9_-]{4,200}$/;

/**
 * A Modal token pair as given: tokenId and tokenSecret (or apiKey "ak-…:as-…"), and an optional environment. Refused
 * with the field named and the secret never repeated.
 */
function modalAccountOf(input: {
  apiKey?: string | null;
  tokenId?: string | null;
  tokenSecret?: string | null;
  environment?: string | null;
}) {
  let tokenId = input.tokenId?.trim() ?? '';
  let tokenSecret = input.tokenSecret?.trim() ?? '';
  if (!tokenId && !tokenSecret && input.apiKey) [tokenId = '', tokenSecret = ''] = input.apiKey.trim().split(':');
  const bad = (field: string, message: string) =>
    new DomainError(ErrorCode.BAD_USER_INPUT, `${field}: ${message}`, { field, provider: 'MODAL' });
  if (!tokenId) throw bad('tokenId', 'a MODAL credential needs tokenId ("ak-…") and tokenSecret ("as-…")');
  if (!MODAL_TOKEN_ID.test(tokenId)) throw bad('tokenId', 'a Modal token id starts with "ak-" (letters, digits, - and _)');
  if (!tokenSecret) throw bad('tokenSecret', `must not be empty (the secret of token ${tokenId}, "as-…")`);
  if (!MODAL_TOKEN_SECRET.test(tokenSecret)) throw bad('tokenSecret', 'a Modal token secret starts with "as-" (letters, digits, - and _)');
  const environment = input.environment?.trim() ?? '';
  if (environment && !/^[A-Za-z0-9._-]{1,63}$/.test(environment)) {
    throw bad('environment', 'must be 1-63 letters, digits, dots, dashes or underscores');
  }
  return { tokenId, tokenSecret, environment } satisfies ModalAccount;
}

/** What a credential stores and shows for the input: the sealed plaintext and its last four characters. */
function secretOf(target: Target, input: AddProviderCredentialInput): { plaintext: string; last4: string } {
  if (target === 'CUSTOM' && [input.kubeconfig, input.namespace, input.context, input.urlTemplate].some((v) => v != null)) {
    // Exactly one mode: servers the user runs (endpoints), or a cluster we apply Deployments to (kubeconfig).
    if (input.endpoints?.length) {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        'endpoints: give either endpoints (bare boxes) or kubeconfig and namespace (Kubernetes), not both',
        {
          field: 'endpoints',
        },
      );
    }
    const account = kubernetesAccountOf(input);
    // The last four of the namespace: the kubeconfig's token is not shown, not even in part.
    return { plaintext: sealKubernetesAccount(account), last4: last4Of(account.namespace) };
  }
  if (target === 'CUSTOM') {
    const endpoints = customEndpointsOf(input.endpoints);
    // The last four of the first key when a server has one, else of the first URL (which is not secret).
    return { plaintext: sealCustomEndpoints(endpoints), last4: last4Of(endpoints.find((e) => e.apiKey)?.apiKey ?? endpoints[0].url) };
  }
  if (target === 'MODAL') {
    const account = modalAccountOf(input);
    return { plaintext: sealModalAccount(account), last4: last4Of(account.tokenSecret) };
  }
  if (input.apiKey == null)
    throw new DomainError(ErrorCode.BAD_USER_INPUT, `apiKey: required for a ${target} credential`, { field: 'apiKey' });
  const key = apiKeyOf(input.apiKey);
  return { plaintext: key, last4: last4Of(key) };
}

/** Deployments that hold a credential: every one not DELETED. */
const holding = (credentialId: string): Prisma.DeploymentWhereInput => ({ credentialId, status: { not: 'DELETED' } });

@Injectable()
export class CredentialsService {
  constructor(
    @Inject(PRISMA) private readonly prisma: PrismaClient,
    @Inject(SECRETS_KEY_BUFFER) private readonly key: Buffer,
    @Inject(CREDENTIAL_VALIDATOR) private readonly validator: CredentialValidator,
  ) {}

  /** Checks the key live, then stores it sealed. One credential per provider account and workspace. */
  async add(ws: Workspace, input: AddProviderCredentialInput, actorId: string | null) {
    const parsedName = nameSchema.safeParse(input.name);
    if (!parsedName.success) {
      throw new DomainError(ErrorCode.BAD_USER_INPUT, `name: ${parsedName.error.issues[0].message}`, { field: 'name' });
    }
    const name = parsedName.data;
    if (!SUPPORTED.includes(input.target)) {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        `target: ${input.target} is not supported yet; credentials can be added for ${SUPPORTED.join(', ')}`,
        { field: 'target' },
      );
    }
    const secret = secretOf(input.target, input);
    await this.refuseTakenName(this.prisma, ws.id, name);
    const { accountId } = await this.validator.validate(input.target, secret.plaintext);
    const id = newId('pc');
    return this.prisma.$transaction(async (tx) => {
      await lockWorkspace(tx, ws.id);
      await this.refuseTakenName(tx, ws.id, name);
      if (accountId) await this.refuseTakenAccount(tx, ws.id, input.target, accountId, null);
      const created = await tx.providerCredential.create({
        data: {
          id,
          workspaceId: ws.id,
          target: input.target,
          name,
          sealed: sealSecret(this.key, secret.plaintext),
          last4: secret.last4,
          accountId,
        },
      });
      await audit(tx, {
        workspaceId: ws.id,
        actorId,
        kind: 'credential.added',
        message: `${input.target} credential ${name} (…${created.last4}) added${accountId ? ` for account ${accountId}` : ''}`,
        data: { credentialId: id, target: input.target, accountId },
      });
      return created;
    });
  }

  /** A new key for the credential, checked live; it must be the same provider account when both keys name one. */
  async rotate(ws: Workspace, id: string, rawKey: string, actorId: string | null) {
    const old = await this.get(ws.id, id);
    if (old.target === 'CUSTOM') {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        `credential ${old.name} is a CUSTOM credential: its endpoints and keys are replaced by adding a new CUSTOM credential and deploying on it`,
        { field: 'id', target: 'CUSTOM' },
      );
    }
    // MODAL: the new pair as "ak-…:as-…", in the environment the credential has.
    const secret =
      old.target === 'MODAL'
        ? secretOf('MODAL', {
            target: 'MODAL',
            name: old.name,
            apiKey: rawKey,
            environment: (JSON.parse(await readCredentialSecret(this.prisma, this.key, id)) as ModalAccount).environment,
          })
        : secretOf(old.target, { target: old.target, name: old.name, apiKey: rawKey });
    const { accountId } = await this.validator.validate(old.target, secret.plaintext);
    if (old.accountId && accountId && old.accountId !== accountId) {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        `apiKey: the new key belongs to ${old.target === 'MODAL' ? 'Modal' : 'RunPod'} account ${accountId}, not ${old.accountId} of credential ${old.name}; add it as a credential of its own`,
        { field: 'apiKey', accountId, expectedAccountId: old.accountId },
      );
    }
    return this.prisma.$transaction(async (tx) => {
      await lockWorkspace(tx, ws.id);
      const current = await tx.providerCredential.findFirst({ where: { id, workspaceId: ws.id, deletedAt: null } });
      if (!current) throw notFound('provider credential', id);
      if (!current.accountId && accountId) await this.refuseTakenAccount(tx, ws.id, current.target, accountId, id);
      const updated = await tx.providerCredential.update({
        where: { id },
        data: {
          sealed: sealSecret(this.key, secret.plaintext),
          last4: secret.last4,
          accountId: current.accountId ?? accountId,
          rotatedAt: new Date(),
        },
      });
      await audit(tx, {
        workspaceId: ws.id,
        actorId,
        kind: 'credential.rotated',
        message: `${current.target} credential ${current.name} rotated: …${current.last4} -> …${updated.last4}`,
        data: { credentialId: id, target: current.target, accountId: updated.accountId },
      });
      return updated;
    });
  }

  /** Soft delete, wiping the sealed key; refused while a deployment that is not DELETED uses it. */
  async delete(ws: Workspace, id: string, actorId: string | null) {
    return this.prisma.$transaction(async (tx) => {
      // The row lock orders this against a deploy naming the credential (deployments.service locks it too).
      const cred = await lockCredential(tx, ws.id, id);
      const users = await tx.deployment.findMany({ where: holding(id), select: { id: true }, orderBy: { createdAt: 'asc' } });
      if (users.length) {
        const ids = users.map((u) => u.id);
        throw new DomainError(
          ErrorCode.CONFLICT,
          `provider credential ${cred.name} is in use by deployment${ids.length > 1 ? 's' : ''} ${ids.join(', ')}; delete ${ids.length > 1 ? 'them' : 'it'} first`,
          { deploymentIds: ids },
        );
      }
      const deleted = await tx.providerCredential.update({ where: { id }, data: { deletedAt: new Date(), sealed: null } });
      await audit(tx, {
        workspaceId: ws.id,
        actorId,
        kind: 'credential.deleted',
        message: `${cred.target} credential ${cred.name} (…${cred.last4}) deleted`,
        data: { credentialId: id, target: cred.target },
      });
      return deleted;
    });
  }

  list(workspaceId: string) {
    return this.prisma.providerCredential.findMany({ where: { workspaceId, deletedAt: null }, orderBy: { createdAt: 'asc' } });
  }

  /** A live credential of the workspace, else NOT_FOUND (another workspace's, deleted, or no such id). */
  async get(workspaceId: string, id: string) {
    const c = await this.prisma.providerCredential.findFirst({ where: { id, workspaceId, deletedAt: null } });
    if (!c) throw notFound('provider credential', id);
    return c;
  }

  /** The credential a deployment runs on (deleted ones included: the deployment row keeps its history). */
  byId(id: string) {
    return this.prisma.providerCredential.findUnique({ where: { id } });
  }

  async inUseBy(id: string): Promise<string[]> {
    const rows = await this.prisma.deployment.findMany({ where: holding(id), select: { id: true }, orderBy: { createdAt: 'asc' } });
    return rows.map((r) => r.id);
  }

  private async refuseTakenName(db: PrismaClient | Prisma.TransactionClient, workspaceId: string, name: string) {
    const taken = await db.providerCredential.findFirst({ where: { workspaceId, name, deletedAt: null } });
    if (taken) {
      throw new DomainError(ErrorCode.CONFLICT, `a provider credential named ${name} exists already (${taken.id}); choose another name`, {
        field: 'name',
        credentialId: taken.id,
      });
    }
  }

  private async refuseTakenAccount(
    tx: Prisma.TransactionClient,
    workspaceId: string,
    target: Target,
    accountId: string,
    except: string | null,
  ) {
    const same = await tx.providerCredential.findFirst({
      where: { workspaceId, target, accountId, deletedAt: null, ...(except ? { id: { not: except } } : {}) },
    });
    if (same) {
      throw new DomainError(
        ErrorCode.CONFLICT,
        `${target} account ${accountId} is already in this workspace as credential ${same.name} (${same.id}); rotate that one instead`,
        { credentialId: same.id, accountId },
      );
    }
  }
}

/** Serialises credential changes of one workspace (the name and account checks, then the write). */
async function lockWorkspace(tx: Prisma.TransactionClient, workspaceId: string) {
  await tx.$queryRaw`SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtext(${`credentials:${workspaceId}`}))`;
}
