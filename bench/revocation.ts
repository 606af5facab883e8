/**
 * How fast a revoked key is refused by every gateway process (the reference: within a second).
 *
 *   npm run build && node dist/bench/revocation.js [trials=1000]
 *
 * Two gateway processes (`node dist/src/main.js`, sharing Redis when REDIS_URL is set) beside the benchmark's api.
 * Each trial creates a key, uses it on both processes (so both cache it), revokes it through GraphQL, and then asks
 * each process, one request after another, until it answers 401: the time from the revocation's answer to that 401,
 * per process. The baseline, measured in the same run, is one authenticated request's round trip to a process (the
 * finest step this can see): a propagation of a few round trips is the NOTIFY's own path.
 */
import { request } from 'undici';
import { benchStack, median, percentile, progress } from './harness';
import { CREATE_PIPELINE, DEPLOY } from '../test/support/graphql';

const trials = Number(process.argv[2] ?? 1000);

async function main() {
  const s = await benchStack('revocation');
  const pipelineId = (await s.gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline.id;
  const dep = await s.gql(DEPLOY, { input: { pipelineId, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 } });
  const deploymentId = dep.deployPipeline.deployment!.id;
  await s.temporal.workflow.getHandle(`deploy:${deploymentId}`).result();
  const gateways = [];
  for (let i = 0; i < 2; i++) gateways.push(await s.spawnApi(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}));
  progress(`two gateway processes up; ${trials} trials`);

  const status = async (url: string, key: string) => {
    const r = await request(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    await r.body.dump();
    return r.statusCode;
  };
  const refusedAfter: number[] = [];
  const roundTrip: number[] = [];
  let slowest = 0;
  for (let t = 1; t <= trials; t++) {
    const created = await s.gql<{ createApiKey: { key: string; apiKey: { id: string } } }>(
      `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id } } }`,
      { i: { name: `k${t}`, scope: 'DEPLOYMENT', deploymentId } },
    );
    const key = created.createApiKey.key;
    for (const g of gateways) {
      const t0 = performance.now();
      if ((await status(g.url, key)) !== 200) throw new Error('a fresh key was refused');
      roundTrip.push(performance.now() - t0);
    }
    await s.gql(`mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: created.createApiKey.apiKey.id });
    const revokedAt = performance.now();
    await Promise.all(
      gateways.map(async (g) => {
        for (;;) {
          if ((await status(g.url, key)) === 401) break;
          if (performance.now() - revokedAt > 10_000) throw new Error(`key still accepted 10 s after its revocation (trial ${t})`);
        }
        const ms = performance.now() - revokedAt;
        refusedAfter.push(ms);
        slowest = Math.max(slowest, ms);
      }),
    );
    if (t % 100 === 0) progress(`${t}/${trials}: p99 so far ${percentile(refusedAfter, 99).toFixed(1)} ms`);
  }
  for (const g of gateways) await g.kill();
  await s.close();
  const p99 = percentile(refusedAfter, 99);
  const rtt = median(roundTrip);
  process.stdout.write(
    `${JSON.stringify(
      {
        trials,
        processes: 2,
        refusedWithinMs: { p50: Number(median(refusedAfter).toFixed(2)), p99: Number(p99.toFixed(2)), max: Number(slowest.toFixed(2)) },
        requestRoundTripMs: Number(rtt.toFixed(2)),
        ratioP99ToRoundTrip: Number((p99 / rtt).toFixed(1)),
        targetMs: 1000,
        met: p99 < 1000,
      },
      null,
      2,
    )}\n`,
  );
}

void main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
