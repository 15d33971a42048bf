// The dashboard's UI: a page per hash route, built from /api, refreshed on
// its own. No framework and no build step; the server embeds this file.
"use strict";

const REFRESH_MS = 5000;
const WORKLOADS = [
  ["deployment", "Deployments"],
  ["statefulset", "StatefulSets"],
  ["daemonset", "DaemonSets"],
  ["job", "Jobs"],
  ["pod", "Pods"],
  ["service", "Services"],
];
const SHORT = { deployment: "deploy", statefulset: "sts", daemonset: "ds", replicaset: "rs", job: "job", pod: "po", namespace: "ns", service: "svc", authority: "au" };
const LONG = Object.fromEntries(Object.entries(SHORT).map(([k, v]) => [v, k]));

let config = { controllerNamespace: "linkerd", grafana: false };
// What the current page must stop when it is left: timers, event streams.
let cleanups = [];

// ---- helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
  const rsp = await fetch(`/api/${path}?${q}`);
  const body = await rsp.json().catch(() => ({ error: `${rsp.status} ${rsp.statusText}` }));
  if (!rsp.ok) throw new Error(body.error || `${rsp.status} ${rsp.statusText}`);
  return body;
}

function showError(e) {
  const box = document.getElementById("error");
  if (e) {
    box.textContent = e.message || String(e);
    box.hidden = false;
  } else {
    box.hidden = true;
  }
}

function kindOf(k) { return LONG[k] || k; }

// gRPC status codes by name, as `linkerd tap` shows them.
const GRPC_STATUS = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
  "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
  "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"];
function grpcStatus(code) { return GRPC_STATUS[code] || `gRPC ${code}`; }

// The namespace the user last looked at: where tap and top start.
let lastNamespace = "";

function successCell(v, col) {
  if (v === null || v === undefined) return h("td", { class: "num muted", "data-col": col || "success" }, "-");
  const pct = v * 100;
  const cls = pct >= 99 ? "sr-good" : pct >= 95 ? "sr-warn" : "sr-bad";
  return h("td", { class: `num ${cls}`, "data-col": col || "success" }, `${pct.toFixed(2)}%`);
}

function ms(v) {
  if (v === null || v === undefined) return "-";
  if (v >= 10) return `${Math.round(v)}ms`;
  return `${Number(v.toFixed(1))}ms`;
}

function rps(v) { return v === null || v === undefined ? "-" : `${v.toFixed(1)}rps`; }

function num(v, col) { return h("td", { class: v === "-" ? "num muted" : "num", "data-col": col }, v); }

// A link to the resource's Grafana dashboard (`linkerd-<kind>`, its
// variables set) where the mesh has a Grafana; where it has none (the local
// mesh), to the dashboard's own charts of the resource instead of a link
// that would answer 503.
function grafanaLink(kind, name, namespace) {
  const k = kindOf(kind);
  if (k === "authority") return h("td", {});
  if (!config.grafana) {
    return h("td", {}, h("a", { href: `${detailHref(k, name, namespace)}?charts`, class: "charts-link", title: "Its success rate, RPS and latency over time" }, "Charts"));
  }
  let url = `/grafana/d/linkerd-${k}?var-${k}=${encodeURIComponent(name)}`;
  if (namespace) url += `&var-namespace=${encodeURIComponent(namespace)}`;
  if (k === "namespace") url = `/grafana/d/linkerd-namespace?var-namespace=${encodeURIComponent(name)}`;
  return h("td", {}, h("a", { href: url, target: "_blank", rel: "noopener", title: "Open in Grafana" }, "Grafana ↗"));
}

function detailHref(kind, name, namespace) {
  const k = kindOf(kind);
  if (k === "namespace") return `#/namespaces/${encodeURIComponent(name)}`;
  return `#/namespaces/${encodeURIComponent(namespace)}/${k}/${encodeURIComponent(name)}`;
}

// A table of stat rows, as `linkerd stat` reports them.
function statTable(rows, opts) {
  opts = opts || {};
  if (!rows.length) return h("div", { class: "panel empty" }, opts.empty || "No resources.");
  // Requests their authorization policy denied: a column only where some were.
  const denied = rows.some((r) => r.denied_rps > 0);
  const head = h("tr", {},
    opts.namespaceColumn ? h("th", {}, "Namespace") : null,
    h("th", {}, "Name"), h("th", { class: "num" }, "Meshed"), h("th", { class: "num" }, "Success rate"),
    h("th", { class: "num" }, "RPS"), h("th", { class: "num" }, "P50"), h("th", { class: "num" }, "P95"),
    h("th", { class: "num" }, "P99"), h("th", { class: "num" }, "TCP"),
    denied ? h("th", { class: "num", title: "requests a second its authorization policy denied" }, "Denied") : null,
    opts.tls ? h("th", {}, "mTLS") : null,
    h("th", {}, ""));
  const body = rows.map((r) => {
    const kind = kindOf(r.kind);
    const linkable = kind !== "authority";
    return h("tr", { "data-name": r.name, "data-kind": kind },
      opts.namespaceColumn ? h("td", {}, r.namespace) : null,
      h("td", {}, linkable ? h("a", { href: detailHref(kind, r.name, r.namespace) }, r.name) : r.name),
      num(r.meshed, "meshed"),
      successCell(r.success),
      num(rps(r.rps), "rps"),
      num(ms(r.latency_ms_p50), "p50"),
      num(ms(r.latency_ms_p95), "p95"),
      num(ms(r.latency_ms_p99), "p99"),
      num(r.tcp_open_connections === null ? "-" : String(Math.round(r.tcp_open_connections)), "tcp"),
      denied ? deniedCell(r.denied_rps) : null,
      opts.tls ? tlsCell(opts.tls(r)) : null,
      grafanaLink(kind, r.name, r.namespace));
  });
  return h("div", { class: "panel" }, h("table", { class: "stat" }, h("thead", {}, head), h("tbody", {}, body)));
}

