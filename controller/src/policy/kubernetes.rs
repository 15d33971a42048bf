//! The policy service's Kubernetes backend: reflectors on pods, namespaces
//! and Linkerd's policy resources, folded into the same `Topology` the local
//! backend reads from its file, so that both answer through one path.
//!
//! A burst of events (a relist, a rollout) makes one new snapshot; a
//! watch stream sends again only when its own answer changed.

use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod, Service as K8sService};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::reflector::Store,
};
use linkerd_discovery::{
    Namespace, Pod, Service, ServicePort, TargetPort, Topology, kubernetes::reflect,
};
use serde::de::DeserializeOwned;
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};
use tokio::sync::watch;

const GROUP: &str = "policy.linkerd.io";
/// The container a meshed pod runs (in `initContainers` as a native
/// sidecar, or in `containers`).
const PROXY_CONTAINER: &str = "linkerd-proxy";
/// Events closer together than this make one snapshot.
const SETTLE: Duration = Duration::from_millis(50);

/// The kinds read, at the versions the chart's CRDs serve.
const KINDS: [(&str, &str, &str); 5] = [
    ("Server", "v1beta3", "servers"),
    ("AuthorizationPolicy", "v1alpha1", "authorizationpolicies"),
    (
        "MeshTLSAuthentication",
        "v1alpha1",
        "meshtlsauthentications",
    ),
    (
        "NetworkAuthentication",
        "v1alpha1",
        "networkauthentications",
    ),
    ("HTTPRoute", "v1beta3", "httproutes"),
];

struct Stores {
    pods: Store<K8sPod>,
    services: Store<K8sService>,
    namespaces: Store<K8sNamespace>,
    /// In `KINDS`' order.
    policy: Vec<Store<DynamicObject>>,
}

/// Starts watching and waits for every first list, so first answers are
/// whole; the topology then follows the cluster.
pub async fn start(client: Client) -> watch::Receiver<Arc<Topology>> {
    let (tx, mut changes) = watch::channel(0u64);
    let tx = Arc::new(tx);
    let pods = reflect(Api::<K8sPod>::all(client.clone()), (), tx.clone());
    let namespaces = reflect(Api::<K8sNamespace>::all(client.clone()), (), tx.clone());
    let services = reflect(Api::<K8sService>::all(client.clone()), (), tx.clone());
    let policy: Vec<_> = KINDS
        .iter()
        .map(|(kind, version, plural)| {
            let gvk = GroupVersionKind::gvk(GROUP, version, kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
            reflect(
                Api::<DynamicObject>::all_with(client.clone(), &ar),
                ar,
                tx.clone(),
            )
        })
        .collect();
    let mut waits = vec![
        ("Pods", pods.wait_until_ready().await.is_ok()),
        ("Namespaces", namespaces.wait_until_ready().await.is_ok()),
        ("Services", services.wait_until_ready().await.is_ok()),
    ];
    for (store, (kind, ..)) in policy.iter().zip(KINDS) {
        waits.push((kind, store.wait_until_ready().await.is_ok()));
    }
    for (what, ready) in waits {
        if !ready {
            tracing::warn!("the {what} cache stopped before its first list");
        }
    }
    tracing::info!("policy caches synced");
    let stores = Stores {
        pods,
        services,
        namespaces,
        policy,
    };
    let (out, topology) = watch::channel(Arc::new(stores.snapshot()));
    changes.borrow_and_update();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            tokio::time::sleep(SETTLE).await;
            changes.borrow_and_update();
            out.send_replace(Arc::new(stores.snapshot()));
        }
    });
    topology
}

impl Stores {
    fn snapshot(&self) -> Topology {
        let [servers, authz, mesh_tls, network, routes] = [0, 1, 2, 3, 4].map(|i| &self.policy[i]);
        Topology {
            pods: self.pods.state().iter().filter_map(|p| pod(p)).collect(),
            services: self
                .services
                .state()
                .iter()
                .filter_map(|s| service(s))
                .collect(),
            namespaces: self
                .namespaces
                .state()
                .iter()
                .map(|ns| Namespace {
                    name: ns.name_any(),
                    annotations: ns.annotations().clone(),
                })
                .collect(),
            servers: objects(servers),
            authorization_policies: objects(authz),
            mesh_tls_authentications: objects(mesh_tls),
            network_authentications: objects(network),
            http_routes: objects(routes),
            ..Default::default()
        }
    }
}

/// Every object of a store that reads as `T`; one that does not (the CRD
/// validation should have refused it) is left out, and said so.
fn objects<T: DeserializeOwned>(store: &Store<DynamicObject>) -> Vec<T> {
    store
        .state()
        .iter()
        .filter_map(|obj| {
            let value = serde_json::to_value(&**obj).ok()?;
            match serde_json::from_value(value) {
                Ok(t) => Some(t),
                Err(e) => {
                    let kind = obj.types.as_ref().map_or("", |t| t.kind.as_str());
                    tracing::warn!(
                        "ignoring {kind} {}/{}: {e}",
                        obj.namespace().unwrap_or_default(),
                        obj.name_any()
                    );
                    None
                }
            }
        })
        .collect()
}

/// What policy reads of a pod: where it is, its labels and annotations,
/// its named container ports, and whether it is meshed.
fn pod(p: &K8sPod) -> Option<Pod> {
    let meta = p.meta();
    let spec = p.spec.as_ref()?;
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut ports = std::collections::BTreeMap::new();
    let mut probes = std::collections::BTreeMap::<u16, Vec<String>>::new();
    let mut meshed = false;
    for c in containers {
        meshed |= c.name == PROXY_CONTAINER;
        for port in c.ports.iter().flatten() {
            if let (Some(name), Ok(n)) = (&port.name, u16::try_from(port.container_port)) {
                ports.insert(name.clone(), n);
            }
        }
        for probe in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
            .into_iter()
            .flatten()
        {
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            let Some(get) = &probe.http_get else { continue };
            let port = match &get.port {
                IntOrString::Int(n) => u16::try_from(*n).ok(),
                IntOrString::String(name) => c
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name))
                    .and_then(|p| u16::try_from(p.container_port).ok()),
            };
            if let Some(port) = port {
                let path = get.path.clone().unwrap_or_else(|| "/".into());
                let paths = probes.entry(port).or_default();
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
    }
    let ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Some(Pod {
        name: meta.name.clone()?,
        namespace: meta.namespace.clone()?,
        ip,
        ready: true,
        labels: p.labels().clone(),
        annotations: p.annotations().clone(),
        owner: None,
        service_account: spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        meshed,
        ports,
        probes,
        hostname: None,
        subdomain: None,
    })
}

/// What outbound policy reads of a Service: its name, cluster IP and ports.
fn service(s: &K8sService) -> Option<Service> {
    let spec = s.spec.as_ref()?;
    Some(Service {
        name: s.metadata.name.clone()?,
        namespace: s.metadata.namespace.clone()?,
        selector: spec.selector.clone().unwrap_or_default(),
        ports: spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
                Some(ServicePort {
                    port: u16::try_from(p.port).ok()?,
                    target_port: p.target_port.as_ref().and_then(|t| match t {
                        IntOrString::Int(n) => u16::try_from(*n).ok().map(TargetPort::Number),
                        IntOrString::String(name) => Some(TargetPort::Name(name.clone())),
                    }),
                    name: p.name.clone(),
                })
            })
            .collect(),
        external_name: spec.external_name.clone(),
        cluster_ip: spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()),
        annotations: Default::default(),
    })
}
