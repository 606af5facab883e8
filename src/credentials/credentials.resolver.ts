import { UseGuards } from '@nestjs/common';
import { Args, ID, Mutation, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { Deployment } from '../deployments/deployments.types';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { CredentialsService } from './credentials.service';
import { AddProviderCredentialInput, ProviderCredential } from './credentials.types';
import { MODAL_DEMO_ACCOUNT, CUSTOM_DEMO_ACCOUNT, KUBERNETES_DEMO_ACCOUNT } from './modal-validator';

@Resolver(() => ProviderCredential)
@UseGuards(ManagementAuthGuard)
export class CredentialsResolver {
  constructor(private readonly svc: CredentialsService) {}

  @Mutation(() => ProviderCredential, {
    description:
      "Stores a key of the workspace's own provider account (RUNPOD: apiKey; MODAL: tokenId, tokenSecret and optionally environment), after checking it live with a cheap read; it is encrypted at rest and never shown again.",
  })
  addProviderCredential(@CurrentAuth() auth: AuthContext, @Args('input') input: AddProviderCredentialInput) {
    return this.svc.add(auth.workspace, input, auth.tokenId);
  }

  @Mutation(() => ProviderCredential, {
    description:
      'Replaces the key (checked live; the same provider account when both keys name one; MODAL: apiKey "ak-…:as-…", same environment). Deployments use the new key from their next call.',
  })
  rotateProviderCredential(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string, @Args('apiKey') apiKey: string) {
    return this.svc.rotate(auth.workspace, id, apiKey, auth.tokenId);
  }

  @Mutation(() => ProviderCredential, {
    description: 'Deletes the credential and wipes its key; refused while a deployment that is not DELETED uses it.',
  })
  deleteProviderCredential(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.delete(auth.workspace, id, auth.tokenId);
  }

  @Query(() => [ProviderCredential], {
    description: "The workspace's provider credentials (not deleted), oldest first; keys by their last four characters.",
  })
  providerCredentials(@CurrentAuth() auth: AuthContext) {
    return this.svc.list(auth.workspace.id);
  }

  @ResolveField(() => String)
  last4(@Parent() c: ProviderCredential) {
    return `…${c.last4}`;
  }

  @ResolveField(() => Boolean, {
    description: 'A demo credential bound to the local fake of the provider (npm start), not a real account: replace it with a real one.',
  })
  demo(@Parent() c: ProviderCredential) {
    return c.accountId === MODAL_DEMO_ACCOUNT || c.accountId === CUSTOM_DEMO_ACCOUNT || c.accountId === KUBERNETES_DEMO_ACCOUNT;
  }

  @ResolveField(() => [ID], { description: 'The deployments, not DELETED, that run on it.' })
  inUseBy(@Parent() c: ProviderCredential) {
    return this.svc.inUseBy(c.id);
  }
}

@Resolver(() => Deployment)
@UseGuards(ManagementAuthGuard)
export class DeploymentCredentialResolver {
  constructor(private readonly svc: CredentialsService) {}

  @ResolveField(() => ProviderCredential, {
    nullable: true,
    description: "The user's own provider account it runs on; null for the managed target.",
  })
  credential(@Parent() d: { credentialId: string | null }) {
    return d.credentialId ? this.svc.byId(d.credentialId) : null;
  }
}
