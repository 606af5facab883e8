import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { freePort } from '../../common/net';
import { ProviderError, ProviderPermanentError } from '../errors';
import type { ProviderAdapter, ReplicaHandle, ReplicaHealth, ReplicaSpec } from '../provider';
import { replicaHealth, replicaInFlight } from '../replica-http';
import { simulatedEngine, simulatorFlags } from '../../simulator/engine';
import { engineArgs, quantizationArgs } from '../../bundle/bundle';

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

const engineFlagsOf = (e: ReplicaSpec['engine']): string[] =>
  e ? [...quantizationArgs(e.quantization, e.settings), ...engineArgs(e.settings)] : [];

interface ReplicaRecord extends ReplicaHandle {
  pid: number;
  port: number;
  startedAt: string;
  /** The process's start time (startTicks), so that a reused pid is not taken for it. */
  startTicks?: string;
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

/** The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): set at fork, kept across exec. */
async function startTicks(pid: number): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: the fields after it follow its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * True when the record's process is still the one we started (guards against pid reuse): same pid and start time.
 * Not by its environment: between fork and exec a just-spawned child still shows our own, and a record read then
 * would be taken for a dead replica's and removed. Records from before start times, or without /proc (macOS):
 * the environment, then liveness.
 */
async function ownedBy(rec: Pick<ReplicaRecord, 'pid' | 'replicaId' | 'startTicks'>): Promise<boolean> {
  if (rec.startTicks) return (await startTicks(rec.pid)) === rec.startTicks;
  try {
    const env = await readFile(`/proc/${rec.pid}/environ`, 'utf8');
    return env.split('\0').includes(`INFERCP_REPLICA_ID=${rec.replicaId}`);
  } catch {
    return alive(rec.pid);
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
    if (existing && (await ownedBy(existing))) return existing;

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
    // The variant's engine flags for a real engine's template (vllm serve ... {engineArgs}), one shell word each; only
    // worked out when the template asks (the built-in simulator models the settings instead, below).
    const engineFlags = this.o.command.includes('{engineArgs}') ? engineFlagsOf(spec.engine) : [];
    const template =
      this.o.command ||
      [
        process.execPath,
        simulatorEntry(),
        '--host {host} --port {port} --model {model} --task {task}',
        '--max-concurrency {maxConcurrency} --cache-dir {cacheDir} --weights-key {weights}',
        ...this.o.simulatorArgs,
        // The variant's engine settings, as the simulator models them (src/simulator/engine.ts).
        ...simulatorFlags(
          simulatedEngine({
            gpu: spec.gpu,
            quantization: spec.engine?.quantization ?? null,
            engineConfig: spec.engine?.settings ?? null,
            maxConcurrency: spec.maxConcurrency,
          }),
        ),
      ].join(' ');
    const command = template.replace(/\{(\w+)\}/g, (m, k: string) =>
      k === 'engineArgs' ? engineFlags.map(quote).join(' ') : k in vars ? quote(vars[k]) : m,
    );
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
      startTicks: (await startTicks(pid)) ?? undefined,
    };
    await writeFile(this.recordPath(spec.replicaId), JSON.stringify(record));
    return record;
  }

  async health(handle: ReplicaHandle): Promise<ReplicaHealth> {
    const rec = await this.readRecord(handle.replicaId);
    if (!rec || !alive(rec.pid)) return 'gone';
    return replicaHealth(handle.address);
  }

  /**
   * Running plus waiting requests, from the simulator's /stats or vLLM's
   * Prometheus gauges; null when the server exposes neither.
   */
  inFlight(handle: ReplicaHandle): Promise<number | null> {
    return replicaInFlight(handle.address);
  }

  async stopReplica(replicaId: string): Promise<void> {
    const rec = await this.readRecord(replicaId);
    if (rec && (await ownedBy(rec))) {
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

  /** The replica's last `tail` lines of <stateDir>/logs/<id>.log (kept after it stopped); null when it has none. */
  logs(replicaId: string, tail: number): Promise<string[] | null> {
    return tailFile(join(this.o.stateDir, 'logs', `${replicaId}.log`), tail);
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
      if (rec && (await ownedBy(rec))) out.push(rec);
      else await rm(join(this.o.stateDir, 'replicas', n), { force: true });
    }
    return out;
  }
}

/** Bytes read from a log's end per line asked for (lines longer than this are cut at the start of the window). */
const TAIL_BYTES_PER_LINE = 1024;

/** The last `lines` lines of a file, oldest first, reading only its end; null when the file does not exist. */
export async function tailFile(path: string, lines: number): Promise<string[] | null> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const { size } = await fh.stat();
    const window = Math.min(size, Math.max(1, lines) * TAIL_BYTES_PER_LINE);
    const buf = Buffer.alloc(window);
    await fh.read(buf, 0, window, size - window);
    const text = buf.toString('utf8');
    const all = text.split('\n');
    if (all[all.length - 1] === '') all.pop();
    // A window that starts inside a line drops that partial line (unless it is all there is).
    if (window < size && all.length > 1) all.shift();
    return all.slice(-lines);
  } finally {
    await fh.close();
  }
}
