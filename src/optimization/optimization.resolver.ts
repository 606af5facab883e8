import { UseGuards } from '@nestjs/common';
import { Args, ID, Mutation, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { Pipeline, Variant } from '../pipelines/pipelines.types';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { OptimizationService } from './optimization.service';
import {
  OptimizationRun,
  ReoptimizationSchedule,
  ReoptimizationScheduleInput,
  StartOptimizationRunInput,
  SweepPoint,
} from './optimization.types';

@Resolver(() => OptimizationRun)
@UseGuards(ManagementAuthGuard)
export class OptimizationResolver {
  constructor(private readonly svc: OptimizationService) {}

  @Mutation(() => OptimizationRun, {
    description:
      'Starts optimize:<pipelineId>:<runId>: builds the candidates (GPU x quantization x engine settings, a speculative-decoding one for text), measures each on a live replica (a concurrency sweep and a quality eval), ranks them by the priority and selects the winner with its target concurrency; redeploy IF_BETTER moves ACTIVE deployments onto it.',
  })
  startOptimizationRun(
    @CurrentAuth() auth: AuthContext,
    @Args('pipelineId', { type: () => ID }) pipelineId: string,
    @Args('input', { type: () => StartOptimizationRunInput, nullable: true }) input?: StartOptimizationRunInput,
  ) {
    return this.svc.start(auth.workspace, pipelineId, input ?? {});
  }

  @Query(() => OptimizationRun)
  optimizationRun(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.run(auth.workspace, id);
  }

  @Mutation(() => ReoptimizationSchedule, {
    description:
      "Creates or changes the pipeline's Temporal Schedule reoptimize:<pipelineId> (overlap: skip). Fields left out keep their value; paused: true pauses it.",
  })
  setReoptimizationSchedule(
    @CurrentAuth() auth: AuthContext,
    @Args('pipelineId', { type: () => ID }) pipelineId: string,
    @Args('input') input: ReoptimizationScheduleInput,
  ) {
    return this.svc.setSchedule(auth.workspace, pipelineId, input);
  }

  @Mutation(() => Boolean, { description: "Deletes the pipeline's re-optimization schedule (runs already started go on)." })
  deleteReoptimizationSchedule(@CurrentAuth() auth: AuthContext, @Args('pipelineId', { type: () => ID }) pipelineId: string) {
    return this.svc.deleteSchedule(auth.workspace, pipelineId);
  }

  @ResolveField(() => [Variant], { description: 'Its candidates, best first: ranked ones by rank, then the rejected and failed.' })
  variants(@Parent() r: OptimizationRun) {
    return this.svc.runVariants(r.id);
  }
}

@Resolver(() => Pipeline)
@UseGuards(ManagementAuthGuard)
export class PipelineOptimizationResolver {
  constructor(private readonly svc: OptimizationService) {}

  @ResolveField(() => [OptimizationRun], { description: 'Its optimization runs, newest first.' })
  runs(@Parent() p: Pipeline) {
    return this.svc.runs(p.id);
  }

  @ResolveField(() => ReoptimizationSchedule, { nullable: true })
  reoptimizationSchedule(@Parent() p: Pipeline) {
    return this.svc.schedule(p.id);
  }
}

@Resolver(() => Variant)
export class VariantSweepResolver {
  @ResolveField(() => [SweepPoint])
  sweep(@Parent() v: { sweep: unknown }) {
    return (v.sweep as SweepPoint[] | null) ?? [];
  }
}