function deniedCell(v) {
  return h("td", { class: `num ${v > 0 ? "sr-bad" : ""}`, "data-col": "denied" }, rps(v));
}

function tlsCell(edge) {
  if (!edge) return h("td", { class: "muted" }, "-");
  if (edge.secured) return h("td", { class: "secured", title: `${edge.clientId} → ${edge.serverId}` }, "✔ secured");
  return h("td", { class: "unsecured", title: edge.noTlsReason }, `not secured${edge.noTlsReason ? ` (${edge.noTlsReason})` : ""}`);
}

function crumbs(...parts) {
  const el = document.getElementById("crumbs");
  el.replaceChildren(...parts.flatMap((p, i) => [i ? " / " : "", typeof p === "string" ? p : h("a", { href: p[1] }, p[0])]));
}

// Runs `render` now and every REFRESH_MS while the page is shown.
function refreshing(render) {
  let stopped = false;
  const tick = async () => {
    try {
      await render();
      showError(null);
    } catch (e) {
      showError(e);
    }
  };
  tick();
  const timer = setInterval(() => { if (!stopped) tick(); }, REFRESH_MS);
  cleanups.push(() => { stopped = true; clearInterval(timer); });
}

// ---- charts ----

// What a chart can span: [seconds, seconds between points, label]. Each
// point is the stats over the minute before it, as `linkerd stat` says.
const RANGES = [[300, 10, "5 min"], [900, 15, "15 min"], [3600, 60, "60 min"]];
const QUANTILES = [["latency_ms_p50", "P50"], ["latency_ms_p95", "P95"], ["latency_ms_p99", "P99"]];
let chartRange = Number(localStorage.getItem("linkerd.chartRange")) || 300;
let chartQuantile = localStorage.getItem("linkerd.chartQuantile") || "latency_ms_p95";

function percent(v) { return `${Number((v * 100).toFixed(v > 0.999 || v < 0.001 ? 0 : 1))}%`; }
function perSecond(v) { return v >= 10 ? v.toFixed(0) : String(Number(v.toFixed(2))); }

// One chart of a stat range: `figure` is success, rps, latency (one line
// per resource at the chosen quantile) or quantiles (P50, P95 and P99 of
// the one resource).
function drawChart(c, answer) {
  const ts = answer.timestamps;
  let lines, format, bounds = {}, title = c.title;
  switch (c.figure) {
    case "success":
      lines = answer.series.map((s) => ({ name: s.name, values: s.success }));
      format = percent;
      bounds = { floor: 0.9, ceiling: 1 };
      break;
    case "rps":
      lines = answer.series.map((s) => ({ name: s.name, values: s.rps }));
      format = perSecond;
      break;
    case "latency": {
      const [key, label] = QUANTILES.find(([k]) => k === chartQuantile) || QUANTILES[1];
      lines = answer.series.map((s) => ({ name: s.name, values: s[key] }));
      format = ms;
      title = `${title} (${label})`;
      break;
    }
    default: {
      const s = answer.series[0];
      lines = s ? QUANTILES.map(([key, label]) => ({ name: label, values: s[key] })) : [];
      format = ms;
    }
  }
  // A young metrics source has no point yet: each needs a whole window of data.
  const age = answer.dataSince ? Date.now() / 1000 - answer.dataSince : Infinity;
  const empty = age < answer.window
    ? `Warming up: a point needs ${Math.round(answer.window)}s of data; the metrics go back ${Math.max(0, Math.round(age))}s.`
    : c.empty;
  return lineChart(Object.assign({ id: c.id, title, timestamps: ts, lines, format, empty }, bounds));
}

// Scrolls to the charts when the link asked for them (`?charts`: where a
// Grafana link would be, in a mesh without Grafana).
function showCharts(charts) {
  if (new URLSearchParams(location.hash.split("?")[1] || "").has("charts")) charts.el.scrollIntoView();
}

