import { UseGuards } from '@nestjs/common';
import { Args, Mutation, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { Deployment } from '../deployments/deployments.types';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { ScalingService } from './scaling.service';
import { ScalingPolicyInput, ScalingSimulation, ScalingStatus, SimulateScalingInput } from './scaling.types';

// A second resolver of Deployment: its `scaling` field is this feature's, beside the deployments resolver's fields.
@Resolver(() => Deployment)
@UseGuards(ManagementAuthGuard)
export class ScalingResolver {
  constructor(private readonly svc: ScalingService) {}

  @ResolveField(() => ScalingStatus, {
    nullable: true,
    description: "The scaler's view: desired and current replicas and its recent decisions.",
  })
  scaling(@Parent() d: Deployment) {
    return this.svc.status(d.id);
  }

  @Mutation(() => ScalingStatus, {
    description: 'Changes autoscaling knobs or the mode; bad values are refused with the knob, the value and the rule.',
  })
  setScalingPolicy(@CurrentAuth() auth: AuthContext, @Args('input') input: ScalingPolicyInput) {
    return this.svc.setPolicy(auth.workspace, input);
  }

  @Query(() => ScalingSimulation, {
    description: 'Replays generated traffic through the scaler decision: replicas, cold starts, queue waits, 503s and cost.',
  })
  simulateScaling(@CurrentAuth() auth: AuthContext, @Args('input') input: SimulateScalingInput): ScalingSimulation {
    return this.svc.simulate(auth.workspace, input);
  }
}
