//! A control-plane service's admin server (`/metrics`, `/ready`, `/live`),
//! and what every control-plane process does alike: bind its listeners,
//! saying where, and stop on SIGTERM or SIGINT.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::net::TcpListener;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn serve(listener: TcpListener, registry: Registry) {
    let registry = Arc::new(registry);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(handle(&req, &registry)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection failed");
            }
        });
    }
}

fn handle(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, registry) {
                Ok(()) => (StatusCode::OK, OPENMETRICS, out),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "metrics encoding failed\n".into(),
                ),
            }
        }
        (&Method::GET, "/ready") => (StatusCode::OK, "text/plain", "ready\n".into()),
        (&Method::GET, "/live") => (StatusCode::OK, "text/plain", "live\n".into()),
        (_, "/metrics" | "/ready" | "/live") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    rsp
}

/// Accepts connections on `listener` until `shutdown` resolves, each handed
/// to `serve` on a task of its own; a failed accept (too many open files)
/// pauses briefly rather than spinning.
pub async fn accept_until<F, Fut>(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        tokio::spawn(serve(stream, peer));
    }
}

/// Binds `addr` for the `what` server and logs `<what> listening on ADDR`
/// (which the tests wait for).
pub async fn bind(what: &str, addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} for the {what} server: {e}"),
        )
    })?;
    tracing::info!("{what} listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
