//! `linkerd stat`: golden metrics per resource (success rate, requests a
//! second, latency quantiles, TCP connections), from the public API.

use crate::{api, resource, table::Table};
use clap::{Args, ValueEnum};
use linkerd_format::stat::{meshed, ms, row_json, success, window_seconds};
use linkerd_proxy_api::public_api::{
    StatRow, StatSummaryRequest, api_client::ApiClient, stat_summary_request::Outbound,
};

#[derive(Args, Debug)]
pub(crate) struct StatArgs {
    /// What to report on: TYPE (deploy, po, ns, svc, ...), TYPE/NAME or TYPE NAME.
    #[arg(required = true, num_args = 1..=2, value_name = "RESOURCE")]
    resource: Vec<String>,
    /// The resources' namespace (default: default).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// The window the stats cover (e.g. 30s, 1m, 1h).
    #[arg(short = 't', long, default_value = "1m")]
    time_window: String,
    /// Only the traffic these resources send to this one (TYPE/NAME).
    #[arg(long, value_name = "RESOURCE", conflicts_with = "from")]
    to: Option<String>,
    /// The namespace of the --to resource (default: --namespace).
    #[arg(long, value_name = "NAMESPACE")]
    to_namespace: Option<String>,
    /// Only the traffic these resources receive from this one (TYPE/NAME).
    #[arg(long, value_name = "RESOURCE")]
    from: Option<String>,
    /// The namespace of the --from resource (default: --namespace).
    #[arg(long, value_name = "NAMESPACE")]
    from_namespace: Option<String>,
    /// `wide` adds TCP throughput and the requests inbound policy denied;
    /// `json` prints the rows as JSON.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Wide,
    Json,
}

pub(crate) async fn run(args: StatArgs, api: &api::Target) -> anyhow::Result<()> {
    let given_ns = args.namespace.as_deref();
    let default_ns = given_ns.unwrap_or(resource::DEFAULT_NAMESPACE);
    let namespace = if args.all_namespaces { "" } else { default_ns };
    let mut selector = resource::parse_stat(&args.resource, namespace)?;
    if args.all_namespaces && selector.r#type == "namespace" {
        selector.name.clear();
    }
    let other = |r: &String, ns: &Option<String>| {
        let ns = ns.as_deref().unwrap_or(default_ns);
        resource::parse_stat(std::slice::from_ref(r), ns)
    };
    let outbound = match (&args.to, &args.from) {
        (Some(to), _) => Some(Outbound::ToResource(other(to, &args.to_namespace)?)),
        (None, Some(from)) => Some(Outbound::FromResource(other(from, &args.from_namespace)?)),
        (None, None) => None,
    };
    let filtered = outbound.is_some();
    let req = StatSummaryRequest {
        selector: Some(selector.clone()),
        time_window: args.time_window.clone(),
        outbound,
        skip_tcp_stats: false,
    };
    let channel = api.channel(&api::PUBLIC_API).await?;
    let rows = ApiClient::new(channel)
        .stat_summary(req)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .rows;
    // Every resource that has pods gets a row, traffic or not: no row means
    // there is nothing by that name (with --to/--from, only no traffic).
    if rows.is_empty() && !filtered {
        let what = if selector.name.is_empty() {
            format!("{}s", selector.r#type)
        } else {
            format!("{}/{}", selector.r#type, selector.name)
        };
        let place = match (args.all_namespaces, selector.r#type.as_str()) {
            (true, _) | (_, "namespace") => " in any namespace".to_string(),
            _ => resource::in_namespace(given_ns),
        };
        anyhow::bail!("no pods found for {what}{place}");
    }
    // A row's window is shorter than asked when the metrics do not reach
    // back that far yet (a Prometheus started a moment ago): its rates are
    // over the data there is.
    let covered = rows
        .first()
        .map(|r| r.time_window.as_str())
        .filter(|w| !w.is_empty() && *w != args.time_window);
    if let Some(covered) = covered {
        eprintln!(
            "linkerd: the metrics go back only {covered} (warming up): rates are over that, not {}",
            args.time_window
        );
    }
    let secs = window_seconds(covered.unwrap_or(&args.time_window));
    let out = match args.output {
        Some(Output::Json) => json(&rows, secs),
        wide => {
            let t = table(&rows, args.all_namespaces, wide == Some(Output::Wide), secs);
            if t.is_empty() {
                "No traffic found.\n".to_string()
            } else {
                t.render()
            }
        }
    };
    print!("{out}");
    Ok(())
}

fn table(rows: &[StatRow], all_namespaces: bool, wide: bool, secs: f64) -> Table {
    let mut header = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "MESHED",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
        "TCP_CONN",
    ]);
    if wide {
        header.extend(["READ_BYTES/SEC", "WRITE_BYTES/SEC", "DENIED_RPS"]);
    }
    let mut t = Table::new(header, if all_namespaces { 2 } else { 1 });
    for row in rows {
        let Some(r) = &row.resource else { continue };
        let mut cells = Vec::new();
        if all_namespaces {
            cells.push(r.namespace.clone());
        }
        cells.push(r.name.clone());
        cells.push(meshed(row));
        let stats = row.stats.as_ref();
        cells.push(success(row).map_or("-".into(), |s| format!("{:.2}%", s * 100.0)));
        cells.push(stats.map_or("-".into(), |s| format!("{:.1}rps", s.request_rate)));
        cells.push(ms(stats.and_then(|s| s.latency_ms_p50)));
        cells.push(ms(stats.and_then(|s| s.latency_ms_p95)));
        cells.push(ms(stats.and_then(|s| s.latency_ms_p99)));
        let tcp = row.tcp_stats.as_ref();
        cells.push(tcp.map_or("-".into(), |t| format!("{:.0}", t.open_connections)));
        if wide {
            cells.push(tcp.map_or("-".into(), |t| {
                format!("{:.1}B/s", t.read_bytes_total / secs)
            }));
            cells.push(tcp.map_or("-".into(), |t| {
                format!("{:.1}B/s", t.write_bytes_total / secs)
            }));
            cells.push(stats.map_or("-".into(), |s| format!("{:.1}rps", s.denied_count / secs)));
        }
        t.push(cells);
    }
    t
}

