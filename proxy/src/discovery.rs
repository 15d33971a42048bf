//! Outbound service discovery and load balancing.
//!
//! An outbound request whose authority names a service (e.g.
//! `web.emojivoto.svc.cluster.local:80`), or a connection whose original
//! destination is in the cluster's networks (a service's cluster IP), is
//! resolved through the destination service and balanced over the service's
//! endpoints, as linkerd2-proxy does: HTTP per request, by tower's power of two
//! choices over peak-EWMA latency; opaque TCP per connection, by power of two
//! choices over open connections. Names and addresses destination does not
//! know go to their original destination.
//!
//! Requests and connections are counted against the endpoint that served
//! them, with destination's labels for it (`dst_pod`, `dst_deployment`, ...).
//!
//! A route lives while connections hold it, and for
//! `LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT` after: then its
//! destination stream, its balancers and their endpoints go with it.

use crate::{
    cache::IdleCache,
    config::{DestinationConfig, QueueConfig},
    control::unless_unwatched,
    failfast::FailFast,
    http::{Checkin, Clients, Healthy, RequestBody, SendError, Target},
    identity::Local,
    metrics::{Class, Direction, DstLabels, RouteStats},
    profile::ProfileWatch,
    tcp,
    transport::Conn,
};
use http::{Request, Response};
use hyper::body::Incoming;
use linkerd_proxy_api::destination::{
    GetDestination, WeightedAddr, destination_client::DestinationClient, protocol_hint,
    tls_identity, update::Update as Kind,
};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};
use tokio::sync::watch;
use tokio_stream::{Stream, wrappers::WatchStream};
use tonic::{Code, transport::Channel};
use tower::{
    ServiceExt,
    balance::p2c::Balance,
    buffer::Buffer,
    discover::Change,
    load::{
        CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover, completion::TrackCompletion,
        pending_requests::Handle,
    },
    util::Oneshot,
};

/// Latency assumed for an endpoint before it has answered anything.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How quickly peak-EWMA forgets a slow response.
const DECAY: Duration = Duration::from_secs(10);
/// Connections queued for a TCP balancer before callers wait.
const TCP_QUEUE: usize = 1_000;
/// How long a request waits for a name's first resolution before it goes to
/// its original destination instead.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an opaque connection may wait for a balanced endpoint to accept
/// it, across attempts, before the client's connection is closed.
const TCP_FAILFAST: Duration = Duration::from_secs(3);
/// Connect attempts for an opaque connection: an endpoint that refuses goes
/// out of rotation, so the next attempt picks another.
const TCP_ATTEMPTS: usize = 3;

type Req = Request<RequestBody>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response, and what served it.
pub(crate) struct Answer {
    pub(crate) rsp: Response<Incoming>,
    pub(crate) checkin: Option<Checkin>,
    /// The balanced endpoint's series (which has counted the request).
    pub(crate) served_by: Option<Arc<RouteStats>>,
}

type HttpBalance = FailFast<Balance<PeakEwmaDiscover<Changes<Endpoint>>, Req>>;
/// A shared handle on one route's HTTP balancer: requests queue for it, and
/// fail fast when no endpoint has been able to take one for a while.
type Balancer = Buffer<Req, <HttpBalance as tower::Service<Req>>::Future>;
type TcpBalance = Balance<PendingRequestsDiscover<Changes<Connector>, UntilClosed>, ()>;
/// A shared handle on one route's TCP balancer.
type TcpBalancer = Buffer<(), <TcpBalance as tower::Service<()>>::Future>;

/// What destination says about each endpoint, by address.
pub(crate) type Endpoints = Arc<BTreeMap<SocketAddr, Arc<EndpointMeta>>>;

/// What destination says about one endpoint. Connections to it are shaped
/// by all of it, so it is part of the key its connections are shared under.
#[derive(Debug, Default, Hash, PartialEq, Eq)]
pub(crate) struct EndpointMeta {
    pub(crate) labels: Arc<DstLabels>,
    /// The identity of the endpoint's proxy: connections to it are mesh
    /// TLS, and its certificate must prove this name.
    pub(crate) identity: Option<Arc<str>>,
    /// The endpoint's proxy takes HTTP/2: HTTP/1 requests travel over it.
    pub(crate) h2: bool,
}

/// What a name resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Destination has not answered yet.
    Pending,
    /// Not a service destination knows: use the original destination.
    NotAService,
    /// The service's endpoints (maybe none).
    Endpoints(Endpoints),
}

pub(crate) type SendFuture = Pin<Box<dyn Future<Output = Result<Answer, DispatchError>> + Send>>;

/// A resolved service has no endpoints: the request fails fast.
#[derive(Debug, thiserror::Error)]
#[error("the service has no endpoints")]
pub(crate) struct NoEndpoints;

