//! `linkerd edges`: which workloads talk to which, and the identities mTLS
//! proved on each edge.

use crate::{api, resource, table::Table};
use clap::{Args, ValueEnum};
use linkerd_proxy_api::public_api::{Edge, EdgesRequest, api_client::ApiClient};

#[derive(Args, Debug)]
pub(crate) struct EdgesArgs {
    /// The workload type whose edges to list (deploy, sts, ds, po, ns, ...).
    #[arg(value_name = "TYPE")]
    kind: String,
    /// Edges from or to resources in this namespace (default: default).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Edges in every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// `wide` adds the identities; `json` prints the edges as JSON.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Wide,
    Json,
}

pub(crate) async fn run(args: EdgesArgs, api: &api::Target) -> anyhow::Result<()> {
    let given_ns = args.namespace.as_deref();
    let namespace = if args.all_namespaces {
        ""
    } else {
        given_ns.unwrap_or(resource::DEFAULT_NAMESPACE)
    };
    let mut selector = resource::parse(std::slice::from_ref(&args.kind), namespace)?;
    if !selector.name.is_empty() {
        anyhow::bail!(
            "give edges a type (e.g. deploy), not a resource ({:?})",
            args.kind
        );
    }
    if selector.r#type == "namespace" {
        selector.namespace = namespace.to_string();
    }
    let channel = api.channel(&api::PUBLIC_API).await?;
    let edges = ApiClient::new(channel)
        .edges(EdgesRequest {
            selector: Some(selector),
            time_window: String::new(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .edges;
    let out = match args.output {
        Some(Output::Json) => json(&edges),
        wide => {
            let t = table(&edges, wide == Some(Output::Wide));
            if t.is_empty() && args.all_namespaces {
                "No edges found.\n".to_string()
            } else if t.is_empty() {
                format!("No edges found{}.\n", resource::in_namespace(given_ns))
            } else {
                t.render()
            }
        }
    };
    print!("{out}");
    Ok(())
}

fn names(e: &Edge) -> [String; 4] {
    let src = e.src.clone().unwrap_or_default();
    let dst = e.dst.clone().unwrap_or_default();
    [src.name, dst.name, src.namespace, dst.namespace]
}

fn table(edges: &[Edge], wide: bool) -> Table {
    let mut header = vec!["SRC", "DST", "SRC_NS", "DST_NS", "SECURED"];
    if wide {
        header.extend(["MSG", "CLIENT_ID", "SERVER_ID"]);
    }
    // Every column is a name but SECURED's mark.
    let mut t = Table::new(header, 4);
    for e in edges {
        let mut cells = names(e).to_vec();
        cells.push(if e.server_id.is_empty() { "×" } else { "√" }.to_string());
        if wide {
            cells.push(e.no_tls_reason.clone());
            cells.push(e.client_id.clone());
            cells.push(e.server_id.clone());
        }
        t.push(cells);
    }
    t
}

fn json(edges: &[Edge]) -> String {
    let edges: Vec<serde_json::Value> = edges
        .iter()
        .map(|e| {
            let [src, dst, src_ns, dst_ns] = names(e);
            serde_json::json!({
                "src": src,
                "src_namespace": src_ns,
                "dst": dst,
                "dst_namespace": dst_ns,
                "client_id": e.client_id,
                "server_id": e.server_id,
                "no_tls_reason": e.no_tls_reason,
            })
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&edges).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_proxy_api::tap_controller::Resource;

    fn r(name: &str) -> Option<Resource> {
        Some(Resource {
            r#type: "deployment".into(),
            namespace: "emojivoto".into(),
            name: name.into(),
        })
    }

    #[test]
    fn shapes() {
        let edges = vec![
            Edge {
                src: r("vote-bot"),
                dst: r("web"),
                client_id: "vote-bot.emojivoto.serviceaccount.identity.linkerd.cluster.local"
                    .into(),
                server_id: "web.emojivoto.serviceaccount.identity.linkerd.cluster.local".into(),
                ..Default::default()
            },
            Edge {
                src: r("web"),
                dst: r("db"),
                no_tls_reason: "not_provided_by_service_discovery".into(),
                ..Default::default()
            },
        ];
        assert_eq!(
            table(&edges, false).render(),
            "SRC        DST   SRC_NS      DST_NS      SECURED\n\
             vote-bot   web   emojivoto   emojivoto         √\n\
             web        db    emojivoto   emojivoto         ×\n"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&edges)).unwrap();
        assert_eq!(v[0]["src"], "vote-bot");
        assert_eq!(v[1]["no_tls_reason"], "not_provided_by_service_discovery");
    }
}
