//! `io.linkerd.proxy.destination.Destination`: streams a service's endpoints,
//! and every change to them, to the proxies that ask.

pub mod path;
mod profile;

use linkerd_discovery::{Discover, Endpoint, Endpoints, Resolution, Target, profile::Profiles};
use linkerd_proxy_api::{
    destination::{
        self as api, DestinationProfile, GetDestination, NoEndpoints, TlsIdentity, Update,
        WeightedAddr, WeightedAddrSet, destination_server, protocol_hint, tls_identity,
        update::Update as Kind,
    },
    net::TcpAddress,
};
use prometheus_client::{
    encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use std::{collections::HashMap, net::SocketAddr, sync::Arc};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Linkerd's default endpoint weight.
const WEIGHT: u32 = 10_000;

/// Names the destination service needs to describe endpoints.
#[derive(Clone, Debug)]
pub struct Config {
    pub cluster_domain: String,
    pub naming: linkerd_pki::Naming,
}

impl Config {
    /// The mesh identity of a workload (SPEC, "Identity").
    pub fn identity(&self, service_account: &str, namespace: &str) -> String {
        self.naming.identity(service_account, namespace)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    streams: Gauge,
    updates: Family<UpdateLabels, Counter>,
}

impl Metrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "destination_get_streams",
            "Open Get streams",
            self.streams.clone(),
        );
        registry.register(
            "destination_updates",
            "Updates sent on Get streams",
            self.updates.clone(),
        );
    }

    fn sent(&self, update: &Update) {
        let kind = match update.update {
            Some(Kind::Add(_)) => "add",
            Some(Kind::Remove(_)) => "remove",
            Some(Kind::NoEndpoints(_)) => "no_endpoints",
            None => "empty",
        };
        self.updates.get_or_create(&UpdateLabels { kind }).inc();
    }
}

/// `destination_updates`' `type` label: add, remove, no_endpoints.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct UpdateLabels {
    kind: &'static str,
}

impl EncodeLabelSet for UpdateLabels {
    fn encode(&self, set: &mut LabelSetEncoder) -> std::fmt::Result {
        ("type", self.kind).encode(set.encode_label())
    }
}

pub struct Destination<D> {
    discover: D,
    config: Arc<Config>,
    metrics: Metrics,
    /// Becomes true when the controller shuts down: streams never end on
    /// their own, so they end then, and proxies reconnect to another replica.
    shutdown: watch::Receiver<bool>,
}