/// Why a request sent through discovery got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    #[error(transparent)]
    NoEndpoints(#[from] NoEndpoints),
    /// No endpoint could take a request for the fail-fast timeout.
    #[error(transparent)]
    Unavailable(#[from] crate::failfast::Unavailable),
    /// The endpoint (or original destination) it went to failed it.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The balancer itself failed (its queue's worker is gone).
    #[error("the service's balancer failed: {0}")]
    Balancer(BoxError),
    /// Its profile route's timeout passed before a response (across its
    /// attempts).
    #[error("the route's timeout of {0:?} passed")]
    Timeout(Duration),
    /// The client's request body failed while the proxy read it to keep
    /// for a retry.
    #[error("the request body failed: {0}")]
    ClientBody(BoxError),
}

impl DispatchError {
    /// The one place that knows what the balancer stack wraps: tower's
    /// balancer and queue pass errors on boxed, so they are typed again
    /// here, once, for the layer that turns them into responses.
    fn from_balancer(e: BoxError) -> Self {
        let e = match e.downcast::<EndpointError>() {
            Ok(e) => return Self::Endpoint(*e),
            Err(e) => e,
        };
        let e = match e.downcast::<crate::failfast::Unavailable>() {
            Ok(e) => return Self::Unavailable(*e),
            Err(e) => e,
        };
        match e.downcast::<NoEndpoints>() {
            Ok(e) => Self::NoEndpoints(*e),
            Err(e) => Self::Balancer(e),
        }
    }
}

/// Why a balanced endpoint (or the original destination) gave no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointError {
    /// It took the request and failed it: the request was counted in its
    /// series (`stats`), so its failure is too.
    #[error("{source}")]
    Failed {
        stats: Arc<RouteStats>,
        #[source]
        source: crate::http::ClientError,
    },
    /// No connection to it could be made (it stopped accepting, say, as a
    /// pod's proxy does when the pod terminates): the request never left,
    /// so another endpoint may take it.
    #[error("{source}")]
    Unreachable {
        #[source]
        source: crate::http::ClientError,
        req: Unsent,
    },
}

/// A request no endpoint has seen, on its way back to the balancer. The
/// balancer's errors are shared between threads, so it sits in a mutex; and
/// boxed, so that errors stay small on the way that does not need it.
pub(crate) struct Unsent(Box<std::sync::Mutex<Req>>);

impl Unsent {
    fn new(req: Req) -> Self {
        Self(Box::new(std::sync::Mutex::new(req)))
    }

    fn into_inner(self) -> Req {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsent").finish_non_exhaustive()
    }
}

/// How many endpoints a request is offered before an unreachable one's
/// error is the answer. Each refusal takes that endpoint out of rotation,
/// so the next try goes elsewhere; the bound keeps a service whose every
/// endpoint refuses from costing more than a few connects per request.
const UNREACHABLE_TRIES: usize = 3;

/// A request handed to a target whose series it belongs to: counted there
/// at once and, if the caller gives up before the answer, counted there as
/// a failure without a status. A cancelled request belongs to where it was
/// dispatched, never to a series it did not reach.
struct InFlight {
    stats: Option<Arc<RouteStats>>,
    sent: Instant,
}

impl InFlight {
    fn new(stats: Arc<RouteStats>) -> Self {
        stats.request();
        Self {
            stats: Some(stats),
            sent: Instant::now(),
        }
    }

    /// The target answered (or failed): the response is the caller's to
    /// record, in the series this returns.
    fn answered(mut self) -> Arc<RouteStats> {
        self.stats.take().expect("answered at most once")
    }

    /// The request never left: it gets no response in this series (its
    /// count stays, as an attempt).
    fn withdraw(mut self) {
        self.stats = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take() {
            stats.response(None, None, Class::Failure, self.sent.elapsed());
        }
    }
}

/// The original destination of a request whose name may be a service, and
/// the series its requests there are counted in.
pub(crate) type Fallback = (Arc<Target>, Arc<RouteStats>);

/// How a request to a service name is sent.
#[derive(Clone)]
pub(crate) enum Dispatch {
    /// It is not: the service has no endpoints.
    NoEndpoints,
    /// Over the service's endpoints.
    Balanced(Arc<Route>),
    /// Once destination first answers: balanced, or to the original
    /// destination if the name is not a service.
    WhenResolved(Arc<Route>, Fallback),
}

impl Dispatch {
    /// How to send to `route` as it resolves now; `None` if the name is not
    /// a service (the request goes to its original destination, `fallback`).
    pub(crate) fn new(route: Arc<Route>, fallback: impl FnOnce() -> Fallback) -> Option<Self> {
        let state = route.resolution.borrow().clone();
        match state {
            Resolution::NotAService => None,
            Resolution::Endpoints(e) if e.is_empty() => Some(Self::NoEndpoints),
            Resolution::Endpoints(_) => Some(Self::Balanced(route)),
            Resolution::Pending => Some(Self::WhenResolved(route, fallback())),
        }
    }

