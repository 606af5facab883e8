// The deployments list (with a deploy form) and a deployment's page: charts, the scaler's decisions, events,
// operations linked to the Temporal UI, replica logs and the lifecycle actions.
import { useState } from 'preact/hooks';
import { gql } from './api';
import { Chart } from './chart';
import type { Me } from './main';
import { fmt, usePoll } from './poll';

const LIST = `query($dayFrom: DateTime!, $recentFrom: DateTime!, $to: DateTime!, $dayStep: Int!) {
  deployments { id status statusReason target gpu mode minReplicas maxReplicas createdAt pipeline { name }
    replicas { state }
    recent: metrics(from: $recentFrom, to: $to, step: 300) { points { requests } }
    today: metrics(from: $dayFrom, to: $to, step: $dayStep) { points { costUsd } } }
  pipelines { id name task model }
}`;

interface ListRow {
  id: string;
  status: string;
  statusReason: string | null;
  target: string;
  gpu: string;
  mode: string;
  minReplicas: number;
  maxReplicas: number;
  pipeline: { name: string };
  replicas: Array<{ state: string }>;
  recent: { points: Array<{ requests: number }> };
  today: { points: Array<{ costUsd: number }> };
}

export interface PipelineRow {
  id: string;
  name: string;
  task: string;
  model: string;
}

const DEPLOY = `mutation($input: DeployPipelineInput!) { deployPipeline(input: $input) { deployment { id status } apiKey } }`;

function listVars(now = Date.now()) {
  const day = now - (now % 86_400_000);
  const recentFrom = now - 300_000 - (now % 60_000);
  const to = now + 1000;
  return {
    vars: {
      dayFrom: new Date(day).toISOString(),
      recentFrom: new Date(recentFrom).toISOString(),
      to: new Date(to).toISOString(),
      dayStep: Math.max(60, Math.ceil((to - day) / 60_000) * 60),
    },
    recentSeconds: (to - recentFrom) / 1000,
  };
}

function DeployForm(props: { pipelines: PipelineRow[]; onDone: () => void }) {
  const [pipelineId, setPipelineId] = useState('');
  const [target, setTarget] = useState('LOCAL');
  const [gpu, setGpu] = useState('sim');
  const [mode, setMode] = useState('FLEX');
  const [min, setMin] = useState('1');
  const [max, setMax] = useState('2');
  const [error, setError] = useState<string | null>(null);
  const [key, setKey] = useState<{ id: string; apiKey: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      const r = await gql<{ deployPipeline: { deployment: { id: string }; apiKey: string } }>(DEPLOY, {
        input: { pipelineId: pipelineId || props.pipelines[0]?.id, target, gpu, mode, minReplicas: Number(min), maxReplicas: Number(max) },
      });
      setKey({ id: r.deployPipeline.deployment.id, apiKey: r.deployPipeline.apiKey });
      props.onDone();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card">
      <h2>Deploy a pipeline</h2>
      <form class="row" onSubmit={submit} data-testid="deploy-form">
        <label>
          Pipeline
          <select name="pipeline" value={pipelineId} onChange={(e) => setPipelineId((e.target as HTMLSelectElement).value)}>
            {props.pipelines.map((p) => (
              <option value={p.id}>
                {p.name} ({p.task.toLowerCase()}, {p.model})
              </option>
            ))}
          </select>
        </label>
        <label>
          Target
          <select name="target" value={target} onChange={(e) => setTarget((e.target as HTMLSelectElement).value)}>
            {['LOCAL', 'RUNPOD', 'MODAL', 'CUSTOM'].map((t) => (
              <option>{t}</option>
            ))}
          </select>
        </label>
        <label>
          GPU
          <input name="gpu" value={gpu} onInput={(e) => setGpu((e.target as HTMLInputElement).value)} size={10} />
        </label>
        <label>
          Mode
          <select name="mode" value={mode} onChange={(e) => setMode((e.target as HTMLSelectElement).value)}>
            <option>FLEX</option>
            <option>ACTIVE</option>
          </select>
        </label>
        <label>
          Min
          <input name="min" type="number" min={0} value={min} onInput={(e) => setMin((e.target as HTMLInputElement).value)} size={3} />
        </label>
        <label>
          Max
          <input name="max" type="number" min={1} value={max} onInput={(e) => setMax((e.target as HTMLInputElement).value)} size={3} />
        </label>
        <button type="submit" disabled={busy || !props.pipelines.length}>
          Deploy
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {key && (
        <div class="secret" data-testid="new-key">
          <p>
            Deployment <a href={`#/deployments/${key.id}`}>{key.id}</a> is starting. Its API key is shown this once; copy it now:
          </p>
          <code>{key.apiKey}</code>
          <button class="link" onClick={() => setKey(null)}>
            Done, hide it
          </button>
        </div>
      )}
    </section>
  );
}

