import type { Mode, Target } from './targets';
// What serving costs, from the reference's billing rules. Pure: the gateway prices
// each request's tokens, the capacity accountant prices warm replica time.

/**
 * Rates for one GPU type. Flex pays per token only; Active pays a per-second fee
 * for each warm replica plus a lower per-token rate.
 */
export interface GpuRates {
  flexPerMillionTokensUsd: number;
  activePerMillionTokensUsd: number;
  activePerReplicaSecondUsd: number;
}

/** What is billed per unit rather than per token: images generated, audio transcribed or spoken. */
export interface UnitRates {
  perImageUsd: number;
  perAudioSecondUsd: number;
}

export interface PriceTable {
  /** Rates by GPU name as deployments spell it; `default` covers any other GPU. */
  gpus: Record<string, GpuRates>;
  units: UnitRates;
}

/** The units of one request besides its tokens. */
export interface Units {
  images: number;
  audioSeconds: number;
}

/**
 * List prices the embedded default ships with. Operators replace them with
 * PRICING_FILE (same shape, JSON or YAML); the reference points to a GPU price
 * page rather than fixing numbers.
 */
export const DEFAULT_PRICES: PriceTable = {
  gpus: {
    default: { flexPerMillionTokensUsd: 0.4, activePerMillionTokensUsd: 0.1, activePerReplicaSecondUsd: 0.0005 },
    'RTX-4090': { flexPerMillionTokensUsd: 0.2, activePerMillionTokensUsd: 0.05, activePerReplicaSecondUsd: 0.00031 },
    L40S: { flexPerMillionTokensUsd: 0.3, activePerMillionTokensUsd: 0.08, activePerReplicaSecondUsd: 0.00053 },
    'A100-80GB': { flexPerMillionTokensUsd: 0.5, activePerMillionTokensUsd: 0.12, activePerReplicaSecondUsd: 0.00076 },
    'H100-80GB': { flexPerMillionTokensUsd: 0.8, activePerMillionTokensUsd: 0.2, activePerReplicaSecondUsd: 0.00116 },
  },
  units: { perImageUsd: 0.02, perAudioSecondUsd: 0.0001 },
};

export type BillingTarget = Target;
export type BillingMode = Mode;

export function gpuRates(table: PriceTable, gpu: string): GpuRates {
  return table.gpus[gpu] ?? table.gpus.default;
}

/** What prices a deployment's usage: its target, and whether it runs on the user's own account (a credential). */
export interface Billed {
  target: BillingTarget;
  /** On the user's own RunPod or Modal account: they pay their provider. */
  ownAccount?: boolean;
}

/**
 * Metered usage is billed for managed targets only: on the user's own RunPod
 * or Modal account or their own GPUs they pay their provider, and we bill a
 * monthly platform fee outside these rollups.
 */
export function metered(d: Billed): boolean {
  return !d.ownAccount && (d.target === 'LOCAL' || d.target === 'RUNPOD');
}

/** USD for the tokens of one request. */
export function tokenCostUsd(table: PriceTable, d: Billed & { mode: BillingMode; gpu: string }, tokens: number): number {
  if (!metered(d) || tokens <= 0) return 0;
  const r = gpuRates(table, d.gpu);
  return (tokens * (d.mode === 'ACTIVE' ? r.activePerMillionTokensUsd : r.flexPerMillionTokensUsd)) / 1e6;
}

/** USD for the images and audio seconds of one request (metered targets only, as tokens). */
export function unitCostUsd(table: PriceTable, d: Billed, u: Units): number {
  if (!metered(d)) return 0;
  return u.images * table.units.perImageUsd + u.audioSeconds * table.units.perAudioSecondUsd;
}

/** USD for warm replica time; only Active deployments pay for it. */
export function capacityCostUsd(table: PriceTable, d: Billed & { mode: BillingMode; gpu: string }, replicaSeconds: number): number {
  if (!metered(d) || d.mode !== 'ACTIVE' || replicaSeconds <= 0) return 0;
  return replicaSeconds * gpuRates(table, d.gpu).activePerReplicaSecondUsd;
}
