// Compact hand-written SVG charts (no library): a time-series line chart with gaps for missing
// values, a legend and a hover readout, and a bar chart for histograms. Sized to their container
// when drawn; the caller redraws on resize.

import { h, s } from './dom.js';

/** Four ticks on round values (1, 2, 2.5 or 5 x 10^n apart) covering 0..v; whole steps when
 * `integer` (counts never get a 0.5 tick). Returns the top of the axis. */
function niceMax(v, integer = false) {
  if (!(v > 0)) return integer ? 4 : 1;
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  let step = 10 * p;
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) { step = m * p; break; }
  if (integer) step = Math.max(1, Math.ceil(step));
  return step * 4;
}

/** Left padding wide enough for the longest y label (10.5 px text is ~6.3 px per character). */
function labelRoom(labels) {
  return Math.max(30, Math.ceil(Math.max(...labels.map((l) => String(l).length)) * 6.3) + 12);
}

/**
 * A line chart.
 * opts: { title, times: [unix s], series: [{name, values: [n|null], cls}], yFormat, xFormat,
 *         testid, height }
 */
export function lineChart(opts) {
  const { title, times, series, yFormat = String, xFormat = String, testid, height = 170, integer = false } = opts;
  const box = h('figure', { class: 'chart', testid });
  const readout = h('div', { class: 'chart-readout' }, '\u00a0');
  const legend = h('div', { class: 'legend' },
    series.map((sr) => h('span', { class: 'legend-item' }, h('i', { class: 'swatch ' + sr.cls }), sr.name)));
  box.append(h('figcaption', null, h('span', { class: 'chart-title' }, title), legend), readout);
  const holder = h('div', { class: 'chart-svg' });
  box.append(holder);

  const draw = () => {
    const width = Math.max(holder.clientWidth || 600, 240);
    const n = times.length;
    let max = 0;
    for (const sr of series) for (const v of sr.values) if (v !== null && v > max) max = v;
    max = niceMax(max, integer);
    const padL = labelRoom([0, 1, 2, 3, 4].map((k) => yFormat((max * k) / 4)));
    const padR = 10, padT = 8, padB = 22;
    const w = width - padL - padR;
    const hgt = height - padT - padB;
    const x = (i) => padL + (n <= 1 ? w / 2 : (i * w) / (n - 1));
    const y = (v) => padT + hgt - (v / max) * hgt;
    const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart-plot', role: 'img', 'aria-label': title });
    for (let k = 0; k <= 4; k += 1) {
      const v = (max * k) / 4;
      svg.append(s('line', { x1: padL, x2: padL + w, y1: y(v), y2: y(v), class: 'grid' }));
      svg.append(s('text', { x: padL - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, yFormat(v)));
    }
    const labels = Math.min(6, n);
    for (let k = 0; k < labels; k += 1) {
      const i = labels <= 1 ? 0 : Math.round((k * (n - 1)) / (labels - 1));
      svg.append(s('text', { x: x(i), y: height - 6, class: 'axis', 'text-anchor': k === 0 ? 'start' : k === labels - 1 ? 'end' : 'middle' }, xFormat(times[i])));
    }
    for (const sr of series) {
      let d = '';
      let pen = false;
      sr.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1) + ' ';
        pen = true;
      });
      if (d) svg.append(s('path', { d, class: 'line ' + sr.cls }));
      // Lone points between gaps would be invisible as paths: mark them.
      sr.values.forEach((v, i) => {
        const prev = sr.values[i - 1];
        const next = sr.values[i + 1];
        if (v !== null && v !== undefined && (prev === null || prev === undefined) && (next === null || next === undefined)) {
          svg.append(s('circle', { cx: x(i), cy: y(v), r: 2.5, class: 'dot ' + sr.cls }));
        }
      });
    }
    const cursor = s('line', { x1: 0, x2: 0, y1: padT, y2: padT + hgt, class: 'cursor hidden' });
    svg.append(cursor);
    svg.addEventListener('mousemove', (ev) => {
      const r = svg.getBoundingClientRect();
      const px = ev.clientX - r.left;
      const i = Math.max(0, Math.min(n - 1, Math.round(((px - padL) / w) * (n - 1))));
      if (!n) return;
      cursor.setAttribute('x1', x(i));
      cursor.setAttribute('x2', x(i));
      cursor.classList.remove('hidden');
      readout.textContent = xFormat(times[i]) + ' · ' +
        series.map((sr) => sr.name + ' ' + (sr.values[i] === null || sr.values[i] === undefined ? '–' : yFormat(sr.values[i]))).join(' · ');
    });
    svg.addEventListener('mouseleave', () => {
      cursor.classList.add('hidden');
      readout.textContent = '\u00a0';
    });
    holder.replaceChildren(svg);
  };
  box.draw = draw;
  return box;
}

/** A bar chart: bars: [{label, value}]. */
export function barChart({ title, bars, yFormat = String, testid, height = 160, cls = 's1', integer = true }) {
  const box = h('figure', { class: 'chart', testid });
  box.append(h('figcaption', null, h('span', { class: 'chart-title' }, title)));
  const holder = h('div', { class: 'chart-svg' });
  box.append(holder);
  const draw = () => {
    const width = Math.max(holder.clientWidth || 600, 240);
    const max = niceMax(Math.max(0, ...bars.map((b) => b.value)), integer);
    const padL = labelRoom([0, 1, 2, 3, 4].map((k) => yFormat((max * k) / 4)));
    const padR = 8, padT = 8, padB = 22;
    const w = width - padL - padR;
    const hgt = height - padT - padB;
    const bw = w / Math.max(bars.length, 1);
    const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart-plot', role: 'img', 'aria-label': title });
    for (let k = 0; k <= 4; k += 1) {
      const v = (max * k) / 4;
      const yy = padT + hgt - (v / max) * hgt;
      svg.append(s('line', { x1: padL, x2: padL + w, y1: yy, y2: yy, class: 'grid' }));
      svg.append(s('text', { x: padL - 6, y: yy + 4, class: 'axis', 'text-anchor': 'end' }, yFormat(v)));
    }
    const every = Math.ceil(bars.length / 10);
    bars.forEach((b, i) => {
      const bh = (b.value / max) * hgt;
      const rect = s('rect', { x: padL + i * bw + 1, y: padT + hgt - bh, width: Math.max(bw - 2, 1), height: bh, class: 'bar ' + cls });
      rect.append(s('title', null, b.label + ': ' + yFormat(b.value)));
      svg.append(rect);
      if (i % every === 0) {
        svg.append(s('text', { x: padL + i * bw + bw / 2, y: height - 6, class: 'axis', 'text-anchor': 'middle' }, b.label));
      }
    });
    holder.replaceChildren(svg);
  };
  box.draw = draw;
  return box;
}

/** Draw every chart under `root` now and whenever the window is resized (until `root` leaves). */
export function drawCharts(root) {
  const charts = [...root.querySelectorAll('figure.chart')].filter((c) => typeof c.draw === 'function');
  charts.forEach((c) => c.draw());
}

let resizeTimer = null;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    document.querySelectorAll('figure.chart').forEach((c) => { if (typeof c.draw === 'function') c.draw(); });
  }, 150);
});
