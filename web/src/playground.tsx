// The playground: a prompt to one deployment (Starter: a pipeline on the shared playground replica), or the same
// prompt to two side by side; the streamed answer, tokens, time to first token, total latency and a cold start.
import { useState } from 'preact/hooks';
import { ApiError, gql, playground, PlaygroundDone } from './api';
import type { Me } from './main';
import { fmt, usePoll } from './poll';

const TARGETS = `query { deployments { id status pipeline { name task } variant { name } } pipelines { id name task model } playgroundQuota { limit used remaining resetsAt } }`;

interface Targets {
  deployments: Array<{ id: string; status: string; pipeline: { name: string; task: string }; variant: { name: string } }>;
  pipelines: Array<{ id: string; name: string; task: string; model: string }>;
  playgroundQuota: { limit: number | null; used: number; remaining: number | null; resetsAt: string };
}

interface Run {
  text: string;
  done: PlaygroundDone | null;
  error: { code: string; message: string } | null;
  coldStart: boolean | null;
  running: boolean;
}

const EMPTY: Run = { text: '', done: null, error: null, coldStart: null, running: false };

function Answer(props: { run: Run; side: string }) {
  const r = props.run;
  return (
    <div class="answer" data-testid={`answer-${props.side}`}>
      {r.coldStart && (
        <p class="cold" data-testid="cold-start">
          No replica was warm: this request paid a cold start.
        </p>
      )}
      <pre data-testid="answer-text">{r.text || (r.running ? '…' : '')}</pre>
      {r.error && (
        <p class="error" role="alert" data-testid="answer-error">
          {r.error.message}
        </p>
      )}
      {r.done && (
        <dl class="stats" data-testid="answer-stats">
          <dt>prompt tokens</dt>
          <dd data-testid="prompt-tokens">{r.done.promptTokens}</dd>
          <dt>completion tokens</dt>
          <dd data-testid="completion-tokens">{r.done.completionTokens}</dd>
          <dt>time to first token</dt>
          <dd data-testid="ttft">{fmt.ms(r.done.ttftMs)}</dd>
          <dt>total latency</dt>
          <dd data-testid="latency">{fmt.ms(r.done.latencyMs)}</dd>
        </dl>
      )}
    </div>
  );
}

export function PlaygroundPage(props: { me: Me }) {
  const starter = props.me.plan === 'STARTER';
  const { data, error, reload } = usePoll(() => gql<Targets>(TARGETS), 10_000);
  const [prompt, setPrompt] = useState('Say hello in three words.');
  const [maxTokens, setMaxTokens] = useState('64');
  const [compare, setCompare] = useState(false);
  const [a, setA] = useState('');
  const [b, setB] = useState('');
  const [runs, setRuns] = useState<{ a: Run; b: Run }>({ a: EMPTY, b: EMPTY });

  const options = starter
    ? (data?.pipelines ?? []).filter((p) => p.task === 'CHAT').map((p) => ({ id: p.id, label: `${p.name} (${p.model}, default variant)` }))
    : (data?.deployments ?? [])
        .filter((d) => d.status === 'ACTIVE' && d.pipeline.task === 'CHAT')
        .map((d) => ({ id: d.id, label: `${d.pipeline.name} · ${d.variant.name} · ${d.id}` }));
  const pick = (v: string, i: number) => v || options[i]?.id || options[0]?.id || '';

  const send = async (e: Event) => {
    e.preventDefault();
    const sides: Array<['a' | 'b', string]> = [['a', pick(a, 0)]];
    if (compare) sides.push(['b', pick(b, 1)]);
    setRuns({ a: { ...EMPTY, running: true }, b: compare ? { ...EMPTY, running: true } : EMPTY });
    const update = (side: 'a' | 'b', f: (r: Run) => Run) => setRuns((rs) => ({ ...rs, [side]: f(rs[side]) }));
    await Promise.all(
      sides.map(async ([side, id]) => {
        try {
          await playground(
            {
              ...(starter ? { pipelineId: id } : { deploymentId: id }),
              messages: [{ role: 'user', content: prompt }],
              maxTokens: Number(maxTokens),
            },
            {
              onStart: (s) => update(side, (r) => ({ ...r, coldStart: s.coldStart })),
              onDelta: (t) => update(side, (r) => ({ ...r, text: r.text + t })),
              onDone: (d) => update(side, (r) => ({ ...r, done: d, running: false })),
            },
          );
        } catch (err) {
          const code = err instanceof ApiError ? err.code : 'ERROR';
          update(side, (r) => ({ ...r, running: false, error: { code, message: (err as Error).message } }));
        }
      }),
    );
    reload();
  };

  const q = data?.playgroundQuota;
  return (
    <main>
      <section class="card">
        <h2>Playground</h2>
        {q && (
          <p class="hint" data-testid="quota">
            {q.limit === null
              ? `${q.used} playground requests today (unlimited on ${props.me.plan}).`
              : `${q.used} of ${q.limit} playground requests used today; resets ${new Date(q.resetsAt).toUTCString()}.`}
          </p>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {data && !options.length && (
          <p class="hint">{starter ? 'Create a chat pipeline first.' : 'No ACTIVE chat deployment: deploy one first.'}</p>
        )}
        <form onSubmit={send} data-testid="playground-form">
          <div class="row">
            <label>
              {starter ? 'Pipeline' : 'Deployment'}
              <select name="a" value={pick(a, 0)} onChange={(e) => setA((e.target as HTMLSelectElement).value)}>
                {options.map((o) => (
                  <option value={o.id}>{o.label}</option>
                ))}
              </select>
            </label>
            <label class="inline">
              <input
                type="checkbox"
                name="compare"
                checked={compare}
                onChange={(e) => setCompare((e.target as HTMLInputElement).checked)}
              />{' '}
              compare with
            </label>
            {compare && (
              <select name="b" value={pick(b, 1)} onChange={(e) => setB((e.target as HTMLSelectElement).value)}>
                {options.map((o) => (
                  <option value={o.id}>{o.label}</option>
                ))}
              </select>
            )}
            <label>
              max tokens
              <input
                name="maxTokens"
                type="number"
                min={1}
                max={4096}
                value={maxTokens}
                size={5}
                onInput={(e) => setMaxTokens((e.target as HTMLInputElement).value)}
              />
            </label>
          </div>
          <textarea name="prompt" rows={4} value={prompt} onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)} />
          <button type="submit" disabled={!options.length || runs.a.running || runs.b.running || !prompt.trim()}>
            Send
          </button>
        </form>
      </section>
      <section class={compare ? 'split' : ''}>
        <div class="card">
          <Answer run={runs.a} side="a" />
        </div>
        {compare && (
          <div class="card">
            <Answer run={runs.b} side="b" />
          </div>
        )}
      </section>
    </main>
  );
}
