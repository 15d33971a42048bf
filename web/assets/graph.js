// The traffic graph in plain SVG: workloads as boxes, who calls whom as
// arrows left to right, each arrow coloured by its success rate, dashed
// where mTLS does not secure it, and labelled with its success and RPS.
"use strict";

// Columns by longest path from the callers nobody calls (a cycle is cut
// where it closes), unless a node says its column.
function layers(nodes, edges) {
  const layer = new Map(nodes.map((n) => [n.id, n.layer ?? 0]));
  if (nodes.every((n) => n.layer !== undefined)) return layer;
  for (let round = 0; round < nodes.length; round++) {
    let moved = false;
    for (const e of edges) {
      if (e.from === e.to || !layer.has(e.from) || !layer.has(e.to)) continue;
      const want = layer.get(e.from) + 1;
      if (want > layer.get(e.to) && want < nodes.length) {
        layer.set(e.to, want);
        moved = true;
      }
    }
    if (!moved) break;
  }
  // Workloads with no traffic go to the right, six to a column, rather
  // than making the first column as tall as the namespace.
  const linked = new Set(edges.flatMap((e) => [e.from, e.to]));
  const idle = nodes.filter((n) => !linked.has(n.id));
  if (idle.length && idle.length < nodes.length) {
    const after = Math.max(...nodes.filter((n) => linked.has(n.id)).map((n) => layer.get(n.id))) + 1;
    idle.forEach((n, i) => layer.set(n.id, after + Math.floor(i / 6)));
  } else if (idle.length) {
    idle.forEach((n, i) => layer.set(n.id, Math.floor(i / 6)));
  }
  return layer;
}

function healthClass(success) {
  if (success === null || success === undefined) return "idle";
  return success >= 0.99 ? "good" : success >= 0.95 ? "warn" : "bad";
}

// `nodes`: [{ id, label, detail (a second line), href, layer, focus }];
// `edges`: [{ from, to, success, rps, secured, tlsTitle }]. Figures are
// formatted by `fmt.success` and `fmt.rps`.
function trafficGraph(nodes, edges, fmt) {
  const NW = 150, NH = 42, GX = 160, GY = 30, PAD = 18;
  const layer = layers(nodes, edges);
  const columns = [];
  for (const n of nodes) (columns[layer.get(n.id)] ||= []).push(n);
  const filled = columns.filter(Boolean);
  const tallest = Math.max(1, ...filled.map((c) => c.length));
  const W = PAD * 2 + filled.length * NW + (filled.length - 1) * GX;
  const H = PAD * 2 + tallest * NH + (tallest - 1) * GY + 14;
  const at = new Map();
  filled.forEach((col, ci) => {
    const top = PAD + ((tallest - col.length) * (NH + GY)) / 2;
    col.forEach((n, i) => at.set(n.id, { x: PAD + ci * (NW + GX), y: top + i * (NH + GY) }));
  });
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "graph", role: "img", "aria-label": "Traffic between workloads" });
  svg.setAttribute("width", W);
  const defs = svgEl("defs");
  for (const c of ["good", "warn", "bad", "idle"]) {
    defs.append(svgEl("marker", { id: `arrow-${c}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svgEl("path", { d: "M0,0 L10,5 L0,10 z", class: `arrowhead ${c}` })));
  }
  svg.append(defs);
  for (const e of edges) {
    const a = at.get(e.from), b = at.get(e.to);
    if (!a || !b) continue;
    const health = healthClass(e.success);
    let d, lx, ly;
    if (e.from === e.to) {
      // A workload calling itself: a loop above its box.
      d = `M${a.x + NW * 0.6},${a.y} C${a.x + NW * 0.6},${a.y - 30} ${a.x + NW * 0.9},${a.y - 30} ${a.x + NW * 0.9},${a.y}`;
      lx = a.x + NW * 0.75; ly = a.y - 26;
    } else {
      const forward = b.x > a.x;
      const x1 = forward ? a.x + NW : a.x + NW / 2, y1 = forward ? a.y + NH / 2 : a.y + NH;
      const x2 = forward ? b.x : b.x + NW / 2, y2 = forward ? b.y + NH / 2 : b.y + NH;
      const bend = forward ? Math.max(30, (x2 - x1) / 2) : 40;
      const c = forward
        ? [[x1, y1], [x1 + bend, y1], [x2 - bend, y2], [x2, y2]]
        : [[x1, y1], [x1, y1 + bend], [x2, y2 + bend], [x2, y2]];
      d = `M${c[0]} C${c[1]} ${c[2]} ${c[3]}`;
      // The label sits past the middle, where arrows fanning out of one
      // box have parted.
      const t = forward ? 0.62 : 0.5, u = 1 - t;
      const at = (k) => u * u * u * c[0][k] + 3 * u * u * t * c[1][k] + 3 * u * t * t * c[2][k] + t * t * t * c[3][k];
      lx = at(0); ly = at(1) - 6;
    }
    const path = svgEl("path", {
      d, class: `edge ${health}${e.secured === false ? " unsecured" : ""}`, "marker-end": `url(#arrow-${health})`,
      "data-src": e.from, "data-dst": e.to, "data-success": e.success, "data-rps": e.rps,
    });
    const tip = svgEl("title");
    const tls = e.secured === undefined ? "" : `: ${e.secured ? "secured by mTLS" : "not secured"}${e.tlsTitle ? ` (${e.tlsTitle})` : ""}`;
    tip.textContent = `${e.from} → ${e.to}${tls}`;
    path.append(tip);
    svg.append(path);
    const label = svgEl("text", { x: lx, y: ly, "text-anchor": "middle", class: `edge-label ${health}` });
    if (e.secured) {
      const tls = svgEl("tspan", { class: "edge-tls" });
      tls.textContent = "mTLS ";
      label.append(tls);
    }
    label.append(`${e.success === null || e.success === undefined ? "-" : fmt.success(e.success)} · ${e.rps === null || e.rps === undefined ? "-" : fmt.rps(e.rps)}`);
    svg.append(label);
  }
  for (const n of nodes) {
    const p = at.get(n.id);
    const g = svgEl("g", { class: `node${n.focus ? " focus" : ""} ${healthClass(n.success)}`, "data-name": n.id, transform: `translate(${p.x},${p.y})` });
    g.append(svgEl("rect", { width: NW, height: NH, rx: 6 }));
    const name = svgEl("text", { x: NW / 2, y: 17, "text-anchor": "middle", class: "node-name" });
    name.textContent = n.label.length > 20 ? `${n.label.slice(0, 19)}…` : n.label;
    const detail = svgEl("text", { x: NW / 2, y: 33, "text-anchor": "middle", class: "node-detail" });
    detail.textContent = n.detail || "";
    g.append(name, detail);
    const title = svgEl("title");
    title.textContent = n.label;
    g.append(title);
    if (n.href) {
      const link = svgEl("a", { href: n.href });
      link.append(g);
      svg.append(link);
    } else {
      svg.append(g);
    }
  }
  const box = document.createElement("div");
  box.className = "panel graph-box";
  box.append(svg);
  return box;
}
