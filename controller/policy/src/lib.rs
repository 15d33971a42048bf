//! Inbound authorization policy, as Linkerd's policy controller answers it:
//! what a proxy's server on a port speaks and whom it admits.
//!
//! A port no `Server` resource selects gets its workload's default policy
//! (`config.linkerd.io/default-inbound-policy` on the pod or its namespace,
//! else the cluster's). This crate turns those into the `inbound.Server`
//! messages the proxy API carries; the controller's backends feed it.

mod default;
#[cfg(feature = "resources")]
mod inbound;
#[cfg(feature = "resources")]
pub mod resources;
#[cfg(feature = "resources")]
mod route;

pub use default::{DEFAULT_INBOUND_POLICY, DefaultPolicy, UnknownDefaultPolicy};
#[cfg(feature = "resources")]
pub use inbound::{Cluster, Pod, Policies};

use ipnet::IpNet;
use linkerd_proxy_api::{http_route, inbound as api, meta, net};
use std::time::Duration;

/// How long a proxy waits to see the protocol on a port that detects it,
/// as Linkerd's default.
const DETECT_TIMEOUT: Duration = Duration::from_secs(10);

fn network(net: IpNet) -> net::IpNetwork {
    net::IpNetwork {
        ip: Some(net.network().into()),
        prefix_len: u32::from(net.prefix_len()),
    }
}

/// The route every HTTP request is on when no `HTTPRoute` names the server:
/// the server's own authorizations apply to it.
fn default_route(authorizations: &[api::Authz]) -> api::HttpRoute {
    api::HttpRoute {
        metadata: Some(meta::Metadata {
            kind: Some(meta::metadata::Kind::Default("default".into())),
        }),
        hosts: Vec::new(),
        authorizations: authorizations.to_vec(),
        rules: vec![api::http_route::Rule {
            matches: vec![http_route::HttpRouteMatch {
                path: Some(http_route::PathMatch {
                    kind: Some(http_route::path_match::Kind::Prefix("/".into())),
                }),
                ..Default::default()
            }],
            filters: Vec::new(),
        }],
    }
}

/// Detect the protocol; HTTP's requests go through `routes`.
fn detect(routes: Vec<api::HttpRoute>) -> api::proxy_protocol::Kind {
    api::proxy_protocol::Kind::Detect(api::proxy_protocol::Detect {
        timeout: Some(prost_types::Duration {
            seconds: DETECT_TIMEOUT.as_secs() as i64,
            nanos: 0,
        }),
        http_routes: routes,
        http_local_rate_limit: None,
    })
}
