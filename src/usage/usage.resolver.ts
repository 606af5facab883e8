import { UseGuards } from '@nestjs/common';
import { Args, Query, Resolver } from '@nestjs/graphql';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { UsageService } from './usage.service';
import { UsageInput, UsageReport } from './usage.types';

@Resolver(() => UsageReport)
@UseGuards(ManagementAuthGuard)
export class UsageResolver {
  constructor(private readonly svc: UsageService) {}

  @Query(() => UsageReport, { description: "Requests, tokens, latency and cost per bucket, from the gateway's per-minute rollups." })
  usage(@CurrentAuth() auth: AuthContext, @Args('input') input: UsageInput) {
    return this.svc.report(auth.workspace.id, input);
  }
}
