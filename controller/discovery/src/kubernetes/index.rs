//! What the caches are looked up by, kept from the watches' events, and who
//! must hear of each event.
//!
//! A resolution reads a service's own EndpointSlices (not every slice), a
//! cluster IP's service and a pod IP's pod by lookup, not by scanning the
//! caches. A stream waits on its own key (its service, or its address), so
//! an event wakes only the streams whose answer it can change: a Service
//! its own key and its cluster IPs'; an EndpointSlice its service's; a Pod
//! its addresses' and the services whose slices name it. A relist (after
//! `410 Gone` or an outage) may change anything, so its end wakes every
//! stream once.

use k8s_openapi::api::{
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    sync::Mutex,
};
use tokio::sync::watch;

/// (namespace, name).
pub(super) type Name = (String, String);

/// What a stream waits on.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) enum Key {
    Service(Name),
    Ip(IpAddr),
    Profile(Name),
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Name {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// One EndpointSlice: its service, and the pods it names.
#[derive(Debug, Default)]
struct Slice {
    service: Option<String>,
    pods: Vec<Name>,
}

/// A kind whose relist is in progress: what it has listed so far.
type Seen = Option<HashSet<Name>>;

#[derive(Debug, Default)]
pub(super) struct Index {
    slices: HashMap<Name, Slice>,
    /// A service's slices, by their names (in the service's namespace).
    by_service: HashMap<Name, BTreeSet<String>>,
    service_ips: HashMap<Name, Vec<IpAddr>>,
    cluster_ips: HashMap<IpAddr, Name>,
    pod_ips: HashMap<Name, Vec<IpAddr>>,
    pods_by_ip: HashMap<IpAddr, Name>,
    /// The services whose slices name a pod, with how many slices do.
    pod_services: HashMap<Name, HashMap<Name, usize>>,
    seen_services: Seen,
    seen_slices: Seen,
    seen_pods: Seen,
}

impl Index {
    /// The names of the service's EndpointSlices.
    pub(super) fn slices_of(&self, namespace: &str, name: &str) -> Vec<String> {
        self.by_service
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The service whose cluster IP this is.
    pub(super) fn cluster_ip(&self, ip: IpAddr) -> Option<&Name> {
        self.cluster_ips.get(&ip)
    }

    /// The pod with this IP (host-network pods have none of their own).
    pub(super) fn pod_at(&self, ip: IpAddr) -> Option<&Name> {
        self.pods_by_ip.get(&ip)
    }

    /// A service's own key and its cluster IPs'.
    fn service_keys(&self, svc: &Name, out: &mut Vec<Key>) {
        out.push(Key::Service(svc.clone()));
        for ip in self.service_ips.get(svc).into_iter().flatten() {
            out.push(Key::Ip(*ip));
        }
    }

    pub(super) fn service(&mut self, svc: &Service, out: &mut Vec<Key>) {
        let name = name_of(&svc.metadata);
        if let Some(seen) = &mut self.seen_services {
            seen.insert(name.clone());
        }
        self.service_keys(&name, out);
        for ip in self.service_ips.remove(&name).into_iter().flatten() {
            if self.cluster_ips.get(&ip) == Some(&name) {
                self.cluster_ips.remove(&ip);
            }
        }
        let spec = svc.spec.as_ref();
        let ips: Vec<IpAddr> = spec
            .and_then(|s| s.cluster_ips.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(spec.and_then(|s| s.cluster_ip.clone()))
            .filter_map(|ip| ip.parse().ok())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for ip in &ips {
            self.cluster_ips.insert(*ip, name.clone());
        }
        self.service_ips.insert(name.clone(), ips);
        self.service_keys(&name, out);
    }

    pub(super) fn remove_service(&mut self, svc: &Service, out: &mut Vec<Key>) {
        self.forget_service(&name_of(&svc.metadata), out);
    }

    fn forget_service(&mut self, name: &Name, out: &mut Vec<Key>) {
        self.service_keys(name, out);
        for ip in self.service_ips.remove(name).into_iter().flatten() {
            if self.cluster_ips.get(&ip) == Some(name) {
                self.cluster_ips.remove(&ip);
            }
        }
    }

    pub(super) fn slice(&mut self, slice: &EndpointSlice, out: &mut Vec<Key>) {
        let name = name_of(&slice.metadata);
        if let Some(seen) = &mut self.seen_slices {
            seen.insert(name.clone());
        }
        self.forget_slice(&name, out);
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(super::SERVICE_NAME_LABEL))
            .cloned();
        let pods: Vec<Name> = slice
            .endpoints
            .iter()
            .filter_map(|ep| ep.target_ref.as_ref())
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            .map(|r| {
                (
                    r.namespace.clone().unwrap_or_else(|| name.0.clone()),
                    r.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        if let Some(svc) = &service {
            let svc = (name.0.clone(), svc.clone());
            self.by_service
                .entry(svc.clone())
                .or_default()
                .insert(name.1.clone());
            for pod in &pods {
                *self
                    .pod_services
                    .entry(pod.clone())
                    .or_default()
                    .entry(svc.clone())
                    .or_default() += 1;
            }
            self.service_keys(&svc, out);
        }
        self.slices.insert(name, Slice { service, pods });
    }

    pub(super) fn remove_slice(&mut self, slice: &EndpointSlice, out: &mut Vec<Key>) {
        self.forget_slice(&name_of(&slice.metadata), out);
    }

    fn forget_slice(&mut self, name: &Name, out: &mut Vec<Key>) {
        let Some(old) = self.slices.remove(name) else {
            return;
        };
        let Some(svc) = old.service else { return };
        let svc = (name.0.clone(), svc);
        if let Some(names) = self.by_service.get_mut(&svc) {
            names.remove(&name.1);
            if names.is_empty() {
                self.by_service.remove(&svc);
            }
        }
        for pod in &old.pods {
            if let Some(services) = self.pod_services.get_mut(pod) {
                if let Some(n) = services.get_mut(&svc) {
                    *n -= 1;
                    if *n == 0 {
                        services.remove(&svc);
                    }
                }
                if services.is_empty() {
                    self.pod_services.remove(pod);
                }
            }
        }
        self.service_keys(&svc, out);
    }

    pub(super) fn pod(&mut self, pod: &Pod, out: &mut Vec<Key>) {
        let name = name_of(&pod.metadata);
        if let Some(seen) = &mut self.seen_pods {
            seen.insert(name.clone());
        }
        self.forget_pod(&name, out);
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        // A host-network pod shares its node's IP: that IP is not the pod.
        let ips: Vec<IpAddr> = if host_network {
            Vec::new()
        } else {
            let status = pod.status.as_ref();
            status
                .and_then(|s| s.pod_ips.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|i| i.ip)
                .chain(status.and_then(|s| s.pod_ip.clone()))
                .filter_map(|ip| ip.parse().ok())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        for ip in &ips {
            self.pods_by_ip.insert(*ip, name.clone());
            out.push(Key::Ip(*ip));
        }
        self.pod_ips.insert(name.clone(), ips);
        self.pod_service_keys(&name, out);
    }

    pub(super) fn remove_pod(&mut self, pod: &Pod, out: &mut Vec<Key>) {
        let name = name_of(&pod.metadata);
        self.forget_pod(&name, out);
        self.pod_service_keys(&name, out);
    }

    fn forget_pod(&mut self, name: &Name, out: &mut Vec<Key>) {
        for ip in self.pod_ips.remove(name).into_iter().flatten() {
            if self.pods_by_ip.get(&ip) == Some(name) {
                self.pods_by_ip.remove(&ip);
            }
            out.push(Key::Ip(ip));
        }
    }

    fn pod_service_keys(&self, pod: &Name, out: &mut Vec<Key>) {
        let services: Vec<Name> = self
            .pod_services
            .get(pod)
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        for svc in services {
            self.service_keys(&svc, out);
        }
    }

    /// A relist of `kind` begins: what it lists is noted, so that what it
    /// no longer has can be forgotten at its end.
    pub(super) fn relist_started(&mut self, kind: Kind) {
        *self.seen(kind) = Some(HashSet::new());
    }

    /// A relist ended: forgets what it did not list.
    pub(super) fn relist_done(&mut self, kind: Kind) {
        let Some(seen) = self.seen(kind).take() else {
            return;
        };
        let mut ignored = Vec::new();
        match kind {
            Kind::Services => {
                let gone: Vec<Name> = self
                    .service_ips
                    .keys()
                    .filter(|n| !seen.contains(*n))
                    .cloned()
                    .collect();
                for n in gone {
                    self.forget_service(&n, &mut ignored);
                }
            }
            Kind::Slices => {
                let gone: Vec<Name> = self
                    .slices
                    .keys()
                    .filter(|n| !seen.contains(*n))
                    .cloned()
                    .collect();
                for n in gone {
                    self.forget_slice(&n, &mut ignored);
                }
            }
            Kind::Pods => {
                let gone: Vec<Name> = self
                    .pod_ips
                    .keys()
                    .filter(|n| !seen.contains(*n))
                    .cloned()
                    .collect();
                for n in gone {
                    self.forget_pod(&n, &mut ignored);
                }
            }
        }
    }

    fn seen(&mut self, kind: Kind) -> &mut Seen {
        match kind {
            Kind::Services => &mut self.seen_services,
            Kind::Slices => &mut self.seen_slices,
            Kind::Pods => &mut self.seen_pods,
        }
    }
}

/// The kinds the index follows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Services,
    Slices,
    Pods,
}

/// The streams waiting on each key: a key's sender lives while a stream
/// holds its receiver.
#[derive(Debug, Default)]
pub(super) struct Notifiers(Mutex<HashMap<Key, watch::Sender<()>>>);

impl Notifiers {
    pub(super) fn subscribe(&self, key: Key) -> watch::Receiver<()> {
        let mut keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.entry(key)
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    /// Wakes the streams waiting on `keys`; forgets keys nobody waits on.
    pub(super) fn notify(&self, keys: Vec<Key>) {
        if keys.is_empty() {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some(tx) = map.get(&key) {
                if tx.receiver_count() == 0 {
                    map.remove(&key);
                } else {
                    tx.send_replace(());
                }
            }
        }
    }

    /// Wakes every stream (the end of a relist).
    pub(super) fn notify_all(&self) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        for tx in map.values() {
            tx.send_replace(());
        }
    }

    /// How many keys have waiting streams (for tests and metrics).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The index and the notifiers, as the event loops and the streams share
/// them.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) index: Mutex<Index>,
    pub(super) notifiers: Notifiers,
}

impl Shared {
    pub(super) fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::{super::objects, *};
    use crate::Topology;

    fn topology() -> Topology {
        serde_saphyr::from_str(
            r#"
services:
  - {name: web, namespace: emojivoto, clusterIP: 10.96.0.80, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
  - {name: db, namespace: emojivoto, clusterIP: 10.96.0.90, selector: {app: db}, ports: [{port: 5432}]}
pods:
  - {name: web-1, namespace: emojivoto, ip: 10.0.0.1, labels: {app: web}}
  - {name: web-2, namespace: emojivoto, ip: 10.0.0.2, labels: {app: web}}
  - {name: db-0, namespace: emojivoto, ip: 10.0.0.9, labels: {app: db}}
"#,
        )
        .unwrap()
    }

    fn indexed(t: &Topology) -> Index {
        let mut index = Index::default();
        let mut keys = Vec::new();
        for o in objects::services(t) {
            index.service(&o, &mut keys);
        }
        for o in objects::endpoint_slices(t) {
            index.slice(&o, &mut keys);
        }
        for o in objects::pods(t) {
            index.pod(&o, &mut keys);
        }
        index
    }

    fn svc(name: &str) -> Key {
        Key::Service(("emojivoto".into(), name.into()))
    }

    fn ip(s: &str) -> Key {
        Key::Ip(s.parse().unwrap())
    }

    #[test]
    fn lookups_find_slices_services_and_pods() {
        let index = indexed(&topology());
        assert_eq!(index.slices_of("emojivoto", "web"), ["web-80-8080"]);
        assert_eq!(
            index.cluster_ip("10.96.0.90".parse().unwrap()),
            Some(&("emojivoto".to_string(), "db".to_string()))
        );
        assert_eq!(
            index.pod_at("10.0.0.2".parse().unwrap()),
            Some(&("emojivoto".to_string(), "web-2".to_string()))
        );
        assert!(index.pod_at("10.0.0.7".parse().unwrap()).is_none());
    }

    /// An event names only the streams whose answer it can change.
    #[test]
    fn an_event_concerns_only_its_own_streams() {
        let mut t = topology();
        let mut index = indexed(&t);
        // web's slice changes (a pod leaves it): web, by name and cluster IP.
        t.pods.retain(|p| p.name != "web-2");
        let mut keys = Vec::new();
        let web = objects::endpoint_slices(&t)
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some("web-80-8080"))
            .unwrap();
        index.slice(&web, &mut keys);
        let keys: HashSet<Key> = keys.into_iter().collect();
        assert_eq!(keys, HashSet::from([svc("web"), ip("10.96.0.80")]));
        // A pod's change: its address, and the services whose slices name it.
        let mut keys = Vec::new();
        index.pod(&objects::pods(&t)[0], &mut keys);
        let keys: HashSet<Key> = keys.into_iter().collect();
        assert_eq!(
            keys,
            HashSet::from([ip("10.0.0.1"), svc("web"), ip("10.96.0.80")])
        );
        // web-2 is in no slice any more: its change is its address's alone.
        let web2 = &objects::pods(&topology())[1];
        let mut keys = Vec::new();
        index.remove_pod(web2, &mut keys);
        assert_eq!(keys, [ip("10.0.0.2")]);
        assert!(index.pod_at("10.0.0.2".parse().unwrap()).is_none());
    }

    /// A relist forgets what it no longer lists.
    #[test]
    fn a_relist_forgets_what_is_gone() {
        let mut t = topology();
        let mut index = indexed(&t);
        t.services.retain(|s| s.name != "db");
        index.relist_started(Kind::Services);
        for o in objects::services(&t) {
            index.service(&o, &mut Vec::new());
        }
        index.relist_done(Kind::Services);
        assert!(index.cluster_ip("10.96.0.90".parse().unwrap()).is_none());
        assert!(index.cluster_ip("10.96.0.80".parse().unwrap()).is_some());
    }

    #[tokio::test]
    async fn notifiers_wake_only_their_keys_and_forget_unwatched_ones() {
        let n = Notifiers::default();
        let mut web = n.subscribe(svc("web"));
        let db = n.subscribe(svc("db"));
        n.notify(vec![svc("web")]);
        assert!(web.has_changed().unwrap());
        assert!(!db.has_changed().unwrap());
        web.borrow_and_update();
        drop(db);
        n.notify(vec![svc("db")]);
        assert_eq!(n.len(), 1, "nobody waits on db any more");
        n.notify_all();
        assert!(web.has_changed().unwrap());
    }
}