    pub(crate) fn send(self, req: Req) -> SendFuture {
        match self {
            Self::NoEndpoints => Box::pin(std::future::ready(Err(NoEndpoints.into()))),
            Self::Balanced(route) => Box::pin(Balanced::new(route, req)),
            Self::WhenResolved(route, fallback) => Box::pin(when_resolved(route, fallback, req)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request sent over a route's endpoints, offered to another when the
    /// one chosen cannot be reached. By hand rather than an `async fn`: one
    /// awaiting the balancer's future fails the compiler's `Send` proof.
    struct Balanced {
        route: Arc<Route>,
        tries: usize,
        #[pin]
        attempt: Oneshot<Balancer, Req>,
    }
}

impl Balanced {
    fn new(route: Arc<Route>, req: Req) -> Self {
        let attempt = route.http().clone().oneshot(req);
        Self {
            route,
            tries: UNREACHABLE_TRIES,
            attempt,
        }
    }
}

impl Future for Balanced {
    type Output = Result<Answer, DispatchError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let answer = ready!(this.attempt.as_mut().poll(cx));
            match answer.map_err(DispatchError::from_balancer) {
                Err(DispatchError::Endpoint(EndpointError::Unreachable { source, req }))
                    if *this.tries > 1 =>
                {
                    *this.tries -= 1;
                    tracing::debug!(error = %source, "endpoint unreachable; offering the request to another");
                    let next = this.route.http().clone().oneshot(req.into_inner());
                    this.attempt.set(next);
                }
                answer => return Poll::Ready(answer),
            }
        }
    }
}

/// `route`'s first answer, if destination gives one in time.
async fn first_resolution(route: &Route) -> Option<Resolution> {
    let mut resolution = route.resolution.clone();
    let first = async {
        loop {
            // Clone out of the borrow: it must not be held across the await.
            let current = resolution.borrow_and_update().clone();
            if current != Resolution::Pending {
                return Some(current);
            }
            if resolution.changed().await.is_err() {
                return None;
            }
        }
    };
    tokio::time::timeout(RESOLVE_TIMEOUT, first)
        .await
        .ok()
        .flatten()
}

async fn when_resolved(
    route: Arc<Route>,
    (target, stats): Fallback,
    req: Req,
) -> Result<Answer, DispatchError> {
    match first_resolution(&route).await {
        Some(Resolution::Endpoints(e)) if e.is_empty() => Err(NoEndpoints.into()),
        Some(Resolution::Endpoints(_)) => Dispatch::Balanced(route).send(req).await,
        // Not a service, or destination too slow to say: as if undiscovered.
        _ => {
            let flight = InFlight::new(stats);
            match target.send(req).await {
                Ok((rsp, checkin)) => Ok(Answer {
                    rsp,
                    checkin,
                    served_by: Some(flight.answered()),
                }),
                Err(source) => Err(EndpointError::Failed {
                    stats: flight.answered(),
                    source,
                }
                .into()),
            }
        }
    }
}

/// Connects an opaque connection for `route`: to one of its endpoints, or
/// to the original destination (`fallback`) if it is not a service.
pub(crate) async fn connect(route: Arc<Route>, fallback: Arc<Target>) -> io::Result<tcp::Upstream> {
    match first_resolution(&route).await {
        Some(Resolution::Endpoints(e)) if e.is_empty() => {
            Err(io::Error::new(io::ErrorKind::NotConnected, NoEndpoints))
        }
        Some(Resolution::Endpoints(_)) => {
            let balancer = route.tcp().clone();
            tokio::time::timeout(TCP_FAILFAST, connect_balanced(balancer))
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no endpoint of the service accepted the connection in time",
                    ))
                })
        }
        _ => fallback.connect_tcp().await.map(tcp::Upstream::direct),
    }
}

/// Boxed where it is made: awaited as its concrete type inside an `async`
/// block, tower's future trips the compiler's `Send` inference for the
/// connection's task (rust-lang/rust#100013).
type Connecting = Pin<Box<dyn Future<Output = Result<tcp::Upstream, BoxError>> + Send>>;

async fn connect_balanced(balancer: TcpBalancer) -> io::Result<tcp::Upstream> {
    let mut last = io::Error::other("no attempt made");
    for _ in 0..TCP_ATTEMPTS {
        let attempt: Connecting = Box::pin(balancer.clone().oneshot(()));
        match attempt.await {
            Ok(upstream) => return Ok(upstream),
            Err(e) => last = into_io(e),
        }
    }
    Err(last)
}

/// The balancer's error, back as the I/O error it was (its errno is counted).
fn into_io(e: BoxError) -> io::Error {
    match e.downcast::<io::Error>() {
        Ok(e) => *e,
        Err(e) => io::Error::other(e),
    }
}

/// A resolved name or address: its resolution, and balancers over its
/// endpoints, made when first used.
pub(crate) struct Route {
    /// The name or `ip:port` asked about; the `authority` of its endpoints'
    /// request series.
    key: Box<str>,
    resolution: watch::Receiver<Resolution>,
    /// Its service profile, when it has one that changes anything.
    profile: ProfileWatch,
    /// Whether destination says it speaks an opaque protocol (`None`: not
    /// said yet).
    opaque: watch::Receiver<Option<bool>>,
    clients: Arc<Clients>,
    /// How its HTTP requests queue for an endpoint.
    queue: QueueConfig,
    http: OnceLock<Balancer>,
    tcp: OnceLock<TcpBalancer>,
}

impl Route {
    /// A handle on its profile, for a connection to follow cheaply.
    pub(crate) fn profile(&self) -> ProfileWatch {
        self.profile.clone()
    }

