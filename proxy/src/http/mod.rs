//! HTTP proxying: serves a detected HTTP/1 or HTTP/2 connection and forwards
//! each request to the connection's target, in the client's own protocol.

mod body;
mod client;
mod headers;
mod orig_proto;
mod woken;

pub(crate) use self::client::{
    Checkin, Clients, Error as ClientError, Healthy, SendError, Target, Version,
};
use self::{
    body::{Recorder, ResponseBody},
    client::{H1Slot, Upstream},
};
use crate::discovery::{self, Answer, Dispatch, EndpointError, Resolver, Route};
use crate::{
    config::ServerConfig,
    metrics::{Direction, Metrics, RouteStats, Tls},
    tap::{self, Taps},
};
use futures_util::{TryFutureExt, future::Either};
use http::{Method, Request, Response, StatusCode, Uri, header::HOST, uri};
use hyper::{body::Incoming, server::conn, upgrade::OnUpgrade};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{
    cell::RefCell,
    future::Future,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// The header on responses the proxy made itself, saying why.
const L5D_PROXY_ERROR: &str = "l5d-proxy-error";
/// The identity of an inbound request's meshed client, for the application.
/// Set only from a verified client certificate; a client's own is removed.
static L5D_CLIENT_ID: http::HeaderName = http::HeaderName::from_static("l5d-client-id");

/// Serves one HTTP connection until the client closes it, it sits idle past
/// the idle timeout, or `drain` asks for a graceful shutdown.
pub(crate) async fn serve<I>(
    io: I,
    version: Version,
    proxy: Proxy,
    cfg: &ServerConfig,
    drain: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = proxy.activity.clone();
    let io = TokioIo::new(io);
    let result = match version {
        Version::Http1 => {
            let conn = conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(cfg.h1_header_read_timeout)
                .max_header_size(cfg.max_header_size)
                .serve_connection(io, proxy)
                .with_upgrades();
            drive(
                pin!(conn),
                |c| c.graceful_shutdown(),
                &drain,
                &activity,
                cfg.idle_timeout,
            )
            .await
        }
        Version::H2 => {
            let conn = conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_concurrent_streams(cfg.h2_max_concurrent_streams)
                // Bound the resets a client may provoke or send: "rapid
                // reset" (CVE-2023-44487) and reset stacking (CVE-2023-26964).
                .max_pending_accept_reset_streams(cfg.h2_max_pending_accept_reset_streams)
                .max_local_error_reset_streams(1024)
                .max_header_list_size(u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX))
                .keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(20))
                .serve_connection(io, proxy);
            drive(
                pin!(conn),
                |c| c.graceful_shutdown(),
                &drain,
                &activity,
                cfg.idle_timeout,
            )
            .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection closed with an error");
    }
}

/// Polls a connection to completion, starting a graceful shutdown at most once
/// when the proxy drains or the connection goes idle.
async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    drain: &CancellationToken,
    activity: &Activity,
    idle_timeout: Duration,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    // Polled only when one of them woke, not on each of the connection's
    // wake-ups: they almost never fire.
    let watchdogs = woken::Woken::new(async {
        tokio::select! {
            _ = drain.cancelled() => {}
            _ = activity.idle(idle_timeout) => tracing::debug!("closing idle connection"),
            _ = activity.abuse.notified() => {
                tracing::info!("closing a connection whose client abandons most of its requests");
            }
        }
    });
    tokio::select! {
        biased;
        res = conn.as_mut() => return res,
        _ = watchdogs => {}
    }
    shutdown(conn.as_mut());
    conn.await
}

/// A client may abandon this many requests before it has their response
/// headers, if it abandons most of what it asks, before its connection is
/// closed. Opening streams and resetting them at once ("rapid reset",
/// CVE-2023-44487) makes the proxy start work it can never finish; h2's own
/// guard only counts streams reset before the proxy accepted them.
const ABANDON_LIMIT: u64 = 1000;

