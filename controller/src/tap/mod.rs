//! The tap controller: `TapByResource/Tap` finds a resource's meshed pods
//! through discovery, opens `Observe` on each pod's proxy over mesh TLS as
//! the tap identity, merges the streams, names each event's ends by their
//! pods, and holds the merged stream to `max_rps` requests a second: each
//! proxy is asked for its share of a second's requests, again every second
//! (so the proxies only do the work that is reported), and a token bucket
//! evens out the merge.

pub mod apiserver;
mod client;

pub use self::client::{Credentials, CredentialsConfig, CredentialsError, channel as tls_channel};
use futures_util::{Stream, StreamExt};
use linkerd_discovery::{Discover, Workload};
use linkerd_proxy_api::{
    http_types::HttpMethod,
    net::TcpAddress,
    tap::{
        ObserveRequest, TapEvent,
        observe_request::{
            Extract, Match,
            extract::{self, http as extract_http},
            r#match::{self as m, Http, Seq, Tcp, http as match_http, tcp},
        },
        tap_client::TapClient,
        tap_event,
    },
    tap_controller::{
        Resource, TapRequest, canonical_kind,
        tap_by_resource_server::{TapByResource, TapByResourceServer},
    },
};
use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, SocketAddr},
    pin::Pin,
    time::Instant,
};
use tonic::{Request, Response, Status};

/// The proxies' tap port.
pub const PROXY_TAP_PORT: u16 = 4190;
/// Requests a second a tap reports when the client does not say.
const DEFAULT_MAX_RPS: f64 = 100.0;
/// Proxies are asked for a second's worth of requests at a time, as
/// Linkerd's tap does: the rate is held at the source, so a tap of a busy
/// pod costs its proxy only the requests reported.
const TAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// How often, at most, an unknown address makes the pod list be read again.
const NAMES_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);
/// Events queued from all pods towards the client.
const QUEUE: usize = 1024;

/// Whether `w` belongs to `r`.
pub(crate) fn selects(r: &Resource, w: &Workload) -> bool {
    let ep = &w.endpoint;
    match r.r#type.as_str() {
        "namespace" => r.name.is_empty() || ep.namespace == r.name,
        kind => {
            let in_ns = r.namespace.is_empty() || ep.namespace == r.namespace;
            let named = match kind {
                "pod" => r.name.is_empty() || ep.pod.as_deref() == Some(r.name.as_str()),
                _ => ep
                    .owner
                    .as_ref()
                    .is_some_and(|(k, n)| k == kind && (r.name.is_empty() || *n == r.name)),
            };
            in_ns && named
        }
    }
}

/// The labels an event's end gets from its pod, as Linkerd's tap shows them.
fn pod_labels(w: &Workload) -> BTreeMap<String, String> {
    let ep = &w.endpoint;
    let mut labels = BTreeMap::from([("namespace".to_string(), ep.namespace.clone())]);
    if let Some(pod) = &ep.pod {
        labels.insert("pod".into(), pod.clone());
    }
    if let Some((kind, name)) = &ep.owner {
        labels.insert(kind.clone(), name.clone());
    }
    if let Some(sa) = &ep.service_account {
        labels.insert("serviceaccount".into(), sa.clone());
    }
    labels
}

use linkerd_pki::Naming;

/// A pod's identity: its service account's, or `default`'s.
pub(crate) fn identity(naming: &Naming, w: &Workload) -> String {
    let service_account = w.endpoint.service_account.as_deref().unwrap_or("default");
    naming.identity(service_account, &w.endpoint.namespace)
}

pub struct TapService<D> {
    discovery: D,
    credentials: Credentials,
    naming: Naming,
    /// Set when the controller shuts down: open taps end then.
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl<D: Discover> TapService<D> {
    pub fn new(
        discovery: D,
        credentials: Credentials,
        naming: Naming,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            discovery,
            credentials,
            naming,
            stopped,
        }
    }

