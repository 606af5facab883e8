import { readFileSync } from 'node:fs';
import { percentileOfSorted } from '../src/common/stats';
import { must } from '../test/support/graphql';
import type { PlanName } from '../src/domain/plans';
import { startStack, StackOptions } from '../test/support/stack';

/** What the benchmarks read back from GraphQL: ids, keys and nested deployments. */
type Loose = Record<string, { id: string; deployment?: { id: string }; apiKey?: string }>;

export const progress = (m: string) => process.stderr.write(`${m}\n`);

export const median = (xs: number[]) => percentile(xs, 50);

export const percentile = (xs: number[], p: number) =>
  percentileOfSorted(
    [...xs].sort((a, b) => a - b),
    p,
  );

/** Linux: CPU seconds a process has used (user + system), from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (100/s)
}

/**
 * The whole product for a benchmark: the test suite's stack builder with its own scratch database
 * and Temporal dev server, a Team workspace, and GraphQL calls that throw on errors. Needs Postgres
 * (DATABASE_URL's server) and the Temporal CLI (TEMPORAL_CLI_PATH or scripts/temporal-cli.sh).
 */
export async function benchStack(
  name: string,
  env: Record<string, string> = {},
  opts: { app?: boolean; plan?: PlanName; runpod?: StackOptions['runpod'] } = {},
) {
  const stack = await startStack({ name: `bench-${name}`, env, isolated: true, app: opts.app, runpod: opts.runpod });
  const { token } = await stack.workspace(opts.plan ?? 'TEAM', 'bench');
  const raw = stack.gql;
  const gql = <T = Loose>(query: string, variables: Record<string, unknown>) => must(raw<T>(query, token, variables));
  return Object.assign(stack, { server: stack.server!, token, gql });
}
