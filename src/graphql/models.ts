import { Field, ID, InputType, Int, ObjectType } from '@nestjs/graphql';

@ObjectType()
export class ScalingDecision {
  @Field() at!: Date;
  @Field(() => Int) from!: number;
  @Field(() => Int) to!: number;
  @Field() reason!: string;
}

@ObjectType()
export class ScalingStatus {
  @Field(() => Int, { description: 'What the last decision asked for.' }) desired!: number;
  @Field(() => Int, { description: 'Replicas the scaler has applied.' }) current!: number;
  @Field({ description: 'Paused during lifecycle operations.' }) paused!: boolean;
  @Field({ description: 'True while no gateway has reported load: the count is held.' }) noData!: boolean;
  @Field(() => Int) minReplicas!: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int) targetConcurrency!: number;
  @Field(() => Int) scaleDownWindowSeconds!: number;
  @Field(() => Int) idleTimeoutSeconds!: number;
  @Field(() => [ScalingDecision], { description: 'Recent changes of the count, oldest first, with their reasons.' }) decisions!: ScalingDecision[];
}

@InputType()
export class ScalingPolicyInput {
  @Field(() => ID) deploymentId!: string;
  @Field(() => Int, { nullable: true }) minReplicas?: number;
  @Field(() => Int, { nullable: true }) maxReplicas?: number;
  @Field(() => Int, { nullable: true }) targetConcurrency?: number;
  @Field(() => Int, { nullable: true }) scaleDownWindowSeconds?: number;
  @Field(() => Int, { nullable: true }) idleTimeoutSeconds?: number;
}
