// Line charts in plain SVG, drawn from /api/stat_range's arrays: a chart
// per figure, a line per resource. No library: the dashboard works with no
// network, and a few hundred lines of SVG need none.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
// Distinguishable on white, and in the order lines are assigned them.
const PALETTE = ["#2f6fde", "#1f9d55", "#d0342c", "#c98a00", "#7b4fd1", "#0f9bb3", "#d14f9b", "#5b6b80"];

function svgEl(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children) if (c) el.append(c);
  return el;
}

// Round ticks (steps of 1, 2, 5 × 10^n) from at or below `lo` to at or
// above `hi`, about `n` steps apart.
function ticks(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.floor(lo / step + 1e-9) * step; v < hi + step * (1 - 1e-9); v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function clock(t, withSeconds) {
  const d = new Date(t * 1000);
  const two = (x) => String(x).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}${withSeconds ? `:${two(d.getSeconds())}` : ""}`;
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

// A line chart. `opts`: { title, timestamps (seconds), lines: [{ name,
// values (a number or null per timestamp) }], format (a value as shown),
// floor/ceiling (a fixed bound, e.g. success's 100%), empty (the text when
// no line has a value) }. Each line's path carries data-name and data-last
// (its last value), which the browser test reads.
function lineChart(opts) {
  const W = 420, H = 150, L = 52, R = 12, T = 10, B = 22;
  const lines = opts.lines
    .map((l, i) => Object.assign({ color: PALETTE[i % PALETTE.length] }, l))
    .filter((l) => l.values.some((v) => v !== null && Number.isFinite(v)));
  const box = document.createElement("div");
  box.className = "chart";
  box.dataset.chart = opts.id || opts.title;
  const title = document.createElement("div");
  title.className = "chart-title";
  title.textContent = opts.title;
  box.append(title);
  const ts = opts.timestamps;
  if (!lines.length || ts.length < 2) {
    const empty = document.createElement("div");
    empty.className = "chart-empty";
    empty.textContent = opts.empty || "No traffic in this range.";
    box.append(empty);
    return box;
  }
  const all = lines.flatMap((l) => l.values).filter((v) => v !== null && Number.isFinite(v));
  let lo = opts.floor !== undefined ? Math.min(opts.floor, ...all) : Math.min(0, ...all);
  let hi = opts.ceiling !== undefined ? Math.max(opts.ceiling, ...all) : Math.max(...all);
  if (hi === lo) hi = lo + 1;
  const yTicks = ticks(lo, hi, 4);
  lo = Math.min(lo, yTicks[0]);
  hi = Math.max(hi, yTicks[yTicks.length - 1]);
  const t0 = ts[0], t1 = ts[ts.length - 1];
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + ((hi - v) / (hi - lo)) * (H - T - B);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title });
  for (const v of yTicks) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const label = svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" });
    label.textContent = opts.format(v);
    svg.append(label);
  }
  const span = t1 - t0;
  for (const t of ticks(t0, t1, 4).filter((t) => t >= t0 && t <= t1)) {
    const label = svgEl("text", { x: x(t), y: H - 6, "text-anchor": "middle", class: "axis" });
    label.textContent = clock(t, span < 600);
    svg.append(label);
  }
  for (const l of lines) {
    // A gap (no value) breaks the line; a lone point is a dot.
    let d = "", run = 0;
    const dots = [];
    l.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        if (run === 1) dots.push(i - 1);
        run = 0;
        return;
      }
      d += `${run ? "L" : "M"}${x(ts[i]).toFixed(1)},${y(v).toFixed(1)}`;
      run += 1;
    });
    if (run === 1) dots.push(l.values.length - 1);
    const path = svgEl("path", { d, stroke: l.color, class: "line", "data-name": l.name, "data-last": lastValue(l.values) });
    const tip = svgEl("title");
    tip.textContent = l.name;
    path.append(tip);
    svg.append(path);
    for (const i of dots) svg.append(svgEl("circle", { cx: x(ts[i]), cy: y(l.values[i]), r: 2.5, fill: l.color }));
  }
  // Hovering shows every line's value at the nearest moment.
  const cursor = svgEl("line", { y1: T, y2: H - B, class: "cursor", visibility: "hidden" });
  svg.append(cursor);
  const readout = document.createElement("div");
  readout.className = "chart-readout";
  svg.addEventListener("mousemove", (ev) => {
    const r = svg.getBoundingClientRect();
    const px = ((ev.clientX - r.left) / r.width) * W;
    const i = Math.max(0, Math.min(ts.length - 1, Math.round(((px - L) / (W - L - R)) * (ts.length - 1))));
    cursor.setAttribute("x1", x(ts[i]));
    cursor.setAttribute("x2", x(ts[i]));
    cursor.setAttribute("visibility", "visible");
    readout.textContent = `${clock(ts[i], true)}  ` + lines.map((l) => `${l.name} ${l.values[i] === null ? "-" : opts.format(l.values[i])}`).join("  ·  ");
  });
  svg.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); readout.textContent = ""; });
  box.append(svg, readout);
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const l of lines) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = l.color;
    const last = lastValue(l.values);
    item.append(swatch, `${l.name} `);
    const value = document.createElement("b");
    value.textContent = last === null ? "-" : opts.format(last);
    item.append(value);
    legend.append(item);
  }
  box.append(legend);
  return box;
}