// A section of charts with its range buttons: `groups` are stat_range
// requests, each with the charts drawn from its answer. `refresh` asks
// again and draws them all; the page calls it with its tables.
function chartsSection(groups) {
  const grid = h("div", { id: "charts" }, h("div", { class: "panel empty" }, "Loading…"));
  let refresh;
  const buttons = RANGES.map(([secs, , label]) => h("button", {
    type: "button", "data-range": secs, class: secs === chartRange ? "active" : null,
    onclick: () => {
      chartRange = secs;
      localStorage.setItem("linkerd.chartRange", String(secs));
      for (const b of buttons) b.classList.toggle("active", Number(b.dataset.range) === secs);
      refresh().catch(showError);
    },
  }, label));
  const latency = groups.some((g) => g.charts.some((c) => c.figure === "latency"));
  const quantile = latency ? h("select", {
    "aria-label": "Latency quantile",
    onchange: (e) => {
      chartQuantile = e.target.value;
      localStorage.setItem("linkerd.chartQuantile", chartQuantile);
      refresh().catch(showError);
    },
  }, QUANTILES.map(([k, label]) => h("option", { value: k, selected: k === chartQuantile }, label))) : null;
  refresh = async () => {
    const [secs, step] = RANGES.find((r) => r[0] === chartRange) || RANGES[0];
    const answers = await Promise.all(groups.map((g) => api("stat_range", Object.assign({}, g.request, { range: secs, step }))));
    // A grid per row: a resource's own charts, then its callers' and callees'.
    const rows = [];
    groups.forEach((g, i) => (rows[g.row || 0] ||= []).push(...g.charts.map((c) => drawChart(c, answers[i]))));
    grid.replaceChildren(...rows.filter(Boolean).map((charts) => h("div", { class: "charts" }, charts)));
  };
  const el = h("div", {}, h("div", { class: "charts-bar" }, h("h2", {}, "Over time"), buttons, quantile), grid);
  return { el, refresh };
}

// ---- pages ----

function namespacesPage(view) {
  crumbs("Namespaces");
  const table = h("div", {}, h("div", { class: "panel empty" }, "Loading…"));
  view.replaceChildren(h("h1", {}, "Namespaces"), table);
  refreshing(async () => {
    const { rows } = await api("stat", { kind: "namespace" });
    table.replaceChildren(statTable(rows, { empty: "No namespaces with pods." }));
  });
}

function namespacePage(view, ns) {
  lastNamespace = ns;
  crumbs(["Namespaces", "#/namespaces"], ns);
  const sections = WORKLOADS.map(([kind, title]) => {
    const holder = h("div", { id: `section-${kind}` }, h("div", { class: "panel empty" }, "Loading…"));
    return { kind, title, holder, box: h("div", {}, h("h2", {}, title), holder) };
  });
  const edges = h("div", {}, h("div", { class: "panel empty" }, "Loading…"));
  const charts = chartsSection([{
    request: { kind: "deployment", namespace: ns },
    charts: [
      { id: "success", title: "Success rate", figure: "success" },
      { id: "rps", title: "Requests per second", figure: "rps" },
      { id: "latency", title: "Latency", figure: "latency" },
    ],
  }]);
  const graph = h("div", { id: "graph" }, h("div", { class: "panel empty" }, "Loading…"));
  view.replaceChildren(h("h1", {}, `Namespace ${ns}`), charts.el, h("h2", {}, "Traffic graph"), graph,
    ...sections.map((s) => s.box), h("h2", {}, "Edges"), edges);
  showCharts(charts);
  refreshing(async () => {
    const [results, { edges: list }] = await Promise.all([
      Promise.all(sections.map((s) => api("stat", { kind: s.kind, namespace: ns }))),
      api("edges", { kind: "deployment", namespace: ns }),
      charts.refresh(),
    ]);
    sections.forEach((s, i) => {
      const rows = results[i].rows;
      s.box.hidden = !rows.length && s.kind !== "deployment";
      s.holder.replaceChildren(statTable(rows, { empty: `No ${s.title.toLowerCase()} in ${ns}.` }));
    });
    graph.replaceChildren(namespaceGraph(ns, results[0].rows, list));
    edges.replaceChildren(edgeTable(list));
  });
}

// The namespace's deployments as nodes (each with its own success rate and
// RPS), and its edges as arrows; a workload of another namespace at an
// edge's end is a node too, named with its namespace.
function namespaceGraph(ns, rows, list) {
  const id = (r) => (r.namespace === ns ? r.name : `${r.namespace}/${r.name}`);
  const nodes = new Map();
  const add = (r, stats) => {
    const key = id(r);
    if (nodes.has(key)) return;
    nodes.set(key, {
      id: key, label: key, href: detailHref("deployment", r.name, r.namespace),
      success: stats ? stats.success : null,
      detail: stats && stats.success !== null ? `${percent(stats.success)} · ${rps(stats.rps)}` : "no requests in",
    });
  };
  for (const r of rows) add(r, r);
  for (const e of list) { add(e.src); add(e.dst); }
  if (!nodes.size) return h("div", { class: "panel empty" }, `No deployments in ${ns}.`);
  const edges = list.map((e) => ({
    from: id(e.src), to: id(e.dst), success: e.success, rps: e.rps, secured: e.secured,
    tlsTitle: e.secured ? `${e.clientId} → ${e.serverId}` : e.noTlsReason,
  }));
  return trafficGraph([...nodes.values()], edges, { success: percent, rps });
}

// A resource with its callers to the left and its callees to the right
// (Linkerd's "octopus"), each arrow the traffic `linkerd stat --to/--from`
// counts, with mTLS where the edges say.
function resourceGraph(kind, name, ns, me, ins, outs, edge) {
  const self = { id: `${SHORT[kind] || kind}/${name}`, label: `${SHORT[kind] || kind}/${name}`, layer: 1, focus: true,
    success: me ? me.success : null, detail: me && me.success !== null ? `${percent(me.success)} · ${rps(me.rps)}` : "no requests in" };
  const nodes = [self], edges = [];
  const peer = (r, layer, dir) => {
    const nodeId = `${dir}:${r.namespace}/${r.name}`;
    nodes.push({ id: nodeId, label: r.namespace === ns ? r.name : `${r.namespace}/${r.name}`, layer, href: detailHref(r.kind, r.name, r.namespace),
      success: r.success, detail: r.success !== null ? `${percent(r.success)} · ${rps(r.rps)}` : "" });
    const e = dir === "in" ? edge(r, { name, namespace: ns }) : edge({ name, namespace: ns }, r);
    const tls = e ? { secured: e.secured, tlsTitle: e.secured ? `${e.clientId} → ${e.serverId}` : e.noTlsReason } : {};
    edges.push(Object.assign(dir === "in" ? { from: nodeId, to: self.id } : { from: self.id, to: nodeId }, { success: r.success, rps: r.rps }, tls));
  };
  for (const r of ins) peer(r, 0, "in");
  for (const r of outs) peer(r, 2, "out");
  if (!ins.length && !outs.length) return h("div", { class: "panel empty" }, "No traffic to or from it in the last minute.");
  return trafficGraph(nodes, edges, { success: percent, rps });
}

