import { createHash, createHmac } from 'node:crypto';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { request } from 'undici';
import { z } from 'zod';
import { LOGGER, PRISMA } from '../common/core.module';
import { bearer, hashSecret, secretFromPlaintext } from '../common/secrets';
import { zodMessage } from '../common/zod';
import { CHANNEL_KEYS, notify } from '../database/notify';
import { CONFIG, type Config } from '../config/config';
import { secretsKey } from '../credentials/secrets-key';
import type { PrismaClient, Workspace } from '../database/prisma';
import { DeploymentsService } from '../deployments/deployments.service';
import { DomainError, ErrorCode } from '../domain/errors';
import { PLANS } from '../domain/plans';
import { PipelinesService } from '../pipelines/pipelines.service';
import type { PlaygroundQuota } from './playground.types';

const chatBody = z.object({
  deploymentId: z.string().min(1).max(200).optional(),
  pipelineId: z.string().min(1).max(200).optional(),
  messages: z
    .array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(100_000) }), {
      error: 'messages must be a list of { role, content }',
    })
    .min(1, 'messages must hold at least one message')
    .max(100, 'messages may hold at most 100 messages'),
  maxTokens: z
    .number()
    .int('maxTokens must be an integer')
    .min(1, 'maxTokens must be at least 1')
    .max(4096, 'maxTokens must be at most 4096')
    .default(256),
  temperature: z.number().min(0, 'temperature must be from 0 to 2').max(2, 'temperature must be from 0 to 2').optional(),
});
export type PlaygroundChat = z.infer<typeof chatBody>;

/** A refusal before anything streamed: the HTTP status and the code the page shows. */
export class PlaygroundError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const HTTP_OF: Partial<Record<ErrorCode, number>> = {
  [ErrorCode.UNAUTHENTICATED]: 401,
  [ErrorCode.FORBIDDEN]: 403,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.BAD_USER_INPUT]: 400,
  [ErrorCode.CONFLICT]: 409,
  [ErrorCode.PLAN_LIMIT]: 403,
};

/** Where a playground request goes: a deployment, and the workspace whose playground key reaches it. */
interface Target {
  deploymentId: string;
  keyWorkspaceId: string;
  shared: boolean;
  /** No replica was ready when the request arrived: it waits for one to start (the cold start the page shows). */
  coldStart: boolean;
}

const utcDay = (t: number) => new Date(t - (t % 86_400_000));

/**
 * The playground: a prompt sent from the console to a deployment through the gateway (admission, usage and cold
 * start as for any client), streamed back with its token counts, time to first token and total latency. Requests
 * carry a playground key per workspace whose secret is derived from SECRETS_KEY (an HMAC of the workspace id), so it
 * is never stored, shown or logged; its row (name "console playground") is an ordinary workspace key, revocable.
 * Starter workspaces cannot deploy: they reach their pipeline's model on a shared playground deployment (FLEX, scaled
 * to zero when idle) and are held to PLAYGROUND_STARTER_DAILY_REQUESTS a UTC day.
 */
@Injectable()
export class PlaygroundService {
  private gatewayUrl: string | null = null;
  private readonly sharing = new Map<string, Promise<string>>();

  constructor(
    @Inject(PRISMA) private readonly prisma: PrismaClient,
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly deployments: DeploymentsService,
    private readonly pipelines: PipelinesService,
  ) {}

  /** The api's own address once it listens: the playground calls its gateway there. */
  setGatewayUrl(url: string) {
    this.gatewayUrl = url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//127.0.0.1:');
  }

  private limit(ws: Workspace): number | null {
    return PLANS[ws.plan].playgroundPerDay === null ? null : this.config.PLAYGROUND_STARTER_DAILY_REQUESTS;
  }

  async quota(ws: Workspace, now = Date.now()): Promise<PlaygroundQuota> {
    const day = utcDay(now);
    const row = await this.prisma.playgroundUsage.findUnique({ where: { workspaceId_day: { workspaceId: ws.id, day } } });
    const limit = this.limit(ws);
    const used = row?.requests ?? 0;
    return { limit, used, remaining: limit === null ? null : Math.max(0, limit - used), resetsAt: new Date(day.getTime() + 86_400_000) };
  }

