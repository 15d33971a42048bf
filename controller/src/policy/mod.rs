//! `linkerd-controller policy`: Linkerd's inbound policy API
//! (`io.linkerd.proxy.inbound.InboundServerPolicies`), answered from
//! Linkerd's policy resources: the cluster's (`kubernetes`), or those of the
//! local topology file.

pub mod kubernetes;
pub mod outbound;

use linkerd_discovery::{Pod, Topology};
use linkerd_policy::{Cluster, DEFAULT_INBOUND_POLICY, DefaultPolicy, Policies};
use linkerd_proxy_api::inbound::{self, PortSpec, inbound_server_policies_server as server};
use std::{pin::Pin, sync::Arc};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

pub struct InboundPolicies {
    topology: watch::Receiver<Arc<Topology>>,
    cluster: Arc<Cluster>,
    default_policy: DefaultPolicy,
}

impl InboundPolicies {
    pub fn new(
        topology: watch::Receiver<Arc<Topology>>,
        cluster: Cluster,
        default_policy: DefaultPolicy,
    ) -> Self {
        Self {
            topology,
            cluster: Arc::new(cluster),
            default_policy,
        }
    }

    pub fn into_server(self) -> server::InboundServerPoliciesServer<Self> {
        server::InboundServerPoliciesServer::new(self)
    }
}

/// The pod a proxy names in `LINKERD2_PROXY_POLICY_WORKLOAD`: Linkerd's
/// `{"ns":"emojivoto","pod":"web-0"}`, or the older `emojivoto:web-0`.
fn workload(spec: &PortSpec) -> Result<(String, String), Status> {
    #[derive(serde::Deserialize)]
    struct Workload {
        ns: String,
        pod: String,
    }
    let w = spec.workload.trim();
    let parsed = if w.starts_with('{') {
        serde_json::from_str::<Workload>(w)
            .ok()
            .map(|w| (w.ns, w.pod))
    } else {
        w.split_once(':')
            .map(|(ns, pod)| (ns.to_string(), pod.to_string()))
    };
    match parsed {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() => Ok((ns, pod)),
        _ => Err(Status::invalid_argument(format!(
            "workload {w:?} is neither {{\"ns\":NAMESPACE,\"pod\":NAME}} nor NAMESPACE:NAME"
        ))),
    }
}

fn port(spec: &PortSpec) -> Result<u16, Status> {
    u16::try_from(spec.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Status::invalid_argument(format!("{} is not a port", spec.port)))
}

/// The server `pod`'s proxy enforces on `port`, as the topology is now.
fn answer(
    topology: &Topology,
    (ns, name): (&str, &str),
    port: u16,
    cluster: &Cluster,
    cluster_default: DefaultPolicy,
) -> Result<inbound::Server, Status> {
    let pod: &Pod = topology
        .pods
        .iter()
        .find(|p| p.namespace == ns && p.name == name)
        .ok_or_else(|| Status::not_found(format!("no pod {ns}/{name}")))?;
    // The pod's annotation, else its namespace's, else the cluster's.
    let annotated = pod
        .annotations
        .get(DEFAULT_INBOUND_POLICY)
        .map(|v| (format!("pod {ns}/{name}"), v))
        .or_else(|| {
            topology
                .namespaces
                .iter()
                .find(|n| n.name == ns)
                .and_then(|n| n.annotations.get(DEFAULT_INBOUND_POLICY))
                .map(|v| (format!("namespace {ns}"), v))
        });
    let default_policy = match annotated {
        Some((on, v)) => v.parse().map_err(|e| {
            Status::invalid_argument(format!("{on}: {DEFAULT_INBOUND_POLICY}: {e}"))
        })?,
        None => cluster_default,
    };
    let policies = Policies {
        servers: &topology.servers,
        authorization_policies: &topology.authorization_policies,
        mesh_tls_authentications: &topology.mesh_tls_authentications,
        network_authentications: &topology.network_authentications,
        http_routes: &topology.http_routes,
    };
    let pod = linkerd_policy::Pod {
        namespace: ns,
        labels: &pod.labels,
        named_ports: &pod.ports,
        default_policy,
        probes: &pod.probes,
    };
    Ok(policies.inbound_server(&pod, port, cluster))
}

type ServerStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<inbound::Server, Status>> + Send>>;

#[tonic::async_trait]
impl server::InboundServerPolicies for InboundPolicies {
    async fn get_port(&self, req: Request<PortSpec>) -> Result<Response<inbound::Server>, Status> {
        let spec = req.into_inner();
        let (ns, pod) = workload(&spec)?;
        let topology = self.topology.borrow().clone();
        answer(
            &topology,
            (&ns, &pod),
            port(&spec)?,
            &self.cluster,
            self.default_policy,
        )
        .map(Response::new)
    }

    type WatchPortStream = ServerStream;

    /// The port's server now, then again each time a topology change
    /// changes it (an unchanged answer is not sent twice).
    async fn watch_port(&self, req: Request<PortSpec>) -> Result<Response<ServerStream>, Status> {
        let spec = req.into_inner();
        let (ns, pod) = workload(&spec)?;
        let port = port(&spec)?;
        let mut topology = self.topology.clone();
        let first = answer(
            &topology.borrow_and_update(),
            (&ns, &pod),
            port,
            &self.cluster,
            self.default_policy,
        )?;
        let (cluster, default_policy) = (self.cluster.clone(), self.default_policy);
        let stream = futures_util::stream::unfold(
            (Some(first), None::<inbound::Server>, topology),
            move |(mut next, mut sent, mut topology)| {
                let (ns, pod, cluster) = (ns.clone(), pod.clone(), cluster.clone());
                async move {
                    loop {
                        if let Some(server) = next.take()
                            && sent.as_ref() != Some(&server)
                        {
                            sent = Some(server.clone());
                            return Some((Ok(server), (None, sent, topology)));
                        }
                        topology.changed().await.ok()?;
                        let now = topology.borrow_and_update().clone();
                        match answer(&now, (&ns, &pod), port, &cluster, default_policy) {
                            Ok(server) => next = Some(server),
                            // The pod went: the stream ends with why.
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

    fn spec(workload: &str, port: u32) -> PortSpec {
        PortSpec {
            workload: workload.into(),
            port,
        }
    }

    #[test]
    fn workloads_in_either_form_and_bad_ones_named() {
        let want = Ok(("emojivoto".to_string(), "web-0".to_string()));
        assert_eq!(
            workload(&spec(r#"{"ns":"emojivoto","pod":"web-0"}"#, 80)).map_err(|s| s.code()),
            want.clone()
        );
        assert_eq!(
            workload(&spec("emojivoto:web-0", 80)).map_err(|s| s.code()),
            want
        );
        for bad in ["", "web-0", r#"{"ns":"emojivoto"}"#, ":web-0"] {
            let err = workload(&spec(bad, 80)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        assert!(port(&spec("a:b", 0)).is_err());
        assert!(port(&spec("a:b", 70000)).is_err());
    }
}
