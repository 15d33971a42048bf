//! The resolver both backends share: caches of Services, EndpointSlices and
//! Pods, fed by the API's watches or, for the local backend, by relisting
//! the objects its topology implies, so Kubernetes' rules are implemented
//! once. An index kept from the watches' events
//! (`index.rs`) finds a service's slices and an address's service or pod by
//! lookup, and wakes only the streams an event concerns.
//!
//! The watchers relist after errors and `410 Gone` (kube-rs' watcher does this,
//! with backoff); streams already open keep the last known endpoints until the
//! caches catch up, so an API outage never drops a proxy's endpoints.

mod index;

use self::index::{Index, Key, Kind, Shared};
use super::{Discover, Endpoint, Endpoints, Resolution, Target, profile::ServiceProfile};
use futures_util::StreamExt;
use k8s_openapi::api::{
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
        watcher::Event,
    },
};
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};
use tokio::sync::watch;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The container a meshed pod runs.
const PROXY_CONTAINER: &str = "linkerd-proxy";

#[derive(Clone)]
pub struct KubeDiscovery {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    /// The caches' index, and the streams waiting on each key.
    shared: Arc<Shared>,
    /// ServiceProfiles, for the destination service only (the others need
    /// neither their CRD nor the right to read them).
    profiles: Option<Store<DynamicObject>>,
}

impl KubeDiscovery {
    /// Starts watching the cluster and waits until every cache has its first
    /// full list, so the first answers are complete.
    pub async fn start(client: Client) -> Self {
        let (this, sinks) = Self::caches();
        spawn_watch(Api::<Service>::all(client.clone()), sinks.services);
        spawn_watch(Api::<EndpointSlice>::all(client.clone()), sinks.slices);
        spawn_watch(Api::<Pod>::all(client), sinks.pods);
        for (what, ready) in [
            ("Services", this.services.wait_until_ready().await),
            ("EndpointSlices", this.slices.wait_until_ready().await),
            ("Pods", this.pods.wait_until_ready().await),
        ] {
            if ready.is_err() {
                tracing::warn!("the {what} cache stopped before its first list");
            }
        }
        tracing::info!("Kubernetes caches synced");
        this
    }

    /// Caches fed from a topology rather than the API: the local backend's.
    pub(crate) fn fed(topology: &super::Topology) -> (Self, Feed) {
        let (this, sinks) = Self::caches();
        let mut feed = Feed(sinks);
        feed.relist(topology);
        (this, feed)
    }

    /// Empty caches, and the sinks that fill them.
    fn caches() -> (Self, Sinks) {
        let shared = Arc::new(Shared::default());
        let sinks = Sinks::new(&shared);
        let this = Self {
            services: sinks.services.reader(),
            slices: sinks.slices.reader(),
            pods: sinks.pods.reader(),
            shared,
            profiles: None,
        };
        (this, sinks)
    }

    /// Also follows ServiceProfiles (`linkerd.io/v1alpha2`), waiting a
    /// while for their first list: without the CRD, profiles stay empty
    /// and the watch keeps retrying, named in the log.
    pub async fn with_profiles(mut self, client: Client) -> Self {
        let resource = profile_resource();
        let store = reflect_profiles(
            Api::<DynamicObject>::all_with(client, &resource),
            resource,
            self.shared.clone(),
        );
        if tokio::time::timeout(PROFILES_FIRST_LIST, store.wait_until_ready())
            .await
            .is_err()
        {
            tracing::warn!(
                "no list of ServiceProfiles yet (is the CRD installed?); answering without profiles until there is"
            );
        }
        self.profiles = Some(store);
        self
    }

    pub(crate) fn resolve(&self, target: &Target) -> Resolution {
        let index = self.shared.index();
        resolve(&self.services, &self.slices, &self.pods, &index, target)
    }
}

/// What an index update adds to the keys to wake.
type Update<K> = fn(&mut Index, &K, &mut Vec<Key>);

/// The streams an event must wake.
enum Wake {
    /// Those waiting on these keys.
    Keys(Vec<Key>),
    /// Every stream: a relist may have changed anything.
    All,
}