function edgeTable(list) {
  if (!list.length) return h("div", { class: "panel empty" }, "No traffic between meshed workloads yet.");
  return h("div", { class: "panel" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "Source"), h("th", {}, "Destination"), h("th", {}, "mTLS"), h("th", {}, "Client identity"), h("th", {}, "Server identity"))),
    h("tbody", {}, list.map((e) => h("tr", {},
      h("td", {}, h("a", { href: detailHref(e.src.kind, e.src.name, e.src.namespace) }, `${SHORT[e.src.kind] || e.src.kind}/${e.src.name}`)),
      h("td", {}, h("a", { href: detailHref(e.dst.kind, e.dst.name, e.dst.namespace) }, `${SHORT[e.dst.kind] || e.dst.kind}/${e.dst.name}`)),
      tlsCell(e),
      identityCell(e.clientId),
      identityCell(e.serverId))))));
}

// An identity as `sa.namespace`, the rest of the name (the same for every
// workload of the mesh) in its title: the full names made the edges table
// wider than the window.
function identityCell(id) {
  if (!id) return h("td", { class: "muted" }, "-");
  const short = id.replace(/\.serviceaccount\.identity\..*$/, "");
  return h("td", { class: "muted identity", title: id }, short);
}

function card(label, value, cls) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: `value ${cls || ""}` }, value));
}

function resourcePage(view, ns, kind, name) {
  lastNamespace = ns;
  crumbs(["Namespaces", "#/namespaces"], [ns, `#/namespaces/${encodeURIComponent(ns)}`], `${SHORT[kind] || kind}/${name}`);
  const loading = () => h("div", { class: "panel empty" }, "Loading…");
  const cards = h("div", { class: "cards" }, h("div", { class: "card muted" }, "Loading…"));
  const inbound = h("div", {}, loading());
  const outbound = h("div", {}, loading());
  const pods = h("div", {}, loading());
  const calls = h("div", {}, h("div", { class: "panel empty" }, "Waiting for requests…"));
  const routes = h("div", {}, h("div", { class: "panel empty" }, "Waiting for requests it serves…"));
  const profileRoutes = h("div", {}, loading());
  const calledRoutes = h("div", {}, loading());
  // Its Grafana dashboard, where there is one: the charts below otherwise.
  const grafana = config.grafana ? grafanaLink(kind, name, ns).firstChild : null;
  if (grafana) grafana.classList.add("title-link");
  const self = `${kind}/${name}`;
  const groups = [
    {
      request: { kind, namespace: ns, name },
      charts: [
        { id: "success", title: "Success rate", figure: "success" },
        { id: "rps", title: "Requests per second", figure: "rps" },
        { id: "latency", title: "Latency", figure: "quantiles" },
      ],
    },
    {
      request: { kind: "deployment", to: self, toNamespace: ns },
      row: 1,
      charts: [
        { id: "callers-success", title: "Callers: success rate", figure: "success", empty: "Nothing called it in this range." },
        { id: "callers-rps", title: "Callers: requests per second", figure: "rps", empty: "Nothing called it in this range." },
      ],
    },
  ];
  if (kind !== "service") {
    groups.push({
      request: { kind: "deployment", from: self, fromNamespace: ns },
      row: 1,
      charts: [
        { id: "callees-success", title: "Callees: success rate", figure: "success", empty: "It called nothing in this range." },
        { id: "callees-rps", title: "Callees: requests per second", figure: "rps", empty: "It called nothing in this range." },
      ],
    });
  }
  const charts = chartsSection(groups);
  const graph = h("div", { id: "graph" }, loading());
  view.replaceChildren(
    h("h1", {}, `${SHORT[kind] || kind}/${name} `, grafana),
    cards,
    h("h2", {}, "Traffic graph"), graph,
    charts.el,
    h("h2", {}, "Inbound: who calls it"), inbound,
    h("h2", {}, "Outbound: whom it calls"), outbound,
    kind === "pod" || kind === "service" ? null : h("h2", {}, "Pods"), kind === "pod" || kind === "service" ? null : pods,
    h("h2", {}, "Routes (from its ServiceProfile)"), profileRoutes,
    kind === "service" ? null : h("h2", {}, "Routes it calls (from its callees' ServiceProfiles)"), kind === "service" ? null : calledRoutes,
    kind === "service" ? null : h("h2", {}, "Top routes (since this page opened)"), kind === "service" ? null : routes,
    kind === "service" ? null : h("h2", {}, "Live calls"), kind === "service" ? null : calls);
  showCharts(charts);
  refreshing(async () => {
    const [mine, ins, outs, edgeList, served] = await Promise.all([
      api("stat", { kind, namespace: ns, name }),
      api("stat", { kind: "deployment", to: self, toNamespace: ns }),
      kind === "service" ? Promise.resolve({ rows: [] }) : api("stat", { kind: "deployment", from: self, fromNamespace: ns }),
      kind === "deployment" ? api("edges", { kind: "deployment", namespace: "" }) : Promise.resolve({ edges: [] }),
      api("routes", { resource: self, namespace: ns }).catch(() => ({ rows: [] })),
      charts.refresh(),
    ]);
    profileRoutes.replaceChildren(routesTable(served.rows));
    if (kind !== "service") calledRoutes.replaceChildren(calledRoutesTable(await routesItCalls(self, ns)));
    const r = mine.rows[0];
    cards.replaceChildren(
      card("Success rate", r && r.success !== null ? `${(r.success * 100).toFixed(2)}%` : "-",
        r && r.success !== null ? (r.success >= 0.99 ? "sr-good" : r.success >= 0.95 ? "sr-warn" : "sr-bad") : "muted"),
      card("RPS", r ? rps(r.rps) : "-"),
      card("P50", r ? ms(r.latency_ms_p50) : "-"),
      card("P95", r ? ms(r.latency_ms_p95) : "-"),
      card("P99", r ? ms(r.latency_ms_p99) : "-"),
      card("Meshed", r ? r.meshed : "-"),
      card("TCP", r && r.tcp_open_connections !== null ? String(Math.round(r.tcp_open_connections)) : "-"),
      card("Denied", r ? rps(r.denied_rps) : "-", r && r.denied_rps > 0 ? "sr-bad" : "muted"));
    const edge = (src, dst) => edgeList.edges.find((e) => e.src.name === src.name && e.src.namespace === src.namespace && e.dst.name === dst.name && e.dst.namespace === dst.namespace);
    const me = { name, namespace: ns };
    const withTraffic = (rows) => rows.filter((x) => x.rps !== null);
    graph.replaceChildren(resourceGraph(kind, name, ns, r, withTraffic(ins.rows), withTraffic(outs.rows), edge));
    inbound.replaceChildren(statTable(withTraffic(ins.rows), { namespaceColumn: true, empty: "Nothing called it in the last minute.", tls: kind === "deployment" ? (x) => edge(x, me) : null }));
    outbound.replaceChildren(statTable(withTraffic(outs.rows), { namespaceColumn: true, empty: "It called nothing in the last minute.", tls: kind === "deployment" ? (x) => edge(me, x) : null }));
    if (kind !== "pod" && kind !== "service") {
      const [{ pods: list }, podStats] = await Promise.all([api("pods", { namespace: ns }), api("stat", { kind: "pod", namespace: ns })]);
      const names = new Set(list.filter((p) => p.ownerKind === kind && p.ownerName === name).map((p) => p.name));
      pods.replaceChildren(statTable(podStats.rows.filter((p) => names.has(p.name)), { empty: "No pods." }));
    }
  });
  if (kind !== "service") {
    const live = liveCalls(calls, { resource: self, namespace: ns }, routes);
    cleanups.push(() => live.close());
  }
}