    /// The gRPC server; the aggregated API shares the service.
    pub fn server(this: std::sync::Arc<Self>) -> TapByResourceServer<Self> {
        TapByResourceServer::from_arc(this)
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<TapEvent, Status>> + Send>>;

fn text_match(m: match_http::Match) -> Match {
    Match {
        r#match: Some(m::Match::Http(Http { r#match: Some(m) })),
    }
}

/// The proxies' match expression for a request's filters; `to` are the
/// destination pods' addresses when the request names one.
fn proxy_match(req: &TapRequest, to: Option<&[IpAddr]>) -> Result<Match, Status> {
    let mut all = Vec::new();
    if !req.method.is_empty() {
        let method =
            http::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                Status::invalid_argument(format!("{:?} is not an HTTP method", req.method))
            })?;
        all.push(text_match(match_http::Match::Method(HttpMethod::from(
            &method,
        ))));
    }
    if !req.path_prefix.is_empty() {
        all.push(text_match(match_http::Match::Path(
            match_http::StringMatch {
                r#match: Some(match_http::string_match::Match::Prefix(
                    req.path_prefix.clone(),
                )),
            },
        )));
    }
    if !req.authority.is_empty() {
        all.push(text_match(match_http::Match::Authority(
            match_http::StringMatch {
                r#match: Some(match_http::string_match::Match::Exact(
                    req.authority.clone(),
                )),
            },
        )));
    }
    if let Some(ips) = to {
        let any = ips
            .iter()
            .map(|ip| Match {
                r#match: Some(m::Match::Destination(Tcp {
                    r#match: Some(tcp::Match::Netmask(tcp::Netmask {
                        ip: Some((*ip).into()),
                        mask: if ip.is_ipv4() { 32 } else { 128 },
                    })),
                })),
            })
            .collect();
        all.push(Match {
            r#match: Some(m::Match::Any(Seq { matches: any })),
        });
    }
    // No filter: everything (`not any-of-nothing`).
    Ok(Match {
        r#match: Some(match all.len() {
            0 => m::Match::Not(Box::new(Match {
                r#match: Some(m::Match::Any(Seq { matches: vec![] })),
            })),
            _ => m::Match::All(Seq { matches: all }),
        }),
    })
}

fn check_resource(r: &Resource, what: &str) -> Result<Resource, Status> {
    let kind = canonical_kind(&r.r#type).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{what}: {:?} is not a resource type tap knows (deployment, statefulset, daemonset, replicaset, job, pod, namespace)",
            r.r#type
        ))
    })?;
    Ok(Resource {
        r#type: kind.into(),
        ..r.clone()
    })
}

#[tonic::async_trait]
impl<D: Discover> TapByResource for TapService<D> {
    type TapStream = Events;