/// In-flight requests and the time of the last one on a connection, to tell
/// an idle connection from a quiet one with a long request in progress, and
/// how many requests the client gave up on.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
    requests: AtomicU64,
    abandoned: AtomicU64,
    abuse: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            abuse: tokio::sync::Notify::new(),
        }
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Relaxed);
        self.requests.fetch_add(1, Relaxed);
    }

    /// The client dropped a request before its response headers.
    fn abandoned(&self) {
        let n = self.abandoned.fetch_add(1, Relaxed) + 1;
        if n >= ABANDON_LIMIT && n * 2 > self.requests.load(Relaxed) {
            self.abuse.notify_one();
        }
    }

    fn end(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= timeout {
                return;
            }
            // Wake when the connection would become idle; while a request is
            // in flight, check again within a second to notice it ending.
            let wait = if idle.is_zero() {
                timeout.min(Duration::from_secs(1))
            } else {
                timeout - idle
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The value for the last authority seen on a connection. Requests on one
/// connection almost always share an authority, so this skips the shared,
/// locked maps behind it.
struct LastAuthority<T>(RefCell<Option<(Box<str>, T)>>);

impl<T> Default for LastAuthority<T> {
    fn default() -> Self {
        Self(RefCell::new(None))
    }
}

impl<T: Clone> LastAuthority<T> {
    fn get(&self, authority: &str, make: impl FnOnce() -> T) -> T {
        let mut cache = self.0.borrow_mut();
        if let Some((a, value)) = cache.as_ref()
            && **a == *authority
        {
            return value.clone();
        }
        let value = make();
        *cache = Some((authority.into(), value.clone()));
        value
    }
}

/// The service for one accepted connection: every request on it goes to the
/// connection's target through one pooled client.
pub(crate) struct Proxy {
    direction: Direction,
    version: Version,
    target: SocketAddr,
    /// The connection's TLS, for its requests' series.
    tls: Tls,
    /// Inbound: the `l5d-client-id` for the connection's requests.
    client_id: Option<http::HeaderValue>,
    upstream: RefCell<Upstream>,
    /// Outbound: resolves service names to balanced endpoints.
    resolver: Option<Arc<Resolver>>,
    clients: Arc<Clients>,
    /// The last authority's discovery route.
    dst_route: LastAuthority<Option<Arc<Route>>>,
    metrics: Arc<Metrics>,
    activity: Arc<Activity>,
    /// The last authority's request metrics.
    route: LastAuthority<Arc<RouteStats>>,
    taps: Arc<Taps>,
    /// The client's address, for tap events.
    client: SocketAddr,
    /// This connection's number in tap events, and its tapped requests'.
    tap_base: u32,
    tap_seq: std::cell::Cell<u64>,
}

/// What a connection's requests share beyond its target.
pub(crate) struct ConnCtx {
    pub(crate) client: SocketAddr,
    pub(crate) target: SocketAddr,
    pub(crate) tls: Tls,
    pub(crate) taps: Arc<Taps>,
}

impl Proxy {
    pub(crate) fn new(
        direction: Direction,
        version: Version,
        ctx: ConnCtx,
        clients: &Arc<Clients>,
        resolver: Option<Arc<Resolver>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let ConnCtx {
            client,
            target,
            tls,
            taps,
        } = ctx;
        let client_id = match &tls {
            Tls::Established {
                client_id: Some(id),
                ..
            } => http::HeaderValue::from_str(id).ok(),
            _ => None,
        };
        Self {
            direction,
            version,
            target,
            tls,
            client_id,
            upstream: RefCell::new(Upstream::new(clients.target(target, None), version)),
            resolver,
            clients: clients.clone(),
            dst_route: LastAuthority::default(),
            metrics,
            activity: Arc::new(Activity::new()),
            route: LastAuthority::default(),
            tap_base: taps.next_base(),
            taps,
            client,
            tap_seq: std::cell::Cell::new(0),
        }
    }

    /// The tap sessions that want this request, if any.
    fn tap(
        &self,
        req: &Request<Incoming>,
        authority: &str,
        balanced: bool,
    ) -> Option<Box<tap::Tapped>> {
        let no_labels = Default::default();
        let facts = tap::Facts {
            source: self.client,
            destination: self.target,
            destination_labels: &no_labels,
            scheme: req.uri().scheme_str().unwrap_or("http"),
            method: req.method(),
            authority,
            path: req.uri().path(),
        };
        let stream = self.tap_seq.get();
        let tapped = self.taps.tap(
            &facts,
            tap::Meta {
                inbound: self.direction == Direction::Inbound,
                base: self.tap_base,
                stream,
                tls: &self.tls,
                headers: req.headers(),
                balanced,
            },
        );
        if tapped.is_some() {
            self.tap_seq.set(stream + 1);
        }
        tapped
    }

    fn route(&self, authority: &str) -> Arc<RouteStats> {
        self.route.get(authority, || {
            self.metrics
                .route(self.direction, authority, self.target, &self.tls, None)
        })
    }

    /// The discovery route for `authority` if it names a service, or else
    /// for the original destination if destination may know it.
    fn dst_route(&self, authority: &str) -> Option<Arc<Route>> {
        let resolver = self.resolver.as_ref()?;
        self.dst_route.get(authority, || {
            resolver
                .route(authority, &self.clients)
                .or_else(|| resolver.addr_route(self.target, &self.clients))
        })
    }

    /// HTTP/2 carries the scheme and authority as pseudo-headers, so the
    /// upstream request needs an absolute URI: the authority the client named
    /// or, failing that, the target's address.
    fn absolute_uri(&self, req: &mut Request<Incoming>) -> Result<(), http::Error> {
        if req.uri().authority().is_some() && req.uri().scheme().is_some() {
            return Ok(());
        }
        let authority = match req
            .uri()
            .authority()
            .cloned()
            .or_else(|| host_authority(req))
        {
            Some(a) => a,
            None => uri::Authority::try_from(self.target.to_string())?,
        };
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(uri::Scheme::HTTP);
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts)?;
        Ok(())
    }

    /// HTTP/1 servers expect origin-form (`GET /path` with `Host`); a client
    /// that used absolute-form names the authority in the URI, which then
    /// replaces its `Host` (RFC 9112 §3.2.2). CONNECT keeps authority-form.
    fn origin_form(&self, req: &mut Request<Incoming>) -> Result<(), http::Error> {
        if req.method() == Method::CONNECT {
            return Ok(());
        }
        if let Some(authority) = req.uri().authority() {
            let host = http::HeaderValue::from_str(authority.as_str())?;
            req.headers_mut().insert(HOST, host);
        } else if !req.headers().contains_key(HOST) {
            let host = http::HeaderValue::from_str(&self.target.to_string())?;
            req.headers_mut().insert(HOST, host);
        }
        if req.uri().scheme().is_some() {
            let path = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| uri::PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(path);
        }
        Ok(())
    }
}

fn host_authority<B>(req: &Request<B>) -> Option<uri::Authority> {
    uri::Authority::try_from(req.headers().get(HOST)?.as_bytes()).ok()
}

fn authority_of<B>(req: &Request<B>) -> &str {
    match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl hyper::service::Service<Request<Incoming>> for Proxy {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        let authority = authority_of(&req);
        let route = self.route(authority);
        let discovered = self.dst_route(authority);

        // An HTTP/1 upgrade (WebSocket, h2c) or CONNECT becomes a byte stream
        // once the server agrees; take the client's half before forwarding.
        let is_connect = req.method() == Method::CONNECT;
        let upgrade =
            self.version == Version::Http1 && (is_connect || headers::wants_upgrade(req.headers()));
        // A service is balanced over its endpoints (upgrades keep to the
        // original destination: they pin one connection anyway).
        let dispatch = discovered.filter(|_| !upgrade).and_then(|discovered| {
            Dispatch::new(discovered, || {
                (self.clients.target(self.target, None), route.clone())
            })
        });
        let activity = self.activity.clone();
        let mut recorder = match dispatch {
            Some(_) => Recorder::deferred(route, started, activity),
            None => Recorder::new(route, started, activity),
        };
        let downstream = upgrade.then(|| hyper::upgrade::on(&mut req));
        headers::strip_hop_by_hop(req.headers_mut(), upgrade);
        // Inbound, an HTTP/1 request a meshed client proxy carried over
        // HTTP/2 goes to the application as the HTTP/1 it was.
        let downgraded = match self.direction {
            Direction::Inbound => {
                let headers = req.headers_mut();
                match &self.client_id {
                    Some(id) => {
                        headers.insert(&L5D_CLIENT_ID, id.clone());
                    }
                    None => {
                        headers.remove(&L5D_CLIENT_ID);
                    }
                }
                if self.version == Version::H2 {
                    orig_proto::downgrade_request(&mut req)
                } else {
                    None
                }
            }
            Direction::Outbound => None,
        };
        let normalized = match self.version {
            Version::Http1 => self.origin_form(&mut req),
            Version::H2 if downgraded.is_some() => self.origin_form(&mut req),
            Version::H2 => self.absolute_uri(&mut req),
        };
        if let Err(e) = normalized {
            tracing::debug!(error = %e, "request has no usable authority");
            return Box::pin(async move {
                Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid authority",
                    recorder,
                ))
            });
        }

        if self.taps.is_active()
            && let Some(tapped) = self.tap(&req, authority_of(&req), dispatch.is_some())
        {
            recorder.tap(tapped);
        }
        let h2 = self.version == Version::H2;
        let response = match dispatch {
            Some(dispatch) => Either::Right(dispatch.send(req)),
            None if downgraded.is_some() => {
                // HTTP/1 to the application, on its HTTP/1 pool.
                let target = self.upstream.borrow().target().clone();
                Either::Left(Either::Right(target.send(req)))
            }
            None => Either::Left(Either::Left(self.send_direct(req, upgrade))),
        };
        Box::pin(async move {
            let result = match response {
                Either::Left(direct) => direct
                    .await
                    .map(|(rsp, checkin)| Answer {
                        rsp,
                        checkin,
                        served_by: None,
                    })
                    .map_err(Failure::Direct),
                Either::Right(discovered) => discovered.await.map_err(Failure::Dispatch),
            };
            recorder.answered();
            let Answer {
                mut rsp,
                checkin,
                served_by,
            } = match result {
                Ok(answer) => answer,
                Err(failure) => {
                    tracing::debug!(error = %failure, "upstream request failed");
                    let (respond, served_by) = failure.respond(h2);
                    // A balanced endpoint's failure counts in its series.
                    if let Some(endpoint) = served_by {
                        recorder.served_by(endpoint);
                    }
                    return match respond {
                        Respond::Reset(e) => Err(e),
                        Respond::With(status, msg) => Ok(error_response(status, msg, recorder)),
                    };
                }
            };
            if let Some(endpoint) = served_by {
                recorder.served_by(endpoint);
            }
            recorder.response(rsp.status(), rsp.headers());
            let upgraded = rsp.status() == StatusCode::SWITCHING_PROTOCOLS
                || (is_connect && rsp.status().is_success());
            match downstream {
                Some(downstream) if upgraded => {
                    let upstream = hyper::upgrade::on(&mut rsp);
                    tokio::spawn(splice(downstream, upstream));
                }
                _ => {}
            }
            headers::strip_hop_by_hop(rsp.headers_mut(), upgrade && upgraded);
            if let Some(orig) = downgraded {
                orig_proto::upgrade_response(&mut rsp, orig);
            }
            Ok(rsp.map(|b| ResponseBody::new(b, recorder, checkin)))
        })
    }
}

