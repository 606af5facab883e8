import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { freePort } from '../../common/net';
import { request } from 'undici';
import { ProviderError, ProviderPermanentError } from '../errors';
import type { ProviderAdapter, ReplicaHandle, ReplicaHealth, ReplicaSpec } from '../provider';

/**
 * The local target's simulated GPU types, so a change of GPU can be tried on one machine: the built-in
 * simulator runs each at its own speed. Any other GPU name runs at sim's speed.
 */
export const SIM_GPUS: Record<string, { speed: number }> = {
  sim: { speed: 1 },
  'sim-large': { speed: 2 },
};

export interface LocalProviderOptions {
  /** Where pid files and logs live: <stateDir>/replicas/<id>.json, <stateDir>/logs/<id>.log. */
  stateDir: string;
  /** Shared weight cache of the simulator (the reference's per-pipeline Instant Start cache). */
  cacheDir: string;
  /** Command template; empty means the built-in simulator. */
  command: string;
  /** Extra simulator flags when the built-in simulator is used. */
  simulatorArgs: string[];
  /** Interface replicas listen on. */
  host?: string;
  /** Host the gateway dials; defaults to host. */
  advertiseHost?: string;
}

interface ReplicaRecord extends ReplicaHandle {
  pid: number;
  port: number;
  startedAt: string;
}