/// One kind's cache and its index upkeep: what an event, from a watch or
/// from a local topology's relist, does to the store and the index, and
/// whom it concerns.
struct Sink<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    writer: reflector::store::Writer<K>,
    shared: Arc<Shared>,
    kind: Kind,
    apply: Update<K>,
    remove: Update<K>,
    /// Drops what no resolution reads before the object is cached.
    trim: fn(&mut K),
}

impl<K> Sink<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    fn new(
        shared: Arc<Shared>,
        kind: Kind,
        apply: Update<K>,
        remove: Update<K>,
        trim: fn(&mut K),
    ) -> Self {
        Self {
            writer: reflector::store::Writer::new(()),
            shared,
            kind,
            apply,
            remove,
            trim,
        }
    }

    fn reader(&self) -> Store<K> {
        self.writer.as_reader()
    }

    /// Caches the event and indexes it; the caller wakes whom it returns
    /// (the store has the event by then, so the woken streams read it).
    fn handle(&mut self, mut event: Event<K>) -> Wake {
        if let Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) = &mut event {
            (self.trim)(o);
        }
        self.writer.apply_watcher_event(&event);
        let mut keys = Vec::new();
        let mut index = self.shared.index();
        match &event {
            Event::Apply(o) => (self.apply)(&mut index, o, &mut keys),
            Event::Delete(o) => (self.remove)(&mut index, o, &mut keys),
            Event::Init => index.relist_started(self.kind),
            Event::InitApply(o) => (self.apply)(&mut index, o, &mut Vec::new()),
            Event::InitDone => {
                index.relist_done(self.kind);
                return Wake::All;
            }
        }
        Wake::Keys(keys)
    }

    /// Replaces everything cached with `objects`, as a relist does.
    fn relist(&mut self, objects: Vec<K>) {
        self.handle(Event::Init);
        for o in objects {
            self.handle(Event::InitApply(o));
        }
        self.handle(Event::InitDone);
    }

    fn wake(&self, wake: Wake) {
        match wake {
            Wake::Keys(keys) => self.shared.notifiers.notify(keys),
            Wake::All => self.shared.notifiers.notify_all(),
        }
    }
}

/// The three kinds' sinks for one set of caches.
struct Sinks {
    services: Sink<Service>,
    slices: Sink<EndpointSlice>,
    pods: Sink<Pod>,
}

impl Sinks {
    fn new(shared: &Arc<Shared>) -> Self {
        Self {
            services: Sink::new(
                shared.clone(),
                Kind::Services,
                Index::service,
                Index::remove_service,
                trim_service,
            ),
            slices: Sink::new(
                shared.clone(),
                Kind::Slices,
                Index::slice,
                Index::remove_slice,
                trim_slice,
            ),
            pods: Sink::new(
                shared.clone(),
                Kind::Pods,
                Index::pod,
                Index::remove_pod,
                trim_pod,
            ),
        }
    }
}

/// Feeds caches from a topology instead of watches: the local backend's
/// way into the same resolver, with the objects Kubernetes would hold for
/// that topology.
pub(crate) struct Feed(Sinks);

impl Feed {
    /// Replaces the caches' contents with `topology`'s objects, as a relist
    /// would, and wakes every stream once.
    pub(crate) fn relist(&mut self, topology: &super::Topology) {
        let Sinks {
            services,
            slices,
            pods,
        } = &mut self.0;
        // Pods first: a slice's endpoint waits for its pod to be cached.
        pods.relist(objects::pods(topology));
        services.relist(objects::services(topology));
        slices.relist(objects::endpoint_slices(topology));
        pods.wake(Wake::All);
    }
}

/// Runs `sink`'s watch on `api` for as long as the process lives.
fn spawn_watch<K>(api: Api<K>, mut sink: Sink<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let events = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    let wake = sink.handle(event);
                    sink.wake(wake);
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = ?sink.kind, "Kubernetes watch failed; retrying")
                }
            }
        }
    });
}

