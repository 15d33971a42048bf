//! `linkerd diagnostics`: what a proxy or the destination service sees, for
//! debugging. `proxy-metrics` prints a resource's proxies' own `/metrics`;
//! `endpoints` prints what destination answers for an authority.

use crate::{api, resource, table::Table};
use clap::{Args, Subcommand, ValueEnum};
use linkerd_proxy_api::{
    destination::{GetDestination, destination_client::DestinationClient, update},
    net::TcpAddress,
    public_api::{ListPodsRequest, api_client::ApiClient},
};
use std::{net::SocketAddr, time::Duration};

#[derive(Subcommand, Debug)]
pub(crate) enum Diagnostics {
    /// Print the metrics of a resource's proxies, as Prometheus scrapes them.
    ProxyMetrics(ProxyMetricsArgs),
    /// Print the endpoints destination gives for authorities (host:port).
    Endpoints(EndpointsArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ProxyMetricsArgs {
    /// TYPE/NAME (deploy/web, po/web-1) or TYPE NAME.
    #[arg(required = true, num_args = 1..=2, value_name = "RESOURCE")]
    resource: Vec<String>,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Hash the values of labels that name hosts and identities
    /// (authority, client_id, server_id, target_addr, dst_service,
    /// dst_namespace, and the route series' dst), to share the output.
    #[arg(long)]
    obfuscate: bool,
}

#[derive(Args, Debug)]
pub(crate) struct EndpointsArgs {
    /// e.g. web.emojivoto.svc.cluster.local:80
    #[arg(required = true, value_name = "AUTHORITY")]
    authorities: Vec<String>,
    /// `json` prints the endpoints as JSON.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

pub(crate) async fn run(cmd: Diagnostics, api: &api::Target) -> anyhow::Result<()> {
    match cmd {
        Diagnostics::ProxyMetrics(args) => proxy_metrics(args, api).await,
        Diagnostics::Endpoints(args) => endpoints(args, api).await,
    }
}

/// The proxies' admin port.
const ADMIN_PORT: u16 = 4191;

async fn proxy_metrics(args: ProxyMetricsArgs, api: &api::Target) -> anyhow::Result<()> {
    let selector = resource::parse(&args.resource, &args.namespace)?;
    let channel = api.channel(&api::PUBLIC_API).await?;
    let pods = ApiClient::new(channel)
        .list_pods(ListPodsRequest {
            namespace: selector.namespace.clone(),
            selector: Some(selector.clone()),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .pods;
    let meshed: Vec<_> = pods.into_iter().filter(|p| p.meshed).collect();
    if meshed.is_empty() {
        anyhow::bail!(
            "no meshed pods found for {}/{} in namespace {}",
            selector.r#type,
            selector.name,
            args.namespace
        );
    }
    let total = meshed.len();
    let mut failed = 0;
    for (i, pod) in meshed.iter().enumerate() {
        let metrics = match pod.ip.parse() {
            Ok(ip) => {
                api.proxy_admin_get(
                    &pod.namespace,
                    &pod.name,
                    SocketAddr::new(ip, ADMIN_PORT),
                    "/metrics",
                )
                .await
            }
            Err(_) => Err(anyhow::anyhow!("pod has no usable IP {:?}", pod.ip)),
        };
        println!("#\n# POD {} ({} of {total})\n#", pod.name, i + 1);
        match metrics {
            Ok(text) if args.obfuscate => print!("{}", obfuscate(&text)),
            Ok(text) => print!("{text}"),
            Err(e) => {
                failed += 1;
                println!("# cannot get the proxy's metrics: {e}");
            }
        }
    }
    if failed == total {
        anyhow::bail!("no proxy of {} answered", args.resource.join("/"));
    }
    Ok(())
}

/// Labels whose values name hosts or identities.
const OBFUSCATED: &[&str] = &[
    "authority",
    "client_id",
    "server_id",
    "target_addr",
    "dst_service",
    "dst_namespace",
    // The route series' service authority.
    "dst",
];

/// The first 4 bytes of the value's SHA-256, in hex (as Linkerd's CLI).
fn hash(value: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `text` (Prometheus text format) with the values of [`OBFUSCATED`]
/// labels replaced by their hashes. Comments and other labels are kept.
pub(crate) fn obfuscate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.find('{') {
            Some(open) if !line.starts_with('#') => {
                out.push_str(&line[..=open]);
                let rest = &line[open + 1..];
                let end = labels_end(rest);
                out.push_str(&rewrite_labels(&rest[..end]));
                out.push_str(&rest[end..]);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Where the label set ends (the `}` outside any quoted value).
fn labels_end(s: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return i,
            _ => {}
        }
    }
    s.len()
}

fn rewrite_labels(labels: &str) -> String {
    let mut out = String::with_capacity(labels.len());
    let mut rest = labels;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches(',');
        out.push_str(&rest[..eq + 2]);
        let value_start = eq + 2;
        // The value ends at the first unescaped quote.
        let mut escaped = false;
        let mut end = rest.len();
        for (i, c) in rest[value_start..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = value_start + i;
                    break;
                }
                _ => {}
            }
        }
        let value = &rest[value_start..end];
        if OBFUSCATED.contains(&name.trim()) {
            out.push_str(&hash(value));
        } else {
            out.push_str(value);
        }
        rest = &rest[end..];
        // The closing quote and the separator, if any.
        let sep = rest.find(',').map_or(rest.len(), |i| i + 1);
        out.push_str(&rest[..sep]);
        rest = &rest[sep..];
    }
    out.push_str(rest);
    out
}

async fn endpoints(args: EndpointsArgs, api: &api::Target) -> anyhow::Result<()> {
    let channel = api.channel(&api::DESTINATION).await?;
    let mut client = DestinationClient::new(channel);
    let mut rows = Vec::new();
    for authority in &args.authorities {
        if !authority.contains(':') {
            anyhow::bail!(
                "{authority:?} has no port: give HOST:PORT (e.g. web.emojivoto.svc.cluster.local:80)"
            );
        }
        let mut updates = client
            .get(GetDestination {
                scheme: "k8s".into(),
                path: authority.clone(),
                context_token: String::new(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        // The first answer is the current set; later ones are changes.
        let first = tokio::time::timeout(Duration::from_secs(10), updates.message())
            .await
            .map_err(|_| anyhow::anyhow!("destination gave no answer for {authority} within 10s"))?
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        match first.and_then(|u| u.update) {
            Some(update::Update::Add(set)) => {
                for a in set.addrs {
                    let addr = a
                        .addr
                        .as_ref()
                        .and_then(|t: &TcpAddress| SocketAddr::try_from(t).ok());
                    let Some(addr) = addr else { continue };
                    let label = |k: &str| {
                        a.metric_labels
                            .get(k)
                            .or_else(|| set.metric_labels.get(k))
                            .cloned()
                            .unwrap_or_default()
                    };
                    let service = label("service");
                    let namespace = label("namespace");
                    rows.push(Row {
                        authority: authority.clone(),
                        namespace: namespace.clone(),
                        ip: addr.ip().to_string(),
                        port: addr.port(),
                        pod: label("pod"),
                        service: if service.is_empty() {
                            String::new()
                        } else {
                            format!("{service}.{namespace}")
                        },
                        identity: a
                            .tls_identity
                            .as_ref()
                            .and_then(|t| t.strategy.as_ref())
                            .map(|s| {
                                use linkerd_proxy_api::destination::tls_identity::Strategy;
                                match s {
                                    Strategy::DnsLikeIdentity(d) => d.name.clone(),
                                    Strategy::UriLikeIdentity(u) => u.uri.clone(),
                                }
                            })
                            .unwrap_or_default(),
                    });
                }
            }
            _ => eprintln!("linkerd: no endpoints found for {authority}"),
        }
    }
    rows.sort_by(|a, b| (&a.namespace, &a.pod, &a.ip).cmp(&(&b.namespace, &b.pod, &b.ip)));
    match args.output {
        Some(Output::Json) => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "authority": r.authority, "namespace": r.namespace, "ip": r.ip,
                        "port": r.port, "pod": r.pod, "service": r.service, "identity": r.identity,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        _ if rows.is_empty() => {}
        _ => {
            let mut t =
                Table::with_figures(vec!["NAMESPACE", "IP", "PORT", "POD", "SERVICE"], &[2]);
            for r in &rows {
                t.push(vec![
                    r.namespace.clone(),
                    r.ip.clone(),
                    r.port.to_string(),
                    r.pod.clone(),
                    r.service.clone(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

struct Row {
    authority: String,
    namespace: String,
    ip: String,
    port: u16,
    pod: String,
    service: String,
    identity: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obfuscates_hosts_and_identities_only() {
        let text = "# HELP request_total Total requests.\n\
                    request_total{direction=\"outbound\",authority=\"web.emojivoto.svc.cluster.local:80\",tls=\"true\",server_id=\"web.x\"} 3\n\
                    process_start_time_seconds 1.5\n\
                    response_total{authority=\"a\\\"b,c}\",classification=\"success\"} 2\n";
        let out = obfuscate(text);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "# HELP request_total Total requests.");
        assert_eq!(
            lines[1],
            format!(
                "request_total{{direction=\"outbound\",authority=\"{}\",tls=\"true\",server_id=\"{}\"}} 3",
                hash("web.emojivoto.svc.cluster.local:80"),
                hash("web.x")
            )
        );
        assert_eq!(lines[2], "process_start_time_seconds 1.5");
        assert_eq!(
            lines[3],
            format!(
                "response_total{{authority=\"{}\",classification=\"success\"}} 2",
                hash("a\\\"b,c}")
            )
        );
        assert_eq!(hash("").len(), 8);
    }
}