    /// Whether destination marks it opaque (`config.linkerd.io/opaque-ports`):
    /// then nothing looks for HTTP in its connections. Waits up to `limit`
    /// for destination's first answer; without one, not opaque.
    pub(crate) async fn opaque(&self, limit: Duration) -> bool {
        if let Some(known) = *self.opaque.borrow() {
            return known;
        }
        let mut opaque = self.opaque.clone();
        tokio::time::timeout(limit, opaque.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|v| *v))
            .unwrap_or(false)
    }

    fn http(&self) -> &Balancer {
        self.http.get_or_init(|| {
            let clients = self.clients.clone();
            let authority: Arc<str> = self.key.as_ref().into();
            let make = move |addr: SocketAddr, meta: &Arc<EndpointMeta>| Endpoint {
                healthy: Healthy::new(clients.target(addr, Some(meta))),
                authority: authority.clone(),
                meta: meta.clone(),
                stats: None,
            };
            let changes = Changes::new(self.resolution.clone(), make);
            let discover =
                PeakEwmaDiscover::new(changes, DEFAULT_RTT, DECAY, CompleteOnResponse::default());
            let queue = self.queue;
            Buffer::new(
                FailFast::new(Balance::new(discover), queue.failfast_timeout),
                queue.capacity,
            )
        })
    }

    fn tcp(&self) -> &TcpBalancer {
        self.tcp.get_or_init(|| {
            let clients = self.clients.clone();
            let make = move |addr: SocketAddr, meta: &Arc<EndpointMeta>| {
                Connector(Healthy::new(clients.target(addr, Some(meta))))
            };
            let changes = Changes::new(self.resolution.clone(), make);
            let discover = PendingRequestsDiscover::new::<()>(changes, UntilClosed);
            Buffer::new(Balance::new(discover), TCP_QUEUE)
        })
    }
}

pub(crate) struct Resolver {
    config: DestinationConfig,
    client: DestinationClient<Channel>,
    /// By name or `ip:port`; a route no connection holds goes after the
    /// discovery idle timeout.
    routes: IdleCache<Box<str>, Route>,
    /// The profiles of the names inbound requests are for, by name: only
    /// counted by (no dispatch inbound). Bounded: the names are the
    /// clients'.
    inbound: IdleCache<Box<str>, InboundProfile>,
}

/// An inbound request's service's profile, followed while a connection
/// holds it.
pub(crate) struct InboundProfile {
    profile: ProfileWatch,
}

impl InboundProfile {
    pub(crate) fn profile(&self) -> ProfileWatch {
        self.profile.clone()
    }
}

/// At most this many names' profiles are followed for inbound requests at
/// once; requests for others are counted without routes.
const MAX_INBOUND_PROFILES: usize = 100;

impl Resolver {
    /// With `identity`, a destination service that has a name is reached
    /// over TLS to it. A route no connection holds goes after `idle_timeout`.
    pub(crate) fn new(
        config: DestinationConfig,
        identity: Option<&Arc<Local>>,
        idle_timeout: Duration,
    ) -> Result<Self, crate::identity::Error> {
        let tls = match (&config.svc_name, identity) {
            (Some(name), Some(local)) => Some(crate::control::ControlTls {
                config: local.client_config().clone(),
                name: crate::identity::service_name(name)?,
                certified_first: Some(local.clone()),
            }),
            _ => None,
        };
        let channel =
            crate::control::channel(&config.addr, tls).map_err(crate::identity::Error::Service)?;
        Ok(Self {
            client: DestinationClient::new(channel),
            routes: IdleCache::new(idle_timeout),
            inbound: IdleCache::new(idle_timeout),
            config,
        })
    }

    /// Drops the routes idle for the discovery idle timeout, so a name the
    /// application stopped calling costs nothing after a while.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        self.routes.sweep(now) + self.inbound.sweep(now)
    }

    /// The profile of the service an inbound request names, if the name is
    /// one destination knows.
    pub(crate) fn inbound_profile(
        &self,
        authority: &str,
        clients: &Arc<Clients>,
    ) -> Option<Arc<InboundProfile>> {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        if !self.config.resolves(host) {
            return None;
        }
        if let Some(known) = self.inbound.get(authority) {
            return Some(known);
        }
        if self.inbound.len() >= MAX_INBOUND_PROFILES {
            return None;
        }
        Some(self.inbound.get_or_insert_with(authority, |key| {
            let (tx, profile) = watch::channel(None);
            tokio::spawn(crate::profile::resolve(
                self.client.clone(),
                key.to_string(),
                Direction::Inbound,
                clients.metrics().clone(),
                tx,
                None,
            ));
            (key.into(), InboundProfile { profile })
        }))
    }

    /// The route for `authority`, if it is a name destination should know.
    pub(crate) fn route(&self, authority: &str, clients: &Arc<Clients>) -> Option<Arc<Route>> {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        if !self.config.resolves(host) {
            return None;
        }
        Some(self.get_or_resolve(authority, clients))
    }

    /// The route for an original destination, if it is in the networks
    /// destination knows (where it may be a service's cluster IP).
    pub(crate) fn addr_route(
        &self,
        addr: SocketAddr,
        clients: &Arc<Clients>,
    ) -> Option<Arc<Route>> {
        if !self.config.resolves_addr(addr.ip()) {
            return None;
        }
        Some(self.get_or_resolve(&addr.to_string(), clients))
    }

    fn get_or_resolve(&self, key: &str, clients: &Arc<Clients>) -> Arc<Route> {
        self.routes.get_or_insert_with(key, |key| {
            let (tx, resolution) = watch::channel(Resolution::Pending);
            // They end when the route does: nothing then watches `tx`.
            tokio::spawn(resolve(self.client.clone(), key.to_string(), tx));
            let (tx, profile) = watch::channel(None);
            let (opaque_tx, opaque) = watch::channel(None);
            tokio::spawn(crate::profile::resolve(
                self.client.clone(),
                key.to_string(),
                Direction::Outbound,
                clients.metrics().clone(),
                tx,
                Some(opaque_tx),
            ));
            let route = Route {
                key: key.into(),
                resolution,
                profile,
                opaque,
                clients: clients.clone(),
                queue: self.config.http_queue,
                http: OnceLock::new(),
                tcp: OnceLock::new(),
            };
            (key.into(), route)
        })
    }
}