export function DeploymentsPage(props: { me: Me }) {
  const [showDeleted, setShowDeleted] = useState(false);
  const { data, error, reload } = usePoll(async () => {
    const { vars, recentSeconds } = listVars();
    const d = await gql<{ deployments: ListRow[]; pipelines: PipelineRow[] }>(LIST, vars);
    return { ...d, recentSeconds };
  }, 3000);
  const rows = (data?.deployments ?? []).filter((d) => showDeleted || d.status !== 'DELETED');
  return (
    <main>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {props.me.plan === 'STARTER' ? (
        <section class="card">
          <p>
            Starter workspaces cannot deploy: try your pipelines in the <a href="#/playground">playground</a> (100 requests a day).
          </p>
        </section>
      ) : (
        data && <DeployForm pipelines={data.pipelines} onDone={reload} />
      )}
      <section class="card">
        <h2>Deployments</h2>
        <label class="inline">
          <input type="checkbox" checked={showDeleted} onChange={(e) => setShowDeleted((e.target as HTMLInputElement).checked)} /> show
          deleted
        </label>
        <table data-testid="deployments">
          <thead>
            <tr>
              <th>Deployment</th>
              <th>Pipeline</th>
              <th>Status</th>
              <th>Target</th>
              <th>GPU</th>
              <th>Mode</th>
              <th>Replicas</th>
              <th>Req/s (5 min)</th>
              <th>Cost today</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => {
              const ready = d.replicas.filter((r) => r.state === 'READY').length;
              const reqs = d.recent.points.reduce((s, p) => s + p.requests, 0);
              return (
                <tr data-testid={`deployment-${d.id}`}>
                  <td>
                    <a href={`#/deployments/${d.id}`}>{d.id}</a>
                  </td>
                  <td>{d.pipeline.name}</td>
                  <td>
                    <span class={`status s-${d.status}`} title={d.statusReason ?? ''} data-testid="status">
                      {d.status}
                    </span>
                  </td>
                  <td>{d.target}</td>
                  <td>{d.gpu}</td>
                  <td>{d.mode}</td>
                  <td>
                    {ready}/{d.replicas.length} ({d.minReplicas}–{d.maxReplicas})
                  </td>
                  <td>{fmt.num(reqs / (data?.recentSeconds ?? 300), 2)}</td>
                  <td>{fmt.usd(d.today.points.reduce((s, p) => s + p.costUsd, 0))}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {data && !rows.length && <p class="hint">No deployments yet.</p>}
      </section>
    </main>
  );
}

const DETAIL = `query($id: ID!, $from: DateTime!, $to: DateTime!, $step: Int!) {
  consoleInfo { temporalUiUrl temporalNamespace }
  deployment(id: $id) {
    id status statusReason url target gpu mode minReplicas maxReplicas targetConcurrency scaleDownWindowSeconds idleTimeoutSeconds
    pipeline { id name variants { id name gpu } } variantId
    replicas { id state gpu coldStartMs startedAt readyAt }
    scaling { desired current paused noData decisions { at from to reason } }
    events { kind message at }
    operations { id kind status workflowId error warning startedAt finishedAt }
    metrics(from: $from, to: $to, step: $step) { points { start requests errors latencyP50Ms latencyP95Ms ttftP50Ms
      inFlightPeak inFlightMean queuedPeak replicasReady replicasStarting desired promptTokens completionTokens costUsd } }
  }
}`;

interface Point {
  start: string;
  requests: number;
  errors: number;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  ttftP50Ms: number | null;
  inFlightPeak: number | null;
  inFlightMean: number | null;
  queuedPeak: number | null;
  replicasReady: number | null;
  replicasStarting: number | null;
  desired: number | null;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
}

interface Detail {
  consoleInfo: { temporalUiUrl: string; temporalNamespace: string };
  deployment: {
    id: string;
    status: string;
    statusReason: string | null;
    url: string | null;
    target: string;
    gpu: string;
    mode: string;
    minReplicas: number;
    maxReplicas: number;
    targetConcurrency: number | null;
    scaleDownWindowSeconds: number | null;
    idleTimeoutSeconds: number | null;
    pipeline: { id: string; name: string; variants: Array<{ id: string; name: string; gpu: string }> };
    variantId: string;
    replicas: Array<{ id: string; state: string; gpu: string; coldStartMs: number | null; startedAt: string; readyAt: string | null }>;
    scaling: {
      desired: number;
      current: number;
      paused: boolean;
      noData: boolean;
      decisions: Array<{ at: string; from: number; to: number; reason: string }>;
    } | null;
    events: Array<{ kind: string; message: string; at: string }>;
    operations: Array<{
      id: string;
      kind: string;
      status: string;
      workflowId: string;
      error: string | null;
      warning: string | null;
      startedAt: string;
    }>;
    metrics: { points: Point[] };
  };
}

const RANGES: Record<string, { ms: number; step: number }> = {
  '15 min': { ms: 15 * 60_000, step: 60 },
  '1 h': { ms: 3_600_000, step: 60 },
  '6 h': { ms: 6 * 3_600_000, step: 300 },
  '24 h': { ms: 86_400_000, step: 900 },
};

const ACTIONS = {
  stop: `mutation($id: ID!) { stopDeployment(id: $id) { id kind } }`,
  start: `mutation($id: ID!) { startDeployment(id: $id) { id kind } }`,
  changeGpu: `mutation($id: ID!, $gpu: String!) { changeGpu(deploymentId: $id, gpu: $gpu) { id kind warning } }`,
  rollback: `mutation($id: ID!, $variantId: ID!) { rollbackDeployment(deploymentId: $id, variantId: $variantId) { id kind warning } }`,
  policy: `mutation($input: ScalingPolicyInput!) { setScalingPolicy(input: $input) { desired } }`,
};

function Logs(props: { replicaId: string }) {
  const { data, error } = usePoll(
    () =>
      gql<{ replica: { logs: { available: boolean; reason: string | null; lines: string[] } } }>(
        `query($id: ID!) { replica(id: $id) { logs(tail: 200) { available reason lines } } }`,
        { id: props.replicaId },
      ),
    2000,
    [props.replicaId],
  );
  const logs = data?.replica.logs;
  return (
    <div data-testid="logs">
      {error && <p class="error">{error}</p>}
      {logs && !logs.available && <p class="hint">{logs.reason}</p>}
      {logs?.available && <pre class="logs">{logs.lines.join('\n')}</pre>}
    </div>
  );
}

function Actions(props: { d: Detail['deployment']; onDone: () => void }) {
  const d = props.d;
  const [pending, setPending] = useState<{ label: string; run: () => Promise<unknown> } | null>(null);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const [gpu, setGpu] = useState('');
  const [variantId, setVariantId] = useState('');
  const [knobs, setKnobs] = useState<Record<string, string>>({});
  const ask = (label: string, run: () => Promise<unknown>) => {
    setResult(null);
    setPending({ label, run });
  };
  const confirm = async () => {
    const p = pending!;
    setPending(null);
    try {
      const r = (await p.run()) as Record<string, { warning?: string | null } | undefined>;
      const warning = Object.values(r)[0]?.warning;
      setResult({ ok: true, text: `${p.label}: started.${warning ? ` ${warning}` : ''}` });
      props.onDone();
    } catch (err) {
      setResult({ ok: false, text: `${p.label}: ${(err as Error).message}` });
    }
  };
  const knob = (k: string) => (
    <label>
      {k}
      <input
        name={k}
        type="number"
        size={4}
        placeholder={String((d as unknown as Record<string, number | null>)[k] ?? '')}
        value={knobs[k] ?? ''}
        onInput={(e) => setKnobs({ ...knobs, [k]: (e.target as HTMLInputElement).value })}
      />
    </label>
  );
  const policyInput = () => {
    const input: Record<string, unknown> = { deploymentId: d.id };
    for (const [k, v] of Object.entries(knobs)) if (v !== '') input[k] = Number(v);
    return input;
  };
  return (
    <section class="card" data-testid="actions">
      <h2>Actions</h2>
      <div class="row">
        <button onClick={() => ask(`Stop ${d.id}`, () => gql(ACTIONS.stop, { id: d.id }))} data-testid="action-stop">
          Stop
        </button>
        <button onClick={() => ask(`Start ${d.id}`, () => gql(ACTIONS.start, { id: d.id }))} data-testid="action-start">
          Start
        </button>
        <input
          name="gpu"
          placeholder="GPU, e.g. sim-large"
          value={gpu}
          onInput={(e) => setGpu((e.target as HTMLInputElement).value)}
          size={14}
        />
        <button disabled={!gpu} onClick={() => ask(`Move ${d.id} to ${gpu}`, () => gql(ACTIONS.changeGpu, { id: d.id, gpu }))}>
          Change GPU
        </button>
        <select name="variant" value={variantId} onChange={(e) => setVariantId((e.target as HTMLSelectElement).value)}>
          <option value="">variant…</option>
          {d.pipeline.variants
            .filter((v) => v.id !== d.variantId)
            .map((v) => (
              <option value={v.id}>
                {v.name} ({v.gpu})
              </option>
            ))}
        </select>
        <button
          disabled={!variantId}
          onClick={() => ask(`Roll ${d.id} back to ${variantId}`, () => gql(ACTIONS.rollback, { id: d.id, variantId }))}
        >
          Roll back
        </button>
      </div>
      <div class="row">
        {knob('minReplicas')}
        {knob('maxReplicas')}
        {knob('targetConcurrency')}
        {knob('scaleDownWindowSeconds')}
        {knob('idleTimeoutSeconds')}
        <button
          disabled={!Object.values(knobs).some((v) => v !== '')}
          onClick={() => ask(`Change the scaling of ${d.id}`, () => gql(ACTIONS.policy, { input: policyInput() }))}
        >
          Apply scaling
        </button>
      </div>
      {pending && (
        <div class="confirm" role="dialog" data-testid="confirm">
          <span>{pending.label}?</span>
          <button onClick={() => void confirm()} data-testid="confirm-yes">
            Confirm
          </button>
          <button class="link" onClick={() => setPending(null)}>
            Cancel
          </button>
        </div>
      )}
      {result && (
        <p class={result.ok ? 'ok' : 'error'} role={result.ok ? 'status' : 'alert'} data-testid="action-result">
          {result.text}
        </p>
      )}
    </section>
  );
}

export function DeploymentPage(props: { id: string }) {
  const [range, setRange] = useState('15 min');
  const [replica, setReplica] = useState<string | null>(null);
  const { data, error, reload } = usePoll(
    () => {
      const now = Date.now();
      const r = RANGES[range];
      return gql<Detail>(DETAIL, {
        id: props.id,
        from: new Date(now - r.ms).toISOString(),
        to: new Date(now + 1000).toISOString(),
        step: r.step,
      });
    },
    2000,
    [props.id, range],
  );
  if (!data)
    return (
      <main>
        {error ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : (
          <p class="hint">Loading…</p>
        )}
      </main>
    );
  const d = data.deployment;
  const ps = d.metrics.points;
  const x = ps.map((p) => Date.parse(p.start) / 1000);
  const col = (f: (p: Point) => number | null) => ps.map(f);
  const temporal = (wf: string) =>
    `${data.consoleInfo.temporalUiUrl}/namespaces/${encodeURIComponent(data.consoleInfo.temporalNamespace)}/workflows/${encodeURIComponent(wf)}`;
  const shownReplica = replica ?? d.replicas.find((r) => r.state === 'READY')?.id ?? d.replicas[0]?.id ?? null;
  return (
    <main>
      <section class="card head">
        <h1>
          {d.pipeline.name} <small>{d.id}</small>
        </h1>
        <p>
          <span class={`status s-${d.status}`} data-testid="status">
            {d.status}
          </span>{' '}
          {d.statusReason && <em>{d.statusReason}</em>} · {d.target} · {d.gpu} · {d.mode} · replicas {d.minReplicas}–{d.maxReplicas}
          {d.scaling && (
            <span data-testid="scaling">
              {' '}
              · desired {d.scaling.desired}, current {d.scaling.current}
              {d.scaling.paused ? ' (paused)' : ''}
            </span>
          )}
        </p>
        {d.url && (
          <p>
            URL <code>{d.url}</code>
          </p>
        )}
        {error && <p class="error">{error}</p>}
      </section>
      <Actions d={d} onDone={reload} />
      <div class="split">
        <section class="card charts">
          <h2>
            Load{' '}
            <select value={range} onChange={(e) => setRange((e.target as HTMLSelectElement).value)}>
              {Object.keys(RANGES).map((k) => (
                <option>{k}</option>
              ))}
            </select>
          </h2>
          <div class="grid">
            <Chart
              testId="chart-replicas"
              title="Replicas"
              x={x}
              series={[
                { label: 'ready', color: '#2a7', values: col((p) => p.replicasReady), stepped: true },
                { label: 'starting', color: '#e90', values: col((p) => p.replicasStarting), stepped: true },
                { label: 'desired', color: '#37c', values: col((p) => p.desired), stepped: true },
              ]}
            />
            <Chart
              testId="chart-inflight"
              title="In flight and queue depth"
              x={x}
              series={[
                { label: 'in flight peak', color: '#37c', values: col((p) => p.inFlightPeak) },
                { label: 'in flight mean', color: '#8ad', values: col((p) => p.inFlightMean) },
                { label: 'queued peak', color: '#c33', values: col((p) => p.queuedPeak) },
              ]}
            />
            <Chart
              testId="chart-latency"
              title="Latency"
              unit="ms"
              x={x}
              series={[
                { label: 'p50', color: '#2a7', values: col((p) => p.latencyP50Ms) },
                { label: 'p95', color: '#c33', values: col((p) => p.latencyP95Ms) },
                { label: 'TTFT p50', color: '#e90', values: col((p) => p.ttftP50Ms) },
              ]}
            />
            <Chart
              testId="chart-tokens"
              title="Tokens per minute"
              x={x}
              series={[
                { label: 'prompt', color: '#37c', values: col((p) => p.promptTokens) },
                { label: 'completion', color: '#2a7', values: col((p) => p.completionTokens) },
              ]}
            />
            <Chart
              testId="chart-requests"
              title="Requests and errors"
              x={x}
              series={[
                { label: 'requests', color: '#37c', values: col((p) => p.requests) },
                { label: 'errors', color: '#c33', values: col((p) => p.errors) },
              ]}
            />
            <Chart
              testId="chart-cost"
              title="Cost"
              unit="USD"
              x={x}
              series={[{ label: 'cost', color: '#a5c', values: col((p) => p.costUsd) }]}
            />
          </div>
        </section>
        <aside class="card decisions" data-testid="decisions">
          <h2>Scaler decisions</h2>
          {!d.scaling && <p class="hint">No scaler runs for this deployment now.</p>}
          <ol>
            {[...(d.scaling?.decisions ?? [])].reverse().map((x) => (
              <li>
                <time>{fmt.time(x.at)}</time>{' '}
                <strong>
                  {x.from} → {x.to}
                </strong>
                <div>{x.reason}</div>
              </li>
            ))}
          </ol>
        </aside>
      </div>
      <div class="split">
        <section class="card">
          <h2>Operations</h2>
          <table data-testid="operations">
            <tbody>
              {d.operations.map((o) => (
                <tr>
                  <td>{o.kind}</td>
                  <td>
                    <span class={`status s-${o.status}`}>{o.status}</span>
                  </td>
                  <td>{fmt.time(o.startedAt)}</td>
                  <td>
                    <a href={temporal(o.workflowId)} target="_blank" rel="noreferrer">
                      {o.workflowId}
                    </a>
                  </td>
                  <td>{o.error ?? o.warning ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
        <section class="card">
          <h2>Events</h2>
          <ul class="events" data-testid="events">
            {[...d.events]
              .reverse()
              .slice(0, 50)
              .map((e) => (
                <li>
                  <time>{fmt.time(e.at)}</time> <code>{e.kind}</code> {e.message}
                </li>
              ))}
          </ul>
        </section>
      </div>
      <section class="card">
        <h2>Replicas and logs</h2>
        <div class="row">
          {d.replicas.map((r) => (
            <button class={r.id === shownReplica ? 'on' : ''} onClick={() => setReplica(r.id)} data-testid={`replica-${r.state}`}>
              {r.id} · {r.state}
              {r.coldStartMs !== null ? ` · cold start ${fmt.ms(r.coldStartMs)}` : ''}
            </button>
          ))}
        </div>
        {shownReplica ? <Logs replicaId={shownReplica} /> : <p class="hint">No replica runs now.</p>}
      </section>
    </main>
  );
}
