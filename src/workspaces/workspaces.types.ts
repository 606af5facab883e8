import { Field, Float, ID, InputType, Int, ObjectType } from '@nestjs/graphql';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Plan } from '../graphql/enums';

@ObjectType()
export class Workspace {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => Plan) plan!: Plan;
  @Field(() => Int, { description: 'Replica ceiling per deployment on this plan.' }) maxReplicas!: number;
  @Field(() => Int, { description: 'Concurrent requests across the workspace on this plan.' }) maxConcurrency!: number;
  @Field(() => Float, { nullable: true, description: 'Requests get 403 plan_limit_exceeded once the month has cost this much, USD.' })
  monthlySpendCapUsd!: number | null;
}

@InputType({ description: 'Only the fields given change; null clears a cap.' })
export class WorkspaceSettingsInput {
  @Field(() => Float, { nullable: true }) monthlySpendCapUsd?: number | null;
  @Field(() => Int, { nullable: true, description: 'Enterprise: the replica ceiling per deployment.' }) maxReplicas?: number | null;
  @Field(() => Int, { nullable: true, description: 'Enterprise: concurrent requests across the workspace.' }) maxConcurrency?:
    number | null;
}

@ObjectType({ description: 'A change to the workspace: its settings or keys, with the management token that made it.' })
export class AuditEvent {
  @Field() kind!: string;
  @Field() message!: string;
  @Field(() => ID, { nullable: true, description: 'The management token behind it.' }) actorId!: string | null;
  @Field(() => GraphQLJSONObject, { nullable: true }) data!: Record<string, unknown> | null;
  @Field() at!: Date;
}

@ObjectType()
export class CreatedManagementToken {
  @Field(() => ID) id!: string;
  @Field() prefix!: string;
  @Field({ description: 'The whole token. Shown once.' }) token!: string;
}

@ObjectType()
export class ManagementToken {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field({ description: 'First characters of the token; the token itself is shown only once.' }) prefix!: string;
  @Field() createdAt!: Date;
  @Field(() => Date, { nullable: true }) revokedAt!: Date | null;
}