/// What no resolution reads, dropped before caching: most of a large
/// cluster's cache is `managedFields` and kubectl's last applied copy.
fn trim_meta(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn trim_service(svc: &mut Service) {
    trim_meta(&mut svc.metadata);
    svc.status = None;
}

fn trim_slice(slice: &mut EndpointSlice) {
    trim_meta(&mut slice.metadata);
}

/// A pod as discovery reads it: its identity, owner, addresses, phase and
/// container names (whether it is meshed).
fn trim_pod(pod: &mut Pod) {
    trim_meta(&mut pod.metadata);
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            c.env = None;
            c.env_from = None;
            c.volume_mounts = None;
            c.command = None;
            c.args = None;
            c.resources = None;
            c.security_context = None;
        }
    }
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.conditions = None;
    }
}

/// Runs a reflector for `api` (of `dyntype`: `()` for a built-in kind),
/// bumping `changes` on every event; its cache is the returned store.
pub fn reflect<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    changes: Arc<watch::Sender<u64>>,
) -> Store<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let kind = K::kind(&dyntype).to_string();
    let writer = reflector::store::Writer::new(dyntype);
    let reader = writer.as_reader();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => {
                    changes.send_modify(|n| *n += 1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, %kind, "Kubernetes watch failed; retrying")
                }
            }
        }
    });
    reader
}

/// Runs a reflector on ServiceProfiles, waking the streams of each one that
/// changes.
fn reflect_profiles(
    api: Api<DynamicObject>,
    resource: ApiResource,
    shared: Arc<Shared>,
) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(resource);
    let reader = writer.as_reader();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let key =
                |o: &DynamicObject| Key::Profile((o.namespace().unwrap_or_default(), o.name_any()));
            match event {
                Ok(Event::Apply(o) | Event::Delete(o)) => shared.notifiers.notify(vec![key(&o)]),
                Ok(Event::InitDone) => shared.notifiers.notify_all(),
                Ok(Event::Init | Event::InitApply(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Kubernetes watch of ServiceProfiles failed; retrying")
                }
            }
        }
    });
    reader
}

/// A profile as last read: none, or the valid one.
type Read = Option<Arc<ServiceProfile>>;

fn profile_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("linkerd.io", "v1alpha2", "ServiceProfile");
    ApiResource::from_gvk_with_plural(&gvk, "serviceprofiles")
}

/// How long the destination service waits for the first list of
/// ServiceProfiles before it answers without them.
const PROFILES_FIRST_LIST: std::time::Duration = std::time::Duration::from_secs(10);

/// A ServiceProfile from the API's object; `None` (and a warning) when it
/// does not read as one.
fn service_profile(obj: &DynamicObject) -> Option<ServiceProfile> {
    let spec = obj.data.get("spec").cloned().unwrap_or_default();
    match serde_json::from_value(spec) {
        Ok(spec) => Some(ServiceProfile {
            api_version: "linkerd.io/v1alpha2".into(),
            kind: "ServiceProfile".into(),
            metadata: crate::profile::Metadata {
                name: obj.metadata.name.clone().unwrap_or_default(),
                namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            },
            spec,
        }),
        Err(e) => {
            tracing::warn!(name = ?obj.metadata.name, error = %e, "ignoring a ServiceProfile that does not read");
            None
        }
    }
}

impl crate::profile::Profiles for KubeDiscovery {
    fn profile(&self, namespace: &str, name: &str) -> crate::profile::ProfileWatch {
        let Some(store) = self.profiles.clone() else {
            return watch::channel(None).1;
        };
        let key = ObjectRef::<DynamicObject>::new_with(name, profile_resource()).within(namespace);
        // Its own events wake this (and a relist's end); the profile is
        // read and checked again only when its resourceVersion moved.
        let last: std::sync::Mutex<Option<(Option<String>, Read)>> = std::sync::Mutex::new(None);
        let wake = self
            .shared
            .notifiers
            .subscribe(Key::Profile((namespace.to_string(), name.to_string())));
        super::follow(wake, &key, move |_, key| {
            let found = store.get(key);
            let version = found
                .as_ref()
                .and_then(|o| o.metadata.resource_version.clone());
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((v, profile)) = &*last
                && *v == version
            {
                return profile.clone();
            }
            let profile = found
                .as_deref()
                .and_then(service_profile)
                .and_then(|p| crate::profile::find([&p], &p.metadata.namespace, &p.metadata.name));
            *last = Some((version, profile.clone()));
            profile
        })
    }
}

