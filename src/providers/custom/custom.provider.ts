import type { Logger } from 'pino';
import type { PrismaClient } from '../../database/prisma';
import { ProviderError, ProviderPermanentError } from '../errors';
import type { ProviderAdapter, ReplicaHandle, ReplicaHealth, ReplicaSpec } from '../provider';
import { replicaInFlight } from '../replica-http';
import { CustomEndpoint, parseCustomEndpoints, probe } from './endpoints';

export interface CustomProviderOptions {
  prisma: PrismaClient;
  log: Logger;
  /** A credential's sealed plaintext (readCredentialSecret). */
  secretOf: (credentialId: string) => Promise<string>;
  probeTimeoutMs?: number;
}

/** Replica states that hold an endpoint. */
const HOLDING = ['STARTING', 'READY', 'DRAINING'] as const;

/**
 * The CUSTOM target's bare boxes: servers the user runs (the bundle) at URLs registered in a CUSTOM credential. Nothing
 * is started or stopped here: a replica is one registered URL, taken by the first replica that needs one and freed when
 * that replica stops, so a deployment has at most as many replicas as URLs (fixed capacity). Health is a GET of /health.
 */
export class CustomProvider implements ProviderAdapter {
  readonly target = 'CUSTOM' as const;
  readonly capabilities = { perReplicaUrls: true, exactReplicaControl: false, maxReplicaLifetimeSeconds: null, coldStartFromZero: false };
  private readonly lastProbe = new Map<string, string>();

  constructor(private readonly o: CustomProviderOptions) {}

  private get timeoutMs() {
    return this.o.probeTimeoutMs ?? 3000;
  }

  /** The endpoints registered for a deployment's credential. */
  async endpointsOf(deploymentId: string): Promise<CustomEndpoint[]> {
    const d = await this.o.prisma.deployment.findUnique({ where: { id: deploymentId }, select: { credentialId: true } });
    if (!d) throw new ProviderPermanentError(`deployment ${deploymentId} not found`);
    if (!d.credentialId)
      throw new ProviderPermanentError(`deployment ${deploymentId} names no CUSTOM credential: it has no endpoints to serve on`);
    return parseCustomEndpoints(await this.o.secretOf(d.credentialId), d.credentialId);
  }

  async ensureReplica(spec: ReplicaSpec): Promise<ReplicaHandle> {
    const endpoints = await this.endpointsOf(spec.deploymentId);
    // One assignment at a time per deployment, across workers: the row's address is the replica's claim on a URL.
    return this.o.prisma.$transaction(async (tx) => {
      await tx.$queryRaw`SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtext(${`custom-endpoints:${spec.deploymentId}`}))`;
      const row = await tx.replica.findUnique({ where: { id: spec.replicaId } });
      if (!row) throw new ProviderError(`replica ${spec.replicaId} has no row yet`);
      const handle = (i: number): ReplicaHandle => ({
        replicaId: spec.replicaId,
        deploymentId: spec.deploymentId,
        providerId: `endpoint-${i}`,
        address: endpoints[i].url,
      });
      const mine = row.address ? endpoints.findIndex((e) => e.url === row.address) : -1;
      if (mine >= 0) return handle(mine);
      const holders = await tx.replica.findMany({
        where: { deploymentId: spec.deploymentId, id: { not: spec.replicaId }, state: { in: [...HOLDING] }, address: { not: null } },
        select: { address: true },
      });
      const taken = new Set(holders.map((h) => h.address));
      const free = endpoints.findIndex((e) => !taken.has(e.url));
      if (free < 0) {
        throw new ProviderPermanentError(
          `fixed capacity: all ${endpoints.length} registered endpoint(s) serve other replicas; replica ${spec.replicaId} has no box to run on (register more URLs in a new CUSTOM credential to grow)`,
        );
      }
      await tx.replica.update({ where: { id: spec.replicaId }, data: { address: endpoints[free].url, providerId: `endpoint-${free}` } });
      return handle(free);
    });
  }

  async health(handle: ReplicaHandle): Promise<ReplicaHealth> {
    const r = await probe(`${handle.address}/health`, null, this.timeoutMs);
    if (r.ok) {
      this.lastProbe.delete(handle.replicaId);
      return 'ready';
    }
    this.lastProbe.set(handle.replicaId, `GET ${handle.address}/health ${r.said}`);
    return 'starting';
  }

  async healthDetail(handle: ReplicaHandle): Promise<string | null> {
    return this.lastProbe.get(handle.replicaId) ?? null;
  }

  /** Running plus waiting requests from the simulator's /stats or vLLM's Prometheus gauges; null when neither answers. */
  async inFlight(handle: ReplicaHandle): Promise<number | null> {
    const key = (await this.endpointsOf(handle.deploymentId).catch(() => [])).find((e) => e.url === handle.address)?.apiKey ?? null;
    return replicaInFlight(handle.address, key ? `Bearer ${key}` : null);
  }

  /** Forgets the replica: its URL is free again; the box itself keeps running (it is the user's), and the events say so. */
  async stopReplica(replicaId: string): Promise<void> {
    this.lastProbe.delete(replicaId);
    const row = await this.o.prisma.replica.findUnique({ where: { id: replicaId } });
    if (!row?.address) return;
    // Once per replica, however often a retried activity asks.
    const said = await this.o.prisma.deploymentEvent.findFirst({
      where: { deploymentId: row.deploymentId, kind: 'replica.forgotten', message: { startsWith: `replica ${replicaId} forgotten` } },
    });
    if (said) return;
    await this.o.prisma.deploymentEvent.create({
      data: {
        deploymentId: row.deploymentId,
        kind: 'replica.forgotten',
        message: `replica ${replicaId} forgotten: the server at ${row.address} keeps running (it is yours; we only stop routing to it)`,
        data: { replicaId, address: row.address },
      },
    });
  }

  /** The CUSTOM replicas the rows hold a URL for. */
  async listReplicas(): Promise<ReplicaHandle[]> {
    const rows = await this.o.prisma.replica.findMany({
      where: { state: { in: [...HOLDING] }, address: { not: null }, deployment: { target: 'CUSTOM' } },
    });
    return rows.map((r) => ({ replicaId: r.id, deploymentId: r.deploymentId, providerId: r.providerId ?? '', address: r.address! }));
  }
}
