/**
 * Managed RunPod against the RunPod fake: what a cold start through our gateway costs over the worker's own start,
 * and how many management calls each scaling decision makes.
 *
 *   npm run build && node dist/bench/runpod.js [rounds=5] [rate=60]
 *
 * A Flex deployment (0-3 replicas, 1 s scale-down window, 2 s idle timeout) on the fake, whose workers are our
 * replica simulator (1.5 s cold weight load, 0.3 s FlashBoot revival; 40 ms to the first token, 8 ms a token). The
 * deploy's worker loads the weights, so every wake after it is a FlashBoot revival. `rounds` times: wait until the endpoint is at
 * 0/0 with no worker, then send one streamed request through the gateway. Its time to the first token is the cold
 * start through the gateway; the baseline, measured in the same run, is the fake's own worker start (spawn to
 * healthy, as the fake logs it) of the worker that served it. The difference is ours: the gateway's wake-up, the
 * scaler's decision, the PATCH, the health polls and the route publish.
 *
 * Then an open-loop load of `rate` requests a second of 150 tokens each in three steps (rate/4, rate, rate/4; 6 s
 * each; at 60/s about 75 in flight, above two workers' 30 slots each), then idle to zero: the management calls RunPod received (by route) against the scaler's decisions in that time.
 */
import { request } from 'undici';
import { CREATE_PIPELINE, DEPLOY } from '../test/support/graphql';
import { chatLoad } from '../test/support/load';
import { scalerStatusQuery, scalerWorkflowId } from '../workflows/messages';
import { benchStack, median, progress } from './harness';

const rounds = Number(process.argv[2] ?? 5);
const rate = Number(process.argv[3] ?? 60);

async function main() {
  const workerStarts: { at: number; ms: number }[] = [];
  const s = await benchStack(
    'runpod',
    { SCALER_DRAIN_TIMEOUT_SECONDS: '20', GATEWAY_QUEUE_TIMEOUT_MS: '20000' },
    {
      runpod: {
        coldStartMs: 1500,
        flashbootStartMs: 300,
        ttftMs: 40,
        itlMs: 8,
        log: (msg, f) => {
          if (msg === 'runpod fake: worker ready' && typeof f?.ms === 'number') workerStarts.push({ at: Date.now(), ms: f.ms });
        },
      },
    },
  );
  const fake = s.runpod!;
  const pipelineId = (await s.gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline.id;
  const r = await s.gql(DEPLOY, {
    input: {
      pipelineId,
      target: 'RUNPOD',
      gpu: 'H100',
      mode: 'FLEX',
      minReplicas: 0,
      maxReplicas: 3,
      scaleDownWindowSeconds: 1,
      idleTimeoutSeconds: 2,
    },
  });
  const id = r.deployPipeline.deployment!.id;
  const apiKey = r.deployPipeline.apiKey as string;
  await s.temporal.workflow.getHandle(`deploy:${id}`).result();
  const scaler = s.temporal.workflow.getHandle(scalerWorkflowId(id));
  const endpoint = () =>
    (fake.endpoints() as Array<{ id: string; name: string; workers: { max: number } }>).find((e) => e.name.includes(id))!;
  const idle = async () => {
    for (;;) {
      const ep = endpoint();
      if (ep.workers.max === 0 && fake.workers(ep.id).length === 0) return;
      await new Promise((res) => setTimeout(res, 100));
    }
  };

  const cold: { gatewayMs: number; workerMs: number; first: boolean; parts: Record<string, number> }[] = [];
  for (let i = 0; i < rounds; i++) {
    await idle();
    // A wake comes some time after the scale-down, not within RUNPOD_MIN_PATCH_INTERVAL_MS of its PATCH.
    await new Promise((res) => setTimeout(res, 2000));
    const t0 = Date.now();
    const res = await request(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', stream: true, max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
    });
    let firstToken = 0;
    for await (const chunk of res.body) if (!firstToken && String(chunk).includes('"content"')) firstToken = Date.now();
    const worker = workerStarts.filter((w) => w.at >= t0).at(0);
    // Where the time went: the scaler's decision, the PATCH reaching RunPod, the worker's start, the replica READY.
    const decidedAt = (await scaler.query(scalerStatusQuery)).decisions.filter((d) => d.at >= t0).at(0)?.at ?? NaN;
    const readyAt =
      (
        await s.prisma.deploymentEvent.findFirst({ where: { deploymentId: id, kind: 'replica.ready', at: { gte: new Date(t0) } } })
      )?.at.getTime() ?? NaN;
    cold.push({
      gatewayMs: firstToken - t0,
      workerMs: worker?.ms ?? NaN,
      first: i === 0,
      parts: {
        decision: decidedAt - t0,
        workerReadyAfterDecision: (worker?.at ?? NaN) - decidedAt,
        replicaReadyAfterWorker: readyAt - (worker?.at ?? NaN),
        firstTokenAfterReady: firstToken - readyAt,
      },
    });
    progress(
      `cold start ${i + 1}/${rounds}: ${firstToken - t0} ms through the gateway, worker start ${worker?.ms} ms, ${JSON.stringify(cold.at(-1)!.parts)}`,
    );
  }

  await idle();
  fake.resetCalls();
  const since = Date.now();
  const traffic = [];
  for (const step of [rate / 4, rate, rate / 4]) {
    const load = chatLoad(s.url, apiKey, { rate: step, maxTokens: 150 });
    await new Promise((res) => setTimeout(res, 6000));
    traffic.push(await load.stop());
    progress(`load step ${step}/s done`);
  }
  await idle();
  const decisions = (await scaler.query(scalerStatusQuery)).decisions.filter((d) => d.at >= since);
  const calls = fake.calls();
  const management = Object.values(calls).reduce((a, b) => a + b, 0);
  const revivals = cold.filter((c) => !c.first);
  const out = {
    rounds,
    coldStart: {
      firstWakeMs: { gateway: cold[0].gatewayMs, worker: cold[0].workerMs, oursMs: cold[0].gatewayMs - cold[0].workerMs },
      laterWakesMedianMs: {
        gateway: Math.round(median(revivals.map((c) => c.gatewayMs))),
        worker: Math.round(median(revivals.map((c) => c.workerMs))),
        oursMs: Math.round(median(revivals.map((c) => c.gatewayMs - c.workerMs))),
        parts: Object.fromEntries(Object.keys(cold[0].parts).map((k) => [k, Math.round(median(revivals.map((c) => c.parts[k])))])),
      },
    },
    scaling: {
      requests: traffic.reduce((n, t) => n + t.sent, 0),
      failed: traffic.reduce((n, t) => n + t.failures.length, 0),
      decisions: decisions.length,
      path: decisions.map((d) => `${d.from}->${d.to}`).join(' '),
      managementCalls: calls,
      managementCallsPerDecision: Number((management / Math.max(1, decisions.length)).toFixed(2)),
      patchesPerDecision: Number(((calls['PATCH /v2/serverless/{id}'] ?? 0) / Math.max(1, decisions.length)).toFixed(2)),
    },
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  await s.close();
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