impl<D: Discover> Destination<D> {
    pub fn new(
        discover: D,
        config: Config,
        metrics: Metrics,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            discover,
            config: Arc::new(config),
            metrics,
            shutdown,
        }
    }

    pub fn into_server(self) -> destination_server::DestinationServer<Self> {
        destination_server::DestinationServer::new(self)
    }

    fn target(&self, req: &GetDestination) -> Result<Target, Status> {
        path::parse(&req.path, &self.config.cluster_domain)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

type UpdateStream = ReceiverStream<Result<Update, Status>>;
type ProfileStream = ReceiverStream<Result<DestinationProfile, Status>>;

impl<D: Discover> Destination<D> {
    /// The profile of a pod's address, sent again whenever the pod changes
    /// (its readiness, identity or labels).
    fn endpoint_profiles(
        &self,
        addr: SocketAddr,
        mut resolutions: watch::Receiver<Resolution>,
    ) -> Response<ProfileStream> {
        let (tx, rx) = mpsc::channel(1);
        let mut shutdown = self.shutdown.clone();
        let config = self.config.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let (endpoint, opaque) = match &*resolutions.borrow_and_update() {
                    Resolution::Endpoints(e) => (
                        e.addrs.get(&addr).map(|ep| weighted(&config, addr, ep)),
                        e.opaque,
                    ),
                    _ => (None, false),
                };
                let now = (endpoint, opaque);
                if last.as_ref() != Some(&now) {
                    let profile = DestinationProfile {
                        endpoint: now.0.clone(),
                        opaque_protocol: now.1,
                        retry_budget: Some(profile::default_budget()),
                        ..Default::default()
                    };
                    if tx.send(Ok(profile)).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                tokio::select! {
                    changed = resolutions.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        });
        Response::new(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl<D: Discover + Profiles> destination_server::Destination for Destination<D> {
    type GetStream = UpdateStream;

    async fn get(&self, req: Request<GetDestination>) -> Result<Response<UpdateStream>, Status> {
        let req = req.into_inner();
        let target = self.target(&req)?;
        let mut resolutions = self.discover.watch(&target);
        // A name that is no service yet is not final: the stream says so
        // (`NoEndpoints{exists: false}`) and stays open, so a proxy that
        // asked before the Service was created balances over it as soon
        // as it has endpoints, as Linkerd's destination does.
        match &*resolutions.borrow_and_update() {
            Resolution::NotFound | Resolution::Endpoints(_) => {}
            Resolution::ExternalName => {
                return Err(Status::invalid_argument(format!(
                    "{} is an ExternalName service: resolve it with DNS",
                    req.path
                )));
            }
        }
        tracing::debug!(path = %req.path, "Get");
        let (tx, rx) = mpsc::channel(8);
        let mut translator = Translator::new(self.config.clone());
        let metrics = self.metrics.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            metrics.streams.inc();
            let mut resolution = resolutions.borrow().clone();
            'stream: loop {
                for update in translator.updates(&resolution) {
                    metrics.sent(&update);
                    if tx.send(Ok(update)).await.is_err() {
                        break 'stream;
                    }
                }
                tokio::select! {
                    changed = resolutions.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                    _ = tx.closed() => break,
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
                resolution = resolutions.borrow_and_update().clone();
            }
            metrics.streams.dec();
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type GetProfileStream = ProfileStream;

    /// A service's profile (its ServiceProfile, or an empty one with
    /// Linkerd's retry budget), sent again whenever the ServiceProfile
    /// changes, as Linkerd's destination does. A service is named, or
    /// reached by its cluster IP.
    async fn get_profile(
        &self,
        req: Request<GetDestination>,
    ) -> Result<Response<ProfileStream>, Status> {
        let req = req.into_inner();
        let target = self.target(&req)?;
        // An address has a name only when it is a service's cluster IP; a
        // pod's address gets the pod as its endpoint, as Linkerd's endpoint
        // profiles do, so a proxy that dialed a pod directly knows its
        // identity (mTLS) and that it speaks HTTP/2 to its proxy.
        let service = match &target {
            Target::Addr(addr) => {
                let mut resolutions = self.discover.watch(&target);
                let resolution = resolutions.borrow_and_update().clone();
                match resolution {
                    Resolution::Endpoints(e) if e.service.is_some() => {
                        e.service.clone().map(|s| (e.namespace.clone(), s))
                    }
                    Resolution::Endpoints(_) => {
                        return Ok(self.endpoint_profiles(*addr, resolutions));
                    }
                    _ => None,
                }
            }
            named => named
                .service()
                .map(|(ns, name, _)| (ns.to_string(), name.to_string())),
        };
        let (tx, rx) = mpsc::channel(1);
        let mut shutdown = self.shutdown.clone();
        let Some((namespace, name)) = service else {
            // Nothing to profile: an empty profile, held open.
            tokio::spawn(async move {
                if tx
                    .send(Ok(profile::translate(String::new(), None)))
                    .await
                    .is_ok()
                {
                    tokio::select! {
                        _ = tx.closed() => {}
                        _ = shutdown.wait_for(|stop| *stop) => {}
                    }
                }
            });
            return Ok(Response::new(ReceiverStream::new(rx)));
        };
        let fqdn = format!("{name}.{namespace}.svc.{}", self.config.cluster_domain);
        let mut profiles = self.discover.profile(&namespace, &fqdn);
        // Whether the port asked about is opaque follows the Service's
        // annotation.
        let mut resolutions = self.discover.watch(&target);
        let opaque = |r: &Resolution| matches!(r, Resolution::Endpoints(e) if e.opaque);
        tracing::debug!(path = %req.path, profile = %fqdn, "GetProfile");
        tokio::spawn(async move {
            let mut sent_opaque = opaque(&resolutions.borrow_and_update());
            loop {
                let current = profiles.borrow_and_update().clone();
                let mut answer = profile::translate(fqdn.clone(), current.as_deref());
                answer.opaque_protocol = sent_opaque;
                if tx.send(Ok(answer)).await.is_err() {
                    return;
                }
                loop {
                    tokio::select! {
                        changed = profiles.changed() => if changed.is_err() { return } else { break },
                        changed = resolutions.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            let now = opaque(&resolutions.borrow_and_update());
                            if now != sent_opaque {
                                sent_opaque = now;
                                break;
                            }
                        }
                        _ = tx.closed() => return,
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Turns successive resolutions of one target into the updates a proxy
/// needs to go from what it knows to what is true.
struct Translator {
    config: Arc<Config>,
    /// What the proxy was last told: the set's owner and its addresses.
    known: Endpoints,
    first: bool,
    /// The proxy was last told there is no such service.
    absent: bool,
}

impl Translator {
    fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            known: Endpoints::default(),
            first: true,
            absent: false,
        }
    }

    fn updates(&mut self, resolution: &Resolution) -> Vec<Update> {
        let first = std::mem::replace(&mut self.first, false);
        let mut out = Vec::new();
        let next = match resolution {
            Resolution::Endpoints(next) => next,
            // No such service (yet), or it went away or became an alias:
            // the proxy drops what it had and uses the original
            // destination until the service exists; said once.
            Resolution::NotFound | Resolution::ExternalName => {
                self.known = Endpoints::default();
                if std::mem::replace(&mut self.absent, true) && !first {
                    return Vec::new();
                }
                return vec![no_endpoints(false)];
            }
        };
        self.absent = false;
        // Set-level labels come with each add: when the owner changes (a
        // cluster IP given to another service), every address is re-sent.
        if (&self.known.namespace, &self.known.service) != (&next.namespace, &next.service) {
            self.known.addrs.retain(|a, _| !next.addrs.contains_key(a));
        }
        let removed: Vec<TcpAddress> = self
            .known
            .addrs
            .keys()
            .filter(|a| !next.addrs.contains_key(a))
            .map(|a| (*a).into())
            .collect();
        if !removed.is_empty() {
            out.push(Update {
                update: Some(Kind::Remove(api::AddrSet { addrs: removed })),
            });
        }
        let added: Vec<WeightedAddr> = next
            .addrs
            .iter()
            .filter(|(addr, ep)| self.known.addrs.get(addr) != Some(ep))
            .map(|(addr, ep)| weighted(&self.config, *addr, ep))
            .collect();
        if !added.is_empty() {
            let mut metric_labels =
                HashMap::from([("namespace".to_string(), next.namespace.clone())]);
            if let Some(service) = &next.service {
                metric_labels.insert("service".to_string(), service.clone());
            }
            out.push(Update {
                update: Some(Kind::Add(WeightedAddrSet {
                    addrs: added,
                    metric_labels,
                })),
            });
        }
        if next.addrs.is_empty() && (first || !self.known.addrs.is_empty()) {
            out.push(no_endpoints(true));
        }
        self.known = next.clone();
        out
    }
}

/// An endpoint as Linkerd describes it: its address, weight, metric
/// labels, and, when meshed, its identity and the H2 hint.
fn weighted(config: &Config, addr: SocketAddr, ep: &Endpoint) -> WeightedAddr {
    let mut labels = HashMap::new();
    if let Some(pod) = &ep.pod {
        labels.insert("pod".to_string(), pod.clone());
    }
    if let Some((kind, name)) = &ep.owner {
        labels.insert(kind.clone(), name.clone());
    }
    if let Some(sa) = &ep.service_account {
        labels.insert("serviceaccount".to_string(), sa.clone());
    }
    // The proxy's own control and admin ports are not redirected to it
    // (proxy-init skips them inbound): a client proxy's mesh TLS would
    // reach the admin or tap server itself, which speaks plaintext HTTP
    // (admin) or its own mTLS (tap). As in Linkerd, those ports are
    // plain endpoints: Prometheus' scrapes and the tap controller pass
    // through the caller's proxy untouched.
    let proxy_port = PROXY_OWN_PORTS.contains(&addr.port());
    let meshed = ep.meshed && !proxy_port;
    let meshed_sa = ep.service_account.as_deref().filter(|_| meshed);
    WeightedAddr {
        addr: Some(addr.into()),
        weight: WEIGHT,
        metric_labels: labels,
        tls_identity: meshed_sa.map(|sa| TlsIdentity {
            strategy: Some(tls_identity::Strategy::DnsLikeIdentity(
                tls_identity::DnsLikeIdentity {
                    name: config.identity(sa, &ep.namespace),
                },
            )),
            server_name: None,
        }),
        protocol_hint: meshed.then_some(api::ProtocolHint {
            protocol: Some(protocol_hint::Protocol::H2(protocol_hint::H2 {})),
            opaque_transport: None,
        }),
        ..Default::default()
    }
}

/// The proxy's control (tap) and admin ports, which proxy-init never
/// redirects.
const PROXY_OWN_PORTS: [u16; 2] = [4190, 4191];

fn no_endpoints(exists: bool) -> Update {
    Update {
        update: Some(Kind::NoEndpoints(NoEndpoints { exists })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> Arc<Config> {
        Arc::new(Config {
            cluster_domain: "cluster.local".into(),
            naming: linkerd_pki::Naming::default(),
        })
    }

    fn ep(pod: &str, meshed: bool) -> Endpoint {
        Endpoint {
            namespace: "emojivoto".into(),
            pod: Some(pod.into()),
            owner: Some(("deployment".into(), "web".into())),
            service_account: Some("web".into()),
            meshed,
        }
    }

    fn resolution(eps: &[(&str, Endpoint)]) -> Resolution {
        Resolution::Endpoints(Endpoints {
            namespace: "emojivoto".into(),
            service: Some("web".into()),
            addrs: eps
                .iter()
                .map(|(a, e)| (a.parse().unwrap(), e.clone()))
                .collect(),
            opaque: false,
        })
    }

    fn kinds(updates: &[Update]) -> Vec<String> {
        updates
            .iter()
            .map(|u| match &u.update {
                Some(Kind::Add(s)) => format!("add{}", s.addrs.len()),
                Some(Kind::Remove(s)) => format!("remove{}", s.addrs.len()),
                Some(Kind::NoEndpoints(n)) => format!("none(exists={})", n.exists),
                None => "empty".into(),
            })
            .collect()
    }

    #[test]
    fn diffs_successive_resolutions() {
        let mut t = Translator::new(config());
        assert_eq!(kinds(&t.updates(&resolution(&[]))), ["none(exists=true)"]);
        let two = resolution(&[
            ("10.0.0.1:80", ep("a", true)),
            ("10.0.0.2:80", ep("b", false)),
        ]);
        assert_eq!(kinds(&t.updates(&two)), ["add2"]);
        assert!(t.updates(&two).is_empty(), "no change, no update");
        // b leaves, a's metadata changes (unmeshed), c joins.
        let next = resolution(&[
            ("10.0.0.1:80", ep("a", false)),
            ("10.0.0.3:80", ep("c", true)),
        ]);
        assert_eq!(kinds(&t.updates(&next)), ["remove1", "add2"]);
        assert_eq!(
            kinds(&t.updates(&resolution(&[]))),
            ["remove2", "none(exists=true)"]
        );
        assert_eq!(
            kinds(&t.updates(&Resolution::NotFound)),
            ["none(exists=false)"]
        );
        assert!(t.updates(&Resolution::NotFound).is_empty(), "said once");
        // The service appears (again).
        let back = resolution(&[("10.0.0.1:80", ep("a", true))]);
        assert_eq!(kinds(&t.updates(&back)), ["add1"]);
        // NoEndpoints drops everything the proxy had.
        assert_eq!(
            kinds(&t.updates(&Resolution::NotFound)),
            ["none(exists=false)"]
        );
    }

    #[test]
    fn meshed_endpoints_carry_identity_and_h2_hint() {
        let mut t = Translator::new(config());
        let updates = t.updates(&resolution(&[
            ("10.0.0.1:8080", ep("web-1", true)),
            ("10.0.0.2:8080", ep("web-2", false)),
        ]));
        let Some(Kind::Add(set)) = &updates[0].update else {
            panic!("{updates:?}")
        };
        assert_eq!(set.metric_labels["namespace"], "emojivoto");
        assert_eq!(set.metric_labels["service"], "web");
        let meshed = &set.addrs[0];
        assert_eq!(meshed.weight, WEIGHT);
        assert_eq!(meshed.metric_labels["pod"], "web-1");
        assert_eq!(meshed.metric_labels["deployment"], "web");
        assert_eq!(meshed.metric_labels["serviceaccount"], "web");
        let Some(tls_identity::Strategy::DnsLikeIdentity(id)) = meshed
            .tls_identity
            .as_ref()
            .and_then(|t| t.strategy.clone())
        else {
            panic!("{meshed:?}")
        };
        assert_eq!(
            id.name,
            "web.emojivoto.serviceaccount.identity.linkerd.cluster.local"
        );
        assert!(matches!(
            meshed.protocol_hint.as_ref().and_then(|h| h.protocol),
            Some(protocol_hint::Protocol::H2(_))
        ));
        let plain = &set.addrs[1];
        assert!(plain.tls_identity.is_none() && plain.protocol_hint.is_none());
    }

    /// Scrapes of a pod's admin port and tap's calls to its control port
    /// must reach those servers as they are: no mesh TLS, no HTTP/2 hint.
    #[test]
    fn a_pods_proxy_ports_are_plain_endpoints() {
        let mut t = Translator::new(config());
        let addrs = ["10.0.0.9:4191", "10.0.0.9:4190", "10.0.0.9:8080"];
        let pod = Resolution::Endpoints(Endpoints {
            namespace: "data".into(),
            service: None,
            addrs: addrs
                .iter()
                .map(|a| (a.parse().unwrap(), ep("db-0", true)))
                .collect(),
            opaque: false,
        });
        let updates = t.updates(&pod);
        let Some(Kind::Add(set)) = &updates[0].update else {
            panic!("{updates:?}")
        };
        for a in &set.addrs {
            let port = a.addr.as_ref().unwrap().port;
            let meshed = a.tls_identity.is_some();
            assert_eq!(meshed, port == 8080, "{a:?}");
            assert_eq!(a.protocol_hint.is_some(), port == 8080, "{a:?}");
        }
    }

    #[test]
    fn a_pod_address_has_no_service_label_and_its_own_identity() {
        let mut t = Translator::new(config());
        let mut db = ep("db-0", true);
        db.namespace = "data".into();
        let pod = Resolution::Endpoints(Endpoints {
            namespace: "data".into(),
            service: None,
            addrs: BTreeMap::from([("10.0.0.9:5432".parse().unwrap(), db)]),
            opaque: false,
        });
        let updates = t.updates(&pod);
        let Some(Kind::Add(set)) = &updates[0].update else {
            panic!("{updates:?}")
        };
        assert_eq!(set.metric_labels.len(), 1);
        assert_eq!(set.metric_labels["namespace"], "data");
        let Some(tls_identity::Strategy::DnsLikeIdentity(id)) = set.addrs[0]
            .tls_identity
            .as_ref()
            .and_then(|t| t.strategy.clone())
        else {
            panic!()
        };
        assert_eq!(
            id.name,
            "web.data.serviceaccount.identity.linkerd.cluster.local"
        );
        // The same address now reached as a service's: re-sent with its set.
        let updates = t.updates(&resolution(&[("10.0.0.9:5432", ep("db-0", true))]));
        assert_eq!(kinds(&updates), ["add1"]);
    }
}
