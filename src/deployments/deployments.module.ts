// Deployments: deploying a pipeline's variant (rows, the one-operation lock, the inactive deployment key,
// then the deploy workflow), the lifecycle operations (stop, start, delete, change GPU, rollback), and reading a
// deployment with its replicas, revisions, events and operations.
import { Module } from '@nestjs/common';
import { CredentialsModule } from '../credentials/credentials.module';
import { DeploymentsResolver, RevisionsResolver } from './deployments.resolver';
import { DeploymentsService } from './deployments.service';

@Module({
  imports: [CredentialsModule],
  providers: [DeploymentsService, DeploymentsResolver, RevisionsResolver],
  exports: [DeploymentsService],
})
export class DeploymentsModule {}
