import { Field, ID, Int, ObjectType } from '@nestjs/graphql';
import { DeploymentMode, DeploymentStatus, OperationKind, OperationStatus, ReplicaState, Target } from './enums';

@ObjectType()
export class Replica {
  @Field(() => ID) id!: string;
  @Field(() => ReplicaState) state!: ReplicaState;
  @Field() gpu!: string;
  @Field(() => Int) concurrency!: number;
  @Field(() => Int, { nullable: true, description: 'Time from start to healthy, ms.' }) coldStartMs!: number | null;
  @Field() startedAt!: Date;
  @Field(() => Date, { nullable: true }) readyAt!: Date | null;
  @Field(() => Date, { nullable: true }) stoppedAt!: Date | null;
}

@ObjectType()
export class DeploymentEvent {
  @Field() kind!: string;
  @Field() message!: string;
  @Field() at!: Date;
}

@ObjectType()
export class Operation {
  @Field(() => ID) id!: string;
  @Field(() => OperationKind) kind!: OperationKind;
  @Field(() => OperationStatus) status!: OperationStatus;
  @Field({ description: 'Temporal workflow id; open it in the Temporal UI.' }) workflowId!: string;
  @Field(() => String, { nullable: true }) error!: string | null;
  @Field() startedAt!: Date;
  @Field(() => Date, { nullable: true }) finishedAt!: Date | null;
}

@ObjectType()
export class Deployment {
  @Field(() => ID) id!: string;
  @Field(() => DeploymentStatus) status!: DeploymentStatus;
  @Field(() => String, { nullable: true, description: 'Why the deployment is FAILED or STOPPED.' }) statusReason!: string | null;
  @Field(() => String, { nullable: true, description: 'OpenAI-compatible base URL (ends in /v1); set once ACTIVE.' }) url!: string | null;
  @Field(() => Target) target!: Target;
  @Field() gpu!: string;
  @Field(() => DeploymentMode) mode!: DeploymentMode;
  @Field(() => Int) minReplicas!: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int, { nullable: true }) targetConcurrency!: number | null;
  @Field(() => Int, { nullable: true }) scaleDownWindowSeconds!: number | null;
  @Field(() => Int, { nullable: true }) idleTimeoutSeconds!: number | null;
  @Field(() => ID) pipelineId!: string;
  @Field(() => ID) variantId!: string;
  @Field() createdAt!: Date;
  @Field() updatedAt!: Date;
}

@ObjectType()
export class DeployPayload {
  @Field(() => Deployment) deployment!: Deployment;
  @Field({ description: 'A deployment-scoped API key, usable once the deployment is ACTIVE. Shown once.' }) apiKey!: string;
}

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
