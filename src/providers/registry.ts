import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { PrismaClient } from '../database/prisma';
import type { Target } from '../domain/targets';
import { local } from './local';
import type { ProviderAdapter, Providers } from './provider';

/** What a provider folder hands the registry. */
export interface ProviderModule {
  target: Target;
  /** The adapter from config, or null when this worker is not configured for the target. */
  create(config: Config): ProviderAdapter | null;
  /** Called once at worker start: adopt, reap or mark lost what runs on the provider. */
  reconcile?(prisma: PrismaClient, adapter: ProviderAdapter, log: Logger): Promise<unknown>;
}

/** Every target this build knows. A new provider is a new folder and one line here. */
const MODULES: readonly ProviderModule[] = [local];

/** The adapters for this worker; `overrides` replaces or adds adapters (tests, benches). */
export function createProviders(config: Config, overrides: Providers = {}): Providers {
  const out: Providers = {};
  for (const m of MODULES) {
    const adapter = m.create(config);
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