// The routes of a resource's service profiles, as `linkerd routes` shows
// them: a route without traffic in the window has "-".
function routesTable(rows) {
  if (!rows.length) return h("div", { class: "panel empty" }, "No ServiceProfile: `linkerd profile` writes one.");
  const head = h("tr", {}, h("th", {}, "Route"), h("th", {}, "Service"), h("th", { class: "num" }, "Success rate"),
    h("th", { class: "num" }, "RPS"), h("th", { class: "num" }, "P50"), h("th", { class: "num" }, "P95"), h("th", { class: "num" }, "P99"));
  const body = rows.map((r) => h("tr", { "data-route": r.route },
    h("td", {}, r.route), h("td", { class: "muted" }, r.authority.split(/[.:]/)[0]),
    successCell(r.success), num(rps(r.rps), "rps"),
    num(ms(r.latency_ms_p50), "p50"), num(ms(r.latency_ms_p95), "p95"), num(ms(r.latency_ms_p99), "p99")));
  return h("div", { class: "panel" }, h("table", { class: "profile-routes" }, h("thead", {}, head), h("tbody", {}, body)));
}

// The routes of the services `self` called in the last minute, by their
// profiles, as the caller saw them (effective: after retries) and as its
// proxy sent them (actual: every attempt), as `linkerd routes --to -o wide`.
async function routesItCalls(self, ns) {
  const { rows: services } = await api("stat", { kind: "service", from: self, fromNamespace: ns });
  const called = services.filter((s) => s.rps !== null);
  const answers = await Promise.all(called.map((s) =>
    api("routes", { resource: self, namespace: ns, to: `svc/${s.name}`, toNamespace: s.namespace }).catch(() => ({ rows: [] }))));
  // A service without a profile has only its default route, and no route
  // metrics: nothing to show.
  return answers.filter((a) => a.rows.length > 1 || a.rows.some((r) => r.effective_rps !== null)).flatMap((a) => a.rows);
}

