import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { PrismaClient } from '../database/prisma';
import { local } from './local';
import { runpod } from './runpod';
import { modal } from './modal';
import { custom } from './custom';
import type { ProviderDeps, ProviderModule, Providers } from './provider';

/** Every target this build knows. A new provider is a new folder and one line here. */
const MODULES: readonly ProviderModule[] = [local, runpod, modal, custom];

/** The adapters for this worker; `overrides` replaces or adds adapters (tests, benches). */
export function createProviders(config: Config, deps: ProviderDeps, overrides: Providers = {}): Providers {
  const out: Providers = {};
  for (const m of MODULES) {
    const adapter = m.create(config, deps);
    if (adapter) out[m.target] = adapter;
  }
  return Object.assign(out, overrides);
}

/** Boot-time reconciliation of every configured provider that has one. */
export async function reconcileProviders(prisma: PrismaClient, providers: Providers, log: Logger): Promise<void> {
  for (const m of MODULES) {
    const adapter = providers[m.target];
    if (adapter && m.reconcile) await m.reconcile(prisma, adapter, log);
  }
}
