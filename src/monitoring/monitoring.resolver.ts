import { UseGuards } from '@nestjs/common';
import { Args, ID, Int, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { Deployment, Replica } from '../deployments/deployments.types';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { MonitoringService } from './monitoring.service';
import { ConsoleInfo, DeploymentMetrics, ReplicaLogs } from './monitoring.types';

// A third resolver of Deployment (beside deployments' and scaling's): its load series.
@Resolver(() => Deployment)
@UseGuards(ManagementAuthGuard)
export class DeploymentMetricsResolver {
  constructor(private readonly svc: MonitoringService) {}

  @ResolveField(() => DeploymentMetrics, {
    description:
      "Per-step load from the gateways' per-minute samples: requests, errors, latency and TTFT percentiles, in flight, queue, replicas, tokens, cost.",
  })
  metrics(
    @Parent() d: Deployment,
    @Args('from', { description: 'Start, inclusive (rounded down to the minute).' }) from: Date,
    @Args('to', { description: 'End, exclusive.' }) to: Date,
    @Args('step', { type: () => Int, defaultValue: 60, description: 'Seconds per point: a multiple of 60.' }) step: number,
  ) {
    return this.svc.metrics(d.id, { from, to, step });
  }

  @Query(() => ConsoleInfo)
  consoleInfo(): ConsoleInfo {
    return this.svc.info();
  }
}

@Resolver(() => Replica)
@UseGuards(ManagementAuthGuard)
export class ReplicaLogsResolver {
  constructor(private readonly svc: MonitoringService) {}

  @Query(() => Replica, { description: "A replica of one of the workspace's deployments." })
  replica(@CurrentAuth() auth: AuthContext, @Args('id', { type: () => ID }) id: string) {
    return this.svc.replica(auth.workspace.id, id);
  }

  @ResolveField(() => ReplicaLogs, { description: "The replica server's last log lines (poll it for a live tail)." })
  logs(
    @Parent() r: Replica & { deploymentId: string; providerId: string | null },
    @Args('tail', { type: () => Int, defaultValue: 200 }) tail: number,
  ) {
    return this.svc.logs(r, tail);
  }
}
