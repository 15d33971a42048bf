//! Upstream HTTP connections, kept in the client's own protocol.
//!
//! The request path is where a proxy spends its life, so connections are
//! shaped to it rather than pooled generically:
//!
//! - HTTP/2: one multiplexed connection per target, shared by every client
//!   connection. Each client connection caches the sender, so a request takes
//!   no lock; only (re)connecting does.
//! - HTTP/1: hyper serves a client connection one request at a time, so a
//!   client connection keeps the upstream connection it used for its next
//!   request. When the client connection ends, the upstream one goes back to
//!   a small per-target idle pool for the next client connection.

use super::{body::RequestBody, orig_proto};
use crate::{
    cache::IdleCache,
    discovery::EndpointMeta,
    identity::{self, Local},
    metrics::{Direction, Metrics, NoTlsReason, Peer, TcpStats, Tls},
    transport::{self, Conn, ConnectConfig, Metered},
};
use hyper::{
    Request, Response,
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long an unused HTTP/1 connection may wait in the idle pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle HTTP/1 connections kept per target; more are closed when released.
const MAX_IDLE: usize = 64;

#[derive(Copy, Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Version {
    Http1,
    H2,
}

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("connection to the target failed: {0}")]
    Connect(#[source] io::Error),
    #[error("HTTP handshake with the target failed: {0}")]
    Handshake(#[source] hyper::Error),
    #[error(transparent)]
    Request(#[from] hyper::Error),
    #[error("the request's authority is not usable: {0}")]
    Uri(#[source] http::Error),
}

/// Every target this side of the proxy has talked to.
#[derive(Debug)]
pub(crate) struct Clients {
    direction: Direction,
    connect: ConnectConfig,
    metrics: Arc<Metrics>,
    /// This proxy's identity, for mesh TLS to meshed endpoints.
    identity: Option<Arc<Local>>,
    /// By address and, for discovered endpoints, what destination says of
    /// them: an address reached as two services' endpoint is counted as each.
    /// A target no connection or balancer holds goes after a while, and its
    /// pooled connections close with it.
    targets: IdleCache<TargetKey, Target>,
}

type TargetKey = (SocketAddr, Option<Arc<EndpointMeta>>);

impl Clients {
    /// Targets nothing holds are forgotten after `retain_idle`.
    pub(crate) fn new(
        direction: Direction,
        connect: ConnectConfig,
        metrics: Arc<Metrics>,
        identity: Option<Arc<Local>>,
        retain_idle: Duration,
    ) -> Self {
        Self {
            direction,
            connect,
            metrics,
            identity,
            targets: IdleCache::new(retain_idle),
        }
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Forgets the targets idle for the retention; returns how many went.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        self.targets.sweep(now)
    }

    /// The TLS of a connection to `meta`'s endpoint (or to an undiscovered
    /// target): mesh TLS when both this proxy and the endpoint have an
    /// identity, otherwise plaintext and why.
    fn mesh_tls(&self, meta: Option<&EndpointMeta>) -> (Tls, Option<MeshTls>) {
        let Some(local) = &self.identity else {
            return (Tls::Disabled, None);
        };
        if self.direction == Direction::Inbound {
            return (Tls::None(NoTlsReason::Loopback), None);
        }
        let peer = meta.and_then(|m| m.identity.clone());
        match peer.and_then(|id| Some((identity::server_name(&id)?, id))) {
            Some((server_name, id)) => (
                Tls::outbound(id),
                Some(MeshTls {
                    local: local.clone(),
                    server_name,
                }),
            ),
            None => (Tls::None(NoTlsReason::NotProvidedByServiceDiscovery), None),
        }
    }

    /// The shared state for `target`; looked up once per client connection
    /// (or per discovered endpoint, with what destination says of it).
    pub(crate) fn target(
        &self,
        target: SocketAddr,
        meta: Option<&Arc<EndpointMeta>>,
    ) -> Arc<Target> {
        let key = (target, meta.cloned());
        self.targets.get_or_insert_with(&key, |key| {
            let (tls, mesh) = self.mesh_tls(meta.map(|m| &**m));
            let target = Target {
                addr: target,
                connect: self.connect,
                series: Series {
                    metrics: self.metrics.clone(),
                    direction: self.direction,
                    dst: meta.map(|m| m.labels.clone()),
                },
                h2_upgrade: meta.is_some_and(|m| m.h2),
                tls,
                mesh,
                h2: tokio::sync::Mutex::new(None),
                idle: Mutex::new(Vec::new()),
                health: Health::default(),
            };
            (key.clone(), target)
        })
    }
}

/// Where a target's connections are counted. The series is looked up per
/// connection, not held by the target, so an endpoint discovery announced
/// but never connected to has none, and one whose connections have all
/// closed lets its series go idle.
#[derive(Debug)]
struct Series {
    metrics: Arc<Metrics>,
    direction: Direction,
    dst: Option<Arc<crate::metrics::DstLabels>>,
}

/// One upstream address and the connections to it.
#[derive(Debug)]
pub(crate) struct Target {
    addr: SocketAddr,
    connect: ConnectConfig,
    series: Series,
    /// The `tls` labels of everything sent to this target.
    tls: Tls,
    /// Set for a meshed endpoint: connections are mesh TLS to its identity.
    mesh: Option<MeshTls>,
    /// HTTP/1 requests travel as HTTP/2 (the peer is a meshed proxy).
    h2_upgrade: bool,
    h2: tokio::sync::Mutex<Option<http2::SendRequest<RequestBody>>>,
    idle: Mutex<Vec<(http1::SendRequest<RequestBody>, Instant)>>,
    health: Health,
}

/// How to reach a meshed endpoint: as this proxy, to the endpoint's name.
#[derive(Debug)]
struct MeshTls {
    local: Arc<Local>,
    server_name: ServerName<'static>,
}

/// Whether a target accepts connections. A balancer must not send to a
/// target that refuses them: its errors are fast, and a latency-aware
/// balancer would favour it.
#[derive(Debug, Default)]
struct Health {
    /// Connect failures in a row, and until when the target is out.
    down: Mutex<(u32, Option<Instant>)>,
}

/// The first back-off after a failed connect; it doubles per failure, up
/// to Linkerd's outbound connect back-off. A down target costs a probe
/// connection per back-off, and comes back within one of accepting again.
const DOWN_MIN: Duration = Duration::from_millis(100);
const DOWN_MAX: Duration = Duration::from_millis(500);

/// Whether a target is in rotation.
enum Down {
    No,
    /// Out until then.
    Until(Instant),
    /// Out, and its back-off is over: a connection will tell.
    Probe,
}

impl Health {
    fn failed(&self) {
        let mut down = self.down.lock().unwrap();
        let backoff = DOWN_MIN.saturating_mul(1 << down.0.min(7)).min(DOWN_MAX);
        *down = (down.0.saturating_add(1), Some(Instant::now() + backoff));
    }

    fn succeeded(&self) {
        let mut down = self.down.lock().unwrap();
        if down.0 > 0 {
            *down = (0, None);
        }
    }

    fn state(&self) -> Down {
        match *self.down.lock().unwrap() {
            (0, _) => Down::No,
            (_, Some(until)) if until > Instant::now() => Down::Until(until),
            _ => Down::Probe,
        }
    }
}

type H1 = http1::SendRequest<RequestBody>;
type H2 = http2::SendRequest<RequestBody>;

impl Target {
    pub(crate) fn tls(&self) -> &Tls {
        &self.tls
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where this side's series are: an endpoint's requests are counted
    /// there too.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.series.metrics
    }

    fn stats(&self) -> Arc<TcpStats> {
        let s = &self.series;
        s.metrics
            .tcp(s.direction, Peer::Dst, self.addr, &self.tls, s.dst.as_ref())
    }

    /// A new connection, counted in the target's TCP series, with mesh TLS
    /// to a meshed endpoint; a failure takes the target out of rotation for
    /// a while. A meshed endpoint whose certificate does not prove its
    /// identity is a failure like any other: there is no plaintext retry.
    pub(crate) async fn connect_tcp(&self) -> io::Result<Conn> {
        let result = self.connect_once().await;
        match &result {
            Ok(_) => self.health.succeeded(),
            Err(_) => self.health.failed(),
        }
        result
    }

    async fn connect_once(&self) -> io::Result<Conn> {
        // Certified first, so the ClientHello follows the connect at once:
        // the peer may give a hello little time on ports that skip detection.
        if let Some(mesh) = &self.mesh
            && !mesh.local.certified(self.connect.timeout).await
        {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "this proxy has no certificate yet for mesh TLS",
            ));
        }
        let stream = transport::connect(self.addr, self.connect).await?;
        let stats = self.stats();
        let io = Metered::new(stream, stats.clone());
        let Some(mesh) = &self.mesh else {
            return Ok(Conn::Plain(io));
        };
        let connector = tokio_rustls::TlsConnector::from(mesh.local.client_config().clone());
        let handshake = connector.connect(mesh.server_name.clone(), io);
        match tokio::time::timeout(self.connect.timeout, handshake).await {
            Ok(Ok(tls)) => Ok(Conn::Tls(Box::new(tls))),
            Ok(Err(e)) => {
                stats.tls_failed();
                Err(io::Error::new(
                    e.kind(),
                    format!("mesh TLS to {:?} failed: {e}", self.server_name()),
                ))
            }
            Err(_) => {
                stats.tls_failed();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "mesh TLS handshake timed out",
                ))
            }
        }
    }

    fn server_name(&self) -> String {
        match &self.mesh {
            Some(m) => m.server_name.to_str().into_owned(),
            None => String::new(),
        }
    }

    async fn connect(&self) -> Result<TokioIo<Conn>, Error> {
        self.connect_tcp()
            .await
            .map(TokioIo::new)
            .map_err(Error::Connect)
    }

    /// The shared HTTP/2 connection if it is open and nobody is replacing it.
    pub(crate) fn try_h2(&self) -> Option<H2> {
        let shared = self.h2.try_lock().ok()?;
        shared.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// The shared HTTP/2 connection without waiting on its lock when it is
    /// open, as it nearly always is.
    async fn shared_h2(&self) -> Result<H2, Error> {
        match self.try_h2() {
            Some(send) => Ok(send),
            None => self.h2().await,
        }
    }

    /// The shared HTTP/2 connection, made if there is none or it has closed.
    pub(crate) async fn h2(&self) -> Result<H2, Error> {
        let mut shared = self.h2.lock().await;
        if let Some(send) = shared.as_ref().filter(|s| !s.is_closed()) {
            return Ok(send.clone());
        }
        let io = self.connect().await?;
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .handshake(io)
            .await
            .map_err(|e| {
                // A peer that accepts but will not speak HTTP/2 is as down
                // as one that refuses.
                self.health.failed();
                Error::Handshake(e)
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection failed");
            }
        });
        *shared = Some(send.clone());
        Ok(send)
    }

    /// An idle HTTP/1 connection from the pool, or a new one. The flag says
    /// whether it was reused (and so may have been closed under us).
    async fn h1(&self) -> Result<(H1, bool), Error> {
        loop {
            let idle = self.idle.lock().unwrap().pop();
            let Some((mut send, since)) = idle else { break };
            if since.elapsed() < IDLE_TIMEOUT && send.ready().await.is_ok() {
                return Ok((send, true));
            }
        }
        let io = self.connect().await?;
        let (send, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(Error::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream HTTP/1 connection failed");
            }
        });
        Ok((send, false))
    }

    /// Returns a connection that finished its last response to the pool.
    fn release(&self, send: H1) {
        if send.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap();
        idle.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
        if idle.len() < MAX_IDLE {
            idle.push((send, Instant::now()));
        }
    }
}

