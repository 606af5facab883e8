import { UseGuards } from '@nestjs/common';
import { Query, Resolver } from '@nestjs/graphql';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { PlaygroundService } from './playground.service';
import { PlaygroundQuota } from './playground.types';

@Resolver(() => PlaygroundQuota)
@UseGuards(ManagementAuthGuard)
export class PlaygroundResolver {
  constructor(private readonly svc: PlaygroundService) {}

  @Query(() => PlaygroundQuota, { description: 'Playground requests used today and what is left (Starter: 100 a day).' })
  playgroundQuota(@CurrentAuth() auth: AuthContext) {
    return this.svc.quota(auth.workspace);
  }
}