impl Proxy {
    /// Sends to the connection's own target, on the client protocol's
    /// connection: HTTP/1 keeps one per client connection, HTTP/2 shares one.
    fn send_direct(
        &self,
        req: Request<Incoming>,
        upgrade: bool,
    ) -> impl Future<Output = Result<(Response<Incoming>, Option<Checkin>), client::Error>> + Send + use<>
    {
        match &mut *self.upstream.borrow_mut() {
            Upstream::H1(slot) => {
                let (target, held, cached) = slot.parts();
                Either::Left(H1Slot::send(target, held, cached, req, upgrade))
            }
            Upstream::H2 { target, send } => {
                // Refresh this connection's sender from the shared one
                // without waiting; only a missing connection takes the lock.
                if send.as_ref().is_none_or(|s| s.is_closed()) {
                    *send = target.try_h2();
                }
                let h2 = match send.as_mut() {
                    Some(s) => Either::Left(s.send_request(req).map_err(client::Error::from)),
                    None => {
                        let target = target.clone();
                        Either::Right(async move {
                            let mut s = target.h2().await?;
                            Ok(s.send_request(req).await?)
                        })
                    }
                };
                Either::Right(h2.map_ok(|rsp| (rsp, None)))
            }
        }
    }
}

/// Why a request got no response from upstream, typed: where it was sent
/// decides which errors it can meet.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// To the connection's own target.
    #[error(transparent)]
    Direct(client::Error),
    /// Through discovery.
    #[error(transparent)]
    Dispatch(discovery::DispatchError),
}

