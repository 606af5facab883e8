// The local target: replicas as child processes on this machine (the simulator, or any
// OpenAI-compatible server such as `vllm serve`), adopted again after a worker restart.
import { resolve } from 'node:path';
import type { Config } from '../../config/config';
import type { ProviderModule } from '../provider';
import { LocalProvider } from './local.provider';
import { reconcileReplicas } from './reconcile';

export { LocalProvider } from './local.provider';
export { reconcileReplicas } from './reconcile';

/** The local adapter as configured: state and weight cache under DATA_DIR. */
export function localProvider(config: Config): LocalProvider {
  return new LocalProvider({
    stateDir: resolve(config.DATA_DIR, 'local'),
    cacheDir: resolve(config.DATA_DIR, 'weights'),
    command: config.LOCAL_REPLICA_COMMAND,
    host: config.LOCAL_REPLICA_HOST,
    advertiseHost: config.LOCAL_REPLICA_ADVERTISE_HOST,
    simulatorArgs: [
      `--cold-start-ms ${config.SIM_COLD_START_MS}`,
      `--warm-start-ms ${config.SIM_WARM_START_MS}`,
      `--ttft-ms ${config.SIM_TTFT_MS}`,
      `--itl-ms ${config.SIM_ITL_MS}`,
      `--slowdown-per-seq ${config.SIM_SLOWDOWN_PER_SEQ}`,
    ],
  });
}

export const local: ProviderModule = { target: 'LOCAL', create: localProvider, reconcile: reconcileReplicas };
