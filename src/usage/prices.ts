import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { zodMessage } from '../common/zod';
import { DEFAULT_PRICES, PriceTable } from '../domain/pricing';

const rates = z.object({
  flexPerMillionTokensUsd: z.number().nonnegative(),
  activePerMillionTokensUsd: z.number().nonnegative(),
  activePerReplicaSecondUsd: z.number().nonnegative(),
});

const priceTableSchema = z.object({
  gpus: z.record(z.string().min(1), rates).refine((g) => 'default' in g, "must have a 'default' entry for GPUs not listed"),
  units: z.object({ perImageUsd: z.number().nonnegative(), perAudioSecondUsd: z.number().nonnegative() }).default(DEFAULT_PRICES.units),
});

/** The price table from PRICING_FILE (JSON or YAML), or the built-in list prices; a bad file stops boot naming the problem. */
export function loadPrices(path: string): PriceTable {
  if (!path) return DEFAULT_PRICES;
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`PRICING_FILE=${path}: cannot read it as JSON or YAML: ${(err as Error).message}`);
  }
  const parsed = priceTableSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`PRICING_FILE=${path}: ${zodMessage(parsed.error)}`);
  return parsed.data;
}