/// Linkerd's `stat -o json` shape: one object per row.
fn json(rows: &[StatRow], secs: f64) -> String {
    let rows: Vec<serde_json::Value> = rows.iter().filter_map(|r| row_json(r, secs)).collect();
    let mut out = serde_json::to_string_pretty(&rows).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_proxy_api::{
        public_api::{BasicStats, TcpStats},
        tap_controller::Resource,
    };

    fn row(name: &str, stats: Option<BasicStats>) -> StatRow {
        StatRow {
            resource: Some(Resource {
                r#type: "deployment".into(),
                namespace: "emojivoto".into(),
                name: name.into(),
            }),
            time_window: "1m".into(),
            meshed_pod_count: 1,
            running_pod_count: 1,
            has_pods: true,
            stats,
            tcp_stats: Some(TcpStats {
                open_connections: 3.0,
                read_bytes_total: 600.0,
                write_bytes_total: 60.0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn table_and_json() {
        let rows = vec![
            row(
                "web",
                Some(BasicStats {
                    success_count: 112.0,
                    failure_count: 8.0,
                    request_rate: 2.0,
                    latency_ms_p50: Some(3.5),
                    latency_ms_p95: Some(48.0),
                    latency_ms_p99: None,
                    denied_count: 6.0,
                }),
            ),
            row("vote-bot", None),
        ];
        assert_eq!(
            table(&rows, false, false, 60.0).render(),
            "NAME       MESHED   SUCCESS      RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN\n\
             web           1/1    93.33%   2.0rps         3.5ms          48ms             -          3\n\
             vote-bot      1/1         -        -             -             -             -          3\n"
        );
        let wide = table(&rows, true, true, 60.0).render();
        assert!(wide.starts_with("NAMESPACE   NAME "), "{wide}");
        assert!(wide.contains("10.0B/s"), "{wide}");
        assert!(
            wide.ends_with("0.1rps\n") || wide.contains(" 0.1rps\n"),
            "{wide}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&rows, 60.0)).unwrap();
        assert_eq!(v[0]["kind"], "deploy");
        assert_eq!(v[0]["rps"], 2.0);
        assert!((v[0]["success"].as_f64().unwrap() - 0.9333).abs() < 1e-3);
        assert_eq!(v[1]["success"], serde_json::Value::Null);
        assert_eq!(v[1]["tcp_read_bytes_rate"], 10.0);
        assert_eq!(v[0]["denied_rps"], 0.1);
    }
}
