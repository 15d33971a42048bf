//! The admin server every process of the mesh runs, proxies and control plane
//! alike: metrics for Prometheus, probes for the kubelet and, where asked for,
//! a shutdown hook for whoever runs the pod. Beside it, what every process
//! does alike: bind its listeners saying where, accept until told to stop,
//! and stop on SIGTERM or SIGINT.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::{
    convert::Infallible, fmt, future::Future, io, net::SocketAddr, sync::Arc, time::Duration,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a failed accept (usually EMFILE) pauses the loop: backing off
/// instead of spinning keeps the connections already open served.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Readiness = Box<dyn Fn() -> Result<(), &'static str> + Send + Sync>;

/// `/metrics`, `/live`, `/ready` and, with [`Admin::shutdown_on`],
/// `POST /shutdown`.
pub struct Admin {
    registry: Registry,
    ready: Readiness,
    shutdown: Option<CancellationToken>,
}

impl Admin {
    /// Serves `registry`; ready from the start.
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            ready: Box::new(|| Ok(())),
            shutdown: None,
        }
    }

    /// `/ready` answers 503 with the reason `check` gives while it gives one
    /// (a proxy is not ready before its first certificate).
    pub fn ready_when(
        mut self,
        check: impl Fn() -> Result<(), &'static str> + Send + Sync + 'static,
    ) -> Self {
        self.ready = Box::new(check);
        self
    }

    /// `POST /shutdown` from loopback cancels `token`, and `/ready` says no
    /// once it is cancelled, however that came about.
    pub fn shutdown_on(mut self, token: CancellationToken) -> Self {
        self.shutdown = Some(token);
        self
    }

    pub async fn serve(self, listener: TcpListener) {
        let admin = Arc::new(self);
        accept_until(listener, std::future::pending(), move |stream, peer| {
            let admin = admin.clone();
            async move {
                let svc = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(req, peer).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "admin connection failed");
                }
            }
        })
        .await
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let shutting_down = self.shutdown.as_ref().is_some_and(|t| t.is_cancelled());
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                // Reading `/proc` blocks and encoding every series takes a
                // while: neither belongs on the threads that serve traffic.
                let admin = self.clone();
                match tokio::task::spawn_blocking(move || encode(&admin.registry)).await {
                    Ok(Ok(body)) => text(StatusCode::OK, OPENMETRICS, body),
                    _ => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        "metrics encoding failed\n".into(),
                    ),
                }
            }
            (&Method::GET, "/live") => plain(StatusCode::OK, "live\n"),
            (&Method::GET, "/ready") if shutting_down => {
                plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            }
            (&Method::GET, "/ready") => match (self.ready)() {
                Ok(()) => plain(StatusCode::OK, "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    format!("{why}\n"),
                ),
            },
            (&Method::POST, "/shutdown") => match &self.shutdown {
                Some(token) if peer.ip().is_loopback() => {
                    tracing::info!("shutdown requested through the admin server");
                    token.cancel();
                    plain(StatusCode::OK, "shutdown\n")
                }
                Some(_) => plain(
                    StatusCode::FORBIDDEN,
                    "shutdown is only accepted from localhost\n",
                ),
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            },
            (_, "/metrics" | "/live" | "/ready") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            (_, "/shutdown") if self.shutdown.is_some() => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// The registry in OpenMetrics text.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    text(status, "text/plain; charset=utf-8", body.into())
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    rsp
}

/// Accepts connections on `listener` until `shutdown` resolves, each handed
/// to `serve` on a task of its own. The listener closes when this returns.
pub async fn accept_until<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve(stream, peer));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for the {what} server: {source}")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Binds `addr` for the `what` server and logs `<what> listening on ADDR`
/// (which the tests wait for).
pub async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let error = |source| BindError { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    tracing::info!("{what} listening on {local}");
    Ok(listener)
}

/// Resolves on SIGTERM or SIGINT.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a server may answer requests before its shutdown future is
/// polled, and a SIGTERM in between would otherwise kill the process
/// without a drain.
pub fn signalled() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut int) = match (term, int) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM and SIGINT");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;

    async fn start(admin: Admin) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(admin.serve(listener));
        addr
    }

    async fn call(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = client.request(req).await.unwrap();
        let status = rsp.status().as_u16();
        let ct = rsp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text() {
        let mut registry = Registry::default();
        let c = prometheus_client::metrics::counter::Counter::<u64>::default();
        c.inc();
        registry.register("things", "Things done", c);
        let addr = start(Admin::new(registry)).await;
        let (status, ct, body) = call(addr, "GET", "/metrics").await;
        assert_eq!((status, ct.as_str()), (200, OPENMETRICS));
        assert!(body.contains("things_total 1\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(call(addr, "POST", "/metrics").await.0, 405);
        assert_eq!(call(addr, "GET", "/nope").await.0, 404);
    }

    #[tokio::test]
    async fn ready_says_why_not() {
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let admin = Admin::new(Registry::default()).ready_when({
            let ready = ready.clone();
            move || {
                if ready.load(std::sync::atomic::Ordering::Acquire) {
                    Ok(())
                } else {
                    Err("identity not certified yet")
                }
            }
        });
        let addr = start(admin).await;
        assert_eq!(call(addr, "GET", "/live").await.0, 200);
        let (status, _, body) = call(addr, "GET", "/ready").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "identity not certified yet\n")
        );
        ready.store(true, std::sync::atomic::Ordering::Release);
        let (status, _, body) = call(addr, "GET", "/ready").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"));
    }

    #[tokio::test]
    async fn shutdown_only_where_asked_for() {
        let addr = start(Admin::new(Registry::default())).await;
        assert_eq!(call(addr, "POST", "/shutdown").await.0, 404);

        let token = CancellationToken::new();
        let addr = start(Admin::new(Registry::default()).shutdown_on(token.clone())).await;
        assert_eq!(call(addr, "GET", "/shutdown").await.0, 405);
        assert!(!token.is_cancelled());
        assert_eq!(call(addr, "POST", "/shutdown").await.0, 200);
        assert!(token.is_cancelled());
        let (status, _, body) = call(addr, "GET", "/ready").await;
        assert_eq!((status, body.as_str()), (503, "shutting down\n"));
    }
}