/// Follows destination's answers for `path`, keeping the last endpoints
/// through destination outages and reconnecting with backoff.
async fn resolve(base: DestinationClient<Channel>, path: String, tx: watch::Sender<Resolution>) {
    let mut backoff = crate::control::Backoff::default();
    let mut endpoints = BTreeMap::new();
    loop {
        let req = GetDestination {
            scheme: "k8s".into(),
            path: path.clone(),
            context_token: String::new(),
        };
        let mut client = base.clone();
        let Some(stream) = unless_unwatched(&tx, client.get(req)).await else {
            return;
        };
        let mut stream = match stream {
            Ok(rsp) => rsp.into_inner(),
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                tracing::debug!(%path, "not a known service; using the original destination");
                tx.send_replace(Resolution::NotAService);
                return;
            }
            Err(status) => {
                tracing::info!(%path, error = %status.message(), "destination unavailable; retrying");
                if !backoff.wait(&tx).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        // After a reconnection, the first answer is the whole truth: what
        // was removed while the stream was down must not linger (as
        // linkerd2-proxy's resolution recovery turns it into a reset).
        let mut reset = !endpoints.is_empty();
        loop {
            let Some(msg) = unless_unwatched(&tx, stream.message()).await else {
                return;
            };
            let Ok(Some(update)) = msg else { break };
            if update.update.is_some() && std::mem::take(&mut reset) {
                endpoints.clear();
            }
            match update.update {
                Some(Kind::Add(set)) => {
                    for addr in &set.addrs {
                        if let Some((sa, labels)) = endpoint(&set.metric_labels, addr) {
                            endpoints.insert(sa, labels);
                        }
                    }
                }
                Some(Kind::Remove(set)) => {
                    for addr in set
                        .addrs
                        .iter()
                        .filter_map(|a| SocketAddr::try_from(a).ok())
                    {
                        endpoints.remove(&addr);
                    }
                }
                Some(Kind::NoEndpoints(none)) => {
                    endpoints.clear();
                    if !none.exists {
                        tx.send_replace(Resolution::NotAService);
                        continue;
                    }
                }
                None => continue,
            }
            tx.send_replace(Resolution::Endpoints(Arc::new(endpoints.clone())));
        }
        // The stream ended: keep what we have and ask again.
        tracing::debug!(%path, "destination stream ended; reconnecting");
    }
}

/// An added address and what destination says of it; its labels are the
/// set's, overridden by its own.
fn endpoint(
    set_labels: &HashMap<String, String>,
    addr: &WeightedAddr,
) -> Option<(SocketAddr, Arc<EndpointMeta>)> {
    let sa = SocketAddr::try_from(addr.addr.as_ref()?).ok()?;
    let labels = set_labels
        .iter()
        .chain(&addr.metric_labels)
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let identity = match addr.tls_identity.as_ref().and_then(|t| t.strategy.as_ref()) {
        Some(tls_identity::Strategy::DnsLikeIdentity(id)) if !id.name.is_empty() => {
            Some(Arc::from(id.name.as_str()))
        }
        _ => None,
    };
    let h2 = matches!(
        addr.protocol_hint
            .as_ref()
            .and_then(|h| h.protocol.as_ref()),
        Some(protocol_hint::Protocol::H2(_))
    );
    Some((
        sa,
        Arc::new(EndpointMeta {
            labels: Arc::new(DstLabels::new(labels)),
            identity,
            h2,
        }),
    ))
}

/// A balancer's discovery: the inserts and removes that take it from the
/// endpoints it has to the route's latest resolution. An endpoint whose
/// labels, identity or protocol change is replaced.
///
/// It is a view of the resolution's watch, diffed when the balancer polls:
/// however fast destination sends, what waits for the balancer is one
/// snapshot, never a queue of stale updates, and nothing runs when no
/// request asks.
pub(crate) struct Changes<S> {
    resolutions: WatchStream<Resolution>,
    known: Endpoints,
    pending: VecDeque<Change<SocketAddr, S>>,
    make: MakeEndpoint<S>,
}

/// Makes a balancer's endpoint from what destination says of it.
type MakeEndpoint<S> = Box<dyn Fn(SocketAddr, &Arc<EndpointMeta>) -> S + Send + Sync>;

impl<S> Changes<S> {
    fn new(
        resolution: watch::Receiver<Resolution>,
        make: impl Fn(SocketAddr, &Arc<EndpointMeta>) -> S + Send + Sync + 'static,
    ) -> Self {
        Self {
            resolutions: WatchStream::new(resolution),
            known: Arc::default(),
            pending: VecDeque::new(),
            make: Box::new(make),
        }
    }

    fn diff(&mut self, next: Endpoints) {
        for gone in self.known.keys().filter(|a| !next.contains_key(a)) {
            self.pending.push_back(Change::Remove(*gone));
        }
        for (addr, meta) in next.iter() {
            if self.known.get(addr) != Some(meta) {
                let endpoint = (self.make)(*addr, meta);
                self.pending.push_back(Change::Insert(*addr, endpoint));
            }
        }
        self.known = next;
    }
}

// Nothing in it is ever pinned: endpoints are moved out to the balancer.
impl<S> Unpin for Changes<S> {}

impl<S> Stream for Changes<S> {
    type Item = Result<Change<SocketAddr, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            let next = match ready!(Pin::new(&mut this.resolutions).poll_next(cx)) {
                Some(Resolution::Endpoints(e)) => e,
                Some(Resolution::Pending | Resolution::NotAService) => Arc::default(),
                None => return Poll::Ready(None),
            };
            this.diff(next);
        }
    }
}