function calledRoutesTable(rows) {
  if (!rows.length) return h("div", { class: "panel empty" }, "It called no service with a ServiceProfile in the last minute.");
  const head = h("tr", {}, h("th", {}, "Route"), h("th", {}, "Service"),
    h("th", { class: "num", title: "what the caller saw, after retries" }, "Effective success"), h("th", { class: "num" }, "Effective RPS"),
    h("th", { class: "num", title: "every attempt its proxy sent" }, "Actual success"), h("th", { class: "num" }, "Actual RPS"),
    h("th", { class: "num" }, "P50"), h("th", { class: "num" }, "P95"), h("th", { class: "num" }, "P99"));
  const body = rows.map((r) => h("tr", { "data-route": r.route, "data-service": r.authority.split(/[.:]/)[0] },
    h("td", {}, r.route), h("td", { class: "muted" }, r.authority.split(/[.:]/)[0]),
    successCell(r.effective_success, "effective_success"), num(rps(r.effective_rps), "effective_rps"),
    successCell(r.actual_success, "actual_success"), num(rps(r.actual_rps), "actual_rps"),
    num(ms(r.latency_ms_p50), "p50"), num(ms(r.latency_ms_p95), "p95"), num(ms(r.latency_ms_p99), "p99")));
  return h("div", { class: "panel" }, h("table", { class: "called-routes" }, h("thead", {}, head), h("tbody", {}, body)));
}

// Live calls of a resource: tap, aggregated by route as `linkerd top` does.
// With `routesHolder`, also the resource's top routes: its inbound requests
// by method and path, whoever sent them. `handlers` hears of the tap's open,
// end and error; the caller closes what this returns.
function liveCalls(holder, filters, routesHolder, handlers) {
  const routes = new Map();
  const served = new Map();
  const pending = new Map();
  let dirty = true;
  const stream = tap(filters, Object.assign({}, handlers, {
    event(e) {
      const key = requestKey(e);
      if (e.requestInitEvent) {
        pending.set(key, { e, start: Date.now() });
      } else if (e.responseEndEvent) {
        const p = pending.get(key);
        pending.delete(key);
        if (!p) return;
        const req = p.e.requestInitEvent;
        const dir = p.e.proxyDirection === "INBOUND" ? "in" : "out";
        const peer = dir === "in" ? peerName(p.e.source) : peerName(p.e.destination);
        const rkey = `${dir} ${peer} ${req.method} ${req.path}`;
        const row = routes.get(rkey) || { dir, peer, method: req.method, path: req.path, count: 0, ok: 0, best: Infinity, worst: 0, last: 0 };
        const end = e.responseEndEvent;
        const latency = (end.sinceRequestInit.micros || 0) / 1000;
        const failed = end.grpcStatusCode !== undefined && end.grpcStatusCode !== null ? end.grpcStatusCode !== 0 : (p.status || 0) >= 500;
        row.count += 1;
        row.ok += failed ? 0 : 1;
        row.best = Math.min(row.best, latency);
        row.worst = Math.max(row.worst, latency);
        row.last = latency;
        routes.set(rkey, row);
        if (dir === "in") {
          const skey = `${req.method} ${req.path}`;
          const route = served.get(skey) || { method: req.method, path: req.path, count: 0, ok: 0, latencies: [] };
          route.count += 1;
          route.ok += failed ? 0 : 1;
          route.latencies.push(latency);
          if (route.latencies.length > 1000) route.latencies.shift();
          served.set(skey, route);
        }
        dirty = true;
      } else if (e.responseInitEvent) {
        const p = pending.get(key);
        if (p) p.status = e.responseInitEvent.httpStatus;
      }
    },
  }));
  const timer = setInterval(() => {
    if (!dirty) return;
    dirty = false;
    const rows = [...routes.values()].sort((a, b) => b.count - a.count).slice(0, 50);
    if (!rows.length) return;
    holder.replaceChildren(h("div", { class: "panel" }, h("table", { class: "calls" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Peer"), h("th", {}, "Method"), h("th", {}, "Path"), h("th", { class: "num" }, "Count"),
        h("th", { class: "num" }, "Best"), h("th", { class: "num" }, "Worst"), h("th", { class: "num" }, "Last"), h("th", { class: "num" }, "Success rate"))),
      h("tbody", {}, rows.map((r) => h("tr", {},
        h("td", {}, h("span", { class: `tag ${r.dir}` }, r.dir === "in" ? "FROM" : "TO")),
        h("td", {}, r.peer), h("td", {}, r.method), h("td", {}, r.path), num(String(r.count), "count"),
        num(ms(r.best), "best"), num(ms(r.worst), "worst"), num(ms(r.last), "last"), successCell(r.ok / r.count)))))));
    const top = [...served.values()].sort((a, b) => b.count - a.count).slice(0, 20);
    if (routesHolder && top.length) {
      const quantile = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
      routesHolder.replaceChildren(h("div", { class: "panel" }, h("table", { class: "routes" },
        h("thead", {}, h("tr", {}, h("th", {}, "Method"), h("th", {}, "Route"), h("th", { class: "num" }, "Requests"),
          h("th", { class: "num" }, "Success rate"), h("th", { class: "num" }, "P50"), h("th", { class: "num" }, "P95"))),
        h("tbody", {}, top.map((r) => h("tr", {},
          h("td", {}, r.method), h("td", {}, r.path), num(String(r.count), "count"), successCell(r.ok / r.count),
          num(ms(quantile(r.latencies, 0.5)), "p50"), num(ms(quantile(r.latencies, 0.95)), "p95")))))));
    }
  }, 1000);
  return { close() { clearInterval(timer); stream.close(); } };
}

