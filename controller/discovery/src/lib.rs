//! Service discovery: what a destination name resolves to, now and as it
//! changes, whatever backend (a local file, or the Kubernetes API) feeds it.
//!
//! Backends describe the world as Kubernetes does (services with selectors and
//! ports, pods with addresses, readiness and owners). Both resolve it with
//! one implementation, `kubernetes`' caches: the Kubernetes backend fills
//! them from the API's watches, the local one with the Services,
//! EndpointSlices and Pods its topology implies, so every backend answers
//! the same question the same way.

#[cfg(any(fuzzing, test))]
pub mod fuzz;
pub mod kubernetes;
pub mod local;
pub mod profile;

use serde::Deserialize;
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};
use tokio::sync::watch;

/// A discovery backend: a live view of what each target resolves to.
pub trait Discover: Clone + Send + Sync + 'static {
    /// The target's resolution now, updated whenever it changes, for as long
    /// as the receiver is kept.
    fn watch(&self, target: &Target) -> watch::Receiver<Resolution>;

    /// Every pod with an address now: what tap and the public API select
    /// by workload and name by address.
    fn pods(&self) -> Vec<Workload>;

    /// Every service now, with its ready endpoints (on its first port):
    /// what the public API reports services' pods with.
    fn services(&self) -> Vec<ServiceEndpoints>;
}

/// A service and the endpoints that back it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEndpoints {
    pub namespace: String,
    pub name: String,
    pub endpoints: Vec<Endpoint>,
}

/// A service's summary, from its name, its first port and a resolver.
fn service_endpoints(
    namespace: &str,
    name: &str,
    port: Option<u16>,
    resolve: impl Fn(&Target) -> Resolution,
) -> ServiceEndpoints {
    let endpoints = port
        .map(|port| {
            resolve(&Target::Service {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port,
            })
        })
        .and_then(|r| match r {
            Resolution::Endpoints(e) => Some(e.addrs.into_values().collect::<Vec<_>>()),
            _ => None,
        })
        .unwrap_or_default();
    ServiceEndpoints {
        namespace: namespace.to_string(),
        name: name.to_string(),
        endpoints,
    }
}

/// The backend chosen at start-up: a topology file or the Kubernetes API.
#[derive(Clone)]
pub enum AnyDiscovery {
    Local(local::LocalDiscovery),
    Kubernetes(kubernetes::KubeDiscovery),
}

impl AnyDiscovery {
    /// The backend's own metrics.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        if let Self::Local(local) = self {
            local.register(registry);
        }
    }
}

impl profile::Profiles for AnyDiscovery {
    fn profile(&self, namespace: &str, name: &str) -> profile::ProfileWatch {
        match self {
            Self::Local(d) => d.profile(namespace, name),
            Self::Kubernetes(d) => d.profile(namespace, name),
        }
    }
}

impl Discover for AnyDiscovery {
    fn watch(&self, target: &Target) -> watch::Receiver<Resolution> {
        match self {
            Self::Local(d) => d.watch(target),
            Self::Kubernetes(d) => d.watch(target),
        }
    }

    fn pods(&self) -> Vec<Workload> {
        match self {
            Self::Local(d) => d.pods(),
            Self::Kubernetes(d) => d.pods(),
        }
    }

    fn services(&self) -> Vec<ServiceEndpoints> {
        match self {
            Self::Local(d) => d.services(),
            Self::Kubernetes(d) => d.services(),
        }
    }
}

/// A pod, by address, and the workload behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub ip: IpAddr,
    pub endpoint: Endpoint,
    /// Running (the pod's phase), as `linkerd stat` counts pods.
    pub running: bool,
    /// Failed (the pod's phase).
    pub failed: bool,
}