/** Resolves the compiled simulator entry (dist/src/simulator/main.js) from src or dist. */
export function simulatorEntry(): string {
  const sibling = resolve(__dirname, '../../simulator/main.js');
  if (existsSync(sibling)) return sibling;
  const fromRoot = resolve(__dirname, '../../../dist/src/simulator/main.js');
  if (existsSync(fromRoot)) return fromRoot;
  throw new ProviderPermanentError('simulator entry not found: run `npm run build` first');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when the process carries our replica id in its environment (guards against pid reuse). */
async function ownedBy(pid: number, replicaId: string): Promise<boolean> {
  try {
    const env = await readFile(`/proc/${pid}/environ`, 'utf8');
    return env.split('\0').includes(`INFERCP_REPLICA_ID=${replicaId}`);
  } catch {
    // No /proc (macOS): fall back to liveness.
    return alive(pid);
  }
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Replicas as child processes on free ports, detached so that a restarted worker
 * finds them again: pid files under stateDir let it adopt the ones still wanted
 * and reap the rest. On a GPU box the command template runs a real server, e.g.
 * `vllm serve {model} --port {port} --max-num-seqs {maxConcurrency}`.
 */
export class LocalProvider implements ProviderAdapter {
  readonly target = 'LOCAL' as const;
  readonly capabilities = { perReplicaUrls: true, exactReplicaControl: true, maxReplicaLifetimeSeconds: null, coldStartFromZero: true };
  private readonly host: string;
  private readonly starting = new Map<string, Promise<ReplicaHandle>>();

  constructor(private readonly o: LocalProviderOptions) {
    this.host = o.host ?? '127.0.0.1';
  }

  private recordPath(id: string) {
    return join(this.o.stateDir, 'replicas', `${id}.json`);
  }

  private async readRecord(id: string): Promise<ReplicaRecord | null> {
    try {
      return JSON.parse(await readFile(this.recordPath(id), 'utf8')) as ReplicaRecord;
    } catch {
      return null;
    }
  }

  async ensureReplica(spec: ReplicaSpec): Promise<ReplicaHandle> {
    // Concurrent calls for one replica in this process share one spawn.
    const pending = this.starting.get(spec.replicaId);
    if (pending) return pending;
    const p = this.doEnsure(spec).finally(() => this.starting.delete(spec.replicaId));
    this.starting.set(spec.replicaId, p);
    return p;
  }

  private async doEnsure(spec: ReplicaSpec): Promise<ReplicaHandle> {
    const existing = await this.readRecord(spec.replicaId);
    if (existing && (await ownedBy(existing.pid, spec.replicaId))) return existing;

    await mkdir(join(this.o.stateDir, 'replicas'), { recursive: true });
    await mkdir(join(this.o.stateDir, 'logs'), { recursive: true });
    const port = await freePort(this.host);
    const vars: Record<string, string> = {
      port: String(port),
      host: this.host,
      model: spec.model,
      task: spec.task,
      variant: spec.variantId,
      weights: `${spec.pipelineId}.${spec.variantId}`,
      cacheDir: this.o.cacheDir,
      maxConcurrency: String(spec.maxConcurrency),
      replicaId: spec.replicaId,
      gpu: spec.gpu,
    };
    const template =
      this.o.command ||
      [
        process.execPath,
        simulatorEntry(),
        '--host {host} --port {port} --model {model} --task {task}',
        '--max-concurrency {maxConcurrency} --cache-dir {cacheDir} --weights-key {weights}',
        ...this.o.simulatorArgs,
        `--speed ${SIM_GPUS[spec.gpu]?.speed ?? 1}`,
      ].join(' ');
    const command = template.replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? quote(vars[k]) : m));
    const log = await open(join(this.o.stateDir, 'logs', `${spec.replicaId}.log`), 'a');
    const child = spawn('/bin/sh', ['-c', `exec ${command}`], {
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      env: { ...process.env, INFERCP_REPLICA_ID: spec.replicaId, INFERCP_DEPLOYMENT_ID: spec.deploymentId },
    });
    await log.close();
    const pid = child.pid;
    if (pid === undefined) throw new ProviderError(`could not start replica ${spec.replicaId}: ${command}`);
    child.unref();
    const record: ReplicaRecord = {
      replicaId: spec.replicaId,
      deploymentId: spec.deploymentId,
      providerId: String(pid),
      address: `http://${this.o.advertiseHost ?? this.host}:${port}`,
      pid,
      port,
      startedAt: new Date().toISOString(),
    };
    await writeFile(this.recordPath(spec.replicaId), JSON.stringify(record));
    return record;
  }

  async health(handle: ReplicaHandle): Promise<ReplicaHealth> {
    const rec = await this.readRecord(handle.replicaId);
    if (!rec || !alive(rec.pid)) return 'gone';
    try {
      const res = await request(`${handle.address}/health`, { method: 'GET', headersTimeout: 2000, bodyTimeout: 2000 });
      await res.body.dump();
      return res.statusCode === 200 ? 'ready' : 'starting';
    } catch {
      return 'starting';
    }
  }

  /**
   * Running plus waiting requests, from the simulator's /stats or vLLM's
   * Prometheus gauges; null when the server exposes neither.
   */
  async inFlight(handle: ReplicaHandle): Promise<number | null> {
    const get = async (path: string) => {
      const res = await request(`${handle.address}${path}`, { method: 'GET', headersTimeout: 2000, bodyTimeout: 2000 });
      const text = await res.body.text();
      return res.statusCode === 200 ? text : null;
    };
    try {
      const stats = await get('/stats');
      if (stats) {
        const j = JSON.parse(stats) as { active?: number; queued?: number };
        if (typeof j.active === 'number') return j.active + (j.queued ?? 0);
      }
      const metrics = await get('/metrics');
      if (metrics) {
        const sum = (name: string) =>
          [...metrics.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
        if (metrics.includes('vllm:num_requests_running')) return sum('vllm:num_requests_running') + sum('vllm:num_requests_waiting');
      }
    } catch {
      return null;
    }
    return null;
  }

  async stopReplica(replicaId: string): Promise<void> {
    const rec = await this.readRecord(replicaId);
    if (rec && (await ownedBy(rec.pid, replicaId))) {
      const signal = (sig: NodeJS.Signals) => {
        try {
          process.kill(-rec.pid, sig);
        } catch {
          /* already gone */
        }
      };
      signal('SIGTERM');
      const deadline = Date.now() + 5000;
      while (alive(rec.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (alive(rec.pid)) signal('SIGKILL');
      while (alive(rec.pid) && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 20));
    }
    await rm(this.recordPath(replicaId), { force: true });
  }

  /** Stops every replica this state directory knows (a finished test run or benchmark); returns how many. */
  async stopAll(): Promise<number> {
    const running = await this.listReplicas();
    for (const r of running) await this.stopReplica(r.replicaId);
    return running.length;
  }

  async listReplicas(): Promise<ReplicaHandle[]> {
    let names: string[] = [];
    try {
      names = await readdir(join(this.o.stateDir, 'replicas'));
    } catch {
      return [];
    }
    const out: ReplicaHandle[] = [];
    for (const n of names.filter((x) => x.endsWith('.json'))) {
      const rec = await this.readRecord(n.slice(0, -5));
      if (rec && (await ownedBy(rec.pid, rec.replicaId))) out.push(rec);
      else await rm(join(this.o.stateDir, 'replicas', n), { force: true });
    }
    return out;
  }
}