impl Discover for KubeDiscovery {
    fn watch(&self, target: &Target) -> watch::Receiver<Resolution> {
        let key = match target {
            Target::Service {
                namespace, name, ..
            } => Key::Service((namespace.clone(), name.clone())),
            Target::Hostname {
                namespace, service, ..
            } => Key::Service((namespace.clone(), service.clone())),
            Target::Addr(addr) => Key::Ip(addr.ip()),
        };
        let wake = self.shared.notifiers.subscribe(key);
        let this = self.clone();
        super::follow(wake, target, move |_, target| this.resolve(target))
    }

    fn services(&self) -> Vec<super::ServiceEndpoints> {
        self.services
            .state()
            .iter()
            .map(|svc| {
                let port = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.ports.as_ref())
                    .and_then(|p| p.first())
                    .and_then(|p| u16::try_from(p.port).ok());
                super::service_endpoints(
                    svc.metadata.namespace.as_deref().unwrap_or_default(),
                    svc.metadata.name.as_deref().unwrap_or_default(),
                    port,
                    |t| self.resolve(t),
                )
            })
            .collect()
    }

    fn pods(&self) -> Vec<super::Workload> {
        self.pods
            .state()
            .iter()
            .filter_map(|pod| {
                let status = pod.status.as_ref()?;
                let ip = status.pod_ip.as_deref()?.parse().ok()?;
                let phase = status.phase.as_deref();
                Some(super::Workload {
                    ip,
                    endpoint: endpoint(pod),
                    running: phase == Some("Running"),
                    failed: phase == Some("Failed"),
                })
            })
            .collect()
    }
}

/// What `target` resolves to in the caches.
fn resolve(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    pods: &Store<Pod>,
    index: &Index,
    target: &Target,
) -> Resolution {
    if let Target::Addr(addr) = target {
        return resolve_addr(services, slices, pods, index, *addr);
    }
    let Some((namespace, name, port)) = target.service() else {
        return Resolution::NotFound;
    };
    match services.get(&ObjectRef::new(name).within(namespace)) {
        Some(svc) => resolve_service(&svc, slices, pods, index, port, target.hostname()),
        None => Resolution::NotFound,
    }
}

/// A cluster IP resolves as its service; a pod IP as that pod alone.
fn resolve_addr(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    pods: &Store<Pod>,
    index: &Index,
    addr: SocketAddr,
) -> Resolution {
    if let Some((ns, name)) = index.cluster_ip(addr.ip())
        && let Some(svc) = services.get(&ObjectRef::new(name).within(ns))
    {
        return resolve_service(&svc, slices, pods, index, addr.port(), None);
    }
    let pod = index
        .pod_at(addr.ip())
        .and_then(|(ns, name)| pods.get(&ObjectRef::new(name).within(ns)));
    match pod {
        Some(pod) => {
            let ep = endpoint(&pod);
            let annotations = pod.metadata.annotations.clone().unwrap_or_default();
            Resolution::Endpoints(Endpoints {
                namespace: ep.namespace.clone(),
                service: None,
                addrs: BTreeMap::from([(addr, ep)]),
                opaque: crate::opaque_port(&annotations, addr.port()),
            })
        }
        None => Resolution::NotFound,
    }
}

