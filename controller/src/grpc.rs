//! What every control-plane gRPC server shares: limits that bound the work
//! clients can cause, and the per-method metrics Linkerd's control plane
//! exports (go-grpc-prometheus' `grpc_server_*`), so an operator sees which
//! calls a destination or identity service is busy with.
//!
//! A call counts from its request's arrival to its response's end: for a
//! server stream (a proxy's `Get`) that is when the stream closes, as in
//! Go's interceptors. A call ended by its client before a status is
//! counted `Canceled`.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds every server is built with.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Streams one HTTP/2 connection may have open (a proxy multiplexes
    /// every lookup on one connection).
    pub max_concurrent_streams: u32,
    /// Calls open at once across all connections; one more is refused
    /// with `RESOURCE_EXHAUSTED` at once rather than queued.
    pub max_open_calls: usize,
    /// How long a handler may take to start its response (a stream's
    /// messages are not limited).
    pub request_timeout: Duration,
    /// HTTP/2 pings on idle connections, so a vanished peer's streams
    /// are released.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 10_000,
            max_open_calls: 50_000,
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    grpc_service: String,
    grpc_method: String,
    grpc_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handled {
    grpc_service: String,
    grpc_method: String,
    grpc_type: &'static str,
    grpc_code: &'static str,
}

/// go-grpc-prometheus' default buckets, so Linkerd's dashboards read it.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug)]
struct Metrics {
    started: Family<Method, Counter>,
    handled: Family<Handled, Counter>,
    handling: Family<Method, Histogram>,
    open: Gauge,
    refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            open: Gauge::default(),
            refused: Counter::default(),
        }
    }
}

/// The tower layer that limits and counts a server's calls.
#[derive(Clone, Debug)]
pub struct Layer {
    metrics: Metrics,
    open: Arc<Semaphore>,
}

impl Layer {
    pub fn new(limits: &Limits) -> Self {
        Self {
            metrics: Metrics::default(),
            open: Arc::new(Semaphore::new(limits.max_open_calls)),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        let m = &self.metrics;
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            m.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status",
            m.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "How long RPCs took, from their request to the end of their response",
            m.handling.clone(),
        );
        registry.register(
            "grpc_server_open_calls",
            "RPCs open now (streams included)",
            m.open.clone(),
        );
        registry.register(
            "grpc_server_refused",
            "RPCs refused with RESOURCE_EXHAUSTED because too many were open",
            m.refused.clone(),
        );
    }
}

impl<S> tower::Layer<S> for Layer {
    type Service = Service<S>;

    fn layer(&self, inner: S) -> Service<S> {
        Service {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Service<S> {
    inner: S,
    layer: Layer,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Service<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<Counted<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let method = method(req.uri().path());
        let metrics = self.layer.metrics.clone();
        metrics.started.get_or_create(&method).inc();
        let Ok(permit) = self.layer.open.clone().try_acquire_owned() else {
            metrics.refused.inc();
            let status = tonic::Status::resource_exhausted(
                "too many calls open on this server; retry later",
            );
            let mut record = Record::new(method, metrics, None);
            record.finish(tonic::Code::ResourceExhausted);
            let response = status.into_http::<()>().map(|()| Counted {
                inner: None,
                record,
            });
            return Box::pin(std::future::ready(Ok(response)));
        };
        let record = Record::new(method, metrics, Some(permit));
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await?;
            // A trailers-only response (an error) has its status here.
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok()?.parse::<i32>().ok());
            let mut record = record;
            if let Some(code) = status {
                record.finish(tonic::Code::from_i32(code));
            }
            Ok(response.map(|inner| Counted {
                inner: Some(inner),
                record,
            }))
        })
    }
}

/// One call's accounting, done once: at its status, its end, or its drop.
struct Record {
    method: Method,
    metrics: Metrics,
    start: Instant,
    done: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Record {
    fn new(method: Method, metrics: Metrics, permit: Option<OwnedSemaphorePermit>) -> Self {
        if permit.is_some() {
            metrics.open.inc();
        }
        Self {
            method,
            metrics,
            start: Instant::now(),
            done: false,
            _permit: permit,
        }
    }

    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let Method {
            grpc_service,
            grpc_method,
            grpc_type,
        } = &self.method;
        self.metrics
            .handled
            .get_or_create(&Handled {
                grpc_service: grpc_service.clone(),
                grpc_method: grpc_method.clone(),
                grpc_type,
                grpc_code: code_name(code),
            })
            .inc();
        self.metrics
            .handling
            .get_or_create(&self.method)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Dropped before a status: the client went away.
        self.finish(tonic::Code::Cancelled);
        if self._permit.is_some() {
            self.metrics.open.dec();
        }
    }
}

