//! The tap gRPC service on the control port (4190): mesh TLS only, and only
//! for a client whose certificate proves the tap controller's identity.

use super::{Taps, matcher::Matcher};
use crate::{identity::Local, tls};
use bytes::BytesMut;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use linkerd_proxy_api::tap::{
    ObserveRequest, TapEvent,
    observe_request::extract,
    tap_server::{Tap, TapServer},
};
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// How long a tap client has to send its ClientHello and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves tap on `listener` until `drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    local: Arc<Local>,
    tap_identity: Arc<str>,
    taps: Arc<Taps>,
    drain: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = drain.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "tap accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (local, tap_identity, taps) = (local.clone(), tap_identity.clone(), taps.clone());
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(1024);
            let hello =
                tls::read_hello(&mut stream, &mut buf, local.name(), HANDSHAKE_TIMEOUT).await;
            let tls::Hello::Ours(accepted) = hello else {
                tracing::debug!(%peer, "tap connection without mesh TLS for this proxy; closing");
                return;
            };
            let conn = match tls::terminate(&local, accepted, stream, HANDSHAKE_TIMEOUT).await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "tap handshake failed");
                    return;
                }
            };
            if conn.client_id.as_deref() != Some(&*tap_identity) {
                tracing::info!(
                    %peer,
                    client = conn.client_id.as_deref().unwrap_or("(no certificate)"),
                    "tap refused: the client is not {tap_identity}"
                );
                return;
            }
            let svc = TapServer::new(TapService { taps });
            let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(conn.io), TowerToHyperService::new(svc))
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "tap connection failed");
            }
        });
    }
}

struct TapService {
    taps: Arc<Taps>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<TapEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Tap for TapService {
    type ObserveStream = EventStream;

    async fn observe(&self, req: Request<ObserveRequest>) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        if req.limit == 0 {
            return Err(Status::invalid_argument("limit must be at least 1"));
        }
        let matcher = match req.r#match.as_ref() {
            Some(m) => Matcher::new(m).map_err(|e| Status::invalid_argument(e.to_string()))?,
            None => return Err(Status::invalid_argument("match is required")),
        };
        let headers = matches!(
            req.extract.and_then(|e| e.extract),
            Some(extract::Extract::Http(extract::Http {
                extract: Some(extract::http::Extract::Headers(_))
            }))
        );
        let (id, rx) = self.taps.register(matcher, req.limit, headers);
        tracing::info!(id, limit = req.limit, "tap started");
        Ok(Response::new(Box::pin(Events {
            rx,
            id,
            taps: self.taps.clone(),
        })))
    }
}

/// A session's events; dropping it (the client went away) ends the session.
struct Events {
    rx: mpsc::Receiver<TapEvent>,
    id: u64,
    taps: Arc<Taps>,
}

impl Stream for Events {
    type Item = Result<TapEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|e| e.map(Ok))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.taps.deregister(self.id);
        tracing::info!(id = self.id, "tap ended");
    }
}