fn resolve_service(
    svc: &Service,
    slices: &Store<EndpointSlice>,
    pods: &Store<Pod>,
    index: &Index,
    port: u16,
    hostname: Option<&str>,
) -> Resolution {
    let (Some(spec), Some(name), Some(namespace)) = (
        svc.spec.as_ref(),
        svc.metadata.name.as_deref(),
        svc.metadata.namespace.as_deref(),
    ) else {
        return Resolution::NotFound;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Resolution::ExternalName;
    }
    let Some(port) = spec
        .ports
        .iter()
        .flatten()
        .find(|p| i32::from(port) == p.port)
    else {
        return Resolution::NotFound;
    };
    let port_name = port.name.as_deref().unwrap_or("");
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    let mut endpoints = Endpoints {
        namespace: namespace.to_string(),
        service: Some(name.to_string()),
        addrs: BTreeMap::new(),
        opaque: u16::try_from(port.port).is_ok_and(|p| crate::opaque_port(&annotations, p)),
    };
    let owned = index
        .slices_of(namespace, name)
        .into_iter()
        .filter_map(|slice| slices.get(&ObjectRef::new(&slice).within(namespace)));
    for slice in owned {
        let Some(slice_port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            // Unknown readiness means ready, as the API documents.
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            if let Some(hostname) = hostname
                && ep.hostname.as_deref() != Some(hostname)
            {
                continue;
            }
            // An endpoint that names a pod not yet in the cache waits for it
            // (the two arrive on separate watches): advertised early, a meshed
            // pod would go out without its identity. Endpoints that name no
            // pod (hand-made slices) carry no workload metadata.
            let endpoint = match ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
            {
                Some(pod_ref) => {
                    let pod_name = pod_ref.name.as_deref().unwrap_or_default();
                    let ns = pod_ref.namespace.as_deref().unwrap_or(namespace);
                    match pods.get(&ObjectRef::new(pod_name).within(ns)) {
                        Some(pod) => endpoint(&pod),
                        None => continue,
                    }
                }
                None => Endpoint {
                    namespace: namespace.to_string(),
                    pod: None,
                    owner: None,
                    service_account: None,
                    meshed: false,
                },
            };
            for addr in &ep.addresses {
                match addr.parse() {
                    Ok(ip) => {
                        endpoints
                            .addrs
                            .insert(SocketAddr::new(ip, slice_port), endpoint.clone());
                    }
                    Err(_) => {
                        tracing::debug!(%addr, "skipping an endpoint address that is not an IP")
                    }
                }
            }
        }
    }
    Resolution::Endpoints(endpoints)
}

/// The workload metadata of a pod.
fn endpoint(pod: &Pod) -> Endpoint {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| {
            // A Deployment's pods are owned by a ReplicaSet named after the
            // Deployment and the pod template's hash.
            let hash = meta
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"));
            match hash {
                Some(hash) if o.kind == "ReplicaSet" => {
                    match o.name.strip_suffix(&format!("-{hash}")) {
                        Some(deployment) => ("deployment".to_string(), deployment.to_string()),
                        None => ("replicaset".to_string(), o.name.clone()),
                    }
                }
                _ => (o.kind.to_ascii_lowercase(), o.name.clone()),
            }
        });
    let spec = pod.spec.as_ref();
    let service_account = spec
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_string());
    let meshed = spec.is_some_and(|s| {
        s.containers.iter().any(|c| c.name == PROXY_CONTAINER)
            || s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == PROXY_CONTAINER)
    });
    Endpoint {
        namespace: meta.namespace.clone().unwrap_or_default(),
        pod: meta.name.clone(),
        owner,
        service_account: Some(service_account),
        meshed,
    }
}

/// The objects Kubernetes holds for a topology: its Services and Pods, and
/// the EndpointSlices its endpoints controller would write for them. The
/// tests use it to give both backends the same world.
pub mod objects {
    use super::super::{Pod as TopoPod, TargetPort, Topology};
    use k8s_openapi::{
        api::{
            core::v1::{
                Container, ContainerPort, ObjectReference, Pod, PodIP, PodSpec, PodStatus, Service,
                ServicePort, ServiceSpec,
            },
            discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
        },
        apimachinery::pkg::{
            apis::meta::v1::{ObjectMeta, OwnerReference},
            util::intstr::IntOrString,
        },
    };
    use std::collections::BTreeMap;

