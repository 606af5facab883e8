// The MODAL target: the user's own Modal account (a stored token pair), one Sandbox per replica. Demo tokens
// (ak-demo-…) reach the in-process fake control plane when MODAL_FAKE is on (`npm start`, tests); every other token
// reaches Modal itself, so a real credential replaces a demo one without a code change.
import { resolve } from 'node:path';
import type { Config } from '../../config/config';
import { readCredentialSecret } from '../../credentials/store';
import { secretsKey } from '../../credentials/secrets-key';
import type { ProviderAdapter, ProviderDeps, ProviderModule } from '../provider';
import { reconcileReplicas } from '../local/reconcile';
import { ModalFake } from './fake';
import { ModalAccount, ModalControlPlane, modalReplicaKey, ModalProvider } from './modal.provider';

export { ModalFake, demoTokenAccepted } from './fake';
export type { RecordedCall } from './fake';
export {
  MODAL_GPUS,
  MODAL_MAX_LIFETIME_SECONDS,
  modalFailure,
  modalGpu,
  modalReplicaKey,
  ModalProvider,
  parseModalAccount,
  sandboxName,
  sealModalAccount,
} from './modal.provider';
export type { ModalAccount, ModalControlPlane, ModalProviderOptions } from './modal.provider';

/** Token ids of demo credentials, bound to the fake control plane when MODAL_FAKE is on. */
export const DEMO_TOKEN_PREFIX = 'ak-demo-';

const fakes = new Map<string, ModalFake>();

/** This process's fake control plane over <DATA_DIR>/modal-fake (one per directory, shared by api and worker code). */
export function modalFake(config: Pick<Config, 'DATA_DIR' | 'SIM_COLD_START_MS' | 'SIM_WARM_START_MS' | 'SIM_TTFT_MS' | 'SIM_ITL_MS'>) {
  const stateDir = resolve(config.DATA_DIR, 'modal-fake');
  let fake = fakes.get(stateDir);
  if (!fake) {
    fake = new ModalFake({
      stateDir,
      cacheDir: resolve(config.DATA_DIR, 'weights'),
      simulatorArgs: [
        `--cold-start-ms ${config.SIM_COLD_START_MS}`,
        `--warm-start-ms ${config.SIM_WARM_START_MS}`,
        `--ttft-ms ${config.SIM_TTFT_MS}`,
        `--itl-ms ${config.SIM_ITL_MS}`,
      ],
    });
    fakes.set(stateDir, fake);
  }
  return fake;
}

/** Where an account's calls go: the fake for a demo token when MODAL_FAKE is on, Modal otherwise. */
export function modalControlPlane(config: Config): (account: ModalAccount) => ModalControlPlane {
  return (account) =>
    config.MODAL_FAKE && account.tokenId.startsWith(DEMO_TOKEN_PREFIX)
      ? { cpClient: modalFake(config).client(account.tokenId, account.tokenSecret), tunnelScheme: 'http' }
      : { tunnelScheme: 'https' };
}

/** The Modal adapter as configured; every deployment names its own account through a credential. */
export function modalProvider(config: Config, deps: ProviderDeps): ModalProvider {
  let key: Buffer | null = null;
  const sealKey = () => (key ??= secretsKey(config, deps.log));
  return new ModalProvider({
    prisma: deps.prisma,
    log: deps.log,
    secretOf: (credentialId) => readCredentialSecret(deps.prisma, sealKey(), credentialId),
    controlPlane: modalControlPlane(config),
    replicaKey: (replicaId) => modalReplicaKey(sealKey(), replicaId),
    image: config.MODAL_IMAGE,
    appName: config.MODAL_APP_NAME,
    sandboxTimeoutSeconds: config.MODAL_SANDBOX_TIMEOUT_SECONDS,
  });
}

export const modal: ProviderModule = {
  target: 'MODAL',
  create: (config, deps): ProviderAdapter => modalProvider(config, deps),
  reconcile: reconcileReplicas,
};