/// Re-resolves `target` each time `changes` moves and publishes only real
/// changes, until the returned receiver is dropped. Every backend's `watch`
/// is this, over its own notion of "something changed".
fn follow<T, K, R, F>(mut changes: watch::Receiver<T>, target: &K, resolve: F) -> watch::Receiver<R>
where
    T: Send + Sync + 'static,
    K: Clone + Send + Sync + 'static,
    R: PartialEq + Send + Sync + 'static,
    F: Fn(&T, &K) -> R + Send + 'static,
{
    let (tx, rx) = watch::channel(resolve(&changes.borrow_and_update(), target));
    let target = target.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
            let resolution = resolve(&changes.borrow_and_update(), &target);
            tx.send_if_modified(|current| {
                let changed = *current != resolution;
                if changed {
                    *current = resolution;
                }
                changed
            });
        }
    });
    rx
}

/// A name a proxy asked about, parsed from `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `svc.ns.svc.<cluster-domain>:port`
    Service {
        namespace: String,
        name: String,
        port: u16,
    },
    /// `pod-hostname.svc.ns.svc.<cluster-domain>:port`: one pod of a
    /// (headless) service, as StatefulSets name their pods.
    Hostname {
        namespace: String,
        service: String,
        hostname: String,
        port: u16,
    },
    /// `ip:port`, as a proxy asks for a connection's original destination:
    /// a service's cluster IP stands for the service, a pod's IP for the pod.
    Addr(SocketAddr),
}

impl Target {
    /// The service a name-based target names, as (namespace, name, port).
    pub fn service(&self) -> Option<(&str, &str, u16)> {
        match self {
            Self::Service {
                namespace,
                name,
                port,
            } => Some((namespace, name, *port)),
            Self::Hostname {
                namespace,
                service,
                port,
                ..
            } => Some((namespace, service, *port)),
            Self::Addr(_) => None,
        }
    }

    /// The pod hostname a target selects, if it does.
    pub fn hostname(&self) -> Option<&str> {
        match self {
            Self::Hostname { hostname, .. } => Some(hostname),
            _ => None,
        }
    }
}

/// What a target resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// No such service (or port): the proxy should not use discovery for it.
    NotFound,
    /// An ExternalName service: a DNS alias the proxy must resolve itself.
    ExternalName,
    /// The service's ready endpoints on the requested port (maybe none), or
    /// the one pod an address belongs to.
    Endpoints(Endpoints),
}

/// A set of endpoints and what they belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub namespace: String,
    /// The service, when the target was one (by name or by cluster IP); a
    /// pod's own address belongs to no service.
    pub service: Option<String>,
    pub addrs: BTreeMap<SocketAddr, Endpoint>,
    /// The port asked about is opaque (`config.linkerd.io/opaque-ports` on
    /// the service, or on the pod for a pod's address): its proxy should
    /// not look for HTTP in it.
    pub opaque: bool,
}

/// Linkerd's annotation naming a workload's or service's opaque ports.
pub const OPAQUE_PORTS: &str = "config.linkerd.io/opaque-ports";

/// Whether `annotations` mark `port` opaque: `config.linkerd.io/opaque-ports`
/// is a comma-separated list of ports and ranges (`3306,4000-4100`), as
/// Linkerd's; a port name or anything unreadable in it marks nothing.
pub fn opaque_port(annotations: &BTreeMap<String, String>, port: u16) -> bool {
    let Some(list) = annotations.get(OPAQUE_PORTS) else {
        return false;
    };
    list.split(',')
        .map(str::trim)
        .any(|item| match item.split_once('-') {
            Some((lo, hi)) => match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
                (Ok(lo), Ok(hi)) => (lo..=hi).contains(&port),
                _ => false,
            },
            None => item.parse::<u16>() == Ok(port),
        })
}

/// One ready endpoint and the workload behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's namespace (its identity's), the service's when no pod is known.
    pub namespace: String,
    pub pod: Option<String>,
    /// The controller that owns the pod, e.g. (`deployment`, `web`).
    pub owner: Option<(String, String)>,
    pub service_account: Option<String>,
    /// Whether the pod runs a proxy (so mTLS and HTTP/2 can be used).
    pub meshed: bool,
}

