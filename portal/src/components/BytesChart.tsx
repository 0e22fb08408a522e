import 'uplot/dist/uPlot.min.css';
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import { formatBytes } from '../format.ts';

export interface ChartSeries {
  label: string;
  values: number[];
}

const COLOURS = ['#1c7ed6', '#0ca678', '#f08c00', '#ae3ec9', '#e03131', '#1098ad', '#5c940d'];

/** Bars of bytes (or money) over time, one colour per series; uPlot keeps it small and fast. */
export default function BytesChart({
  label,
  times,
  series,
  format = formatBytes,
}: {
  label: string;
  /** Unix seconds, one per period. */
  times: number[];
  series: ChartSeries[];
  format?: (value: number) => string;
}) {
  const container = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const bars = uPlot.paths.bars?.({ size: [0.7, 40] });
    const plot = new uPlot(
      {
        width: element.clientWidth || 600,
        height: 260,
        series: [
          {},
          ...series.map((one, index) => ({
            label: one.label,
            stroke: COLOURS[index % COLOURS.length],
            fill: `${COLOURS[index % COLOURS.length]}88`,
            paths: bars,
            points: { show: false },
            value: (_plot: uPlot, value: number | null) => (value === null ? '–' : format(value)),
          })),
        ],
        axes: [{}, { values: (_plot, ticks) => ticks.map(format), size: 70 }],
        scales: { y: { range: (_plot, _min, max) => [0, Math.max(max, 1) * 1.1] } },
        legend: { show: true },
      },
      [times, ...series.map((one) => one.values)],
      element,
    );
    const resize = new ResizeObserver(() =>
      plot.setSize({ width: element.clientWidth, height: 260 }),
    );
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [times, series, format]);
  return <div ref={container} className="chart" role="img" aria-label={label} />;
}
