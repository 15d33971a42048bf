//! Route rows (`linkerd routes`) as the CLI and the dashboard show them.

use linkerd_proxy_api::public_api::RouteRow;

/// The route's name; `[DEFAULT]` for requests on no route, as Linkerd's.
pub fn name(row: &RouteRow) -> String {
    match row.route.as_str() {
        "" => "[DEFAULT]".to_string(),
        r => r.to_string(),
    }
}

/// The service's short name, from its authority.
pub fn service(authority: &str) -> &str {
    authority.split(['.', ':']).next().unwrap_or(authority)
}

/// What the clients saw succeed; `None` without traffic.
pub fn success(row: &RouteRow) -> Option<f64> {
    let s = row.stats.as_ref()?;
    let total = s.success_count + s.failure_count;
    (total > 0.0).then(|| s.success_count / total)
}

/// What succeeded of what was sent (retries included); `None` without.
pub fn actual_success(row: &RouteRow) -> Option<f64> {
    let total = row.actual_success_count + row.actual_failure_count;
    (total > 0.0).then(|| row.actual_success_count / total)
}

pub fn rps(row: &RouteRow) -> Option<f64> {
    row.stats.as_ref().map(|s| s.request_rate)
}

/// As Linkerd's: by service, then route, the default route last.
pub fn sort(rows: &mut [RouteRow]) {
    rows.sort_by(|a, b| {
        (service(&a.authority), a.route.is_empty(), &a.route).cmp(&(
            service(&b.authority),
            b.route.is_empty(),
            &b.route,
        ))
    });
}

/// `linkerd routes -o json`'s row: `success`/`rps` for a workload's own
/// routes; with `--to` (`outbound`), effective and actual.
pub fn row_json(r: &RouteRow, outbound: bool) -> serde_json::Value {
    let stats = r.stats.as_ref();
    let mut v = serde_json::json!({
        "route": name(r),
        "authority": r.authority,
        "latency_ms_p50": stats.and_then(|s| s.latency_ms_p50),
        "latency_ms_p95": stats.and_then(|s| s.latency_ms_p95),
        "latency_ms_p99": stats.and_then(|s| s.latency_ms_p99),
    });
    if outbound {
        v["effective_success"] = success(r).into();
        v["effective_rps"] = rps(r).into();
        v["actual_success"] = actual_success(r).into();
        v["actual_rps"] = stats.map(|_| r.actual_request_rate).into();
    } else {
        v["success"] = success(r).into();
        v["rps"] = rps(r).into();
    }
    v
}
