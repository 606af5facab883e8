import { Field, ID, Int, ObjectType } from '@nestjs/graphql';
import { Plan } from '../graphql/enums';

@ObjectType()
export class Workspace {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => Plan) plan!: Plan;
  @Field(() => Int, { description: 'Replica ceiling per deployment on this plan.' }) maxReplicas!: number;
  @Field(() => Int, { description: 'Concurrent requests across the workspace on this plan.' }) maxConcurrency!: number;
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
