// An in-process fake of Modal's control plane (../shared/reference/providers-api.md §2.5, option 1): the object the
// real `modal` SDK (0.11.1) takes as `ModalClientParams.cpClient`. The SDK's own logic still runs against it (request
// building, validation, id-format dispatch, error mapping, the scheduling wait, paging); each Sandbox runs our replica
// simulator through the local provider, and its tunnel points at the simulator's port (plain http: the adapter builds
// the replica URL from host and port with the scheme of the control plane it talks to).
//
// State lives under a directory, one folder per account (token id), so that a restarted worker, or the api in another
// process, sees the same Sandboxes. Knobs for tests: capacity, injected failures, a clock for the 24 h timeout, crash.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ClientError, Status } from 'nice-grpc';
import { LocalProvider } from '../local/local.provider';

export interface ModalFakeOptions {
  /** Sandboxes, apps and the simulator processes' records live here. */
  stateDir: string;
  /** Which token pairs the fake accepts; default: the demo tokens (ak-demo-… with as-demo-…). */
  accepts?: (tokenId: string, tokenSecret: string) => boolean;
  /** Environments every account has (default ["main"], the first is the default one). */
  environments?: string[];
  /** Simulator flags (latency knobs) for every Sandbox. */
  simulatorArgs?: string[];
  /** Weight cache of the simulators. */
  cacheDir?: string;
  /** Seconds since the epoch; tests move it to reach a Sandbox's timeout. */
  now?: () => number;
  /** Sandboxes per list page (the SDK pages by createdAt). */
  pageSize?: number;
}

/** One RPC as the SDK sent it: the method and the request. */
export interface RecordedCall {
  method: string;
  request: Record<string, unknown>;
}

/** The demo rule: token ids ak-demo-… with secrets as-demo-…; as-demo-revoked is refused (for tests of a bad token). */
export const demoTokenAccepted = (tokenId: string, tokenSecret: string) =>
  /^ak-demo-[A-Za-z0-9_-]+$/.test(tokenId) && /^as-demo-[A-Za-z0-9_-]+$/.test(tokenSecret) && tokenSecret !== 'as-demo-revoked';

interface SandboxRecord {
  sandboxId: string;
  appId: string;
  name: string | null;
  tags: { tagName: string; tagValue: string }[];
  /** Seconds since the epoch (float, as the SDK pages by it). */
  createdAt: number;
  timeoutSecs: number;
  gpu: string | null;
  model: string;
  /** 0 while running; 1 success, 2 failure, 3 terminated, 4 timeout once finished. */
  status: number;
  exitcode: number | null;
  /** The simulator's port, once started. */
  port: number | null;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const base62 = (bytes: Buffer, n: number) => Array.from(bytes.subarray(0, n), (b) => BASE62[b % 62]).join('');
const hashId = (prefix: string, ...parts: string[]) => `${prefix}-${base62(createHash('sha256').update(parts.join('\0')).digest(), 22)}`;
const fail = (method: string, code: Status, details: string) => new ClientError(`/modal.client.ModalClient/${method}`, code, details);
const tagMap = (tags: { tagName: string; tagValue: string }[]) => Object.fromEntries(tags.map((t) => [t.tagName, t.tagValue]));

/** The fake control plane: `client(tokenId, tokenSecret)` is what a ModalClient takes as cpClient. */
export class ModalFake {
  /** Every RPC any client of this fake sent, in order. */
  readonly calls: RecordedCall[] = [];
  /** Most running GPU Sandboxes per account; past it SandboxCreate fails with RESOURCE_EXHAUSTED. null: no limit. */
  capacity: number | null = null;
  private readonly failures: { method: string; code: Status; details: string }[] = [];
  private readonly secrets = new Map<string, Record<string, string>>();
  private readonly local: LocalProvider;
  private readonly environments: string[];
  private readonly now: () => number;
  /** Serialises writes per account (name uniqueness, capacity). */
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ModalFakeOptions) {
    this.environments = o.environments ?? ['main'];
    this.now = o.now ?? (() => Date.now() / 1000);
    this.local = this.simulators([]);
  }

  private simulators(extra: string[]) {
    return new LocalProvider({
      stateDir: resolve(this.o.stateDir, 'simulators'),
      cacheDir: this.o.cacheDir ?? resolve(this.o.stateDir, 'weights'),
      command: '',
      simulatorArgs: [...(this.o.simulatorArgs ?? []), ...extra],
    });
  }

  /** The next call of `method` fails with `code` (UNAUTHENTICATED, UNAVAILABLE, RESOURCE_EXHAUSTED, ...). */
  failNext(method: string, code: Status, details = `injected ${Status[code]}`) {
    this.failures.push({ method, code, details });
  }

