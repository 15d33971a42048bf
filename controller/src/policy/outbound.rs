//! Linkerd's outbound policy API (`io.linkerd.proxy.outbound.
//! OutboundPolicies`): for a Service, by name or by cluster IP, how a
//! client's proxy reaches it. With no routes of its own, as Linkerd's
//! policy controller answers: detect the protocol; opaque, HTTP/1 and
//! HTTP/2 each on one default route to one backend, a peak-EWMA balancer
//! over `Destination.Get` of the service's name. A Linkerd proxy only asks
//! destination for a Service once it has this answer.

use crate::destination::path;
use linkerd_discovery::Target;
use linkerd_discovery::{Service, Topology};
use linkerd_proxy_api::{
    http_route, meta,
    outbound::{
        self, OutboundPolicy, TrafficSpec, outbound_policies_server as server, traffic_spec,
    },
};
use std::{net::SocketAddr, pin::Pin, sync::Arc, time::Duration};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// Linkerd's defaults for a balanced backend.
const DETECT_TIMEOUT: Duration = Duration::from_secs(10);
const QUEUE_CAPACITY: u32 = 100;
const FAILFAST_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const EWMA_DECAY: Duration = Duration::from_secs(10);

pub struct OutboundPolicies {
    topology: watch::Receiver<Arc<Topology>>,
    cluster_domain: Arc<str>,
}

impl OutboundPolicies {
    pub fn new(topology: watch::Receiver<Arc<Topology>>, cluster_domain: &str) -> Self {
        Self {
            topology,
            cluster_domain: cluster_domain.into(),
        }
    }

    pub fn into_server(self) -> server::OutboundPoliciesServer<Self> {
        server::OutboundPoliciesServer::new(self)
    }
}

/// Which Service, and which of its ports, a client means.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wanted {
    Name {
        namespace: String,
        name: String,
        port: u16,
    },
    ClusterIp(SocketAddr),
}

fn wanted(spec: &TrafficSpec, cluster_domain: &str) -> Result<Wanted, Status> {
    match &spec.target {
        Some(traffic_spec::Target::Authority(a)) => match path::parse(a, cluster_domain) {
            Ok(Target::Service {
                namespace,
                name,
                port,
            }) => Ok(Wanted::Name {
                namespace,
                name,
                port,
            }),
            Ok(Target::Addr(addr)) => Ok(Wanted::ClusterIp(addr)),
            Ok(_) => Err(Status::not_found(format!("{a} is not a service"))),
            Err(e) => Err(Status::invalid_argument(e.to_string())),
        },
        Some(traffic_spec::Target::Addr(addr)) => SocketAddr::try_from(addr)
            .map(Wanted::ClusterIp)
            .map_err(|e| Status::invalid_argument(format!("target address: {e}"))),
        None => Err(Status::invalid_argument("no target")),
    }
}

