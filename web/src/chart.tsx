// A time-series chart on uPlot: x is epoch seconds, one line per series; nulls are gaps.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  color: string;
  values: Array<number | null>;
  /** Stepped (counts such as replicas) instead of straight lines. */
  stepped?: boolean;
}

export function Chart(props: { title: string; unit?: string; x: number[]; series: Series[]; testId: string }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData;
  const shape = props.series.map((s) => s.label).join('|');

  useEffect(() => {
    if (!el.current) return;
    const opts: uPlot.Options = {
      width: Math.max(280, el.current.clientWidth || 420),
      height: 170,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { label: props.unit ?? '', size: 50 }],
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          spanGaps: false,
          ...(s.stepped ? { paths: uPlot.paths.stepped!({ align: 1 }) } : {}),
        })),
      ],
    };
    plot.current = new uPlot(opts, data, el.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
    // The chart is rebuilt only when its series change; data updates go through setData below.
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(data);
  });

  // The last value of each series, for readers and tests (the canvas has no text).
  const last = props.series.map((s) => [...s.values].reverse().find((v) => v !== null) ?? null);
  return (
    <figure
      class="chart"
      data-testid={props.testId}
      data-last={JSON.stringify(last)}
      data-max={JSON.stringify(props.series.map((s) => Math.max(0, ...s.values.filter((v): v is number => v !== null))))}
    >
      <figcaption>{props.title}</figcaption>
      <div ref={el} />
    </figure>
  );
}