function requestKey(e) {
  const ev = e.requestInitEvent || e.responseInitEvent || e.responseEndEvent;
  const where = e.proxyDirection === "INBOUND" ? e.destination : e.source;
  return `${e.proxyDirection} ${where.ip}:${where.port} ${ev.id.base}:${ev.id.stream}`;
}

function peerName(end) {
  const m = end.metadata || {};
  for (const k of ["deployment", "statefulset", "daemonset", "job"]) if (m[k]) return `${SHORT[k]}/${m[k]}`;
  if (m.pod) return `po/${m.pod}`;
  // A meshed client seen inbound is known by its mTLS identity.
  if (m.client_id) {
    const [sa, ns] = m.client_id.split(".");
    return `sa/${sa}.${ns}`;
  }
  return `${end.ip}:${end.port}`;
}

// Opens a tap stream (server-sent events); `handlers.event` gets each event.
function tap(filters, handlers) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  const source = new EventSource(`/api/tap?${q}`);
  source.onmessage = (m) => handlers.event(JSON.parse(m.data));
  source.addEventListener("open", () => handlers.open && handlers.open());
  source.addEventListener("error", (m) => {
    if (m.data) {
      source.close();
      const e = JSON.parse(m.data);
      if (handlers.error) handlers.error(e.error);
      else showError(new Error(e.error));
    }
  });
  source.addEventListener("end", () => { source.close(); if (handlers.end) handlers.end(); });
  return source;
}

function tapForm(onStart) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  // Placeholders are examples, and say so; a field's value is what it sends.
  const field = (name, label, example, value, extra) =>
    h("label", {}, label, h("input", Object.assign({ name, placeholder: example ? `e.g. ${example}` : "", value: params.get(name) || value || "" }, extra)));
  const namespaces = h("datalist", { id: "tap-namespaces" });
  const button = h("button", { type: "submit", id: "tap-start" }, "Start");
  const status = h("span", { class: "status", id: "tap-status" });
  let stream = null;
  const form = h("form", { class: "filters" },
    field("namespace", "Namespace", "emojivoto", lastNamespace, { list: "tap-namespaces", required: true }),
    namespaces,
    field("resource", "Resource", "deploy/web"),
    field("to", "To resource", "deploy/emoji"),
    field("method", "Method", "GET"),
    field("path", "Path prefix", "/api"),
    field("authority", "Authority", ""),
    field("maxRps", "Max RPS", "", "100"),
    button, status);
  // The namespaces with meshed pods, offered; the first starts the form
  // when no page named one.
  api("stat", { kind: "namespace" }).then(({ rows }) => {
    const meshed = rows.filter((r) => !r.meshed.startsWith("0/")).map((r) => r.name);
    namespaces.replaceChildren(...meshed.map((n) => h("option", { value: n })));
    const input = form.querySelector("input[name=namespace]");
    if (!input.value) input.value = meshed.find((n) => n !== config.controllerNamespace) || meshed[0] || "";
  }).catch(() => {});
  const stop = () => {
    if (stream) stream.close();
    stream = null;
    button.textContent = "Start";
    button.className = "";
    if (status.textContent.startsWith("Listening")) status.textContent = "Stopped.";
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (stream) return stop();
    const filters = Object.fromEntries(new FormData(form).entries());
    if (!filters.resource) { status.textContent = "Name a resource to tap, such as deploy/web."; return; }
    button.textContent = "Stop";
    button.className = "stop";
    status.textContent = "Starting…";
    stream = onStart(filters, {
      open() { status.textContent = `Listening to ${filters.resource} in ${filters.namespace}…`; },
      error(e) { status.textContent = e; stop(); },
      end() { status.textContent = "The tap ended."; stop(); },
    });
  });
  cleanups.push(stop);
  return form;
}

function tapPage(view) {
  crumbs("Tap");
  const rows = h("tbody", {});
  const table = h("div", { class: "panel" }, h("table", { id: "tap-events" },
    h("thead", {}, h("tr", {}, h("th", {}, "Direction"), h("th", {}, "Name"), h("th", {}, "Method"), h("th", {}, "Path"),
      h("th", { class: "num" }, "Status"), h("th", { class: "num" }, "Latency"), h("th", {}, "mTLS"))), rows));
  const byKey = new Map();
  const form = tapForm((filters, handlers) => {
    rows.replaceChildren();
    byKey.clear();
    return tap(filters, Object.assign({}, handlers, {
      event(e) {
        const key = requestKey(e);
        if (e.requestInitEvent) {
          const inbound = e.proxyDirection === "INBOUND";
          const meta = inbound ? e.source.metadata : e.destination.metadata;
          const tls = (meta && meta.tls) === "true";
          const cells = {
            status: num("…", "status"),
            latency: num("…", "latency"),
          };
          const row = h("tr", {},
            h("td", {}, h("span", { class: `tag ${inbound ? "in" : ""}` }, inbound ? "FROM" : "TO")),
            h("td", {}, inbound ? peerName(e.source) : peerName(e.destination)),
            h("td", {}, e.requestInitEvent.method),
            h("td", {}, e.requestInitEvent.path),
            cells.status, cells.latency,
            h("td", { class: tls ? "secured" : "unsecured" }, tls ? "✔ yes" : "no"));
          byKey.set(key, cells);
          rows.prepend(row);
          while (rows.children.length > 200) rows.lastChild.remove();
        } else if (e.responseInitEvent) {
          const c = byKey.get(key);
          if (c) {
            c.status.textContent = String(e.responseInitEvent.httpStatus);
            c.status.className = `num ${e.responseInitEvent.httpStatus >= 500 ? "sr-bad" : ""}`;
            c.latency.textContent = ms(e.responseInitEvent.sinceRequestInit.micros / 1000);
          }
        } else if (e.responseEndEvent) {
          const c = byKey.get(key);
          const code = e.responseEndEvent.grpcStatusCode;
          if (c && code !== undefined && code !== null && code !== 0) {
            c.status.textContent += ` ${grpcStatus(code)}`;
            c.status.className = "num sr-bad";
          }
          byKey.delete(key);
        }
      },
    }));
  });
  view.replaceChildren(h("h1", {}, "Tap"), form, table);
}

