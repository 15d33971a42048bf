//! HTTP proxying: serves a detected HTTP/1 or HTTP/2 connection and forwards
//! each request to the connection's target, in the client's own protocol.

mod body;
mod client;
mod client_id;
mod forward;
mod headers;
mod normalize;
mod orig_proto;
mod record;
mod route;
mod stack;
mod upgrade;
mod woken;

pub(crate) use self::client::{
    Checkin, Clients, Error as ClientError, Healthy, SendError, Target, Version,
};
pub(crate) use self::{
    body::{Buffered, RequestBody, ResponseBody, grpc_status},
    client_id::ClientId,
    forward::Forward,
    normalize::Normalize,
    orig_proto::Downgrade,
    record::{Failure, Record},
    route::{Discover, Route, authority_of},
    stack::{Accepted, Outgoing, Req, Routed, Serve},
    upgrade::Upgrade,
};
use crate::config::ServerConfig;
use http::{Request, Response};
use hyper::{body::Incoming, server::conn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{
    future::Future,
    pin::{Pin, pin},
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether a message is gRPC, by its `content-type`.
pub(crate) fn is_grpc<B>(msg: &http::Request<B>) -> bool {
    is_grpc_content(msg.headers())
}

pub(crate) fn is_grpc_content(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Serves one HTTP connection until the client closes it, it sits idle past
/// the idle timeout, or `drain` asks for a graceful shutdown.
pub(crate) async fn serve<I, S>(
    io: I,
    version: Version,
    stack: S,
    activity: &Activity,
    cfg: &ServerConfig,
    drain: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<ResponseBody>, Error = BoxError>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let proxy = Serve::new(stack);
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
                activity,
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
                activity,
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
    pub(crate) fn new() -> Self {
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