/// The Kubernetes objects discovery needs, as a backend sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub services: Vec<Service>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub pods: Vec<Pod>,
    /// Namespaces whose annotations matter (a default inbound policy).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub namespaces: Vec<Namespace>,
    /// Service account tokens the local identity backend accepts, standing
    /// in for Kubernetes' TokenReview.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tokens: Vec<Token>,
    /// Linkerd's policy resources (`policy.linkerd.io`), for the local
    /// policy backend, as their YAML reads.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub servers: Vec<linkerd_policy::resources::Server>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub authorization_policies: Vec<linkerd_policy::resources::AuthorizationPolicy>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        rename = "meshTLSAuthentications"
    )]
    pub mesh_tls_authentications: Vec<linkerd_policy::resources::MeshTlsAuthentication>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub network_authentications: Vec<linkerd_policy::resources::NetworkAuthentication>,
    #[serde(default, deserialize_with = "null_as_empty", rename = "httpRoutes")]
    pub http_routes: Vec<linkerd_policy::resources::HttpRoute>,
    /// Linkerd's ServiceProfiles (`linkerd.io/v1alpha2`), as their YAML reads.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        rename = "serviceProfiles"
    )]
    pub service_profiles: Vec<profile::ServiceProfile>,
}

/// A namespace and its annotations.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Namespace {
    pub name: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A token and the service account it proves.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Token {
    pub token: String,
    pub namespace: String,
    pub service_account: String,
}

/// `pods:` with nothing under it is YAML's null; read it as no pods.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    /// Pods whose labels include all of these back the service. A service
    /// without a selector has no endpoints here.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Set for an ExternalName service.
    #[serde(default)]
    pub external_name: Option<String>,
    /// The service's virtual IP, which clients connect to; none for a
    /// headless service.
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<IpAddr>,
    /// e.g. `config.linkerd.io/opaque-ports`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    pub port: u16,
    /// The pods' port, by number or by the name of a container port; the
    /// service port itself when absent, as in Kubernetes.
    #[serde(default)]
    pub target_port: Option<TargetPort>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub ip: IpAddr,
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// e.g. `config.linkerd.io/default-inbound-policy`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub owner: Option<Owner>,
    #[serde(default = "default_service_account")]
    pub service_account: String,
    /// Whether the pod carries a `linkerd-proxy` container.
    #[serde(default)]
    pub meshed: bool,
    /// Named container ports, for services that target a port by name.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// The paths of its HTTP probes (liveness, readiness, startup), by
    /// port: the kubelet's requests policy always admits.
    #[serde(default)]
    pub probes: BTreeMap<u16, Vec<String>>,
    /// `spec.hostname`, naming the pod under its `subdomain` service.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub subdomain: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Owner {
    /// e.g. `Deployment`, `StatefulSet`, `DaemonSet`, `Job`.
    pub kind: String,
    pub name: String,
}

fn yes() -> bool {
    true
}

