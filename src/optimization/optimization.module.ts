// Optimization: runs that measure candidate variants on live replicas and pick the winner, and the per-pipeline
// re-optimization Schedule. The pure rules are src/domain/optimization.ts, the load measure.ts, the steps
// activities/optimization.ts, the workflow workflows/optimize.ts.
import { Module } from '@nestjs/common';
import { OptimizationResolver, PipelineOptimizationResolver, VariantSweepResolver } from './optimization.resolver';
import { OptimizationService } from './optimization.service';

@Module({ providers: [OptimizationService, OptimizationResolver, PipelineOptimizationResolver, VariantSweepResolver] })
export class OptimizationModule {}