/// A client connection's view of its target.
pub(crate) enum Upstream {
    H1(H1Slot),
    H2 {
        target: Arc<Target>,
        /// This connection's clone of the shared sender.
        send: Option<H2>,
    },
}

impl Upstream {
    pub(crate) fn target(&self) -> &Arc<Target> {
        match self {
            Self::H1(slot) => &slot.target,
            Self::H2 { target, .. } => target,
        }
    }

    pub(crate) fn new(target: Arc<Target>, version: Version) -> Self {
        match version {
            Version::Http1 => Self::H1(H1Slot {
                target,
                held: Arc::new(Mutex::new(None)),
            }),
            Version::H2 => Self::H2 { target, send: None },
        }
    }
}

/// The HTTP/1 connection a client connection holds between its requests.
/// Its mutex is this client connection's alone, so it is never contended.
pub(crate) struct H1Slot {
    target: Arc<Target>,
    held: Arc<Mutex<Option<H1>>>,
}

impl Drop for H1Slot {
    fn drop(&mut self) {
        if let Some(send) = self.held.lock().unwrap().take() {
            self.target.release(send);
        }
    }
}

/// Hands an HTTP/1 connection back to its client connection once the
/// response body has been read to its end; dropped early, it closes the
/// connection, which is then in an unknown state.
pub(crate) struct Checkin {
    send: Option<H1>,
    home: Home,
}