    async fn tap(&self, req: Request<TapRequest>) -> Result<Response<Events>, Status> {
        let req = req.into_inner();
        let target = req
            .target
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("target is required"))?;
        let target = check_resource(target, "target")?;
        let to = req
            .to
            .as_ref()
            .filter(|r| !r.r#type.is_empty())
            .map(|r| check_resource(r, "to"))
            .transpose()?;
        let pods = self.discovery.pods();
        let names = Names::new(self.discovery.clone(), &pods);
        let tapped: Vec<&Workload> = pods.iter().filter(|w| selects(&target, w)).collect();
        if tapped.is_empty() {
            return Err(Status::not_found(format!(
                "no pods found for {}/{}{}",
                target.r#type,
                if target.name.is_empty() {
                    "*"
                } else {
                    &target.name
                },
                ns_suffix(&target)
            )));
        }
        let meshed: Vec<&Workload> = tapped.into_iter().filter(|w| w.endpoint.meshed).collect();
        if meshed.is_empty() {
            return Err(Status::failed_precondition(format!(
                "{}/{}{} has no meshed pods: inject it with `linkerd inject` first",
                target.r#type,
                target.name,
                ns_suffix(&target)
            )));
        }
        let to_ips: Option<Vec<IpAddr>> = to.as_ref().map(|to| {
            pods.iter()
                .filter(|w| selects(to, w))
                .map(|w| w.ip)
                .collect()
        });
        if let (Some(to), Some(ips)) = (&to, &to_ips)
            && ips.is_empty()
        {
            return Err(Status::not_found(format!(
                "no pods found for --to {}/{}{}",
                to.r#type,
                to.name,
                ns_suffix(to)
            )));
        }
        let max_rps = if req.max_rps > 0.0 {
            req.max_rps
        } else {
            DEFAULT_MAX_RPS
        };
        let per_pod = (max_rps * TAP_INTERVAL.as_secs_f64() / meshed.len() as f64)
            .ceil()
            .clamp(1.0, f64::from(u32::MAX)) as u32;
        let observe = ObserveRequest {
            limit: per_pod,
            r#match: Some(proxy_match(&req, to_ips.as_deref())?),
            extract: req.extract_headers.then_some(Extract {
                extract: Some(extract::Extract::Http(extract::Http {
                    extract: Some(extract_http::Extract::Headers(extract_http::Headers {})),
                })),
            }),
        };
        let tls = self.credentials.client_config().await.map_err(|e| {
            Status::unavailable(format!("the tap controller has no certificate yet: {e}"))
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        for w in meshed {
            let addr = SocketAddr::new(w.ip, PROXY_TAP_PORT);
            let channel = client::channel(addr, &identity(&self.naming, w), tls.clone());
            let mut client = TapClient::new(channel);
            // The first session is opened here, so a pod that cannot be
            // tapped fails the request with its reason.
            let first = client.observe(observe.clone()).await.map_err(|status| {
                Status::unavailable(format!(
                    "cannot tap pod {} ({addr}): {}",
                    w.endpoint.pod.as_deref().unwrap_or("?"),
                    status.message()
                ))
            })?;
            tokio::spawn(follow_pod(
                client,
                observe.clone(),
                first.into_inner(),
                tx.clone(),
            ));
        }
        let mut stopped = self.stopped.clone();
        let events =
            tokio_stream::wrappers::ReceiverStream::new(rx).take_until(Box::pin(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        Ok(Response::new(Box::pin(limited(events, max_rps, names))))
    }
}

/// Keeps tapping one pod, a second's worth of requests at a time, until the
/// client goes away (`tx` closes) or the pod's proxy does.
async fn follow_pod(
    mut client: TapClient<tonic::transport::Channel>,
    observe: ObserveRequest,
    mut events: tonic::Streaming<TapEvent>,
    tx: tokio::sync::mpsc::Sender<Result<TapEvent, Status>>,
) {
    loop {
        let started = tokio::time::Instant::now();
        loop {
            let event = tokio::select! {
                e = events.message() => e,
                _ = tx.closed() => return,
            };
            match event {
                Ok(Some(e)) => {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    let _ = tx
                        .send(Err(Status::unavailable(format!(
                            "a pod's tap ended: {}",
                            status.message()
                        ))))
                        .await;
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + TAP_INTERVAL) => {}
            _ = tx.closed() => return,
        }
        events = match client.observe(observe.clone()).await {
            Ok(rsp) => rsp.into_inner(),
            Err(status) => {
                let _ = tx
                    .send(Err(Status::unavailable(format!(
                        "cannot tap a pod any more: {}",
                        status.message()
                    ))))
                    .await;
                return;
            }
        };
    }
}

fn ns_suffix(r: &Resource) -> String {
    if r.namespace.is_empty() || r.r#type == "namespace" {
        String::new()
    } else {
        format!(" in namespace {}", r.namespace)
    }
}

/// The merged events, at most `max_rps` requests a second (a request's
/// later events pass if its first did), each end named by its pod.
fn limited<S, D>(
    events: S,
    max_rps: f64,
    mut names: Names<D>,
) -> impl Stream<Item = Result<TapEvent, Status>> + Send
where
    S: Stream<Item = Result<TapEvent, Status>> + Send + Unpin,
    D: Discover,
{
    let mut bucket = Bucket::new(max_rps);
    let mut passed: HashSet<(u32, u64, Option<SocketAddr>)> = HashSet::new();
    events.filter_map(move |event| {
        let out = match event {
            Err(status) => Some(Err(status)),
            Ok(mut e) => {
                let key = stream_key(&e);
                let keep = match phase(&e) {
                    Phase::Init => {
                        let ok = bucket.take();
                        if ok {
                            passed.insert(key);
                        }
                        ok
                    }
                    Phase::Response => passed.contains(&key),
                    Phase::End => passed.remove(&key),
                };
                keep.then(|| {
                    names.name_ends(&mut e);
                    Ok(e)
                })
            }
        };
        std::future::ready(out)
    })
}

enum Phase {
    Init,
    Response,
    End,
}

fn phase(e: &TapEvent) -> Phase {
    use tap_event::http::Event as H;
    match &e.event {
        Some(tap_event::Event::Http(h)) => match &h.event {
            Some(H::RequestInit(_)) => Phase::Init,
            Some(H::ResponseInit(_)) => Phase::Response,
            _ => Phase::End,
        },
        None => Phase::End,
    }
}

/// A request's id, unique across the merged proxies (their addresses tell
/// them apart).
fn stream_key(e: &TapEvent) -> (u32, u64, Option<SocketAddr>) {
    use tap_event::http::Event as H;
    let id = match &e.event {
        Some(tap_event::Event::Http(h)) => match &h.event {
            Some(H::RequestInit(r)) => r.id,
            Some(H::ResponseInit(r)) => r.id,
            Some(H::ResponseEnd(r)) => r.id,
            None => None,
        },
        None => None,
    };
    let id = id.unwrap_or_default();
    // The proxy that saw it: the inbound end's address, or the outbound
    // source's.
    let proxy = if e.proxy_direction == tap_event::ProxyDirection::Inbound as i32 {
        e.destination.as_ref()
    } else {
        e.source.as_ref()
    };
    (
        id.base,
        id.stream,
        proxy.and_then(|a| SocketAddr::try_from(a).ok()),
    )
}

fn ip_of(addr: Option<&TcpAddress>) -> Option<IpAddr> {
    let addr = addr?;
    SocketAddr::try_from(addr).ok().map(|a| a.ip())
}

/// Pods by address, to name events' ends; refreshed from discovery when an
/// address is not known (a pod that started since), at most every 100ms.
struct Names<D> {
    discovery: D,
    by_ip: BTreeMap<IpAddr, Workload>,
    refreshed: Instant,
}

impl<D: Discover> Names<D> {
    fn new(discovery: D, pods: &[Workload]) -> Self {
        Self {
            discovery,
            by_ip: pods.iter().map(|w| (w.ip, w.clone())).collect(),
            refreshed: Instant::now(),
        }
    }

    fn lookup(&mut self, ip: IpAddr) -> Option<&Workload> {
        if !self.by_ip.contains_key(&ip) && self.refreshed.elapsed() >= NAMES_REFRESH {
            self.by_ip = self
                .discovery
                .pods()
                .into_iter()
                .map(|w| (w.ip, w))
                .collect();
            self.refreshed = Instant::now();
        }
        self.by_ip.get(&ip)
    }

    /// Adds each end's pod labels (`pod`, `namespace`, `deployment`, ...).
    fn name_ends(&mut self, e: &mut TapEvent) {
        let ends = [
            (
                ip_of(e.source.as_ref()),
                e.source_meta.get_or_insert_default(),
            ),
            (
                ip_of(e.destination.as_ref()),
                e.destination_meta.get_or_insert_default(),
            ),
        ];
        for (addr, meta) in ends {
            if let Some(w) = addr.and_then(|ip| self.lookup(ip)) {
                for (k, v) in pod_labels(w) {
                    meta.labels.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// A token bucket holding a second's worth of requests: a burst passes, a
/// sustained excess does not.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Self {
            rate,
            tokens: rate.max(1.0),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate.max(1.0));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_discovery::Endpoint;

    fn workload(ns: &str, pod: &str, owner: Option<(&str, &str)>, ip: &str) -> Workload {
        Workload {
            ip: ip.parse().unwrap(),
            endpoint: Endpoint {
                namespace: ns.into(),
                pod: Some(pod.into()),
                owner: owner.map(|(k, n)| (k.into(), n.into())),
                service_account: Some("web".into()),
                meshed: true,
            },
            running: true,
            failed: false,
        }
    }

    fn resource(kind: &str, ns: &str, name: &str) -> Resource {
        Resource {
            r#type: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn resources_select_their_pods() {
        let web = workload(
            "emojivoto",
            "web-1",
            Some(("deployment", "web")),
            "10.0.0.1",
        );
        let db = workload("data", "db-0", Some(("statefulset", "db")), "10.0.0.2");
        assert_eq!(canonical_kind("deploy"), Some("deployment"));
        assert_eq!(canonical_kind("STS"), Some("statefulset"));
        assert_eq!(canonical_kind("svc"), None);
        assert!(selects(&resource("deployment", "emojivoto", "web"), &web));
        assert!(!selects(&resource("deployment", "other", "web"), &web));
        assert!(!selects(&resource("deployment", "emojivoto", "web"), &db));
        assert!(selects(&resource("statefulset", "data", ""), &db));
        assert!(selects(&resource("pod", "emojivoto", "web-1"), &web));
        assert!(selects(&resource("namespace", "", "data"), &db));
        assert!(!selects(&resource("namespace", "", "data"), &web));
    }

    #[test]
    fn the_bucket_holds_the_rate() {
        let mut b = Bucket::new(5.0);
        let passed = (0..50).filter(|_| b.take()).count();
        assert_eq!(passed, 5, "a burst of a second's worth, then nothing");
    }

    #[test]
    fn filters_become_one_match() {
        let req = TapRequest {
            method: "get".into(),
            path_prefix: "/api".into(),
            ..Default::default()
        };
        let m = proxy_match(&req, Some(&["10.0.0.1".parse().unwrap()])).unwrap();
        let Some(m::Match::All(seq)) = m.r#match else {
            panic!("{m:?}")
        };
        assert_eq!(seq.matches.len(), 3);
        let bad = TapRequest {
            method: "G E T".into(),
            ..Default::default()
        };
        assert!(proxy_match(&bad, None).is_err());
        let all = proxy_match(&TapRequest::default(), None).unwrap();
        assert!(matches!(all.r#match, Some(m::Match::Not(_))));
    }
}