/// One endpoint of a balanced service, as the HTTP balancer sees it:
/// requests go to the target in their own protocol on its shared
/// connections, counted in the endpoint's own series.
pub(crate) struct Endpoint {
    healthy: Healthy,
    /// The route's name, the `authority` of the endpoint's series.
    authority: Arc<str>,
    meta: Arc<EndpointMeta>,
    /// Made by the first request: an endpoint never chosen has no series.
    stats: Option<Arc<RouteStats>>,
}

impl Endpoint {
    fn stats(&mut self) -> &Arc<RouteStats> {
        self.stats.get_or_insert_with(|| {
            let target = self.healthy.target();
            target.metrics().route(
                Direction::Outbound,
                &self.authority,
                target.addr(),
                target.tls(),
                Some(&self.meta.labels),
            )
        })
    }
}

impl tower::Service<Req> for Endpoint {
    type Response = Answer;
    type Error = EndpointError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, EndpointError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), EndpointError>> {
        self.healthy.poll_ready(cx).map(Ok)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let stats = self.stats().clone();
        let target = self.healthy.target().clone();
        Box::pin(async move {
            // The request is the endpoint's only once a connection takes it.
            let ready = match target.ready(req.version()).await {
                Ok(ready) => ready,
                Err(source) => {
                    return Err(EndpointError::Unreachable {
                        source,
                        req: Unsent::new(req),
                    });
                }
            };
            let flight = InFlight::new(stats);
            match target.send_on(ready, req).await {
                Ok((rsp, checkin)) => Ok(Answer {
                    rsp,
                    checkin,
                    served_by: Some(flight.answered()),
                }),
                // Its connection closed as it took the request (the pod
                // began to terminate) and it refuses new ones: the request
                // never left, so it has no response here and goes elsewhere.
                Err(SendError {
                    error: source,
                    unsent: Some(req),
                }) => {
                    flight.withdraw();
                    Err(EndpointError::Unreachable {
                        source,
                        req: Unsent::new(req),
                    })
                }
                Err(SendError {
                    error: source,
                    unsent: None,
                }) => Err(EndpointError::Failed {
                    stats: flight.answered(),
                    source,
                }),
            }
        })
    }
}

/// One endpoint of a balanced service, as the TCP balancer sees it: each
/// call is a new connection.
pub(crate) struct Connector(Healthy);

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

impl tower::Service<()> for Connector {
    type Response = Conn;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_ready(cx).map(Ok)
    }

    fn call(&mut self, (): ()) -> ConnectFuture {
        let target = self.0.target().clone();
        Box::pin(async move { target.connect_tcp().await })
    }
}

/// Counts a balanced connection against its endpoint until it closes, so
/// the balancer's load is each endpoint's open connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UntilClosed;

impl TrackCompletion<Handle, Conn> for UntilClosed {
    type Output = tcp::Upstream;

