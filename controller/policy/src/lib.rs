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

/// The kubelet's probes: `GET` on each probe path, admitted from anywhere
/// without authentication (the kubelet is not meshed); none without paths.
fn probe_route(paths: &[String]) -> Option<api::HttpRoute> {
    if paths.is_empty() {
        return None;
    }
    let probe = || {
        Some(meta::Metadata {
            kind: Some(meta::metadata::Kind::Default("probe".into())),
        })
    };
    let everywhere = ["0.0.0.0/0", "::/0"].map(|n| api::Network {
        net: Some(network(n.parse().expect("a valid network"))),
        except: Vec::new(),
    });
    let get = linkerd_proxy_api::http_types::HttpMethod {
        r#type: Some(
            linkerd_proxy_api::http_types::http_method::Type::Registered(
                linkerd_proxy_api::http_types::http_method::Registered::Get.into(),
            ),
        ),
    };
    Some(api::HttpRoute {
        metadata: probe(),
        hosts: Vec::new(),
        authorizations: vec![api::Authz {
            networks: everywhere.to_vec(),
            authentication: Some(api::Authn {
                permit: Some(api::authn::Permit::Unauthenticated(
                    api::authn::PermitUnauthenticated {},
                )),
            }),
            labels: [("group", ""), ("kind", "default"), ("name", "probe")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metadata: probe(),
        }],
        rules: vec![api::http_route::Rule {
            matches: paths
                .iter()
                .map(|p| http_route::HttpRouteMatch {
                    path: Some(http_route::PathMatch {
                        kind: Some(http_route::path_match::Kind::Exact(p.clone())),
                    }),
                    method: Some(get.clone()),
                    ..Default::default()
                })
                .collect(),
            filters: Vec::new(),
        }],
    })
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