/// Where an HTTP/1 connection goes back to when its response is done.
enum Home {
    /// The client connection that holds it between requests.
    Slot(Arc<Mutex<Option<H1>>>),
    /// The target's idle pool (balanced requests pick their endpoint anew).
    Pool(Arc<Target>),
}

impl Checkin {
    pub(crate) fn done(mut self) {
        if let Some(send) = self.send.take() {
            match &self.home {
                Home::Slot(held) => *held.lock().unwrap() = Some(send),
                Home::Pool(target) => target.release(send),
            }
        }
    }
}

impl std::fmt::Debug for Checkin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkin").finish_non_exhaustive()
    }
}

impl H1Slot {
    fn take(&self) -> Option<H1> {
        self.held.lock().unwrap().take()
    }

    /// Sends `req` upstream on the connection this client connection holds,
    /// or another. An upgrade's connection is never reused. The `Checkin`
    /// must be completed when the response body ends.
    pub(crate) async fn send(
        target: Arc<Target>,
        held: Arc<Mutex<Option<H1>>>,
        cached: Option<H1>,
        req: Request<RequestBody>,
        upgrade: bool,
    ) -> Result<(Response<Incoming>, Option<Checkin>), Error> {
        let first = match cached {
            Some(mut s) => s.ready().await.is_ok().then_some((s, true)),
            None => None,
        };
        send_h1(target, first, req, upgrade, Home::Slot(held))
            .await
            .map_err(|e| e.error)
    }

