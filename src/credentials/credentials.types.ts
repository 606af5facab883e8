import { Field, ID, InputType, ObjectType } from '@nestjs/graphql';
import { Target } from '../graphql/enums';

@ObjectType({
  description:
    "A key of the user's own provider account (RUNPOD: Flex deployments; MODAL: a token pair; CUSTOM: the URLs and keys of servers the user runs). The key itself is never shown.",
})
export class ProviderCredential {
  @Field(() => ID) id!: string;
  @Field(() => Target) target!: Target;
  @Field() name!: string;
  @Field({ description: 'The last four characters of the key (MODAL: of the token secret), e.g. "…a1b2", to recognise it.' })
  last4!: string;
  @Field(() => String, {
    nullable: true,
    description: "The provider's account id of the key (RunPod: myself { id }); null when it names none.",
  })
  accountId!: string | null;
  @Field() createdAt!: Date;
  @Field(() => Date, { nullable: true, description: 'When rotateProviderCredential last replaced the key.' }) rotatedAt!: Date | null;
  @Field(() => Date, { nullable: true, description: 'When deleteProviderCredential deleted it (the key is wiped).' })
  deletedAt!: Date | null;
}

@InputType({ description: 'One server the user runs (the pipeline bundle) for a CUSTOM credential.' })
export class CustomEndpointInput {
  @Field({ description: 'Base URL of the OpenAI-compatible server, e.g. http://10.0.0.5:8000 (no /v1).' }) url!: string;
  @Field(() => String, {
    nullable: true,
    description: 'The key the server requires (serve.sh API_KEY, vLLM --api-key); stored encrypted, never shown again.',
  })
  apiKey?: string | null;
}

@InputType()
export class AddProviderCredentialInput {
  @Field(() => Target, { description: 'RUNPOD, MODAL or CUSTOM.' }) target!: Target;
  @Field({ description: 'A name to recognise it by, unique among the workspace’s credentials.' }) name!: string;
  @Field(() => String, {
    nullable: true,
    description:
      'RUNPOD: the API key (Serverless read and write). MODAL: tokenId and tokenSecret instead (or "ak-…:as-…" here). Checked live, stored encrypted, never shown again.',
  })
  apiKey?: string | null;
  @Field(() => String, { nullable: true, description: 'MODAL: the token id, "ak-…" (modal token new; Settings > API Tokens).' })
  tokenId?: string | null;
  @Field(() => String, {
    nullable: true,
    description: 'MODAL: the token secret, "as-…". Checked live, stored encrypted, never shown again.',
  })
  tokenSecret?: string | null;
  @Field(() => String, {
    nullable: true,
    description: "MODAL: the environment the Sandboxes run in; the account's default environment when omitted.",
  })
  environment?: string | null;
  @Field(() => [CustomEndpointInput], {
    nullable: true,
    description:
      'CUSTOM: the servers you run the pipeline bundle on, one replica each (fixed capacity). Each must answer GET /health and, with its key, GET /v1/models.',
  })
  endpoints?: CustomEndpointInput[] | null;
  @Field(() => String, {
    nullable: true,
    description:
      'CUSTOM on Kubernetes, instead of endpoints: a kubeconfig (YAML) with a static token or client certificate (exec and auth-provider plugins are refused). Each revision runs as a Deployment + Service in namespace. Checked live (SelfSubjectAccessReview per verb), stored encrypted, never shown again.',
  })
  kubeconfig?: string | null;
  @Field(() => String, { nullable: true, description: 'CUSTOM on Kubernetes: the namespace the Deployments and Services go in.' })
  namespace?: string | null;
  @Field(() => String, {
    nullable: true,
    description: 'CUSTOM on Kubernetes: the kubeconfig context to use; its current-context when omitted.',
  })
  context?: string | null;
  @Field(() => String, {
    nullable: true,
    description:
      'CUSTOM on Kubernetes: the pool URL when an Ingress or Gateway routes to the Services, with {name} for the pool name (e.g. https://{name}.inference.example.com); omitted: each Service is a LoadBalancer and its address is the URL.',
  })
  urlTemplate?: string | null;
}
