#!/usr/bin/env python3
"""Writes the chart's Grafana dashboards, charts/linkerd/files/grafana/*.json.

The dashboards are Linkerd's: top-line, namespace, one per workload kind
(deployment, statefulset, daemonset, replicaset, job, cronjob, pod), service,
authority, health and prometheus, with uids `linkerd-<kind>` so that the web
dashboard's links (`/grafana/d/linkerd-<kind>?var-<kind>=NAME&var-namespace=NS`)
resolve. Their queries use the series the proxies export and the labels the
chart's scrape configuration gives them (namespace, pod, deployment, ...,
dst_* for the callee of an outbound request).

The JSON files are what the chart ships; this script keeps the twelve of them
alike. Edit it, then run it; `--check` (run by the tests) fails when a file
differs from what it would write.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "linkerd" / "files" / "grafana"
DS = {"type": "prometheus", "uid": "prometheus"}
RATE = "30s"


def var(name, series, label=None):
    """A template variable `name`: the values of `label` (default: the
    same name) on `series`."""
    values = f"label_values({series}, {label or name})"
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DS,
        "query": {"query": values, "refId": f"{name}-values"},
        "definition": values,
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "current": {},
        "options": [],
        "hide": 0,
    }


class Board:
    def __init__(self, kind, title, variables):
        self.kind = kind
        self.title = title
        self.variables = variables
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_height = 0

    def _place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_height = max(self.row_height, h)
        return pos

    def row(self, title):
        if self.x:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        self.panels.append({
            "id": len(self.panels) + 1,
            "type": "row",
            "title": title,
            "collapsed": False,
            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
            "panels": [],
        })
        self.y += 1

    def stat(self, title, expr, unit, w=6):
        self.panels.append({
            "id": len(self.panels) + 1,
            "type": "stat",
            "title": title,
            "datasource": DS,
            "gridPos": self._place(w, 4),
            "targets": [{"refId": "A", "expr": expr, "instant": True, "datasource": DS}],
            "fieldConfig": {"defaults": {"unit": unit, "decimals": 2}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value", "graphMode": "area"},
        })

    def graph(self, title, targets, unit, w=8):
        self.panels.append({
            "id": len(self.panels) + 1,
            "type": "timeseries",
            "title": title,
            "datasource": DS,
            "gridPos": self._place(w, 8),
            "targets": [
                {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DS}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit, "custom": {"fillOpacity": 10}}, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        })

    def json(self):
        return {
            "uid": f"linkerd-{self.kind}",
            "title": self.title,
            "tags": ["linkerd"],
            "editable": True,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "10s",
            "time": {"from": "now-15m", "to": "now"},
            "timepicker": {},
            "timezone": "",
            "graphTooltip": 1,
            "links": [{"title": "Linkerd", "type": "dashboards", "tags": ["linkerd"], "asDropdown": True}],
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "panels": self.panels,
        }


def sel(*terms):
    return "{" + ", ".join(t for t in terms if t) + "}"


def golden(board, m, by=None, legend=""):
    """Success rate, request rate and latency of the requests matched by m."""
    group = f" by ({by})" if by else ""
    ok = sel('classification="success"', *m)
    every = sel(*m)
    return {
        "success": f"sum(irate(response_total{ok}[{RATE}])){group} / sum(irate(response_total{every}[{RATE}])){group}",
        "rps": f"sum(irate(request_total{every}[{RATE}])){group}",
        "latency": lambda q: f"histogram_quantile({q}, sum(irate(response_latency_ms_bucket{every}[{RATE}])) by (le{', ' + by if by else ''}))",
        "legend": legend,
    }


def headline(board, g, pods_expr=None):
    board.stat("Success rate", g["success"], "percentunit")
    board.stat("Request rate", g["rps"], "reqps")
    board.stat("P95 latency", g["latency"](0.95), "ms")
    if pods_expr:
        board.stat("Meshed pods", pods_expr, "none")


def traffic(board, g, title):
    board.graph(f"{title}: success rate", [(g["success"], g["legend"])], "percentunit")
    board.graph(f"{title}: request rate", [(g["rps"], g["legend"])], "reqps")
    if g["legend"]:
        board.graph(f"{title}: P95 latency", [(g["latency"](0.95), g["legend"])], "ms")
    else:
        board.graph(f"{title}: latency", [(g["latency"](q), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], "ms")


def namespace_var():
    return var("namespace", 'process_start_time_seconds{job="linkerd-proxy"}')


def workload(kind, title):
    """A workload kind's dashboard: its inbound golden metrics, who calls
    it (the callers' outbound series), whom it calls, and TCP."""
    ns = 'namespace="$namespace"'
    me = f'{kind}="${kind}"'
    board = Board(kind, f"Linkerd {title}", [
        namespace_var(),
        var(kind, f'process_start_time_seconds{{job="linkerd-proxy", namespace="$namespace", {kind}!=""}}'),
    ])
    board.row(f"{title} ${kind}")
    inbound = golden(board, [ns, me, 'direction="inbound"'])
    pods = f'count(process_start_time_seconds{{job="linkerd-proxy", {ns}, {me}}})' if kind != "pod" else None
    headline(board, inbound, pods)
    if kind == "pod":
        board.stat("Proxy memory", f'sum(process_resident_memory_bytes{{job="linkerd-proxy", {ns}, {me}}})', "bytes")
    traffic(board, inbound, "Inbound")
    board.row("Inbound traffic by caller")
    caller = "pod" if kind == "pod" else "deployment"
    callers = golden(board, ['direction="outbound"', 'dst_namespace="$namespace"', f'dst_{kind}="${kind}"'], by=caller, legend=f"{{{{{caller}}}}}")
    traffic(board, callers, "From callers")
    board.row("Outbound traffic by destination")
    callee = "dst_pod" if kind == "pod" else "dst_deployment"
    callees = golden(board, [ns, me, 'direction="outbound"'], by=callee, legend=f"{{{{{callee}}}}}")
    traffic(board, callees, "To destinations")
    board.row("TCP")
    board.graph("Open connections", [(f'sum(tcp_open_connections{{{ns}, {me}}}) by (direction)', "{{direction}}")], "none", w=12)
    board.graph("Bytes", [
        (f'sum(irate(tcp_read_bytes_total{{{ns}, {me}}}[{RATE}])) by (direction)', "read {{direction}}"),
        (f'sum(irate(tcp_write_bytes_total{{{ns}, {me}}}[{RATE}])) by (direction)', "write {{direction}}"),
    ], "Bps", w=12)
    return board


def namespace():
    ns = 'namespace="$namespace"'
    board = Board("namespace", "Linkerd Namespace", [namespace_var()])
    board.row("Namespace $namespace")
    total = golden(board, [ns, 'direction="inbound"'])
    headline(board, total, f'count(process_start_time_seconds{{job="linkerd-proxy", {ns}}})')
    board.row("Deployments")
    by = golden(board, [ns, 'direction="inbound"'], by="deployment", legend="{{deployment}}")
    traffic(board, by, "Inbound")
    board.row("TCP")
    board.graph("Open connections by deployment", [(f'sum(tcp_open_connections{{{ns}, direction="inbound"}}) by (deployment)', "{{deployment}}")], "none", w=24)
    return board


def top_line():
    board = Board("top-line", "Linkerd Top Line", [])
    board.row("The mesh")
    total = golden(board, ['direction="inbound"'])
    headline(board, total, 'count(process_start_time_seconds{job="linkerd-proxy"})')
    board.row("Namespaces")
    by = golden(board, ['direction="inbound"'], by="namespace", legend="{{namespace}}")
    traffic(board, by, "Inbound")
    board.row("Deployments")
    deploys = golden(board, ['direction="inbound"'], by="namespace, deployment", legend="{{namespace}}/{{deployment}}")
    traffic(board, deploys, "Inbound")
    return board


def service():
    dst = ['direction="outbound"', 'dst_namespace="$namespace"', 'dst_service="$service"']
    board = Board("service", "Linkerd Service", [
        # A service's requests are its callers' outbound series.
        var("namespace", 'request_total{direction="outbound", dst_service!=""}', "dst_namespace"),
        var("service", 'request_total{direction="outbound", dst_namespace="$namespace"}', "dst_service"),
    ])
    board.row("Service $service")
    total = golden(board, dst)
    headline(board, total)
    board.stat("Endpoints called", f"count(count(request_total{sel(*dst)}) by (dst_pod))", "none")
    traffic(board, total, "From callers")
    board.row("By caller")
    by = golden(board, dst, by="deployment", legend="{{deployment}}")
    traffic(board, by, "Callers")
    board.row("By endpoint")
    pods = golden(board, dst, by="dst_pod", legend="{{dst_pod}}")
    traffic(board, pods, "Endpoints")
    return board


def authority():
    me = ['direction="inbound"', 'authority="$authority"']
    board = Board("authority", "Linkerd Authority", [
        var("authority", 'request_total{direction="inbound"}'),
    ])
    board.row("Authority $authority")
    total = golden(board, me)
    headline(board, total)
    traffic(board, total, "Inbound")
    board.row("By deployment")
    by = golden(board, me, by="namespace, deployment", legend="{{namespace}}/{{deployment}}")
    traffic(board, by, "Served by")
    return board


def health():
    board = Board("health", "Linkerd Health", [])
    board.row("Control plane")
    board.stat("Control-plane components up", 'sum(up{job="linkerd-controller"})', "none")
    board.stat("Proxies up", 'sum(up{job="linkerd-proxy"})', "none")
    board.stat("Proxies down", 'count(up{job="linkerd-proxy"} == 0) or vector(0)', "none")
    board.stat("Soonest certificate expiry", 'min(identity_cert_expiration_timestamp_seconds{job="linkerd-proxy"}) - time()', "s")
    board.graph("Control-plane components up", [('up{job="linkerd-controller"}', "{{component}}")], "none", w=12)
    board.graph("Certificates issued", [('sum(increase(identity_cert_issued_total[1h]))', "issued in the last hour")], "none", w=12)
    board.row("Proxies")
    board.graph("Proxy memory", [('process_resident_memory_bytes{job="linkerd-proxy"}', "{{namespace}}/{{pod}}")], "bytes")
    board.graph("Proxy CPU", [(f'irate(process_cpu_seconds_total{{job="linkerd-proxy"}}[{RATE}])', "{{namespace}}/{{pod}}")], "percentunit")
    board.graph("Certificate lifetime left", [('identity_cert_expiration_timestamp_seconds{job="linkerd-proxy"} - time()', "{{namespace}}/{{pod}}")], "s")
    board.graph("Certificate renewals", [('sum(increase(identity_cert_refresh_total{job="linkerd-proxy"}[1h])) by (namespace)', "{{namespace}}")], "none", w=12)
    board.graph("Proxy open file descriptors", [('process_open_fds{job="linkerd-proxy"}', "{{namespace}}/{{pod}}")], "none", w=12)
    return board


def prometheus():
    board = Board("prometheus", "Linkerd Prometheus", [])
    board.row("Prometheus")
    board.stat("Targets up", "sum(up)", "none")
    board.stat("Series", 'prometheus_tsdb_head_series{job="prometheus"}', "none")
    board.stat("Samples appended", f'rate(prometheus_tsdb_head_samples_appended_total{{job="prometheus"}}[1m])', "none")
    board.stat("Memory", 'process_resident_memory_bytes{job="prometheus"}', "bytes")
    board.graph("Targets up by job", [("sum(up) by (job)", "{{job}}")], "none")
    board.graph("Scrape duration", [("max(scrape_duration_seconds) by (job)", "{{job}}")], "s")
    board.graph("Samples scraped", [("sum(scrape_samples_scraped) by (job)", "{{job}}")], "none")
    board.graph("Query duration (p90)", [('prometheus_engine_query_duration_seconds{job="prometheus", quantile="0.9"}', "{{slice}}")], "s", w=12)
    board.graph("Head series", [('prometheus_tsdb_head_series{job="prometheus"}', "series")], "none", w=12)
    return board


def boards():
    out = [top_line(), namespace()]
    for kind, title in [
        ("deployment", "Deployment"),
        ("statefulset", "StatefulSet"),
        ("daemonset", "DaemonSet"),
        ("replicaset", "ReplicaSet"),
        ("job", "Job"),
        ("cronjob", "CronJob"),
        ("pod", "Pod"),
    ]:
        out.append(workload(kind, title))
    out += [service(), authority(), health(), prometheus()]
    return out


def main():
    check = "--check" in sys.argv[1:]
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    wanted = set()
    for board in boards():
        path = OUT / f"{board.kind}.json"
        wanted.add(path.name)
        text = json.dumps(board.json(), indent=1, sort_keys=True) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in wanted)
    if check and (stale or extra):
        print(f"charts/dashboards.py: out of date: {', '.join(stale + extra)}; run python3 charts/dashboards.py")
        sys.exit(1)


if __name__ == "__main__":
    main()