fn default_service_account() -> String {
    "default".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Topology {
        /// What the shared resolver answers for this topology.
        fn resolve(&self, target: &Target) -> Resolution {
            kubernetes::KubeDiscovery::fed(self).0.resolve(target)
        }
    }

    fn topology() -> Topology {
        serde_saphyr::from_str(
            r#"
services:
  - name: web
    namespace: emojivoto
    clusterIP: 10.96.0.80
    selector: {app: web}
    ports:
      - {port: 80, targetPort: http}
      - {port: 9090, targetPort: 9091}
  - name: db
    namespace: emojivoto
    selector: {app: db}
    ports: [{port: 5432}]
  - name: search
    namespace: emojivoto
    externalName: search.example.com
  - name: manual
    namespace: emojivoto
    ports: [{port: 80}]
pods:
  - {name: web-1, namespace: emojivoto, ip: 10.0.0.1, labels: {app: web}, ports: {http: 8080}, meshed: true,
     owner: {kind: Deployment, name: web}, serviceAccount: web}
  - {name: web-2, namespace: emojivoto, ip: 10.0.0.2, labels: {app: web}, ports: {http: 8081}}
  - {name: web-3, namespace: emojivoto, ip: 10.0.0.3, labels: {app: web}, ports: {http: 8080}, ready: false}
  - {name: web-4, namespace: emojivoto, ip: 10.0.0.4, labels: {app: web}}
  - {name: web-other, namespace: other, ip: 10.0.1.1, labels: {app: web}, ports: {http: 8080}}
  - {name: db-0, namespace: emojivoto, ip: 10.0.0.9, labels: {app: db}, hostname: db-0, subdomain: db}
  - {name: db-1, namespace: emojivoto, ip: 10.0.0.10, labels: {app: db}, hostname: db-1, subdomain: db}
"#,
        )
        .unwrap()
    }

    fn svc(name: &str, port: u16) -> Target {
        Target::Service {
            namespace: "emojivoto".into(),
            name: name.into(),
            port,
        }
    }

    fn addrs(r: Resolution) -> Vec<String> {
        match r {
            Resolution::Endpoints(e) => e.addrs.keys().map(|a| a.to_string()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn named_target_ports_and_readiness() {
        // web-3 is not ready, web-4 has no `http` port, web-other is elsewhere.
        assert_eq!(
            addrs(topology().resolve(&svc("web", 80))),
            ["10.0.0.1:8080", "10.0.0.2:8081"]
        );
        let numbered = addrs(topology().resolve(&svc("web", 9090)));
        assert_eq!(
            numbered,
            ["10.0.0.1:9091", "10.0.0.2:9091", "10.0.0.4:9091"]
        );
    }

    #[test]
    fn endpoint_metadata() {
        let Resolution::Endpoints(e) = topology().resolve(&svc("web", 80)) else {
            panic!()
        };
        let web1 = &e.addrs[&"10.0.0.1:8080".parse().unwrap()];
        assert_eq!(web1.owner, Some(("deployment".into(), "web".into())));
        assert_eq!(web1.service_account.as_deref(), Some("web"));
        assert!(web1.meshed);
        let web2 = &e.addrs[&"10.0.0.2:8081".parse().unwrap()];
        assert_eq!(web2.service_account.as_deref(), Some("default"));
        assert!(!web2.meshed && web2.owner.is_none());
    }

    #[test]
    fn unknowns_external_names_and_selectorless_services() {
        let t = topology();
        assert_eq!(t.resolve(&svc("nope", 80)), Resolution::NotFound);
        assert_eq!(t.resolve(&svc("web", 81)), Resolution::NotFound);
        assert_eq!(t.resolve(&svc("search", 80)), Resolution::ExternalName);
        let Resolution::Endpoints(manual) = t.resolve(&svc("manual", 80)) else {
            panic!()
        };
        assert!(manual.addrs.is_empty());
        assert_eq!(manual.service.as_deref(), Some("manual"));
    }

    #[test]
    fn pod_hostnames() {
        let target = Target::Hostname {
            namespace: "emojivoto".into(),
            service: "db".into(),
            hostname: "db-1".into(),
            port: 5432,
        };
        assert_eq!(addrs(topology().resolve(&target)), ["10.0.0.10:5432"]);
        assert_eq!(addrs(topology().resolve(&svc("db", 5432))).len(), 2);
    }

    #[test]
    fn cluster_ips_and_pod_ips() {
        let t = topology();
        let addr = |s: &str| Target::Addr(s.parse().unwrap());
        let Resolution::Endpoints(web) = t.resolve(&addr("10.96.0.80:80")) else {
            panic!()
        };
        assert_eq!(web.service.as_deref(), Some("web"));
        assert_eq!(
            addrs(Resolution::Endpoints(web)),
            addrs(t.resolve(&svc("web", 80)))
        );
        assert_eq!(t.resolve(&addr("10.96.0.80:81")), Resolution::NotFound);
        // A pod's address is that pod, on the port asked for, ready or not.
        let Resolution::Endpoints(pod) = t.resolve(&addr("10.0.0.3:7000")) else {
            panic!()
        };
        assert_eq!(pod.service, None);
        assert_eq!(pod.namespace, "emojivoto");
        assert_eq!(addrs(Resolution::Endpoints(pod)), ["10.0.0.3:7000"]);
        assert_eq!(t.resolve(&addr("10.9.9.9:80")), Resolution::NotFound);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            serde_saphyr::from_str::<Topology>("services: [{name: a, namespace: b, prots: []}]")
                .unwrap_err()
                .to_string();
        assert!(err.contains("prots"), "{err}");
    }
}
