/** Nearest-rank percentile of values already sorted ascending; 0 when there are none. */
export function percentileOfSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Adds each named numeric field of `from` into `into` (rollups of the same shape). */
export function sumInto<T, K extends keyof T>(into: T, from: Pick<T, K>, keys: readonly K[]): T {
  for (const k of keys) (into[k] as number) = (into[k] as number) + (from[k] as number);
  return into;
}