    pub(crate) fn parts(&self) -> (Arc<Target>, Arc<Mutex<Option<H1>>>, Option<H1>) {
        (self.target.clone(), self.held.clone(), self.take())
    }
}

/// Why a request sent on a connection got no response, with the request if
/// it never left: a connection that closed as it was handed the request,
/// and no other to be had.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) error: Error,
    pub(crate) unsent: Option<Request<RequestBody>>,
}

impl SendError {
    fn unsent(error: Error, req: Request<RequestBody>) -> Self {
        Self {
            error,
            unsent: Some(req),
        }
    }
}

impl From<Error> for SendError {
    fn from(error: Error) -> Self {
        Self {
            error,
            unsent: None,
        }
    }
}

/// A connection a request can go out on, found or made before the request
/// is handed to it: a target that cannot be reached has then taken nothing,
/// and a balancer may send the request elsewhere.
pub(crate) enum Ready {
    H2(H2),
    /// And whether it was reused (and so may have been closed under us).
    H1(H1, bool),
}

impl Target {
    /// Sends `req` on any connection to this target in its own protocol: an
    /// HTTP/1 connection comes from, and goes back to, the idle pool.
    pub(crate) async fn send(
        self: Arc<Self>,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<Checkin>), Error> {
        let ready = self.ready(req.version()).await?;
        self.send_on(ready, req).await.map_err(|e| e.error)
    }

    /// A connection for a request of `version`: the shared HTTP/2 one (also
    /// for HTTP/1 to a meshed proxy), or an HTTP/1 one from the pool.
    pub(crate) async fn ready(&self, version: http::Version) -> Result<Ready, Error> {
        if version == http::Version::HTTP_2 || self.h2_upgrade {
            return Ok(Ready::H2(self.shared_h2().await?));
        }
        let (send, reused) = self.h1().await?;
        Ok(Ready::H1(send, reused))
    }