/// A response body that records its call when its status passes.
pub struct Counted<B> {
    /// `None` for a call refused before it reached the service.
    inner: Option<B>,
    record: Record,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame
                    .trailers_ref()
                    .and_then(|t| t.get("grpc-status"))
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                {
                    this.record.finish(tonic::Code::from_i32(code));
                }
            }
            Some(Err(_)) => this.record.finish(tonic::Code::Internal),
            // Ended without a status: the server did not say; as Go, Unknown.
            None => this.record.finish(tonic::Code::Unknown),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// `/pkg.Service/Method`, and whether the method streams.
fn method(path: &str) -> Method {
    let (service, name) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .unwrap_or(("", path));
    Method {
        grpc_type: grpc_type(service, name),
        grpc_service: service.to_string(),
        grpc_method: name.to_string(),
    }
}

/// The control plane's server-streaming methods (it has no client or
/// bidirectional streams); every other method is unary. A test checks
/// this against the protos.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("io.linkerd.proxy.destination.Destination", "Get" | "GetProfile")
        | ("io.linkerd.proxy.inbound.InboundServerPolicies", "WatchPort")
        | ("io.linkerd.proxy.outbound.OutboundPolicies", "Watch")
        | ("io.linkerd.proxy.tap.Tap", "Observe")
        | ("io.linkerd.tap_controller.TapByResource", "Tap") => "server_stream",
        _ => "unary",
    }
}

/// Go's names for the codes, as Linkerd's metrics carry them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rpc in the protos the control plane serves has the type the
    /// table gives it.
    #[test]
    fn method_types_match_the_protos() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy-api/proto");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let package = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("package "))
                .map(|p| p.trim_end_matches(';').to_string());
            let mut service = String::new();
            for line in text.lines().map(str::trim) {
                if let Some(s) = line.strip_prefix("service ") {
                    service = format!(
                        "{}.{}",
                        package.as_deref().unwrap(),
                        s.trim_end_matches(['{', ' '])
                    );
                }
                let Some(rpc) = line.strip_prefix("rpc ") else {
                    continue;
                };
                let (name, rest) = rpc.split_once('(').unwrap();
                let (request, response) = rest.split_once("returns").unwrap();
                let expected = match (request.contains("stream "), response.contains("stream ")) {
                    (false, false) => "unary",
                    (false, true) => "server_stream",
                    (true, false) => "client_stream",
                    (true, true) => "bidi_stream",
                };
                assert_eq!(
                    grpc_type(&service, name.trim()),
                    expected,
                    "{service}/{name}"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 15,
            "only {checked} rpcs found in {}",
            dir.display()
        );
    }

    /// Past `max_open_calls`, a call is refused at once, and a call that
    /// ends makes room again.
    #[tokio::test]
    async fn open_calls_are_bounded() {
        use tower::{Layer as _, ServiceExt};
        let layer = Layer::new(&Limits {
            max_open_calls: 1,
            ..Limits::default()
        });
        let svc = layer.layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                Bytes::from_static(b"x"),
            )))
        }));
        let call = || {
            svc.clone().oneshot(
                http::Request::get("/io.linkerd.proxy.identity.Identity/Certify")
                    .body(())
                    .unwrap(),
            )
        };
        let first = call().await.unwrap();
        let refused = call().await.unwrap();
        assert_eq!(refused.headers()["grpc-status"], "8");
        drop(first);
        let again = call().await.unwrap();
        assert!(again.headers().get("grpc-status").is_none());
        assert_eq!(layer.metrics.refused.get(), 1);
        let handled = |code| {
            layer
                .metrics
                .handled
                .get_or_create(&Handled {
                    grpc_service: "io.linkerd.proxy.identity.Identity".into(),
                    grpc_method: "Certify".into(),
                    grpc_type: "unary",
                    grpc_code: code,
                })
                .get()
        };
        assert_eq!(handled("ResourceExhausted"), 1);
        assert_eq!(handled("Canceled"), 1);
    }

    #[test]
    fn paths_name_service_and_method() {
        let m = method("/io.linkerd.proxy.destination.Destination/Get");
        assert_eq!(m.grpc_service, "io.linkerd.proxy.destination.Destination");
        assert_eq!(m.grpc_method, "Get");
        assert_eq!(m.grpc_type, "server_stream");
        assert_eq!(method("/nonsense").grpc_service, "");
    }
}