    fn meta(name: &str, namespace: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        }
    }

    pub fn services(t: &Topology) -> Vec<Service> {
        t.services
            .iter()
            .map(|s| Service {
                metadata: ObjectMeta {
                    annotations: (!s.annotations.is_empty()).then(|| s.annotations.clone()),
                    ..meta(&s.name, &s.namespace)
                },
                spec: Some(ServiceSpec {
                    type_: Some(
                        if s.external_name.is_some() {
                            "ExternalName"
                        } else {
                            "ClusterIP"
                        }
                        .to_string(),
                    ),
                    external_name: s.external_name.clone(),
                    cluster_ip: s.cluster_ip.map(|ip| ip.to_string()),
                    cluster_ips: s.cluster_ip.map(|ip| vec![ip.to_string()]),
                    selector: (!s.selector.is_empty()).then(|| s.selector.clone()),
                    ports: Some(
                        s.ports
                            .iter()
                            .enumerate()
                            .map(|(i, p)| ServicePort {
                                // Kubernetes requires names once a service has several ports.
                                name: p.name.clone().or_else(|| Some(format!("port-{i}"))),
                                port: i32::from(p.port),
                                target_port: p.target_port.as_ref().map(|tp| match tp {
                                    TargetPort::Number(n) => IntOrString::Int(i32::from(*n)),
                                    TargetPort::Name(n) => IntOrString::String(n.clone()),
                                }),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect()
    }

    pub fn pods(t: &Topology) -> Vec<Pod> {
        t.pods.iter().map(pod).collect()
    }

    fn pod(p: &TopoPod) -> Pod {
        let mut metadata = meta(&p.name, &p.namespace);
        let mut labels = p.labels.clone();
        if let Some(owner) = &p.owner {
            let (kind, name) = if owner.kind.eq_ignore_ascii_case("deployment") {
                labels.insert("pod-template-hash".into(), "5d8f9c".into());
                ("ReplicaSet".to_string(), format!("{}-5d8f9c", owner.name))
            } else {
                (owner.kind.clone(), owner.name.clone())
            };
            metadata.owner_references = Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind,
                name,
                uid: format!("uid-{}", p.name),
                controller: Some(true),
                ..Default::default()
            }]);
        }
        metadata.labels = Some(labels);
        if !p.annotations.is_empty() {
            metadata.annotations = Some(p.annotations.clone());
        }
        let app = Container {
            name: "app".into(),
            ports: Some(
                p.ports
                    .iter()
                    .map(|(name, port)| ContainerPort {
                        name: Some(name.clone()),
                        container_port: i32::from(*port),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let mut containers = vec![app];
        if p.meshed {
            containers.push(Container {
                name: super::PROXY_CONTAINER.into(),
                ..Default::default()
            });
        }
        Pod {
            metadata,
            spec: Some(PodSpec {
                containers,
                service_account_name: Some(p.service_account.clone()),
                hostname: p.hostname.clone(),
                subdomain: p.subdomain.clone(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(p.ip.to_string()),
                pod_ips: Some(vec![PodIP {
                    ip: p.ip.to_string(),
                }]),
                // The local mesh's stopped processes are pods not running.
                phase: Some(if p.ready { "Running" } else { "Pending" }.into()),
                ..Default::default()
            }),
        }
    }

    /// One EndpointSlice per service port with a selector, as the endpoints
    /// controller writes them: every selected pod, ready or not, on the port
    /// its target port resolves to.
    pub fn endpoint_slices(t: &Topology) -> Vec<EndpointSlice> {
        let mut slices = Vec::new();
        for (svc, spec) in t.services.iter().zip(services(t)) {
            if svc.selector.is_empty() || svc.external_name.is_some() {
                continue;
            }
            let selected: Vec<&TopoPod> = t
                .pods
                .iter()
                .filter(|p| {
                    p.namespace == svc.namespace
                        && svc.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                })
                .collect();
            for (port, spec_port) in svc.ports.iter().zip(spec.spec.unwrap().ports.unwrap()) {
                // Pods resolve a named target port each on their own; group by the result.
                let mut by_port: BTreeMap<u16, Vec<&TopoPod>> = BTreeMap::new();
                for p in &selected {
                    let n = match &port.target_port {
                        None => Some(port.port),
                        Some(TargetPort::Number(n)) => Some(*n),
                        Some(TargetPort::Name(name)) => p.ports.get(name).copied(),
                    };
                    if let Some(n) = n {
                        by_port.entry(n).or_default().push(p);
                    }
                }
                for (n, pods) in by_port {
                    let mut metadata =
                        meta(&format!("{}-{}-{n}", svc.name, port.port), &svc.namespace);
                    metadata.labels = Some(BTreeMap::from([(
                        super::SERVICE_NAME_LABEL.to_string(),
                        svc.name.clone(),
                    )]));
                    slices.push(EndpointSlice {
                        metadata,
                        address_type: "IPv4".into(),
                        ports: Some(vec![EndpointPort {
                            name: spec_port.name.clone(),
                            port: Some(i32::from(n)),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        endpoints: pods
                            .iter()
                            .map(|p| Endpoint {
                                addresses: vec![p.ip.to_string()],
                                conditions: Some(EndpointConditions {
                                    ready: Some(p.ready),
                                    ..Default::default()
                                }),
                                hostname: p
                                    .hostname
                                    .clone()
                                    .filter(|_| p.subdomain.as_deref() == Some(svc.name.as_str())),
                                target_ref: Some(ObjectReference {
                                    kind: Some("Pod".into()),
                                    name: Some(p.name.clone()),
                                    namespace: Some(p.namespace.clone()),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            })
                            .collect(),
                    });
                }
            }
        }
        slices
    }
}

#[cfg(test)]
mod tests {
    use super::{super::Topology, *};

    fn topology(pods: &str) -> Topology {
        serde_saphyr::from_str(&format!(
            "services: [{{name: web, namespace: ns, clusterIP: 10.96.0.80, selector: {{app: web}}, ports: [{{port: 80}}]}}]\npods: {pods}\n"
        ))
        .unwrap()
    }

    fn addrs(r: &Resolution) -> Vec<String> {
        match r {
            Resolution::Endpoints(e) => e.addrs.keys().map(|a| a.to_string()).collect(),
            other => panic!("{other:?}"),
        }
    }

    /// The local backend's edits reach open streams through the same
    /// caches, index and wake-ups as the API's events.
    #[tokio::test]
    async fn a_fed_relist_updates_streams_and_forgets_what_is_gone() {
        let two = topology(
            "[{name: a, namespace: ns, ip: 10.0.0.1, labels: {app: web}}, {name: b, namespace: ns, ip: 10.0.0.2, labels: {app: web}, ready: false}]",
        );
        let (cache, mut feed) = KubeDiscovery::fed(&two);
        let mut by_name = cache.watch(&Target::Service {
            namespace: "ns".into(),
            name: "web".into(),
            port: 80,
        });
        let mut by_ip = cache.watch(&Target::Addr("10.96.0.80:80".parse().unwrap()));
        let mut pod_b = cache.watch(&Target::Addr("10.0.0.2:80".parse().unwrap()));
        assert_eq!(addrs(&by_name.borrow_and_update()), ["10.0.0.1:80"]);
        assert_eq!(addrs(&by_ip.borrow_and_update()), ["10.0.0.1:80"]);
        assert_eq!(addrs(&pod_b.borrow_and_update()), ["10.0.0.2:80"]);
        // A pod that is not ready is listed, but not running.
        // The store is a hash map: its order is not part of the contract.
        let mut running: Vec<_> = cache
            .pods()
            .into_iter()
            .map(|w| (w.ip.to_string(), w.running))
            .collect();
        running.sort();
        assert_eq!(
            running,
            [("10.0.0.1".to_string(), true), ("10.0.0.2".into(), false)]
        );

        feed.relist(&topology(
            "[{name: b, namespace: ns, ip: 10.0.0.2, labels: {app: web}}]",
        ));
        for rx in [&mut by_name, &mut by_ip] {
            tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(addrs(&rx.borrow_and_update()), ["10.0.0.2:80"]);
        }
        // Pod b's own address resolves as before: its stream hears nothing.
        tokio::task::yield_now().await;
        assert!(!pod_b.has_changed().unwrap());
        feed.relist(&topology("[]"));
        tokio::time::timeout(std::time::Duration::from_secs(5), pod_b.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*pod_b.borrow(), Resolution::NotFound);
    }
}