    /// Sends `req` on the connection `ready` found for it.
    pub(crate) async fn send_on(
        self: Arc<Self>,
        ready: Ready,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<Checkin>), SendError> {
        match ready {
            Ready::H2(send) if req.version() == http::Version::HTTP_2 => {
                Ok((self.send_h2(send, req).await?, None))
            }
            Ready::H2(send) => {
                let origin_form = req.uri().authority().is_none();
                let orig = orig_proto::upgrade_request(&mut req).map_err(Error::Uri)?;
                match self.send_h2(send, req).await {
                    Ok(mut rsp) => {
                        orig_proto::downgrade_response(&mut rsp, orig);
                        Ok((rsp, None))
                    }
                    // Back as it came, for whichever endpoint takes it.
                    Err(SendError {
                        error,
                        unsent: Some(mut req),
                    }) => {
                        orig_proto::revert_request(&mut req, orig, origin_form);
                        Err(SendError::unsent(error, req))
                    }
                    Err(e) => Err(e),
                }
            }
            Ready::H1(send, reused) => {
                let home = Home::Pool(self.clone());
                send_h1(self, Some((send, reused)), req, false, home).await
            }
        }
    }

    /// Sends on `send`, or, if its connection closed before the request went
    /// out (the target began to shut down), on a new one.
    async fn send_h2(
        &self,
        mut send: H2,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let unsent = match send.try_send_request(req).await {
            Ok(rsp) => return Ok(rsp),
            Err(mut e) => match e.take_message() {
                Some(unsent) => unsent,
                None => return Err(Error::Request(e.into_error()).into()),
            },
        };
        let mut send = match self.h2().await {
            Ok(send) => send,
            Err(error) => return Err(SendError::unsent(error, unsent)),
        };
        send.try_send_request(unsent).await.map_err(|mut e| {
            let unsent = e.take_message();
            SendError {
                error: Error::Request(e.into_error()),
                unsent,
            }
        })
    }
}

/// Sends on `first` (a connection and whether it was reused), or a new
/// connection if there is none or it closed before the request went out.
async fn send_h1(
    target: Arc<Target>,
    mut first: Option<(H1, bool)>,
    mut req: Request<RequestBody>,
    upgrade: bool,
    home: Home,
) -> Result<(Response<Incoming>, Option<Checkin>), SendError> {
    loop {
        let (mut send, reused) = match first.take() {
            Some(conn) => conn,
            None => match target.h1().await {
                Ok(conn) => conn,
                Err(error) => return Err(SendError::unsent(error, req)),
            },
        };
        match send.try_send_request(req).await {
            Ok(rsp) => {
                let checkin = (!upgrade).then_some(Checkin {
                    send: Some(send),
                    home,
                });
                return Ok((rsp, checkin));
            }
            // A reused connection the target closed before our request
            // went out: nothing was sent, so a new connection may retry.
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => req = unsent,
                Some(unsent) => return Err(SendError::unsent(e.into_error().into(), unsent)),
                None => return Err(Error::Request(e.into_error()).into()),
            },
        }
    }
}

/// A balanced endpoint's target, ready only while the target accepts
/// connections. One that refused is out of rotation: after its back-off it
/// is probed with a connection of its own, and ready again only once one
/// succeeds, so no request is spent finding out whether it is back.
pub(crate) struct Healthy {
    target: Arc<Target>,
    probe: Probe,
}

type Connecting = std::pin::Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

enum Probe {
    Idle,
    Backoff(std::pin::Pin<Box<tokio::time::Sleep>>),
    Connecting(Connecting),
}

impl Healthy {
    pub(crate) fn new(target: Arc<Target>) -> Self {
        Self {
            target,
            probe: Probe::Idle,
        }
    }

    pub(crate) fn target(&self) -> &Arc<Target> {
        &self.target
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::task::{Poll, ready};
        loop {
            match &mut self.probe {
                Probe::Idle => match self.target.health.state() {
                    Down::No => return Poll::Ready(()),
                    Down::Until(until) => {
                        self.probe =
                            Probe::Backoff(Box::pin(tokio::time::sleep_until(until.into())));
                    }
                    Down::Probe => {
                        let target = self.target.clone();
                        self.probe =
                            Probe::Connecting(Box::pin(async move { target.connect_tcp().await }));
                    }
                },
                Probe::Backoff(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.probe = Probe::Idle;
                }
                Probe::Connecting(connecting) => {
                    // Its result is in the target's health either way.
                    let _ = ready!(connecting.as_mut().poll(cx));
                    self.probe = Probe::Idle;
                }
            }
        }
    }
}