  /** Counts one request against today's quota; false when it is spent (the count is not raised then). */
  private async take(ws: Workspace, now: number): Promise<boolean> {
    const limit = this.limit(ws) ?? 2 ** 31 - 1;
    const rows = await this.prisma.$queryRawUnsafe<Array<{ requests: number }>>(
      `INSERT INTO "PlaygroundUsage" ("workspaceId", day, requests) VALUES ($1, $2::date, 1)
       ON CONFLICT ("workspaceId", day) DO UPDATE SET requests = "PlaygroundUsage".requests + 1 WHERE "PlaygroundUsage".requests < $3
       RETURNING requests`,
      ws.id,
      utcDay(now).toISOString().slice(0, 10),
      limit,
    );
    return rows.length > 0;
  }

  /** Gives back a request that never reached a replica. */
  private async giveBack(ws: Workspace, now: number) {
    await this.prisma.$executeRawUnsafe(
      `UPDATE "PlaygroundUsage" SET requests = GREATEST(0, requests - 1) WHERE "workspaceId" = $1 AND day = $2::date`,
      ws.id,
      utcDay(now).toISOString().slice(0, 10),
    );
  }

  private async authenticate(headers: IncomingHttpHeaders): Promise<Workspace> {
    const secret = bearer(headers.authorization);
    if (!secret) throw new PlaygroundError(401, 'UNAUTHENTICATED', 'missing management token: send Authorization: Bearer <token>');
    const token = await this.prisma.managementToken.findUnique({ where: { hash: hashSecret(secret) }, include: { workspace: true } });
    if (!token || token.revokedAt) throw new PlaygroundError(401, 'UNAUTHENTICATED', 'invalid or revoked management token');
    return token.workspace;
  }

  /** The playground key of a workspace: derived, never stored in clear; its row made on first use. */
  private async playgroundKey(workspaceId: string): Promise<string> {
    const mac = createHmac('sha256', secretsKey(this.config, this.log)).update(`playground-key:${workspaceId}`).digest('base64url');
    const secret = secretFromPlaintext(`sk_pg${mac}`);
    const id = `key_pg_${createHash('sha256').update(workspaceId).digest('hex').slice(0, 20)}`;
    const row = await this.prisma.apiKey.findUnique({ where: { id } });
    if (row?.revokedAt)
      throw new PlaygroundError(403, 'PLAYGROUND_KEY_REVOKED', `the console playground key (${row.prefix}) of this workspace was revoked`);
    // Made under another SECRETS_KEY (it was replaced): the row takes the secret this key derives; the old one stops working.
    if (row && row.hash !== secret.hash) {
      await this.prisma.apiKey.update({ where: { id }, data: { prefix: secret.prefix, hash: secret.hash } });
      await notify(this.prisma, CHANNEL_KEYS, row.hash);
    }
    // Concurrent first requests race to make the row: one insert wins, the others find it made.
    if (!row)
      await this.prisma.$executeRawUnsafe(
        `INSERT INTO "ApiKey" (id, "workspaceId", scope, name, prefix, hash, "issuedAt") VALUES ($1, $2, 'WORKSPACE', 'console playground', $3, $4, now())
         ON CONFLICT DO NOTHING`,
        id,
        workspaceId,
        secret.prefix,
        secret.hash,
      );
    return secret.plaintext;
  }

  private async target(ws: Workspace, body: PlaygroundChat): Promise<Target> {
    if (PLANS[ws.plan].canDeploy) {
      if (!body.deploymentId) throw new PlaygroundError(400, 'BAD_USER_INPUT', 'deploymentId: pick a deployment of this workspace');
      const d = await this.prisma.deployment.findFirst({ where: { id: body.deploymentId, workspaceId: ws.id } });
      if (!d) throw new PlaygroundError(404, 'NOT_FOUND', `deployment ${body.deploymentId} not found`);
      if (d.status !== 'ACTIVE')
        throw new PlaygroundError(409, 'CONFLICT', `deployment ${d.id} is ${d.status}; the playground needs it ACTIVE (start it first)`);
      return { deploymentId: d.id, keyWorkspaceId: ws.id, shared: false, coldStart: !(await this.anyReady(d.id)) };
    }
    if (!body.pipelineId) throw new PlaygroundError(400, 'BAD_USER_INPUT', 'pipelineId: pick a pipeline of this workspace');
    const p = await this.prisma.pipeline.findFirst({ where: { id: body.pipelineId, workspaceId: ws.id } });
    if (!p) throw new PlaygroundError(404, 'NOT_FOUND', `pipeline ${body.pipelineId} not found`);
    if (p.task !== 'CHAT')
      throw new PlaygroundError(400, 'BAD_USER_INPUT', `pipeline ${p.name} is ${p.task}: the playground sends chat prompts`);
    const key = `${p.task}\0${p.model}`;
    // Read before the shared deployment is made or started: a request that finds none ready pays for it.
    const warm = await this.prisma.replica.count({
      where: {
        state: 'READY',
        deployment: { workspaceId: this.config.PLAYGROUND_WORKSPACE_ID, status: 'ACTIVE', pipeline: { task: p.task, model: p.model } },
      },
    });
    let pending = this.sharing.get(key);
    if (!pending) {
      pending = this.sharedDeployment(p.task, p.model).finally(() => this.sharing.delete(key));
      this.sharing.set(key, pending);
    }
    const deploymentId = await pending;
    return {
      deploymentId,
      keyWorkspaceId: this.config.PLAYGROUND_WORKSPACE_ID,
      shared: true,
      coldStart: warm === 0 || !(await this.anyReady(deploymentId)),
    };
  }

