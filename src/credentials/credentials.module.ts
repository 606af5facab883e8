// Provider credentials: keys of the user's own provider account (RunPod, Modal), checked live when added or
// rotated, sealed with AES-256-GCM under SECRETS_KEY, shown by their last four characters only. The worker's
// activities read a key by credential id (store.ts), so it never enters Temporal history.
import { Module } from '@nestjs/common';
import type { Logger } from 'pino';
import { LOGGER } from '../common/core.module';
import { Config, CONFIG } from '../config/config';
import { CredentialsResolver, DeploymentCredentialResolver } from './credentials.resolver';
import { CredentialsService, SECRETS_KEY_BUFFER } from './credentials.service';
import { secretsKey } from './secrets-key';
import { CREDENTIAL_VALIDATOR, RunpodCredentialValidator } from './validator';

@Module({
  providers: [
    { provide: SECRETS_KEY_BUFFER, inject: [CONFIG, LOGGER], useFactory: (config: Config, log: Logger) => secretsKey(config, log) },
    { provide: CREDENTIAL_VALIDATOR, useClass: RunpodCredentialValidator },
    CredentialsService,
    CredentialsResolver,
    DeploymentCredentialResolver,
  ],
  exports: [CredentialsService, SECRETS_KEY_BUFFER],
})
export class CredentialsModule {}
