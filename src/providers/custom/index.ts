// The CUSTOM target, bare box mode: the user runs the bundle (src/bundle) on their own GPUs and registers the servers'
// URLs and keys in a CUSTOM credential; each replica is one registered URL. Fixed capacity: nothing here scales.
import type { Config } from '../../config/config';
import { readCredentialSecret } from '../../credentials/store';
import { secretsKey } from '../../credentials/secrets-key';
import type { ProviderDeps, ProviderModule } from '../provider';
import { CustomProvider } from './custom.provider';

export { CustomProvider } from './custom.provider';
export type { CustomProviderOptions } from './custom.provider';
export * from './endpoints';

export function customProvider(config: Config, deps: ProviderDeps): CustomProvider {
  let key: Buffer | null = null;
  const sealKey = () => (key ??= secretsKey(config, deps.log));
  return new CustomProvider({
    prisma: deps.prisma,
    log: deps.log,
    secretOf: (credentialId) => readCredentialSecret(deps.prisma, sealKey(), credentialId),
  });
}

export const custom: ProviderModule = { target: 'CUSTOM', create: customProvider };
