// How a variant's engine settings change the simulator, so that an optimization run on the local target ranks
// variants in an order that follows from their parameters. Pure and deterministic; the local provider turns a
// variant into these flags, and the same settings reach a real engine (vLLM) as its own flags.
//
// The model, per replica:
// - GPU: a speed factor (time to first token and between tokens are divided by it) and a KV cache of so many tokens.
// - KV cache room: sequences that fit at once = kvTokens / max-model-len (engineConfig "max-model-len", 4096 when
//   unset), more with quantized weights (fp8 x1.5, int4 x2). Up to that many sequences decode at full batching
//   efficiency (each extra one slows all by slowdownPerSeq); past it the engine preempts and recomputes, and every
//   sequence slows by (running / room)^1.5, so throughput peaks there: the knee an optimization run finds.
// - Quantization: fp8 (and int8) decode at 0.7x the time and prefill at 0.85x, and answer 2 % of a quality eval
//   wrong; int4 (awq, gptq) 0.55x and 0.9x, 6 % wrong.
// - A draft model (speculative decoding: engineConfig "speculative-model", "speculative-config" or
//   "num-speculative-tokens"): decode at 0.6x the time (more tokens accepted per step), prefill at 1.25x (the draft
//   runs too); lossless, and the draft's weights are too small to change the KV room.
// - tensor-parallel-size above the GPUs a box has: the engine exits at start, as vLLM does.
import type { SimulatorOptions } from './server';

export interface SimGpu {
  speed: number;
  /** GPUs of the type one box has: a tensor-parallel size above it cannot start. */
  count: number;
  /** KV cache capacity, tokens. */
  kvTokens: number;
}

/** The local target's simulated GPU types; any other GPU name runs as sim. */
export const SIM_GPUS: Record<string, SimGpu> = {
  sim: { speed: 1, count: 1, kvTokens: 131_072 },
  'sim-large': { speed: 2, count: 1, kvTokens: 262_144 },
};

export const DEFAULT_MAX_MODEL_LEN = 4096;

interface Quantization {
  decode: number;
  prefill: number;
  qualityLoss: number;
  kvRoom: number;
}

const NO_QUANTIZATION: Quantization = { decode: 1, prefill: 1, qualityLoss: 0, kvRoom: 1 };
const QUANTIZATIONS: Array<[RegExp, Quantization]> = [
  [/^(fp8|int8|w8a8)/, { decode: 0.7, prefill: 0.85, qualityLoss: 0.02, kvRoom: 1.5 }],
  [/^(awq|gptq|int4|w4a16|bitsandbytes|gguf)/, { decode: 0.55, prefill: 0.9, qualityLoss: 0.06, kvRoom: 2 }],
];

export const SPECULATIVE = { decode: 0.6, prefill: 1.25 };

export interface EngineVariant {
  gpu: string;
  quantization: string | null;
  engineConfig: Record<string, unknown> | null;
  /** Sequences one replica runs at most (vLLM's max-num-seqs). */
  maxConcurrency: number;
}

/** Simulator settings for a variant: the SimulatorOptions fields that the variant sets (their meaning is documented there). */
export type SimulatedEngine = Pick<
  SimulatorOptions,
  'speed' | 'kneeConcurrency' | 'decodeFactor' | 'prefillFactor' | 'qualityLoss' | 'tensorParallel' | 'gpuCount'
>;

const setting = (cfg: Record<string, unknown>, name: string): unknown => {
  const snake = name.replace(/-/g, '_');
  const camel = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  return cfg[name] ?? cfg[snake] ?? cfg[camel];
};

export const isSpeculative = (cfg: Record<string, unknown> | null) =>
  !!cfg && ['speculative-model', 'speculative-config', 'num-speculative-tokens'].some((k) => setting(cfg, k) != null);

export function simulatedEngine(v: EngineVariant): SimulatedEngine {
  const gpu = SIM_GPUS[v.gpu] ?? SIM_GPUS.sim;
  const cfg = v.engineConfig ?? {};
  const q = v.quantization?.toLowerCase() ?? String(setting(cfg, 'quantization') ?? '').toLowerCase();
  const quant = QUANTIZATIONS.find(([re]) => re.test(q))?.[1] ?? NO_QUANTIZATION;
  const maxLen = Number(setting(cfg, 'max-model-len') ?? DEFAULT_MAX_MODEL_LEN);
  const room = Math.max(
    1,
    Math.floor((gpu.kvTokens / (Number.isFinite(maxLen) && maxLen > 0 ? maxLen : DEFAULT_MAX_MODEL_LEN)) * quant.kvRoom),
  );
  const spec = isSpeculative(cfg);
  return {
    speed: gpu.speed,
    kneeConcurrency: Math.min(room, v.maxConcurrency),
    decodeFactor: quant.decode * (spec ? SPECULATIVE.decode : 1),
    prefillFactor: quant.prefill * (spec ? SPECULATIVE.prefill : 1),
    qualityLoss: quant.qualityLoss,
    tensorParallel: Number(setting(cfg, 'tensor-parallel-size') ?? 1) || 1,
    gpuCount: gpu.count,
  };
}

/**
 * The slowdown of every running sequence when `running` run at once (1 at one sequence): the batching cost up to the
 * knee, and the preemption cost past it.
 */
export function batchSlowdown(running: number, slowdownPerSeq: number, knee: number): number {
  const base = 1 + slowdownPerSeq * Math.max(0, running - 1);
  return knee > 0 && running > knee ? base * (running / knee) ** 1.5 : base;
}

/** Flags for the simulator's command line. */
export function simulatorFlags(e: SimulatedEngine): string[] {
  return [
    `--speed ${e.speed}`,
    `--knee-concurrency ${e.kneeConcurrency}`,
    `--decode-factor ${e.decodeFactor}`,
    `--prefill-factor ${e.prefillFactor}`,
    `--quality-loss ${e.qualityLoss}`,
    `--tensor-parallel ${e.tensorParallel}`,
    `--gpu-count ${e.gpuCount}`,
  ];
}
