//! `linkerd routes`: per route of a service profile, how requests fared (as
//! Linkerd's `linkerd viz routes`). A workload's own routes by default
//! (what its proxies counted inbound); with `--to svc/NAME`, its requests to
//! that service, where `-o wide` sets what the callers saw (effective) beside
//! what was sent (actual: retries included).

use crate::{api, resource, table::Table};
use clap::{Args, ValueEnum};
use linkerd_format::{
    routes::{self, actual_success, rps, service, success},
    stat::ms,
};
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
    routes::sort(&mut rows);
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

fn rate(n: f64) -> String {
    format!("{n:.1}rps")
}

fn percent(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{:.2}%", s * 100.0))
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
            routes::name(r),
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
            routes::name(r),
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
    let rows: Vec<serde_json::Value> = rows.iter().map(|r| routes::row_json(r, outbound)).collect();
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
