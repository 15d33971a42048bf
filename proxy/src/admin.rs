//! The admin server: metrics for Prometheus, probes for the kubelet, and a
//! shutdown hook for whoever runs the pod.

use crate::{identity::Local, metrics};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(crate) struct Admin {
    registry: Registry,
    /// Cancelled when the proxy begins to shut down (`/shutdown` cancels it
    /// too): `/ready` then says no.
    shutdown: CancellationToken,
    /// With identity, the proxy is not ready before its first certificate:
    /// until then it cannot take part in the mesh.
    identity: Option<Arc<Local>>,
}

impl Admin {
    pub(crate) fn new(
        registry: Registry,
        shutdown: CancellationToken,
        identity: Option<Arc<Local>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry,
            shutdown,
            identity,
        })
    }

    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let admin = self.clone();
            tokio::spawn(async move {
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
            });
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                // Reading `/proc` blocks and encoding every series takes a
                // while: neither belongs on the threads that serve traffic.
                let admin = self.clone();
                match tokio::task::spawn_blocking(move || metrics::encode(&admin.registry)).await {
                    Ok(Ok(body)) => text(StatusCode::OK, OPENMETRICS, body),
                    _ => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        "metrics encoding failed\n".into(),
                    ),
                }
            }
            (&Method::GET, "/live") => plain(StatusCode::OK, "live\n"),
            (&Method::GET, "/ready") if self.shutdown.is_cancelled() => {
                plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            }
            (&Method::GET, "/ready")
                if self.identity.as_ref().is_some_and(|i| !i.is_certified()) =>
            {
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "identity not certified yet\n",
                )
            }
            (&Method::GET, "/ready") => plain(StatusCode::OK, "ready\n"),
            (&Method::POST, "/shutdown") if peer.ip().is_loopback() => {
                tracing::info!("shutdown requested through the admin server");
                self.shutdown.cancel();
                plain(StatusCode::OK, "shutdown\n")
            }
            (&Method::POST, "/shutdown") => plain(
                StatusCode::FORBIDDEN,
                "shutdown is only accepted from localhost\n",
            ),
            (_, "/metrics" | "/live" | "/ready" | "/shutdown") => {
                plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
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
