import { Field, ID, InputType, ObjectType } from '@nestjs/graphql';
import { Target } from '../graphql/enums';

@ObjectType({
  description: "A key of the user's own provider account (RUNPOD: Flex deployments; MODAL: a token pair). The key itself is never shown.",
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

@InputType()
export class AddProviderCredentialInput {
  @Field(() => Target, { description: 'RUNPOD or MODAL.' }) target!: Target;
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
}
