import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPrices } from '../usage/prices';
import { DEFAULT_PRICES, capacityCostUsd, tokenCostUsd } from '../domain/pricing';
import { parseUsageObject, UsageTap } from './usage-tap';

const chunk = (content: string) =>
  `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"finish_reason":null}],"usage":null}\n\n`;
const usageEvent =
  'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}\n\n';
const stream = [
  'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
  chunk('héllo'),
  chunk(' wörld'),
  chunk(' ✓'),
  usageEvent,
  'data: [DONE]\n\n',
].join('');

/** Feeds `bytes` to a tap in pieces cut at `cuts`; returns what the client got and the usage. */
function run(bytes: Buffer, cuts: number[], strip: boolean, sse = true) {
  const tap = new UsageTap(sse, strip);
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...new Set(cuts)].sort((a, b) => a - b).concat(bytes.length)) {
    out.push(tap.push(bytes.subarray(at, c)));
    at = c;
  }
  out.push(tap.flush());
  return { text: Buffer.concat(out).toString('utf8'), usage: tap.result() };
}

describe('UsageTap: usage read from a response as it passes', () => {
  const bytes = Buffer.from(stream, 'utf8');
  const cuts = fc.array(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 12 });

  it('should pass a stream through byte for byte, however it is cut, and read its usage', () => {
    fc.assert(
      fc.property(cuts, (c) => {
        const { text, usage } = run(bytes, c, false);
        expect(text).toBe(stream);
        expect(usage).toEqual({ promptTokens: 12, completionTokens: 3, reported: true });
      }),
      { numRuns: 300 },
    );
  });

  it('should take out the usage-only event the client did not ask for, and nothing else', () => {
    fc.assert(
      fc.property(cuts, (c) => {
        const { text, usage } = run(bytes, c, true);
        expect(text).toBe(stream.replace(usageEvent, ''));
        expect(usage.promptTokens).toBe(12);
      }),
      { numRuns: 300 },
    );
  });

  it('should count content chunks when a stream ends without usage (a replica cut off)', () => {
    const cut = Buffer.from(stream.slice(0, stream.indexOf(usageEvent)), 'utf8');
    expect(run(cut, [], true).usage).toEqual({ promptTokens: 0, completionTokens: 3, reported: false });
  });

  it('should read usage from the tail of a JSON body, wherever it was cut, and ignore a body without it', () => {
    const body = JSON.stringify({
      id: 'x',
      choices: [{ message: { content: 'x'.repeat(10_000) } }],
      usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9, prompt_tokens_details: { cached_tokens: 0 } },
    });
    const b = Buffer.from(body);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: b.length - 1 }), { maxLength: 8 }), (c) => {
        const { text, usage } = run(b, c, false, false);
        expect(text).toBe(body);
        expect(usage).toEqual({ promptTokens: 7, completionTokens: 2, reported: true });
      }),
      { numRuns: 100 },
    );
    expect(parseUsageObject('{"error":{"message":"usage"}}')).toBeNull();
    expect(parseUsageObject('{"usage": {"prompt_tokens": 3}}')).toEqual({ prompt: 3, completion: 0 });
  });
});

describe('pricing', () => {
  const d = { target: 'RUNPOD' as const, gpu: 'H100-80GB' };
  it('should price Flex per token, Active at its lower per-token rate plus warm seconds, and self-hosted targets at nothing metered', () => {
    const h100 = DEFAULT_PRICES.gpus['H100-80GB'];
    expect(tokenCostUsd(DEFAULT_PRICES, { ...d, mode: 'FLEX' }, 1e6)).toBeCloseTo(h100.flexPerMillionTokensUsd);
    expect(tokenCostUsd(DEFAULT_PRICES, { ...d, mode: 'ACTIVE' }, 1e6)).toBeCloseTo(h100.activePerMillionTokensUsd);
    expect(h100.activePerMillionTokensUsd).toBeLessThan(h100.flexPerMillionTokensUsd);
    expect(capacityCostUsd(DEFAULT_PRICES, { ...d, mode: 'ACTIVE' }, 3600)).toBeCloseTo(3600 * h100.activePerReplicaSecondUsd);
    expect(capacityCostUsd(DEFAULT_PRICES, { ...d, mode: 'FLEX' }, 3600)).toBe(0);
    expect(tokenCostUsd(DEFAULT_PRICES, { target: 'MODAL', mode: 'FLEX', gpu: 'H100-80GB' }, 1e6)).toBe(0);
    // The user's own RunPod account: RunPod bills them; we meter nothing.
    expect(tokenCostUsd(DEFAULT_PRICES, { ...d, ownAccount: true, mode: 'FLEX' }, 1e6)).toBe(0);
    expect(tokenCostUsd(DEFAULT_PRICES, { target: 'LOCAL', mode: 'FLEX', gpu: 'unlisted' }, 1e6)).toBeCloseTo(
      DEFAULT_PRICES.gpus.default.flexPerMillionTokensUsd,
    );
  });

  it('should read PRICING_FILE as YAML and refuse one that misses the default, naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prices-'));
    const good = join(dir, 'good.yaml');
    writeFileSync(
      good,
      'gpus:\n  default: { flexPerMillionTokensUsd: 1, activePerMillionTokensUsd: 0.5, activePerReplicaSecondUsd: 0.001 }\n',
    );
    expect(loadPrices(good).gpus.default.flexPerMillionTokensUsd).toBe(1);
    const bad = join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({ gpus: { L4: { flexPerMillionTokensUsd: 1, activePerMillionTokensUsd: 1, activePerReplicaSecondUsd: 1 } } }),
    );
    expect(() => loadPrices(bad)).toThrow(`PRICING_FILE=${bad}: gpus: must have a 'default' entry for GPUs not listed`);
    expect(loadPrices('')).toBe(DEFAULT_PRICES);
  });
});