/// What the client gets instead of a response from upstream.
enum Respond {
    /// The server reset the HTTP/2 stream: reset the client's too, with the
    /// same reason (hyper finds the h2 error in the chain).
    Reset(BoxError),
    /// A response the proxy makes, saying why in `l5d-proxy-error`.
    With(StatusCode, &'static str),
}

impl Failure {
    /// The one place errors become responses; with the balanced endpoint
    /// whose series counted the request, if it got that far.
    fn respond(self, h2: bool) -> (Respond, Option<Arc<RouteStats>>) {
        let with = |status, msg| (Respond::With(status, msg), None);
        let (error, served_by) = match self {
            Self::Direct(e) => (e, None),
            Self::Dispatch(e) => match e {
                discovery::DispatchError::Endpoint(EndpointError::Failed { stats, source }) => {
                    (source, Some(stats))
                }
                // Offered to endpoints until the tries ran out: none saw it.
                discovery::DispatchError::Endpoint(EndpointError::Unreachable {
                    source, ..
                }) => (source, None),
                discovery::DispatchError::NoEndpoints(_) => {
                    return with(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the service has no endpoints",
                    );
                }
                discovery::DispatchError::Unavailable(_) => {
                    return with(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no endpoint of the service is available (failing fast)",
                    );
                }
                discovery::DispatchError::Balancer(_) => {
                    return with(StatusCode::BAD_GATEWAY, "the service's endpoints failed");
                }
            },
        };
        let h2_error = match &error {
            client::Error::Request(e) => find_h2(e),
            _ => None,
        };
        let (status, msg) = match &error {
            _ if h2 && h2_error.is_some_and(|e| e.is_reset() && e.reason().is_some()) => {
                return (Respond::Reset(error.into()), served_by);
            }
            // The target's GOAWAY came as the request was handed to the
            // connection: it never went out, but hyper gives no request back
            // (hyperium/hyper#2500), so it cannot be offered elsewhere.
            _ if h2_error.is_some_and(|e| {
                e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR)
            }) =>
            {
                (
                    StatusCode::BAD_GATEWAY,
                    "the target went away before the request was sent",
                )
            }
            client::Error::Connect(_) | client::Error::Handshake(_) => {
                (StatusCode::BAD_GATEWAY, "connection to the target failed")
            }
            client::Error::Request(_) => (StatusCode::BAD_GATEWAY, "the target closed the request"),
            client::Error::Uri(_) => (StatusCode::BAD_REQUEST, "invalid authority"),
        };
        (Respond::With(status, msg), served_by)
    }
}

