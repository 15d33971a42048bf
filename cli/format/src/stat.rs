//! Stat rows as people read them: Linkerd's cells (`2/2`, `93.33%`, `4ms`)
//! and its `stat -o json` objects. Shared by `linkerd stat` and the web
//! dashboard, so both show the same numbers.

use linkerd_proxy_api::{
    public_api::{BasicStats, StatRow, StatSeries},
    tap_controller::short_kind,
};

/// The window in seconds, for rates (the API has checked it).
pub fn window_seconds(window: &str) -> f64 {
    let split = window
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(window.len());
    let n: f64 = window[..split].parse().unwrap_or(60.0);
    match &window[split..] {
        "s" => n,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => n * 60.0,
    }
}

pub fn success(row: &StatRow) -> Option<f64> {
    success_of(row.stats.as_ref()?)
}

/// Successes over all responses; none without responses.
pub fn success_of(s: &BasicStats) -> Option<f64> {
    let total = s.success_count + s.failure_count;
    (total > 0.0).then(|| s.success_count / total)
}

pub fn meshed(row: &StatRow) -> String {
    if row.has_pods {
        format!("{}/{}", row.meshed_pod_count, row.running_pod_count)
    } else {
        "-".into()
    }
}

/// Latency in ms as Linkerd shows it, with a decimal below 10ms, where
/// the buckets are fine enough for it to mean something.
pub fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10.0 => format!("{v:.0}ms"),
        Some(v) => {
            let s = format!("{v:.1}");
            format!("{}ms", s.trim_end_matches(".0"))
        }
        None => "-".into(),
    }
}

/// One row in Linkerd's `stat -o json` shape: nulls where there was no
/// traffic, success as a ratio, latencies in ms, TCP byte rates over the
/// window of `secs` seconds.
pub fn row_json(row: &StatRow, secs: f64) -> Option<serde_json::Value> {
    let r = row.resource.as_ref()?;
    let stats = row.stats.as_ref();
    let tcp = row.tcp_stats.as_ref();
    Some(serde_json::json!({
        "namespace": r.namespace,
        "kind": short_kind(&r.r#type),
        "name": r.name,
        "meshed": meshed(row),
        "success": success(row),
        "rps": stats.map(|s| s.request_rate),
        "latency_ms_p50": stats.and_then(|s| s.latency_ms_p50),
        "latency_ms_p95": stats.and_then(|s| s.latency_ms_p95),
        "latency_ms_p99": stats.and_then(|s| s.latency_ms_p99),
        "tcp_open_connections": tcp.map(|t| t.open_connections),
        "tcp_read_bytes_rate": tcp.map(|t| t.read_bytes_total / secs),
        "tcp_write_bytes_rate": tcp.map(|t| t.write_bytes_total / secs),
        "denied_rps": stats.map(|s| s.denied_count / secs),
    }))
}

/// A stat range's series for a chart: the resource as `row_json` names it,
/// and each figure as an array with a value (or null) per timestamp, so a
/// line is one array.
pub fn series_json(series: &StatSeries) -> Option<serde_json::Value> {
    let r = series.resource.as_ref()?;
    let figure = |f: &dyn Fn(&BasicStats) -> Option<f64>| -> Vec<Option<f64>> {
        series
            .points
            .iter()
            .map(|p| p.stats.as_ref().and_then(f))
            .collect()
    };
    Some(serde_json::json!({
        "namespace": r.namespace,
        "kind": short_kind(&r.r#type),
        "name": r.name,
        "success": figure(&success_of),
        "rps": figure(&|s| Some(s.request_rate)),
        "latency_ms_p50": figure(&|s| s.latency_ms_p50),
        "latency_ms_p95": figure(&|s| s.latency_ms_p95),
        "latency_ms_p99": figure(&|s| s.latency_ms_p99),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_proxy_api::{public_api::StatPoint, tap_controller::Resource};

    #[test]
    fn series_are_a_value_or_null_per_point() {
        let series = StatSeries {
            resource: Some(Resource {
                r#type: "deployment".into(),
                namespace: "emojivoto".into(),
                name: "web".into(),
            }),
            points: vec![
                StatPoint { stats: None },
                StatPoint {
                    stats: Some(BasicStats {
                        success_count: 3.0,
                        failure_count: 1.0,
                        request_rate: 0.5,
                        latency_ms_p50: Some(2.0),
                        ..Default::default()
                    }),
                },
            ],
        };
        let v = series_json(&series).unwrap();
        assert_eq!(v["kind"], "deploy");
        assert_eq!(v["success"], serde_json::json!([null, 0.75]));
        assert_eq!(v["rps"], serde_json::json!([null, 0.5]));
        assert_eq!(v["latency_ms_p50"], serde_json::json!([null, 2.0]));
        assert_eq!(v["latency_ms_p99"], serde_json::json!([null, null]));
    }
}
