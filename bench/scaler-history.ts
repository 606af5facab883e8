/**
 * Benchmark 2, history: one deployment's scaler receives a load report every
 * second for an hour (3,600 reports, sent faster than real time: the count of
 * events depends on reports and decisions, not on the clock, since the scaler
 * keeps no periodic timer). The load follows the reference's pattern: a steady
 * 20 in flight with a burst to 80 for 30 s every 5 minutes, so the scaler goes
 * up and down through real activities. Prints events per hour, how many runs
 * continue-as-new produced, and the largest run against the server's
 * suggest-continue-as-new threshold (4,096 events by default).
 *
 *   npm run build && node dist/bench/scaler-history.js [reports=3600] [perSecond=40]
 */
import { temporal as proto } from '@temporalio/proto';
import { benchStack, progress } from './harness';
import { CREATE_PIPELINE, DEPLOY } from '../test/support/graphql';
import { loadReportSignal, scalerStatusQuery, scalerWorkflowId } from '../workflows/messages';

const reports = Number(process.argv[2] ?? 3600);
const perSecond = Number(process.argv[3] ?? 40);
const SUGGEST_CAN_EVENTS = 4096;

async function main() {
  const s = await benchStack('history');
  const pipeline = (await s.gql(CREATE_PIPELINE, { input: { name: 'bench', task: 'CHAT', model: 'sim/tiny-chat' } })).createPipeline.id;
  const d = await s.gql(DEPLOY, {
    input: { pipelineId: pipeline, target: 'LOCAL', gpu: 'sim', mode: 'FLEX', minReplicas: 1, maxReplicas: 4, scaleDownWindowSeconds: 1 },
  });
  const id = d.deployPipeline.deployment!.id;
  await s.temporal.workflow.getHandle(`deploy:${id}`).result();
  // The gateway in this process would add its own heartbeats: stop it, the bench is the only reporter.
  await s.app!.close();
  const scaler = s.temporal.workflow.getHandle(scalerWorkflowId(id));
  const firstRunId = (await scaler.describe()).runId;
  const t0 = Date.now();
  for (let i = 0; i < reports; i++) {
    const inBurst = i % 300 < 30;
    await scaler.signal(loadReportSignal, {
      gatewayId: 'bench',
      inFlight: inBurst ? 80 : 20,
      queued: 0,
      oldestQueuedMs: 0,
      at: Date.now(),
    });
    const due = t0 + ((i + 1) * 1000) / perSecond;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    if ((i + 1) % 600 === 0) progress(`${i + 1}/${reports} reports sent`);
  }
  await new Promise((r) => setTimeout(r, 3000));
  const status = await scaler.query(scalerStatusQuery);

  // Follow the chain of runs from the first one.
  const runs: Array<{
    events: number;
    suggestedAtEvent: number | null;
    eventsAfterSuggestion: number | null;
    signals: number;
    timers: number;
    activities: number;
  }> = [];
  let runId: string | undefined = firstRunId;
  while (runId) {
    const history: proto.api.history.v1.IHistory = await s.temporal.workflow.getHandle(scalerWorkflowId(id), runId).fetchHistory();
    const events: proto.api.history.v1.IHistoryEvent[] = history.events ?? [];
    const type = proto.api.enums.v1.EventType;
    const count = (t: number) => events.filter((e) => e.eventType === t).length;
    const suggested = events.find((e) => e.workflowTaskStartedEventAttributes?.suggestContinueAsNew);
    const suggestedAt = suggested ? Number(suggested.eventId) : null;
    runs.push({
      events: events.length,
      suggestedAtEvent: suggestedAt,
      eventsAfterSuggestion: suggestedAt === null ? null : events.length - suggestedAt,
      signals: count(type.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
      timers: count(type.EVENT_TYPE_TIMER_STARTED),
      activities: count(type.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
    });
    const last: proto.api.history.v1.IHistoryEvent | undefined = events.at(-1);
    runId = last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  const total = runs.reduce((a, r) => a + r.events, 0);
  const out = {
    reports,
    wallSeconds: Math.round((Date.now() - t0) / 1000),
    decisions: status.decisions.length,
    runs: runs.length,
    eventsPerHourOfReports: Math.round((total * 3600) / reports),
    eventsPerReport: +(total / reports).toFixed(2),
    largestRunEvents: Math.max(...runs.map((r) => r.events)),
    serverSuggestsContinueAsNewAt: SUGGEST_CAN_EVENTS,
    serverRefusesAt: 51_200,
    // Events written between the server's suggestion and the continue-as-new: reports keep arriving
    // while the turn in progress (maybe a scale-up waiting for a replica) finishes.
    maxEventsAfterSuggestion: Math.max(0, ...runs.map((r) => r.eventsAfterSuggestion ?? 0)),
    reportsPerSecondSent: perSecond,
    perRun: runs,
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  await scaler.terminate('bench done');
  for (const r of await s.prisma.replica.findMany({ where: { deploymentId: id, state: { not: 'STOPPED' } } }))
    await s.worker.providers.LOCAL!.stopReplica(r.id);
  await s.close();
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