/// The HTTP/2 error behind a failed request, if it was one (hyper wraps it).
fn find_h2<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a h2::Error> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = err.source();
    }
    None
}

fn error_response(
    status: StatusCode,
    msg: &'static str,
    mut recorder: Recorder,
) -> Response<ResponseBody> {
    recorder.response(status, &http::HeaderMap::new());
    let mut rsp = Response::new(ResponseBody::empty(Some(recorder)));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(L5D_PROXY_ERROR, http::HeaderValue::from_static(msg));
    rsp
}

/// Copies bytes both ways between an upgraded client and server connection.
async fn splice(downstream: OnUpgrade, upstream: OnUpgrade) {
    let (down, up) = match tokio::try_join!(downstream, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(error = %e, "upgraded connection failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{discovery::DispatchError, metrics::Metrics};

    fn status_of(failure: Failure, h2: bool) -> (u16, &'static str, bool) {
        match failure.respond(h2) {
            (Respond::With(status, msg), served_by) => (status.as_u16(), msg, served_by.is_some()),
            (Respond::Reset(e), _) => panic!("a reset, not a response: {e}"),
        }
    }

    fn refused() -> client::Error {
        client::Error::Connect(std::io::ErrorKind::ConnectionRefused.into())
    }

    #[test]
    fn each_failure_has_its_status_and_reason() {
        let bad_uri = http::Uri::try_from("http://[::1").unwrap_err();
        let bad_uri = http::Error::from(bad_uri);
        let cases = [
            (
                Failure::Direct(refused()),
                (502, "connection to the target failed", false),
            ),
            (
                Failure::Direct(client::Error::Uri(bad_uri)),
                (400, "invalid authority", false),
            ),
            (
                Failure::Dispatch(DispatchError::NoEndpoints(discovery::NoEndpoints)),
                (503, "the service has no endpoints", false),
            ),
            (
                Failure::Dispatch(DispatchError::Unavailable(crate::failfast::Unavailable(
                    Duration::from_secs(3),
                ))),
                (
                    503,
                    "no endpoint of the service is available (failing fast)",
                    false,
                ),
            ),
            (
                Failure::Dispatch(DispatchError::Balancer("worker gone".into())),
                (502, "the service's endpoints failed", false),
            ),
        ];
        for (failure, want) in cases {
            let name = failure.to_string();
            assert_eq!(status_of(failure, false), want, "{name}");
        }
    }

    #[test]
    fn an_endpoints_failure_is_answered_as_its_own_and_counted_there() {
        let metrics = Metrics::new(Duration::from_secs(60));
        let stats = metrics.route(
            Direction::Outbound,
            "web.ns.svc.cluster.local:80",
            "10.0.0.1:80".parse().unwrap(),
            &Tls::Disabled,
            None,
        );
        let failure = Failure::Dispatch(DispatchError::Endpoint(EndpointError::Failed {
            stats: stats.clone(),
            source: refused(),
        }));
        let (respond, served_by) = failure.respond(true);
        assert!(matches!(
            respond,
            Respond::With(StatusCode::BAD_GATEWAY, "connection to the target failed")
        ));
        assert!(Arc::ptr_eq(&served_by.unwrap(), &stats));
    }
}
