//! Outbound service discovery and load balancing.
//!
//! An outbound request whose authority names a service (e.g.
//! `web.emojivoto.svc.cluster.local:80`) is resolved through the destination
//! service and balanced over the service's endpoints by tower's power of two
//! choices over peak-EWMA latency, as linkerd2-proxy does. Names destination
//! does not know go to their original destination, as before.

use crate::{
    config::DestinationConfig,
    http::{Clients, Endpoint, Target},
};
use http::{Request, Response};
use hyper::body::Incoming;
use linkerd_proxy_api::destination::{
    GetDestination, destination_client::DestinationClient, update::Update as Kind,
};
use std::{
    collections::{BTreeSet, HashMap},
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::sync::{mpsc, watch};
use tonic::{Code, transport::Channel};
use tower::{
    ServiceExt,
    balance::p2c::Balance,
    buffer::Buffer,
    discover::Change,
    load::{CompleteOnResponse, PeakEwmaDiscover},
};

/// Latency assumed for an endpoint before it has answered anything.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How quickly peak-EWMA forgets a slow response.
const DECAY: Duration = Duration::from_secs(10);
/// Requests queued for a balancer before callers wait.
const BUFFER: usize = 1_000;
/// Past this many resolved names, ones no connection uses are dropped.
const MAX_ROUTES: usize = 1_000;

type Req = Request<Incoming>;
pub(crate) type Rsp = (Response<Incoming>, Option<crate::http::Checkin>);
type BalanceFuture = <Balance<PeakEwmaDiscover<Changes>, Req> as tower::Service<Req>>::Future;
/// A shared handle on one name's balancer.
pub(crate) type Balancer = Buffer<Req, BalanceFuture>;

/// What a name resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Destination has not answered yet.
    Pending,
    /// Not a service destination knows: use the original destination.
    NotAService,
    /// The service's endpoints (maybe none).
    Endpoints(Arc<BTreeSet<SocketAddr>>),
}

/// How long a request waits for a name's first resolution before it goes to
/// its original destination instead.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type SendFuture = Pin<Box<dyn Future<Output = Result<Rsp, BoxError>> + Send>>;

/// A resolved service has no endpoints: the request fails fast.
#[derive(Debug, thiserror::Error)]
#[error("the service has no endpoints")]
pub(crate) struct NoEndpoints;

/// How a request to a service name is sent.
pub(crate) enum Dispatch {
    /// It is not: the service has no endpoints.
    NoEndpoints,
    /// Over the service's endpoints.
    Balanced(Arc<Route>),
    /// Once destination first answers: balanced, or to `Target` (the
    /// original destination) if the name is not a service.
    WhenResolved(Arc<Route>, Arc<Target>),
}

impl Dispatch {
    /// How to send to `route` as it resolves now; `None` if the name is not
    /// a service (the request goes to its original destination, `fallback`).
    pub(crate) fn new(route: Arc<Route>, fallback: impl FnOnce() -> Arc<Target>) -> Option<Self> {
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
            Self::Balanced(route) => Box::pin(route.balancer.clone().oneshot(req)),
            Self::WhenResolved(route, fallback) => Box::pin(when_resolved(route, fallback, req)),
        }
    }
}

async fn when_resolved(
    route: Arc<Route>,
    fallback: Arc<Target>,
    req: Req,
) -> Result<Rsp, BoxError> {
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
    match tokio::time::timeout(RESOLVE_TIMEOUT, first)
        .await
        .ok()
        .flatten()
    {
        Some(Resolution::Endpoints(e)) if e.is_empty() => Err(Box::new(NoEndpoints)),
        Some(Resolution::Endpoints(_)) => Dispatch::Balanced(route).send(req).await,
        // Not a service, or destination too slow to say: as if undiscovered.
        _ => fallback.send(req).await.map_err(boxed),
    }
}

fn boxed(e: crate::http::ClientError) -> BoxError {
    Box::new(e)
}

/// A resolved name: its resolution, and a balancer over its endpoints.
pub(crate) struct Route {
    pub(crate) resolution: watch::Receiver<Resolution>,
    pub(crate) balancer: Balancer,
    /// Set by the sweeper when no connection held the route; a route still
    /// unheld at the next sweep is dropped.
    idle: std::sync::atomic::AtomicBool,
}

pub(crate) struct Resolver {
    config: DestinationConfig,
    client: DestinationClient<Channel>,
    routes: Mutex<HashMap<String, Arc<Route>>>,
}

/// How often unused routes are looked for; one unused for a whole interval is
/// dropped, ending its destination stream and its balancer.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

