// Scaling: a deployment's scaler status, changing its policy, and the what-if simulation over the same decision.
// The decision is src/domain/scaling.ts, the loop workflows/scaler.ts, actuation activities/replicas.ts, load reports src/gateway/reporter.ts.
import { Module } from '@nestjs/common';
import { DeploymentsModule } from '../deployments/deployments.module';
import { ScalingResolver } from './scaling.resolver';
import { ScalingService } from './scaling.service';

@Module({ imports: [DeploymentsModule], providers: [ScalingService, ScalingResolver] })
export class ScalingModule {}
