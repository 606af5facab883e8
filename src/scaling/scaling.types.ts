import { Field, Float, ID, InputType, Int, ObjectType } from '@nestjs/graphql';
import { DeploymentMode } from '../graphql/enums';
import { REFERENCE_REPLICA } from './whatif';

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
  @Field(() => Int, { nullable: true, description: 'Of those, replicas started and not yet serving (capacity on the way).' }) starting?:
    number | null;
  @Field(() => Int, { nullable: true, description: 'Replicas draining before they stop; load that returns takes them back first.' })
  draining?: number | null;
  @Field({ description: 'Paused during lifecycle operations.' }) paused!: boolean;
  @Field({ description: 'True while no gateway has reported load: the count is held.' }) noData!: boolean;
  @Field(() => DeploymentMode) mode!: DeploymentMode;
  @Field(() => Int) minReplicas!: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int) targetConcurrency!: number;
  @Field(() => Int) scaleDownWindowSeconds!: number;
  @Field(() => Int) idleTimeoutSeconds!: number;
  @Field(() => [ScalingDecision], { description: 'Recent changes of the count, oldest first, with their reasons.' })
  decisions!: ScalingDecision[];
}

@InputType()
export class ScalingPolicyInput {
  @Field(() => ID) deploymentId!: string;
  @Field(() => DeploymentMode, {
    nullable: true,
    description: 'Switch FLEX and ACTIVE (Team plan and up). To ACTIVE, a floor of 0 becomes 1 unless minReplicas is given.',
  })
  mode?: DeploymentMode;
  @Field(() => Int, { nullable: true }) minReplicas?: number;
  @Field(() => Int, { nullable: true }) maxReplicas?: number;
  @Field(() => Int, { nullable: true }) targetConcurrency?: number;
  @Field(() => Int, { nullable: true }) scaleDownWindowSeconds?: number;
  @Field(() => Int, { nullable: true }) idleTimeoutSeconds?: number;
}

@InputType()
export class SimulateScalingInput {
  @Field(() => Float, { description: 'Mean requests per second outside bursts.' }) avgRps!: number;
  @Field(() => Float, { defaultValue: 0 }) burstRps!: number;
  @Field(() => Int, { defaultValue: 0, description: 'A burst starts every this many seconds (0: none).' }) burstEverySeconds!: number;
  @Field(() => Int, { defaultValue: 0 }) burstSeconds!: number;
  @Field(() => Int, { defaultValue: 3600 }) durationSeconds!: number;
  @Field(() => Int, { defaultValue: 2000, description: 'Mean service time of a request, ms.' }) meanDurationMs!: number;
  @Field(() => Int, { defaultValue: 1 }) seed!: number;
  @Field(() => DeploymentMode, { defaultValue: 'FLEX' }) mode!: DeploymentMode;
  @Field(() => Int, { nullable: true }) minReplicas?: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int, { defaultValue: 30 }) targetConcurrency!: number;
  @Field(() => Int, { nullable: true }) scaleDownWindowSeconds?: number;
  @Field(() => Int, { nullable: true }) idleTimeoutSeconds?: number;
  @Field(() => Int, { defaultValue: REFERENCE_REPLICA.coldStartMs }) coldStartMs!: number;
  @Field(() => Int, { defaultValue: REFERENCE_REPLICA.concurrency }) replicaConcurrency!: number;
  @Field(() => Float, { defaultValue: REFERENCE_REPLICA.gpuHourlyUsd }) gpuHourlyUsd!: number;
  @Field(() => Int, { defaultValue: 2000 }) queueTimeoutMs!: number;
}

@ObjectType()
class SimulationSample {
  @Field(() => Int, { description: 'ms from the start' }) t!: number;
  @Field(() => Int) replicas!: number;
  @Field(() => Int) ready!: number;
  @Field(() => Int) inFlight!: number;
  @Field(() => Int) queued!: number;
}

@ObjectType()
class SimulationDecision {
  @Field(() => Int) t!: number;
  @Field(() => Int) from!: number;
  @Field(() => Int) to!: number;
  @Field() reason!: string;
}

@ObjectType()
export class ScalingSimulation {
  @Field(() => Int) requests!: number;
  @Field(() => Int) served!: number;
  @Field(() => Int) rejected503!: number;
  @Field(() => Int) coldStarts!: number;
  @Field(() => Int) queueWaitP50Ms!: number;
  @Field(() => Int) queueWaitP99Ms!: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int) gpuSeconds!: number;
  @Field(() => Float) costUsd!: number;
  @Field(() => [SimulationSample]) series!: SimulationSample[];
  @Field(() => [SimulationDecision]) decisions!: SimulationDecision[];
  @Field({ description: 'Replicas and load over time, as SVG.' }) svg!: string;
}