/// The policy for what `wanted` names, as the topology is now.
fn answer(
    topology: &Topology,
    wanted: &Wanted,
    cluster_domain: &str,
) -> Result<OutboundPolicy, Status> {
    let found = match wanted {
        Wanted::Name {
            namespace,
            name,
            port,
        } => topology
            .services
            .iter()
            .find(|s| s.namespace == *namespace && s.name == *name)
            .map(|s| (s, *port)),
        Wanted::ClusterIp(addr) => topology
            .services
            .iter()
            .find(|s| {
                s.cluster_ip == Some(addr.ip()) && s.ports.iter().any(|p| p.port == addr.port())
            })
            .map(|s| (s, addr.port())),
    };
    let (svc, port) =
        found.ok_or_else(|| Status::not_found(format!("no service for {wanted:?}")))?;
    Ok(policy(svc, port, cluster_domain))
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn service_meta(svc: &Service, port: u16) -> meta::Metadata {
    meta::Metadata {
        kind: Some(meta::metadata::Kind::Resource(meta::Resource {
            group: "core".into(),
            kind: "Service".into(),
            name: svc.name.clone(),
            namespace: svc.namespace.clone(),
            section: String::new(),
            port: port.into(),
        })),
    }
}

fn default_meta(name: &str) -> Option<meta::Metadata> {
    Some(meta::Metadata {
        kind: Some(meta::metadata::Kind::Default(name.into())),
    })
}

/// The service's one backend: its endpoints, balanced.
fn backend(svc: &Service, port: u16, cluster_domain: &str) -> outbound::Backend {
    use outbound::backend::{self, balance_p2c};
    outbound::Backend {
        metadata: Some(service_meta(svc, port)),
        queue: Some(outbound::Queue {
            capacity: QUEUE_CAPACITY,
            failfast_timeout: Some(duration(FAILFAST_TIMEOUT)),
        }),
        kind: Some(backend::Kind::Balancer(backend::BalanceP2c {
            discovery: Some(backend::EndpointDiscovery {
                kind: Some(backend::endpoint_discovery::Kind::Dst(
                    backend::endpoint_discovery::DestinationGet {
                        path: format!(
                            "{}.{}.svc.{}:{port}",
                            svc.name, svc.namespace, cluster_domain
                        ),
                    },
                )),
            }),
            load: Some(balance_p2c::Load::PeakEwma(balance_p2c::PeakEwma {
                default_rtt: Some(duration(DEFAULT_RTT)),
                decay: Some(duration(EWMA_DECAY)),
            })),
        })),
    }
}

fn policy(svc: &Service, port: u16, cluster_domain: &str) -> OutboundPolicy {
    use outbound::{http_route as hr, opaque_route as or, proxy_protocol as pp};
    let backend = backend(svc, port, cluster_domain);
    let http_route = outbound::HttpRoute {
        metadata: default_meta("default"),
        hosts: Vec::new(),
        rules: vec![hr::Rule {
            matches: vec![http_route::HttpRouteMatch {
                path: Some(http_route::PathMatch {
                    kind: Some(http_route::path_match::Kind::Prefix("/".into())),
                }),
                ..Default::default()
            }],
            backends: Some(hr::Distribution {
                kind: Some(hr::distribution::Kind::FirstAvailable(
                    hr::distribution::FirstAvailable {
                        backends: vec![hr::RouteBackend {
                            backend: Some(backend.clone()),
                            ..Default::default()
                        }],
                    },
                )),
            }),
            ..Default::default()
        }],
    };
    let opaque_route = outbound::OpaqueRoute {
        metadata: default_meta("opaq"),
        rules: vec![or::Rule {
            backends: Some(or::Distribution {
                kind: Some(or::distribution::Kind::FirstAvailable(
                    or::distribution::FirstAvailable {
                        backends: vec![or::RouteBackend {
                            backend: Some(backend),
                            filters: Vec::new(),
                        }],
                    },
                )),
            }),
            filters: Vec::new(),
        }],
    };
    OutboundPolicy {
        metadata: Some(service_meta(svc, port)),
        protocol: Some(outbound::ProxyProtocol {
            kind: Some(pp::Kind::Detect(pp::Detect {
                timeout: Some(duration(DETECT_TIMEOUT)),
                opaque: Some(pp::Opaque {
                    routes: vec![opaque_route],
                }),
                http1: Some(pp::Http1 {
                    routes: vec![http_route.clone()],
                    failure_accrual: None,
                }),
                http2: Some(pp::Http2 {
                    routes: vec![http_route],
                    failure_accrual: None,
                }),
            })),
        }),
    }
}

type PolicyStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<OutboundPolicy, Status>> + Send>>;

#[tonic::async_trait]
impl server::OutboundPolicies for OutboundPolicies {
    async fn get(&self, req: Request<TrafficSpec>) -> Result<Response<OutboundPolicy>, Status> {
        let wanted = wanted(req.get_ref(), &self.cluster_domain)?;
        let topology = self.topology.borrow().clone();
        answer(&topology, &wanted, &self.cluster_domain).map(Response::new)
    }

    type WatchStream = PolicyStream;

    /// The policy now, then again each time a change changes it.
    async fn watch(&self, req: Request<TrafficSpec>) -> Result<Response<PolicyStream>, Status> {
        let wanted = wanted(req.get_ref(), &self.cluster_domain)?;
        let mut topology = self.topology.clone();
        let first = answer(&topology.borrow_and_update(), &wanted, &self.cluster_domain)?;
        let domain = self.cluster_domain.clone();
        let stream = futures_util::stream::unfold(
            (Some(first), None::<OutboundPolicy>, topology),
            move |(mut next, mut sent, mut topology)| {
                let (wanted, domain) = (wanted.clone(), domain.clone());
                async move {
                    loop {
                        if let Some(policy) = next.take()
                            && sent.as_ref() != Some(&policy)
                        {
                            sent = Some(policy.clone());
                            return Some((Ok(policy), (None, sent, topology)));
                        }
                        topology.changed().await.ok()?;
                        let now = topology.borrow_and_update().clone();
                        match answer(&now, &wanted, &domain) {
                            Ok(policy) => next = Some(policy),
                            // The service went: the stream ends with why.
                            Err(status) => return Some((Err(status), (None, sent, topology))),
                        }
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology {
            services: vec![Service {
                name: "web-svc".into(),
                namespace: "emojivoto".into(),
                selector: Default::default(),
                ports: vec![linkerd_discovery::ServicePort {
                    port: 80,
                    target_port: Some(linkerd_discovery::TargetPort::Number(8080)),
                    name: None,
                }],
                external_name: None,
                cluster_ip: Some("10.96.0.10".parse().unwrap()),
                annotations: Default::default(),
            }],
            ..Default::default()
        }
    }

    fn spec(target: traffic_spec::Target) -> TrafficSpec {
        TrafficSpec {
            source_workload: String::new(),
            target: Some(target),
        }
    }

    #[test]
    fn a_service_by_name_or_cluster_ip_is_balanced_over_destination() {
        let t = topology();
        let by_name = spec(traffic_spec::Target::Authority(
            "web-svc.emojivoto.svc.cluster.local:80".into(),
        ));
        let by_ip = spec(traffic_spec::Target::Addr(
            "10.96.0.10:80".parse::<SocketAddr>().unwrap().into(),
        ));
        let a = answer(
            &t,
            &wanted(&by_name, "cluster.local").unwrap(),
            "cluster.local",
        )
        .unwrap();
        let b = answer(
            &t,
            &wanted(&by_ip, "cluster.local").unwrap(),
            "cluster.local",
        )
        .unwrap();
        assert_eq!(a, b);
        let Some(outbound::proxy_protocol::Kind::Detect(detect)) = a.protocol.unwrap().kind else {
            panic!("detect");
        };
        let route = &detect.http1.unwrap().routes[0];
        let Some(outbound::http_route::distribution::Kind::FirstAvailable(first)) =
            route.rules[0].backends.as_ref().unwrap().kind.as_ref()
        else {
            panic!("one backend");
        };
        let backend = first.backends[0].backend.as_ref().unwrap();
        let Some(outbound::backend::Kind::Balancer(p2c)) = &backend.kind else {
            panic!("balanced");
        };
        let Some(outbound::backend::endpoint_discovery::Kind::Dst(dst)) =
            &p2c.discovery.as_ref().unwrap().kind
        else {
            panic!("from destination");
        };
        assert_eq!(dst.path, "web-svc.emojivoto.svc.cluster.local:80");
    }

    #[test]
    fn what_is_not_a_service_is_not_found() {
        let t = topology();
        for target in [
            traffic_spec::Target::Addr("10.96.0.10:81".parse::<SocketAddr>().unwrap().into()),
            traffic_spec::Target::Addr("10.1.2.3:80".parse::<SocketAddr>().unwrap().into()),
            traffic_spec::Target::Authority("nope.emojivoto.svc.cluster.local:80".into()),
        ] {
            let w = wanted(&spec(target), "cluster.local").unwrap();
            assert_eq!(
                answer(&t, &w, "cluster.local").unwrap_err().code(),
                tonic::Code::NotFound
            );
        }
        let bad = spec(traffic_spec::Target::Authority("web:notaport".into()));
        assert_eq!(
            wanted(&bad, "cluster.local").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