    fn track_completion(&self, handle: Handle, io: Conn) -> tcp::Upstream {
        tcp::Upstream::balanced(io, handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Direction, Metrics};

    fn config() -> DestinationConfig {
        DestinationConfig {
            addr: "127.0.0.1:1".into(),
            svc_name: None,
            suffixes: vec!["svc.cluster.local.".into()],
            networks: vec!["10.0.0.0/8".parse().unwrap()],
            http_queue: Default::default(),
        }
    }

    fn clients(metrics: Arc<Metrics>) -> Arc<Clients> {
        Arc::new(Clients::new(
            Direction::Outbound,
            crate::transport::ConnectConfig {
                timeout: Duration::from_secs(1),
                source_ip: None,
            },
            metrics,
            None,
            IDLE,
        ))
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn unheld_routes_go_after_the_idle_timeout() {
        let resolver = Resolver::new(config(), None, IDLE).unwrap();
        let clients = clients(Metrics::new(IDLE));
        let held = resolver
            .route("web.ns.svc.cluster.local:80", &clients)
            .unwrap();
        drop(
            resolver
                .route("api.ns.svc.cluster.local:80", &clients)
                .unwrap(),
        );
        assert!(resolver.route("example.com:80", &clients).is_none());
        assert!(
            resolver
                .addr_route("192.168.1.1:80".parse().unwrap(), &clients)
                .is_none()
        );
        assert_eq!(resolver.routes.len(), 2);
        let t0 = Instant::now();
        assert_eq!(resolver.sweep(t0), 0, "a sweep first notes it idle");
        assert_eq!(resolver.sweep(t0 + IDLE / 2), 0);
        assert_eq!(resolver.sweep(t0 + IDLE), 1, "the unheld route goes");
        assert_eq!(resolver.sweep(t0 + IDLE * 10), 0, "a held route stays");
        assert!(resolver.routes.get("web.ns.svc.cluster.local:80").is_some());
        drop(held);
    }

    fn meta(pod: &str) -> Arc<EndpointMeta> {
        Arc::new(EndpointMeta {
            labels: Arc::new(DstLabels::new([("pod", pod)])),
            identity: None,
            h2: false,
        })
    }

    /// Polls `changes` for what it has ready now.
    fn ready<S>(changes: &mut Changes<S>) -> Vec<Change<SocketAddr, S>> {
        let mut out = Vec::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(Ok(c))) = Pin::new(&mut *changes).poll_next(&mut cx) {
            out.push(c);
        }
        out
    }

    fn summary<S>(changes: &[Change<SocketAddr, S>]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Insert(a, _) => format!("+{a}"),
                Change::Remove(a) => format!("-{a}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_balancer_sees_only_the_difference_to_the_latest_resolution() {
        let (tx, rx) = watch::channel(Resolution::Pending);
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = made.clone();
        let mut changes = Changes::new(rx, move |addr, _meta: &Arc<EndpointMeta>| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            addr
        });
        assert!(ready(&mut changes).is_empty(), "nothing known yet");
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:80".parse().unwrap();
        let set = |eps: &[(SocketAddr, &str)]| {
            Resolution::Endpoints(Arc::new(
                eps.iter().map(|(a, pod)| (*a, meta(pod))).collect(),
            ))
        };
        tx.send_replace(set(&[(a, "a"), (b, "b")]));
        assert_eq!(
            summary(&ready(&mut changes)),
            ["+10.0.0.1:80", "+10.0.0.2:80"]
        );
        // Many updates while the balancer is busy: it sees one difference,
        // and no endpoint is made for the ones that came and went.
        for i in 0..1000 {
            let churn: SocketAddr = format!("10.1.{}.{}:80", i / 250, i % 250).parse().unwrap();
            tx.send_replace(set(&[(a, "a"), (churn, "x")]));
        }
        tx.send_replace(set(&[(a, "a-relabelled"), (c, "c")]));
        assert_eq!(
            summary(&ready(&mut changes)),
            ["-10.0.0.2:80", "+10.0.0.1:80", "+10.0.0.3:80"]
        );
        assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 4);
        tx.send_replace(Resolution::NotAService);
        assert_eq!(
            summary(&ready(&mut changes)),
            ["-10.0.0.1:80", "-10.0.0.3:80"]
        );
        drop(tx);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            Pin::new(&mut changes).poll_next(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[tokio::test]
    async fn an_endpoint_gets_a_series_only_when_it_serves() {
        let metrics = Metrics::new(IDLE);
        let clients = clients(metrics.clone());
        let (tx, rx) = watch::channel(Resolution::Pending);
        let authority: Arc<str> = "web.ns.svc.cluster.local:80".into();
        let make = move |addr: SocketAddr, meta: &Arc<EndpointMeta>| Endpoint {
            healthy: Healthy::new(clients.target(addr, Some(meta))),
            authority: authority.clone(),
            meta: meta.clone(),
            stats: None,
        };
        let mut changes = Changes::new(rx, make);
        let endpoints: BTreeMap<_, _> = (1..=100)
            .map(|i| {
                let addr: SocketAddr = format!("10.0.0.{i}:80").parse().unwrap();
                (addr, meta(&format!("web-{i}")))
            })
            .collect();
        tx.send_replace(Resolution::Endpoints(Arc::new(endpoints)));
        let mut inserted = ready(&mut changes);
        assert_eq!(inserted.len(), 100);
        assert_eq!(
            metrics.series(),
            (0, 0),
            "announced endpoints cost no series"
        );
        let Change::Insert(_, endpoint) = &mut inserted[0] else {
            panic!("an insert")
        };
        endpoint.stats().request();
        assert_eq!(metrics.series(), (1, 0));
    }

    #[test]
    fn the_balancers_boxed_errors_are_typed_again() {
        let refused = || crate::http::ClientError::Connect(io::ErrorKind::ConnectionRefused.into());
        let stats = Metrics::new(IDLE).route(
            Direction::Outbound,
            "web.ns.svc.cluster.local:80",
            "10.0.0.1:80".parse().unwrap(),
            &crate::metrics::Tls::Disabled,
            None,
        );
        let boxed: BoxError = Box::new(EndpointError::Failed {
            stats,
            source: refused(),
        });
        assert!(matches!(
            DispatchError::from_balancer(boxed),
            DispatchError::Endpoint(_)
        ));
        let boxed: BoxError = Box::new(crate::failfast::Unavailable(Duration::from_secs(3)));
        assert!(matches!(
            DispatchError::from_balancer(boxed),
            DispatchError::Unavailable(_)
        ));
        let boxed: BoxError = Box::new(NoEndpoints);
        assert!(matches!(
            DispatchError::from_balancer(boxed),
            DispatchError::NoEndpoints(_)
        ));
        let boxed: BoxError = "the buffer's worker closed".into();
        assert!(matches!(
            DispatchError::from_balancer(boxed),
            DispatchError::Balancer(_)
        ));
    }

    #[test]
    fn endpoint_labels_are_the_sets_overridden_by_the_addresses() {
        let set = HashMap::from([
            ("namespace".to_string(), "emojivoto".to_string()),
            ("service".to_string(), "web".to_string()),
        ]);
        let addr = WeightedAddr {
            addr: Some("10.0.0.1:8080".parse::<SocketAddr>().unwrap().into()),
            metric_labels: HashMap::from([
                ("pod".to_string(), "web-1".to_string()),
                ("service".to_string(), "web-canary".to_string()),
                ("control-plane.ns".to_string(), "linkerd".to_string()),
            ]),
            ..Default::default()
        };
        let (sa, meta) = endpoint(&set, &addr).unwrap();
        assert_eq!(sa, "10.0.0.1:8080".parse().unwrap());
        assert_eq!((meta.identity.clone(), meta.h2), (None, false));
        let labels = &meta.labels;
        assert_eq!(labels.get("dst_namespace"), Some("emojivoto"));
        assert_eq!(labels.get("dst_pod"), Some("web-1"));
        assert_eq!(labels.get("dst_service"), Some("web-canary"));
        // Not a valid label name as sent: made into one.
        assert_eq!(labels.get("dst_control_plane_ns"), Some("linkerd"));
        let no_addr = WeightedAddr::default();
        assert!(endpoint(&set, &no_addr).is_none());
    }
}

/// The resolution against a scripted destination service: what a
/// reconnection must do with what it knew.
#[cfg(test)]
mod reconnect_tests {
    use super::*;
    use linkerd_proxy_api::destination::{
        DestinationProfile, Update, WeightedAddrSet, destination_server,
    };
    use std::sync::Mutex;
    use tokio_stream::StreamExt;
    use tonic::{Status, transport::Server};

    type Updates = Pin<Box<dyn Stream<Item = Result<Update, Status>> + Send>>;
    type Profiles = Pin<Box<dyn Stream<Item = Result<DestinationProfile, Status>> + Send>>;

    /// Answers each `Get` with the next script: its updates, then the end
    /// of the stream, or (the last one) an open stream.
    struct Scripted(Mutex<VecDeque<Vec<Update>>>);

    #[tonic::async_trait]
    impl destination_server::Destination for Scripted {
        type GetStream = Updates;
        type GetProfileStream = Profiles;

        async fn get(
            &self,
            _: tonic::Request<GetDestination>,
        ) -> Result<tonic::Response<Updates>, Status> {
            let mut scripts = self.0.lock().unwrap();
            let last = scripts.len() == 1;
            let updates = scripts.pop_front().unwrap_or_default();
            let stream = tokio_stream::iter(updates.into_iter().map(Ok));
            Ok(tonic::Response::new(if last {
                Box::pin(stream.chain(tokio_stream::pending()))
            } else {
                Box::pin(stream)
            }))
        }

        async fn get_profile(
            &self,
            _: tonic::Request<GetDestination>,
        ) -> Result<tonic::Response<Profiles>, Status> {
            Err(Status::unimplemented("not scripted"))
        }
    }

    fn add(addrs: &[&str]) -> Update {
        Update {
            update: Some(Kind::Add(WeightedAddrSet {
                addrs: addrs
                    .iter()
                    .map(|a| WeightedAddr {
                        addr: Some(a.parse::<SocketAddr>().unwrap().into()),
                        weight: 1,
                        ..Default::default()
                    })
                    .collect(),
                metric_labels: HashMap::new(),
            })),
        }
    }

    /// An endpoint removed while the stream was down (destination
    /// restarting) is gone once the new stream answers: the first answer
    /// after a reconnection replaces what was known, as linkerd2-proxy's
    /// resolution recovery resets it.
    #[tokio::test]
    async fn a_reconnection_forgets_endpoints_removed_while_it_was_down() {
        let scripts = VecDeque::from([
            vec![add(&["10.0.0.1:80", "10.0.0.2:80"])],
            vec![add(&["10.0.0.1:80"])],
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            Server::builder()
                .add_service(destination_server::DestinationServer::new(Scripted(
                    Mutex::new(scripts),
                )))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let config = DestinationConfig {
            addr: addr.to_string(),
            svc_name: None,
            suffixes: vec!["svc.cluster.local.".into()],
            networks: vec![],
            http_queue: Default::default(),
        };
        let idle = Duration::from_secs(5);
        let resolver = Resolver::new(config, None, idle).unwrap();
        let clients = Arc::new(Clients::new(
            Direction::Outbound,
            crate::transport::ConnectConfig {
                timeout: Duration::from_secs(1),
                source_ip: None,
            },
            crate::metrics::Metrics::new(idle),
            None,
            idle,
        ));
        let route = resolver
            .route("web.ns.svc.cluster.local:80", &clients)
            .unwrap();
        let mut resolution = route.resolution.clone();
        let only_first = |r: &Resolution| match r {
            Resolution::Endpoints(e) => {
                e.keys().map(|a| a.to_string()).collect::<Vec<_>>() == ["10.0.0.1:80"]
            }
            _ => false,
        };
        tokio::time::timeout(Duration::from_secs(10), resolution.wait_for(only_first))
            .await
            .expect("the second stream's answer replaces the first's")
            .unwrap();
    }
}
