import { useEffect, useRef, useState } from 'preact/hooks';

/** Runs `load` now and every `everyMs` while mounted (and again when deps change); the last result or error. */
export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const tick = useRef(0);
  const [n, setN] = useState(0);
  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      const my = ++tick.current;
      try {
        const d = await load();
        if (alive && my === tick.current) {
          setData(d);
          setError(null);
        }
      } catch (e) {
        if (alive) setError((e as Error).message);
      }
      if (alive) timer = setTimeout(() => void run(), everyMs);
    };
    void run();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, [...deps, n]);
  return { data, error, reload: () => setN((x) => x + 1) };
}

export const fmt = {
  num: (v: number | null | undefined, digits = 0) => (v === null || v === undefined ? '–' : v.toFixed(digits)),
  usd: (v: number | null | undefined) => (v === null || v === undefined ? '–' : `$${v < 0.01 && v > 0 ? v.toFixed(6) : v.toFixed(2)}`),
  time: (iso: string) => new Date(iso).toLocaleTimeString(),
  ms: (v: number | null | undefined) =>
    v === null || v === undefined ? '–' : v < 1000 ? `${v.toFixed(0)} ms` : `${(v / 1000).toFixed(2)} s`,
};
