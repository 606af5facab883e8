import { Field, ID, InputType, Int, ObjectType } from '@nestjs/graphql';
import { KeyScope } from '../graphql/enums';

@ObjectType()
export class ApiKey {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field({ description: 'First characters of the key; the key itself is shown only once.' }) prefix!: string;
  @Field(() => KeyScope) scope!: KeyScope;
  @Field(() => ID, { nullable: true }) pipelineId!: string | null;
  @Field(() => ID, { nullable: true }) deploymentId!: string | null;
  @Field(() => Int, { nullable: true }) rateLimitPerMinute!: number | null;
  @Field(() => Date, { nullable: true, description: 'Null until the deploy workflow issues a deployment key.' }) issuedAt!: Date | null;
  @Field(() => Date, { nullable: true }) expiresAt!: Date | null;
  @Field(() => Date, { nullable: true }) revokedAt!: Date | null;
  @Field(() => Date, { nullable: true, description: 'When rotateApiKey replaced it; it works until expiresAt (the grace period).' })
  rotatedAt!: Date | null;
  @Field(() => ID, { nullable: true, description: 'The key that replaced it.' }) replacedById!: string | null;
  @Field(() => Date, { nullable: true, description: 'Last request past authentication; written in batches, up to a few seconds late.' })
  lastUsedAt!: Date | null;
  @Field() createdAt!: Date;
}

@ObjectType()
export class CreatedApiKey {
  @Field(() => ApiKey) apiKey!: ApiKey;
  @Field({ description: 'The whole key. Shown once; store it now.' }) key!: string;
}

@ObjectType()
export class RotatedApiKey {
  @Field(() => ApiKey, { description: 'The new key: same scope, name and limits.' }) apiKey!: ApiKey;
  @Field({ description: 'The whole new key. Shown once; store it now.' }) key!: string;
  @Field(() => ApiKey, { description: 'The old key, working until its expiresAt (the end of the grace period).' }) previous!: ApiKey;
}

@InputType()
export class CreateApiKeyInput {
  @Field() name!: string;
  @Field(() => KeyScope, { description: 'WORKSPACE keys pick the target with `model`; PIPELINE and DEPLOYMENT keys are bound to one.' })
  scope!: KeyScope;
  @Field(() => ID, { nullable: true }) pipelineId?: string;
  @Field(() => ID, { nullable: true }) deploymentId?: string;
  @Field(() => Date, { nullable: true }) expiresAt?: Date;
  @Field(() => Int, { nullable: true, description: 'Requests per minute; the plan default when omitted.' }) rateLimitPerMinute?: number;
}
