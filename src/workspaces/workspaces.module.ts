// Workspaces: the workspace a management token belongs to, its plan limits, and its management tokens.
// auth.guard.ts authenticates every GraphQL request of every feature (Authorization: Bearer mt_...).
import { Module } from '@nestjs/common';
import { WorkspacesResolver } from './workspaces.resolver';
import { WorkspacesService } from './workspaces.service';

@Module({ providers: [WorkspacesService, WorkspacesResolver], exports: [WorkspacesService] })
export class WorkspacesModule {}