impl Resolver {
    pub(crate) fn new(config: DestinationConfig) -> Result<Self, tonic::transport::Error> {
        // Connects on first use and reconnects after failures by itself.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", config.addr))?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        Ok(Self {
            config,
            client: DestinationClient::new(channel),
            routes: Mutex::new(HashMap::new()),
        })
    }

    /// Drops routes no connection has held for a whole sweep interval, so a
    /// name the application stopped calling costs nothing after a while.
    pub(crate) async fn sweep(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            self.sweep_once();
        }
    }

    fn sweep_once(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.routes.lock().unwrap().retain(|authority, route| {
            // Only this map holds it: unused since the last sweep?
            let unheld = Arc::strong_count(route) == 1;
            if !unheld {
                route.idle.store(false, Relaxed);
                return true;
            }
            let was_idle = route.idle.swap(true, Relaxed);
            if was_idle {
                tracing::debug!(%authority, "dropping an idle route");
            }
            !was_idle
        });
    }

    /// The route for `authority`, if it is a name destination should know.
    pub(crate) fn route(&self, authority: &str, clients: &Arc<Clients>) -> Option<Arc<Route>> {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        if !self.config.resolves(host) {
            return None;
        }
        let mut routes = self.routes.lock().unwrap();
        if let Some(route) = routes.get(authority) {
            return Some(route.clone());
        }
        if routes.len() >= MAX_ROUTES {
            routes.retain(|_, r| Arc::strong_count(r) > 1);
        }
        let (tx, resolution) = watch::channel(Resolution::Pending);
        tokio::spawn(resolve(self.client.clone(), authority.to_string(), tx));
        let (changes_tx, changes) = mpsc::unbounded_channel();
        tokio::spawn(follow(resolution.clone(), clients.clone(), changes_tx));
        let discover = PeakEwmaDiscover::new(
            Changes(changes),
            DEFAULT_RTT,
            DECAY,
            CompleteOnResponse::default(),
        );
        let balancer = Buffer::new(Balance::new(discover), BUFFER);
        let route = Arc::new(Route {
            resolution,
            balancer,
            idle: false.into(),
        });
        routes.insert(authority.to_string(), route.clone());
        Some(route)
    }
}

/// Follows destination's answers for `path`, keeping the last endpoints
/// through destination outages and reconnecting with backoff.
async fn resolve(base: DestinationClient<Channel>, path: String, tx: watch::Sender<Resolution>) {
    let mut backoff = Duration::from_millis(100);
    let mut endpoints = BTreeSet::new();
    loop {
        let req = GetDestination {
            scheme: "k8s".into(),
            path: path.clone(),
            context_token: String::new(),
        };
        let mut client = base.clone();
        let stream = tokio::select! {
            rsp = client.get(req) => rsp,
            _ = tx.closed() => return,
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
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tx.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        loop {
            let msg = tokio::select! {
                msg = stream.message() => msg,
                _ = tx.closed() => return,
            };
            let Ok(Some(update)) = msg else { break };
            match update.update {
                Some(Kind::Add(set)) => {
                    endpoints.extend(
                        set.addrs
                            .iter()
                            .filter_map(|a| SocketAddr::try_from(a.addr.as_ref()?).ok()),
                    );
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

/// Turns resolution changes into the balancer's inserts and removes.
async fn follow(
    mut resolution: watch::Receiver<Resolution>,
    clients: Arc<Clients>,
    changes: mpsc::UnboundedSender<Change<SocketAddr, Endpoint>>,
) {
    let mut known = BTreeSet::new();
    loop {
        let next = match &*resolution.borrow_and_update() {
            Resolution::Endpoints(e) => (**e).clone(),
            Resolution::Pending | Resolution::NotAService => BTreeSet::new(),
        };
        for gone in known.difference(&next) {
            if changes.send(Change::Remove(*gone)).is_err() {
                return;
            }
        }
        for new in next.difference(&known) {
            let endpoint = Endpoint::new(clients.target(*new));
            if changes.send(Change::Insert(*new, endpoint)).is_err() {
                return;
            }
        }
        known = next;
        if resolution.changed().await.is_err() {
            return;
        }
    }
}

/// The balancer's discovery stream.
pub(crate) struct Changes(mpsc::UnboundedReceiver<Change<SocketAddr, Endpoint>>);

impl tokio_stream::Stream for Changes {
    type Item = Result<Change<SocketAddr, Endpoint>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Direction, Metrics};

    #[tokio::test]
    async fn unheld_routes_are_dropped_after_two_sweeps() {
        let config = DestinationConfig {
            addr: "127.0.0.1:1".into(),
            suffixes: vec!["svc.cluster.local.".into()],
        };
        let resolver = Resolver::new(config).unwrap();
        let clients = Arc::new(Clients::new(
            Direction::Outbound,
            Duration::from_secs(1),
            Metrics::new(),
        ));
        let held = resolver
            .route("web.ns.svc.cluster.local:80", &clients)
            .unwrap();
        drop(
            resolver
                .route("api.ns.svc.cluster.local:80", &clients)
                .unwrap(),
        );
        assert!(resolver.route("example.com:80", &clients).is_none());
        let count = || resolver.routes.lock().unwrap().len();
        assert_eq!(count(), 2);
        resolver.sweep_once();
        assert_eq!(count(), 2, "one sweep only marks");
        resolver.sweep_once();
        assert_eq!(count(), 1, "the unheld route goes at the second");
        resolver.sweep_once();
        resolver.sweep_once();
        assert_eq!(count(), 1, "a held route stays");
        drop(held);
    }
}