  /** A cpClient bound to one token pair: every call checks it as Modal's auth would (UNAUTHENTICATED otherwise). */
  client(tokenId: string, tokenSecret: string): unknown {
    const account = createHash('sha256').update(tokenId).digest('hex').slice(0, 16);
    return new Proxy(
      {},
      {
        get: (_t, prop) => {
          if (typeof prop !== 'string' || prop === 'then') return undefined;
          return (request: Record<string, unknown> = {}) => {
            this.calls.push({ method: prop, request });
            if (prop.endsWith('Streaming')) return this.stream(prop, request);
            return this.call(account, tokenId, tokenSecret, prop, request);
          };
        },
      },
    );
  }

  // A streaming RPC (ImageJoinStreaming): images are always built here, so one item that says so.
  private async *stream(_method: string, request: Record<string, unknown>) {
    await Promise.resolve();
    yield { result: { status: 1 }, imageId: request.imageId };
  }

  private async call(account: string, tokenId: string, tokenSecret: string, method: string, req: Record<string, unknown>) {
    const accepts = this.o.accepts ?? demoTokenAccepted;
    if (!accepts(tokenId, tokenSecret)) throw fail(method, Status.UNAUTHENTICATED, `Token ${tokenId} is invalid or has been revoked`);
    const injected = this.failures.findIndex((f) => f.method === method);
    if (injected >= 0) {
      const [f] = this.failures.splice(injected, 1);
      throw fail(method, f.code, f.details);
    }
    const handler = (this.handlers as Record<string, (a: string, r: Record<string, unknown>) => Promise<unknown>>)[method];
    if (!handler) throw fail(method, Status.UNIMPLEMENTED, `the Modal fake does not implement ${method}`);
    const run = this.lock.then(() => handler.call(this, account, req));
    this.lock = run.catch(() => undefined);
    return run;
  }

  private dir(account: string, ...rest: string[]) {
    return join(this.o.stateDir, 'accounts', account, ...rest);
  }

  private async sandboxes(account: string): Promise<SandboxRecord[]> {
    let names: string[] = [];
    try {
      names = await readdir(this.dir(account, 'sandboxes'));
    } catch {
      return [];
    }
    const out: SandboxRecord[] = [];
    const alive = new Set((await this.local.listReplicas()).map((h) => h.replicaId));
    for (const n of names.filter((x) => x.endsWith('.json'))) {
      const sb = JSON.parse(await readFile(this.dir(account, 'sandboxes', n), 'utf8')) as SandboxRecord;
      if (sb.status === 0 && this.now() >= sb.createdAt + sb.timeoutSecs) await this.finish(account, sb, 4, null);
      else if (sb.status === 0 && sb.port !== null && !alive.has(sb.sandboxId)) await this.finish(account, sb, 2, 1);
      out.push(sb);
    }
    return out.sort((a, b) => b.createdAt - a.createdAt);
  }

  private save(account: string, sb: SandboxRecord) {
    return writeFile(this.dir(account, 'sandboxes', `${sb.sandboxId}.json`), JSON.stringify(sb));
  }

  private async finish(account: string, sb: SandboxRecord, status: number, exitcode: number | null) {
    await this.local.stopReplica(sb.sandboxId);
    Object.assign(sb, { status, exitcode });
    await this.save(account, sb);
  }

  private async sandbox(account: string, method: string, id: unknown): Promise<SandboxRecord> {
    const sb = (await this.sandboxes(account)).find((s) => s.sandboxId === id);
    if (!sb) throw fail(method, Status.NOT_FOUND, `Sandbox ${String(id)} not found`);
    return sb;
  }

  private async app(account: string, appId: unknown): Promise<{ appId: string; appName: string; environmentName: string } | null> {
    try {
      return JSON.parse(await readFile(this.dir(account, 'apps', `${String(appId)}.json`), 'utf8')) as {
        appId: string;
        appName: string;
        environmentName: string;
      };
    } catch {
      return null;
    }
  }

  private environment(method: string, name: unknown): string {
    const env = typeof name === 'string' && name !== '' ? name : this.environments[0];
    if (!this.environments.includes(env)) throw fail(method, Status.NOT_FOUND, `Environment '${env}' not found`);
    return env;
  }

  /** Running Sandboxes of every account (tests: "no sandbox is left running"). */
  async running(): Promise<{ sandboxId: string; name: string | null; tags: Record<string, string> }[]> {
    let accounts: string[] = [];
    try {
      accounts = await readdir(join(this.o.stateDir, 'accounts'));
    } catch {
      return [];
    }
    const out = [];
    for (const a of accounts) {
      for (const sb of await this.sandboxes(a))
        if (sb.status === 0) out.push({ sandboxId: sb.sandboxId, name: sb.name, tags: tagMap(sb.tags) });
    }
    return out;
  }

