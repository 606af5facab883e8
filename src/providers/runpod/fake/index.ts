import { mkdtempSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalProvider } from '../../local/local.provider';
import { Fleet } from './fleet';
import { accountIdOf, KeyInfo, Management } from './management';
import { Runtime } from './runtime';
import type { Faults, WorkerStatus } from './types';

export type { Faults, WorkerStatus } from './types';
export { requestExamples, validateCreate, validateUpdate } from './spec';

export interface RunpodFakeOptions {
  host?: string;
  /** 0 = a free port (default). */
  managementPort?: number;
  /** 0 = a free port (default). */
  runtimePort?: number;
  /** API keys it accepts. access: ALL (default), READ_ONLY (mutations → 403), NO_SERVERLESS (every /v2/serverless call → 403). accountId for GraphQL myself. */
  keys: { key: string; access?: 'ALL' | 'READ_ONLY' | 'NO_SERVERLESS'; accountId?: string }[];
  /** Where simulated workers keep state; a temp dir by default. */
  stateDir?: string;
  /** Simulator knobs of a worker: cold start (no FlashBoot, or first start), FlashBoot revival. Defaults 1500 and 300 ms. */
  coldStartMs?: number;
  flashbootStartMs?: number;
  /** Passed to the simulator (defaults 40, 8). */
  ttftMs?: number;
  itlMs?: number;
  /** Management API rate limit per key per minute (default 600); over it → 429 with Retry-After. */
  ratePerMinute?: number;
  /** Injectable clock for idle scale-down (default Date.now). */
  now?: () => number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface RunpodFake {
  /** e.g. http://127.0.0.1:P (routes /v2/... and /graphql on it). */
  managementUrl: string;
  /** managementUrl + '/graphql'. */
  graphqlUrl: string;
  /** e.g. http://127.0.0.1:Q (routes /v2/{endpointId}/...). */
  runtimeUrl: string;
  /** Failure injection, changeable at any time. */
  faults: Faults;
  /** Counts of management calls by "METHOD route-template" (e.g. "PATCH /v2/serverless/{id}"), including failed ones. */
  calls(): Record<string, number>;
  resetCalls(): void;
  /** Revokes a key, as deleting it in RunPod's console would: every host answers 401 to it from now on. */
  revokeKey(key: string): void;
  /** Runs the idle scale-down rule against the clock now; also runs on a 1 s timer. */
  tick(): Promise<void>;
  /** The stored endpoints, as the API would return them. */
  endpoints(): unknown[];
  /** Live simulated workers of an endpoint with their status. */
  workers(endpointId: string): { id: string; status: WorkerStatus; inFlight: number }[];
  /** Closes servers, stops every worker process. */
  stop(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

const serve = (handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>) =>
  createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });

/**
 * A local fake of RunPod's serverless APIs (providers-api.md §1.11): the v2 management API and the GraphQL
 * subset on one port, the serverless runtime (api.runpod.ai) on another, and a fleet of simulator processes
 * as workers.
 */
/** The configuration that points the control plane's RunPod adapter at a running fake (with a key it accepts). */
export function runpodFakeEnv(
  fake: Pick<RunpodFake, 'managementUrl' | 'graphqlUrl' | 'runtimeUrl'>,
  apiKey: string,
): Record<string, string> {
  return {
    RUNPOD_API_KEY: apiKey,
    RUNPOD_API_URL: fake.managementUrl,
    RUNPOD_GRAPHQL_URL: fake.graphqlUrl,
    RUNPOD_RUNTIME_URL: fake.runtimeUrl,
  };
}

export async function startRunpodFake(o: RunpodFakeOptions): Promise<RunpodFake> {
  const host = o.host ?? '127.0.0.1';
  const log = o.log ?? (() => undefined);
  const now = o.now ?? Date.now;
  const stateDir = o.stateDir ?? mkdtempSync(join(tmpdir(), 'runpod-fake-'));
  await mkdir(join(stateDir, 'cache'), { recursive: true });
  const faults: Faults = {
    managementFailureRate: 0,
    kinds: ['429', '500', '503'],
    seed: 1,
    exhaustedPools: new Set(),
    crashLoop: new Set(),
  };
  const keys = new Map<string, KeyInfo>(
    o.keys.map((k) => [k.key, { access: k.access ?? 'ALL', accountId: k.accountId ?? accountIdOf(k.key) }]),
  );
  const provider = new LocalProvider({
    stateDir: join(stateDir, 'workers'),
    cacheDir: join(stateDir, 'cache'),
    command: '',
    host,
    simulatorArgs: [
      `--cold-start-ms ${o.coldStartMs ?? 1500}`,
      `--warm-start-ms ${o.flashbootStartMs ?? 300}`,
      `--ttft-ms ${o.ttftMs ?? 40}`,
      `--itl-ms ${o.itlMs ?? 8}`,
    ],
  });
  // Workers are not adopted across runs (the fake's state is in memory): reap any a previous run left.
  await provider.stopAll();
  // The fleet reads endpoints from the management store, which needs the fleet: resolved lazily.
  const ref: { m?: Management } = {};
  const fleet = new Fleet({ provider, faults, log, endpoint: (id) => ref.m?.endpoints.get(id) });
  let runtimeUrl = '';
  const m = new Management({ keys, fleet, faults, ratePerMinute: o.ratePerMinute ?? 600, now, runtimeUrl: () => runtimeUrl, log });
  ref.m = m;
  const runtimeKeys = new Set(keys.keys());
  const runtime = new Runtime({
    keys: runtimeKeys,
    fleet,
    endpoint: (id) => m.endpoints.get(id),
    touch: (ep) => m.touch(ep),
    log,
  });

  const mgmtServer = serve((req, res) => m.handle(req, res));
  const runtimeServer = serve((req, res) => runtime.handle(req, res));
  const mPort = await listen(mgmtServer, o.managementPort ?? 0, host);
  const rPort = await listen(runtimeServer, o.runtimePort ?? 0, host);
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const managementUrl = `http://${urlHost}:${mPort}`;
  runtimeUrl = `http://${urlHost}:${rPort}`;
  const ticker = setInterval(() => m.idleScaleDown(), 1000);
  ticker.unref();
  log('runpod fake listening', { managementUrl, runtimeUrl, stateDir });

  let stopped: Promise<void> | undefined;
  const close = (s: Server) =>
    new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections();
    });
  return {
    managementUrl,
    graphqlUrl: `${managementUrl}/graphql`,
    runtimeUrl,
    faults,
    calls: () => m.calls(),
    resetCalls: () => m.resetCalls(),
    revokeKey: (key) => {
      keys.delete(key);
      runtimeKeys.delete(key);
    },
    tick: () => {
      m.idleScaleDown();
      return Promise.resolve();
    },
    endpoints: () => m.endpointViews(),
    workers: (id) => fleet.workers(id),
    stop: () => {
      stopped ??= (async () => {
        clearInterval(ticker);
        m.close();
        runtime.close();
        await Promise.all([close(mgmtServer), close(runtimeServer), fleet.stop()]);
      })();
      return stopped;
    },
  };
}