function topPage(view) {
  crumbs("Top");
  const holder = h("div", {}, h("div", { class: "panel empty" }, "Start a tap to see the busiest routes."));
  const form = tapForm((filters, handlers) => {
    holder.replaceChildren(h("div", { class: "panel empty" }, "Waiting for requests…"));
    return liveCalls(holder, filters, null, handlers);
  });
  view.replaceChildren(h("h1", {}, "Top"), form, holder);
}

// `linkerd check`'s categories, as the CLI prints them.
function checkReport(report) {
  const mark = { success: "√", warning: "‼", error: "×" };
  const cls = { success: "secured", warning: "sr-warn", error: "unsecured" };
  const blocks = report.categories.map((c) => h("div", { class: "panel check-category", "data-category": c.categoryName },
    h("div", { class: "check-title" }, c.categoryName),
    h("ul", { class: "checks" }, c.checks.map((k) => h("li", { "data-result": k.result },
      h("span", { class: `mark ${cls[k.result]}` }, mark[k.result]), " ", k.description,
      k.error ? h("div", { class: "check-error" }, k.error) : null,
      k.hint ? h("div", { class: "check-hint" }, h("a", { href: k.hint, target: "_blank", rel: "noopener" }, "How to fix it ↗")) : null)))));
  const verdict = h("div", { class: `verdict ${report.success ? "secured" : "unsecured"}`, id: "check-verdict" },
    `Status check results are ${report.success ? "√" : "×"}`);
  return [verdict, ...blocks];
}

function controlPlanePage(view) {
  crumbs("Control plane");
  const info = h("div", { class: "cards" });
  const checks = h("div", { id: "checks" }, h("div", { class: "panel empty" }, "Running the checks…"));
  const components = h("div", {});
  const again = h("button", { type: "button", id: "checks-again" }, "Run the checks again");
  const runChecks = async () => {
    try {
      checks.replaceChildren(...checkReport(await api("check")));
    } catch (e) {
      checks.replaceChildren(h("div", { class: "panel empty" }, e.message));
    }
  };
  again.addEventListener("click", runChecks);
  view.replaceChildren(h("h1", {}, "Control plane"), info, h("h2", {}, "Health checks ", again), checks,
    h("h2", {}, "Components"), components);
  runChecks();
  const timer = setInterval(runChecks, 30000);
  cleanups.push(() => clearInterval(timer));
  refreshing(async () => {
    const [version, { pods }, stat] = await Promise.all([
      api("version"),
      api("pods", { namespace: config.controllerNamespace }),
      api("stat", { kind: "deployment", namespace: config.controllerNamespace }),
    ]);
    info.replaceChildren(card("Version", version.release), card("Metrics from", version.metricsSource || "-"),
      card("Namespace", config.controllerNamespace));
    if (!pods.length) {
      components.replaceChildren(h("div", { class: "panel empty" },
        `Discovery knows no pods in ${config.controllerNamespace}: the local mesh runs its control plane as processes on this machine.`));
      return;
    }
    components.replaceChildren(statTable(stat.rows, { empty: "No control-plane deployments." }),
      h("h2", {}, "Pods"),
      h("div", { class: "panel" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Pod"), h("th", {}, "Ready"), h("th", {}, "Meshed"), h("th", {}, "IP"))),
        h("tbody", {}, pods.map((p) => h("tr", {},
          h("td", {}, p.name), h("td", { class: p.ready ? "secured" : "unsecured" }, p.ready ? "ready" : "not ready"),
          h("td", {}, p.meshed ? "yes" : "no"), h("td", { class: "muted" }, p.ip)))))));
  });
}

// ---- routing ----

function route() {
  for (const f of cleanups.splice(0)) f();
  showError(null);
  const view = document.getElementById("view");
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/namespaces";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("#sidebar [data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === parts[0]);
  }
  if (parts[0] === "namespaces" && parts.length === 1) return namespacesPage(view);
  if (parts[0] === "namespaces" && parts.length === 2) return namespacePage(view, parts[1]);
  if (parts[0] === "namespaces" && parts.length === 4) return resourcePage(view, parts[1], kindOf(parts[2]), parts[3]);
  if (parts[0] === "tap") return tapPage(view);
  if (parts[0] === "top") return topPage(view);
  if (parts[0] === "controlplane") return controlPlanePage(view);
  crumbs("Not found");
  view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/namespaces" }, "Back to the namespaces")));
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  try {
    config = await api("config");
    const v = await api("version");
    document.getElementById("version").textContent = `control plane ${v.release}`;
  } catch (e) {
    showError(e);
  }
  route();
});