  /** A Sandbox's last `tail` lines of output (its simulator's stdout and stderr), as Modal's sandbox logs show them. */
  logs(sandboxId: string, tail: number): Promise<string[] | null> {
    return this.local.logs(sandboxId, tail);
  }

  /** Kills a Sandbox's server as a crash would: the next SandboxWait reports exit code 1. */
  async crash(sandboxId: string) {
    await this.local.stopReplica(sandboxId);
  }

  /** Stops every simulator this fake started (a finished test run, `npm start` shutting down). */
  async stopAll(): Promise<number> {
    return this.local.stopAll();
  }

  private readonly handlers = {
    async environmentList(this: ModalFake) {
      return { items: this.environments.map((name) => ({ name, environmentId: hashId('en', name), webhookSuffix: '', createdAt: 0 })) };
    },
    async environmentGetOrCreate(this: ModalFake, _a: string, req: Record<string, unknown>) {
      const name = this.environment('EnvironmentGetOrCreate', req.deploymentName);
      return { environmentId: hashId('en', name), metadata: { name, settings: { imageBuilderVersion: '2025.06', webhookSuffix: '' } } };
    },
    async appGetOrCreate(this: ModalFake, account: string, req: Record<string, unknown>) {
      const environmentName = this.environment('AppGetOrCreate', req.environmentName);
      const appName = String(req.appName ?? '');
      const appId = hashId('ap', account, environmentName, appName);
      if (!(await this.app(account, appId))) {
        if (req.objectCreationType !== 1) throw fail('AppGetOrCreate', Status.NOT_FOUND, `App '${appName}' not found`);
        await mkdir(this.dir(account, 'apps'), { recursive: true });
        await writeFile(this.dir(account, 'apps', `${appId}.json`), JSON.stringify({ appId, appName, environmentName }));
      }
      return { appId };
    },
    async imageGetOrCreate(this: ModalFake, _a: string, req: Record<string, unknown>) {
      return { imageId: hashId('im', JSON.stringify(req.image ?? {})), result: { status: 1 } };
    },
    async secretGetOrCreate(this: ModalFake, _a: string, req: Record<string, unknown>) {
      const secretId = `st-${base62(randomBytes(22), 22)}`;
      this.secrets.set(secretId, { ...((req.envDict as Record<string, string>) ?? {}) });
      return { secretId };
    },
    async sandboxCreate(this: ModalFake, account: string, req: Record<string, unknown>) {
      const def = (req.definition ?? {}) as Record<string, unknown>;
      const app = await this.app(account, req.appId);
      if (!app) throw fail('SandboxCreate', Status.NOT_FOUND, `App ${String(req.appId)} not found`);
      const name = typeof def.name === 'string' && def.name !== '' ? def.name : null;
      const running = (await this.sandboxes(account)).filter((s) => s.status === 0);
      if (name && running.some((s) => s.appId === app.appId && s.name === name)) {
        throw fail('SandboxCreate', Status.ALREADY_EXISTS, `Sandbox with name '${name}' already exists in App '${app.appName}'`);
      }
      const gpuConfig = (def.resources as { gpuConfig?: { gpuType?: string; count?: number } } | undefined)?.gpuConfig;
      const gpu = gpuConfig?.gpuType ? `${gpuConfig.gpuType}${(gpuConfig.count ?? 1) > 1 ? `:${gpuConfig.count}` : ''}` : null;
      if (gpu && this.capacity !== null && running.filter((s) => s.gpu).length >= this.capacity) {
        throw fail('SandboxCreate', Status.RESOURCE_EXHAUSTED, `No ${gpu} capacity available in the requested regions right now`);
      }
      const args = (def.entrypointArgs as string[] | undefined) ?? [];
      const env: Record<string, string> = {};
      for (const id of (def.secretIds as string[] | undefined) ?? []) Object.assign(env, this.secrets.get(id) ?? {});
      const ports = ((def.openPorts as { ports?: { port: number }[] } | undefined)?.ports ?? []).map((p) => p.port);
      const sb: SandboxRecord = {
        sandboxId: `sb-${base62(randomBytes(22), 22)}`,
        appId: app.appId,
        name,
        tags: (req.tags as SandboxRecord['tags'] | undefined) ?? [],
        createdAt: this.now(),
        timeoutSecs: Number(def.timeoutSecs ?? 300),
        gpu,
        model: args[0] === 'vllm' && args[1] === 'serve' ? args[2] : 'sim/tiny-chat',
        status: 0,
        exitcode: null,
        port: null,
      };
      await mkdir(this.dir(account, 'sandboxes'), { recursive: true });
      await this.save(account, sb);
      if (ports.includes(8000)) {
        const flag = (f: string) => (args.includes(f) ? args[args.indexOf(f) + 1] : undefined);
        const key = env.VLLM_API_KEY ?? flag('--api-key');
        const tags = tagMap(sb.tags);
        const h = await this.simulators(key ? [`--api-key '${key.replace(/'/g, '')}'`] : []).ensureReplica({
          replicaId: sb.sandboxId,
          deploymentId: tags.infercp_deployment ?? 'modal',
          pipelineId: tags.infercp_pipeline ?? 'modal',
          variantId: tags.infercp_variant ?? sb.sandboxId,
          model: sb.model,
          task: (env.INFERCP_TASK as 'CHAT') ?? 'CHAT',
          gpu: 'sim',
          maxConcurrency: Number(flag('--max-num-seqs') ?? 30),
          revisionId: null,
        });
        sb.port = Number(new URL(h.address).port);
        await this.save(account, sb);
      }
      return { sandboxId: sb.sandboxId };
    },
    async sandboxGetTaskId(this: ModalFake, account: string, req: Record<string, unknown>) {
      const sb = await this.sandbox(account, 'SandboxGetTaskId', req.sandboxId);
      if (sb.status !== 0) return { taskResult: { status: sb.status, exitcode: sb.exitcode ?? 0, exception: '' } };
      return { taskId: hashId('ta', sb.sandboxId) };
    },
    async sandboxGetTunnels(this: ModalFake, account: string, req: Record<string, unknown>) {
      const sb = await this.sandbox(account, 'SandboxGetTunnels', req.sandboxId);
      if (sb.status !== 0) return { result: { status: sb.status }, tunnels: [] };
      return { result: { status: 1 }, tunnels: sb.port ? [{ host: '127.0.0.1', port: sb.port, containerPort: 8000 }] : [] };
    },
    async sandboxWait(this: ModalFake, account: string, req: Record<string, unknown>) {
      const sb = await this.sandbox(account, 'SandboxWait', req.sandboxId);
      return { result: sb.status === 0 ? { status: 0 } : { status: sb.status, exitcode: sb.exitcode ?? 0 }, metadata: { appId: sb.appId } };
    },
    async sandboxTerminate(this: ModalFake, account: string, req: Record<string, unknown>) {
      const sb = await this.sandbox(account, 'SandboxTerminate', req.sandboxId);
      if (sb.status === 0) await this.finish(account, sb, 3, 137);
      return {};
    },
    async sandboxGetFromNameV2(this: ModalFake, account: string, req: Record<string, unknown>) {
      return this.handlers.sandboxGetFromName.call(this, account, req);
    },
    async sandboxGetFromName(this: ModalFake, account: string, req: Record<string, unknown>) {
      const environmentName = this.environment('SandboxGetFromName', req.environmentName);
      const appId = hashId('ap', account, environmentName, String(req.appName ?? ''));
      const sb = (await this.sandboxes(account)).find((s) => s.appId === appId && s.name === req.sandboxName && s.status === 0);
      if (!sb) throw fail('SandboxGetFromName', Status.NOT_FOUND, `Sandbox '${String(req.sandboxName)}' not found`);
      return { sandboxId: sb.sandboxId };
    },
    async sandboxListV2(this: ModalFake, account: string, req: Record<string, unknown>) {
      return this.handlers.sandboxList.call(this, account, req);
    },
    async sandboxList(this: ModalFake, account: string, req: Record<string, unknown>) {
      const want = (req.tags as SandboxRecord['tags'] | undefined) ?? [];
      const before = typeof req.beforeTimestamp === 'number' ? req.beforeTimestamp : Infinity;
      const page = (await this.sandboxes(account))
        .filter((s) => (req.includeFinished || s.status === 0) && (!req.appId || s.appId === req.appId) && s.createdAt < before)
        .filter((s) => want.every((t) => s.tags.some((x) => x.tagName === t.tagName && x.tagValue === t.tagValue)))
        .slice(0, this.o.pageSize ?? 25);
      return { sandboxes: page.map((s) => ({ id: s.sandboxId, appId: s.appId, createdAt: s.createdAt, taskInfo: {}, tags: s.tags })) };
    },
    async sandboxTagsGet(this: ModalFake, account: string, req: Record<string, unknown>) {
      return { tags: (await this.sandbox(account, 'SandboxTagsGet', req.sandboxId)).tags };
    },
  };
}
