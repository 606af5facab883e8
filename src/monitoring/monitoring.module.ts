// Monitoring: a deployment's load series (Deployment.metrics) over the per-minute samples every gateway process writes
// (sampler.ts, merged by merge.ts), replica logs from the providers (Replica.logs), and the console's settings.
import { Module } from '@nestjs/common';
import { DeploymentMetricsResolver, ReplicaLogsResolver } from './monitoring.resolver';
import { MonitoringService } from './monitoring.service';

@Module({ providers: [MonitoringService, DeploymentMetricsResolver, ReplicaLogsResolver] })
export class MonitoringModule {}