  private async anyReady(deploymentId: string): Promise<boolean> {
    return (await this.prisma.replica.count({ where: { deploymentId, state: 'READY' } })) > 0;
  }

  /** The shared playground deployment of a model (made on first use), once ACTIVE. */
  private async sharedDeployment(task: 'CHAT', model: string): Promise<string> {
    const ws = await this.prisma.workspace.upsert({
      where: { id: this.config.PLAYGROUND_WORKSPACE_ID },
      create: { id: this.config.PLAYGROUND_WORKSPACE_ID, name: 'shared playground', plan: 'TEAM' },
      update: {},
    });
    const name = `playground-${createHash('sha256').update(`${task}:${model}`).digest('hex').slice(0, 12)}`;
    // One finder-or-maker at a time across api processes (the in-process map only joins this process's callers): the
    // transaction holds the advisory lock while the pipeline and the deployment are found or made (each committed on
    // its own), so a second process waits and then finds them.
    const d = await this.prisma.$transaction(
      async (tx) => {
        await tx.$queryRaw`SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtext(${`playground:${ws.id}:${name}`}))`;
        const pipeline =
          (await this.prisma.pipeline.findUnique({ where: { workspaceId_name: { workspaceId: ws.id, name } } })) ??
          (await this.pipelines.create(ws.id, { name, task, model }));
        const found = await this.prisma.deployment.findFirst({
          where: { pipelineId: pipeline.id, status: { notIn: ['FAILED', 'DELETED'] } },
          orderBy: { createdAt: 'desc' },
        });
        if (found) return found;
        this.log.info({ model, pipelineId: pipeline.id }, 'deploying the shared playground deployment of a model');
        return (
          await this.deployments.deploy(ws, {
            pipelineId: pipeline.id,
            target: this.config.PLAYGROUND_TARGET,
            gpu: this.config.PLAYGROUND_GPU,
            mode: 'FLEX',
            minReplicas: 0,
            maxReplicas: 1,
            idleTimeoutSeconds: this.config.PLAYGROUND_IDLE_TIMEOUT_SECONDS,
          })
        ).deployment;
      },
      { timeout: 30_000, maxWait: 30_000 },
    );
    if (d.status === 'STOPPED') await this.deployments.lifecycle(ws, d.id, 'START');
    const deadline = Date.now() + this.config.GATEWAY_COLD_START_TIMEOUT_MS;
    for (;;) {
      const now = await this.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } });
      if (now.status === 'ACTIVE') return now.id;
      if (now.status === 'FAILED')
        throw new PlaygroundError(503, 'UNAVAILABLE', `the shared playground deployment failed: ${now.statusReason ?? 'no reason given'}`);
      if (Date.now() > deadline)
        throw new PlaygroundError(503, 'UNAVAILABLE', 'the shared playground deployment is still starting; retry shortly');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Serves POST /playground/chat: refusals as JSON with a status, then an event stream (see the README). */
  async chat(headers: IncomingHttpHeaders, rawBody: unknown, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const now = Date.now();
    let ws: Workspace;
    let target: Target;
    let key: string;
    let taken = false;
    try {
      ws = await this.authenticate(headers);
      let json: unknown;
      try {
        json = typeof rawBody === 'string' ? JSON.parse(rawBody) : rawBody;
      } catch (e) {
        throw new PlaygroundError(400, 'BAD_USER_INPUT', `the body must be JSON: ${(e as Error).message}`);
      }
      const parsed = chatBody.safeParse(json ?? {});
      if (!parsed.success) throw new PlaygroundError(400, 'BAD_USER_INPUT', zodMessage(parsed.error));
      target = await this.target(ws, parsed.data);
      if (!(await this.take(ws, now))) {
        const q = await this.quota(ws, now);
        const hours = Math.ceil((q.resetsAt.getTime() - now) / 3_600_000);
        throw new PlaygroundError(
          429,
          'PLAYGROUND_QUOTA_EXCEEDED',
          `Starter workspaces get ${q.limit} playground requests a day and this one has used them all; the quota resets at ${q.resetsAt.toISOString()} (in about ${hours} h). Upgrade to Pro for an unlimited playground and deployments.`,
        );
      }
      taken = true;
      key = await this.playgroundKey(target.keyWorkspaceId);
      const coldStart = target.coldStart;
      const body = parsed.data;
      const upstream = await request(`${this.gatewayUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: target.deploymentId,
          messages: body.messages,
          max_tokens: body.maxTokens,
          ...(body.temperature !== undefined ? { temperature: body.temperature } : {}),
          stream: true,
          stream_options: { include_usage: true },
        }),
        headersTimeout: this.config.GATEWAY_COLD_START_TIMEOUT_MS + this.config.GATEWAY_TTFB_TIMEOUT_MS,
        bodyTimeout: this.config.GATEWAY_IDLE_TIMEOUT_MS,
      });
      if (upstream.statusCode !== 200) {
        const text = await upstream.body.text();
        let e: { error?: { code?: string; message?: string } } = {};
        try {
          e = JSON.parse(text) as typeof e;
        } catch {
          /* not the OpenAI envelope */
        }
        await this.giveBack(ws, now);
        taken = false;
        throw new PlaygroundError(
          upstream.statusCode,
          e.error?.code ?? `http_${upstream.statusCode}`,
          e.error?.message ?? text.slice(0, 500),
        );
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
      res.flushHeaders();
      // It reached a replica: it counts, whatever happens to the stream now.
      taken = false;
      const send = (ev: Record<string, unknown>) => res.write(`data: ${JSON.stringify(ev)}\n\n`);
      send({ type: 'start', deploymentId: target.deploymentId, shared: target.shared, coldStart });
      let ttftMs: number | null = null;
      let usage = { prompt_tokens: 0, completion_tokens: 0 };
      let pending = '';
      let failure: { code?: string; message?: string } | null = null;
      for await (const chunk of upstream.body) {
        pending += (chunk as Buffer).toString('utf8');
        let end;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const ev = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const data = /^data: ?(.*)$/ms.exec(ev)?.[1];
          if (!data || data === '[DONE]') continue;
          const obj = JSON.parse(data) as {
            choices?: Array<{ delta?: { content?: string } }>;
            usage?: typeof usage | null;
            error?: { code?: string; message?: string };
          };
          if (obj.error) failure = obj.error;
          const text = obj.choices?.[0]?.delta?.content;
          if (text) {
            ttftMs ??= performance.now() - started;
            send({ type: 'delta', text });
          }
          if (obj.usage) usage = obj.usage;
        }
      }
      if (failure) send({ type: 'error', code: failure.code ?? 'upstream_broken', message: failure.message ?? 'the replica broke off' });
      send({
        type: 'done',
        promptTokens: usage.prompt_tokens,
        completionTokens: usage.completion_tokens,
        ttftMs,
        latencyMs: performance.now() - started,
        coldStart,
        quota: await this.quota(ws, now),
      });
      res.end();
    } catch (err) {
      if (taken) await this.giveBack(ws!, now).catch(() => {});
      const e =
        err instanceof PlaygroundError
          ? err
          : err instanceof DomainError
            ? new PlaygroundError(HTTP_OF[err.code] ?? 500, err.code, err.message)
            : null;
      if (!e) this.log.error({ err }, 'playground request failed');
      const refusal = e ?? new PlaygroundError(500, 'INTERNAL', 'internal error');
      if (!res.headersSent) {
        res.writeHead(refusal.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: refusal.code, message: refusal.message } }));
      } else {
        res.end(`data: ${JSON.stringify({ type: 'error', code: refusal.code, message: refusal.message })}\n\n`);
      }
    }
  }
}
