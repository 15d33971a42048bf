//! `linkerd authz`: the authorizations a workload's proxies admitted
//! requests by, per server and route, with the requests each route denied
//! and how its requests fared (as Linkerd's `linkerd viz authz`).

use crate::{api, resource, table::Table};
use clap::{Args, ValueEnum};
use linkerd_format::stat::ms;
use linkerd_proxy_api::public_api::{AuthzRequest, AuthzRow, api_client::ApiClient};

#[derive(Args, Debug)]
pub(crate) struct AuthzArgs {
    /// The workload: TYPE/NAME or TYPE NAME (deploy/web, po web-0, ...).
    #[arg(required = true, num_args = 1..=2, value_name = "RESOURCE")]
    resource: Vec<String>,
    /// Its namespace (default: default).
    #[arg(short, long)]
    namespace: Option<String>,
    /// The window the rates cover (e.g. 30s, 1m, 1h).
    #[arg(short = 't', long, default_value = "1m")]
    time_window: String,
    /// `json` prints the rows as JSON.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

pub(crate) async fn run(args: AuthzArgs, api: &api::Target) -> anyhow::Result<()> {
    let namespace = args
        .namespace
        .as_deref()
        .unwrap_or(resource::DEFAULT_NAMESPACE);
    let resource = resource::parse_stat(&args.resource, namespace)?;
    if resource.name.is_empty() {
        anyhow::bail!(
            "give authz one workload (e.g. deploy/web), not a type ({:?})",
            args.resource.join(" ")
        );
    }
    let channel = api.channel(&api::PUBLIC_API).await?;
    let rows = ApiClient::new(channel)
        .authz(AuthzRequest {
            resource: Some(resource),
            time_window: args.time_window.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .rows;
    let out = match args.output {
        Some(Output::Json) => json(&rows),
        _ if rows.is_empty() => "No traffic found.\n".to_string(),
        _ => table(&rows).render(),
    };
    print!("{out}");
    Ok(())
}

fn success(row: &AuthzRow) -> Option<f64> {
    let s = row.stats.as_ref()?;
    let total = s.success_count + s.failure_count;
    (total > 0.0).then(|| s.success_count / total)
}

fn table(rows: &[AuthzRow]) -> Table {
    let mut t = Table::new(
        vec![
            "ROUTE",
            "SERVER",
            "AUTHORIZATION",
            "UNAUTHORIZED",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
        ],
        3,
    );
    for r in rows {
        let stats = r.stats.as_ref();
        t.push(vec![
            r.route.clone(),
            r.server.clone(),
            if r.authorization.is_empty() {
                "-".into()
            } else {
                r.authorization.clone()
            },
            format!("{:.1}rps", r.denied_rate),
            success(r).map_or("-".into(), |s| format!("{:.2}%", s * 100.0)),
            format!("{:.1}rps", r.allowed_rate),
            ms(stats.and_then(|s| s.latency_ms_p50)),
            ms(stats.and_then(|s| s.latency_ms_p95)),
            ms(stats.and_then(|s| s.latency_ms_p99)),
        ]);
    }
    t
}

fn json(rows: &[AuthzRow]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let stats = r.stats.as_ref();
            serde_json::json!({
                "route": r.route,
                "server": r.server,
                "authorization": r.authorization,
                "unauthorized_rps": r.denied_rate,
                "rps": r.allowed_rate,
                "success": success(r),
                "latency_ms_p50": stats.and_then(|s| s.latency_ms_p50),
                "latency_ms_p95": stats.and_then(|s| s.latency_ms_p95),
                "latency_ms_p99": stats.and_then(|s| s.latency_ms_p99),
            })
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

    #[test]
    fn shapes() {
        let rows = vec![
            AuthzRow {
                server: "server:web-http".into(),
                route: "default:default".into(),
                authorization: String::new(),
                denied_rate: 2.0,
                ..Default::default()
            },
            AuthzRow {
                server: "server:web-http".into(),
                route: "default:default".into(),
                authorization: "authorizationpolicy/web-from-bot".into(),
                allowed_rate: 10.0,
                stats: Some(BasicStats {
                    success_count: 540.0,
                    failure_count: 60.0,
                    latency_ms_p50: Some(3.0),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        let out = table(&rows).render();
        assert!(out.starts_with("ROUTE"), "{out}");
        assert!(out.contains("authorizationpolicy/web-from-bot"), "{out}");
        assert!(out.contains("90.00%"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        assert_eq!(v[0]["unauthorized_rps"], 2.0);
        assert_eq!(v[1]["rps"], 10.0);
    }
}
