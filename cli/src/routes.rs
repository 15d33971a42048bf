//! `linkerd routes`: per route of a service profile, how requests fared (as
//! Linkerd's `linkerd viz routes`). A workload's own routes by default
//! (what its proxies counted inbound); with `--to svc/NAME`, its requests to
//! that service, where `-o wide` sets what the callers saw (effective) beside
//! what was sent (actual: retries included).

use crate::{api, resource, table::Table};
use clap::{Args, ValueEnum};
use linkerd_format::stat::ms;
use linkerd_proxy_api::public_api::{RouteRow, RoutesRequest, api_client::ApiClient};

#[derive(Args, Debug)]
pub(crate) struct RoutesArgs {
    /// The workload or service: TYPE/NAME or TYPE NAME (deploy/web, svc/web-svc).
    #[arg(required = true, num_args = 1..=2, value_name = "RESOURCE")]
    resource: Vec<String>,
    /// Its namespace (default: default).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Only the resource's requests to this service (svc/NAME), by that
    /// service's profile.
    #[arg(long, value_name = "SERVICE")]
    to: Option<String>,
    /// The namespace of the --to service (default: --namespace).
    #[arg(long, value_name = "NAMESPACE")]
    to_namespace: Option<String>,
    /// The window the stats cover (e.g. 30s, 1m, 1h).
    #[arg(short = 't', long, default_value = "1m")]
    time_window: String,
    /// `wide` (with --to) sets effective and actual success and rates side
    /// by side; `json` prints the rows as JSON.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Wide,
    Json,
}

pub(crate) async fn run(args: RoutesArgs, api: &api::Target) -> anyhow::Result<()> {
    let namespace = args
        .namespace
        .as_deref()
        .unwrap_or(resource::DEFAULT_NAMESPACE);
    let resource = resource::parse_stat(&args.resource, namespace)?;
    if resource.name.is_empty() {
        anyhow::bail!(
            "give routes one resource (e.g. deploy/web or svc/web-svc), not a type ({:?})",
            args.resource.join(" ")
        );
    }
    let to = match &args.to {
        Some(to) => {
            let ns = args.to_namespace.as_deref().unwrap_or(namespace);
            Some(resource::parse_stat(std::slice::from_ref(to), ns)?)
        }
        None => None,
    };
    if args.output == Some(Output::Wide) && to.is_none() {
        anyhow::bail!("-o wide needs --to: actual (retried) requests are counted by the caller");
    }
    let outbound = to.is_some();
    let channel = api.channel(&api::PUBLIC_API).await?;
    let mut rows = ApiClient::new(channel)
        .routes(RoutesRequest {
            resource: Some(resource),
            to,
            time_window: args.time_window.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .rows;
    // As Linkerd's: by service, then route, the default route last.
    rows.sort_by(|a, b| {
        (service(&a.authority), a.route.is_empty(), &a.route).cmp(&(
            service(&b.authority),
            b.route.is_empty(),
            &b.route,
        ))
    });
    let out = match args.output {
        Some(Output::Json) => json(&rows, outbound),
        _ if rows.is_empty() => {
            "No routes found: the service needs a ServiceProfile (see `linkerd profile`).\n"
                .to_string()
        }
        Some(Output::Wide) => wide(&rows).render(),
        _ => table(&rows).render(),
    };
    print!("{out}");
    Ok(())
}

/// The service's short name, from its authority.
fn service(authority: &str) -> &str {
    authority.split(['.', ':']).next().unwrap_or(authority)
}

fn route(row: &RouteRow) -> String {
    match row.route.as_str() {
        "" => "[DEFAULT]".to_string(),
        r => r.to_string(),
    }
}

fn rate(n: f64) -> String {
    format!("{n:.1}rps")
}

fn percent(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{:.2}%", s * 100.0))
}

fn success(row: &RouteRow) -> Option<f64> {
    let s = row.stats.as_ref()?;
    let total = s.success_count + s.failure_count;
    (total > 0.0).then(|| s.success_count / total)
}

fn actual_success(row: &RouteRow) -> Option<f64> {
    let total = row.actual_success_count + row.actual_failure_count;
    (total > 0.0).then(|| row.actual_success_count / total)
}

fn rps(row: &RouteRow) -> Option<f64> {
    row.stats.as_ref().map(|s| s.request_rate)
}

fn latencies(row: &RouteRow) -> [String; 3] {
    let s = row.stats.as_ref();
    [
        ms(s.and_then(|s| s.latency_ms_p50)),
        ms(s.and_then(|s| s.latency_ms_p95)),
        ms(s.and_then(|s| s.latency_ms_p99)),
    ]
}

fn table(rows: &[RouteRow]) -> Table {
    let mut t = Table::new(
        vec![
            "ROUTE",
            "SERVICE",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
        ],
        2,
    );
    for r in rows {
        let mut cells = vec![
            route(r),
            service(&r.authority).to_string(),
            percent(success(r)),
            rps(r).map_or("-".into(), rate),
        ];
        cells.extend(latencies(r));
        t.push(cells);
    }
    t
}

fn wide(rows: &[RouteRow]) -> Table {
    let mut t = Table::new(
        vec![
            "ROUTE",
            "SERVICE",
            "EFFECTIVE_SUCCESS",
            "EFFECTIVE_RPS",
            "ACTUAL_SUCCESS",
            "ACTUAL_RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
        ],
        2,
    );
    for r in rows {
        let mut cells = vec![
            route(r),
            service(&r.authority).to_string(),
            percent(success(r)),
            rps(r).map_or("-".into(), rate),
            percent(actual_success(r)),
            if r.stats.is_some() {
                rate(r.actual_request_rate)
            } else {
                "-".into()
            },
        ];
        cells.extend(latencies(r));
        t.push(cells);
    }
    t
}

fn json(rows: &[RouteRow], outbound: bool) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let stats = r.stats.as_ref();
            let mut v = serde_json::json!({
                "route": route(r),
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
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&rows).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_proxy_api::public_api::BasicStats;

    fn rows() -> Vec<RouteRow> {
        vec![
            RouteRow {
                route: "GET /api/vote".into(),
                authority: "web-svc.emojivoto.svc.cluster.local:80".into(),
                stats: Some(BasicStats {
                    success_count: 57.0,
                    failure_count: 3.0,
                    request_rate: 1.0,
                    latency_ms_p50: Some(3.0),
                    ..Default::default()
                }),
                actual_success_count: 57.0,
                actual_failure_count: 15.0,
                actual_request_rate: 1.2,
            },
            RouteRow {
                route: String::new(),
                authority: "web-svc.emojivoto.svc.cluster.local".into(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn shapes() {
        let out = table(&rows()).render();
        assert!(out.starts_with("ROUTE"), "{out}");
        assert!(out.contains("[DEFAULT]"), "{out}");
        assert!(out.contains("95.00%"), "{out}");
        let out = wide(&rows()).render();
        assert!(out.contains("ACTUAL_SUCCESS"), "{out}");
        assert!(out.contains("79.17%"), "actual: 57 of 72: {out}");
        assert!(out.contains("1.2rps"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&json(&rows(), true)).unwrap();
        assert_eq!(v[0]["effective_success"], 0.95);
        assert_eq!(v[0]["actual_rps"], 1.2);
        assert_eq!(v[1]["route"], "[DEFAULT]");
        assert!(v[1]["effective_success"].is_null());
        let v: serde_json::Value = serde_json::from_str(&json(&rows(), false)).unwrap();
        assert_eq!(v[0]["success"], 0.95);
    }
}
