//! Each request's metrics and tap events, and the one place where a request
//! that got no response from upstream gets one from the proxy.

use super::{
    Activity, Outgoing, Routed,
    body::{Recorder, ResponseBody},
    client,
    route::authority_of,
};
use crate::{
    discovery::{self, Answer, EndpointError},
    metrics::{Direction, RouteStats, Tls},
    tap::{self, Taps},
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The header on responses the proxy made itself, saying why.
const L5D_PROXY_ERROR: &str = "l5d-proxy-error";

pub(crate) struct Record<S> {
    inner: S,
    activity: Arc<Activity>,
    /// The client spoke HTTP/2: a stream reset upstream is passed on as one.
    h2: bool,
    tap: TapCtx,
}

/// What a tap event says of the connection, and its numbering.
struct TapCtx {
    taps: Arc<Taps>,
    direction: Direction,
    client: SocketAddr,
    target: SocketAddr,
    tls: Tls,
    /// This connection's number in tap events, and its tapped requests'.
    base: u32,
    seq: u64,
}

impl<S> Record<S> {
    pub(crate) fn layer(
        conn: &super::Accepted,
        direction: Direction,
        taps: Arc<Taps>,
        activity: Arc<Activity>,
    ) -> impl tower::Layer<S, Service = Self> {
        let conn = conn.clone();
        tower::layer::layer_fn(move |inner| Self {
            inner,
            activity: activity.clone(),
            h2: conn.version == super::Version::H2,
            tap: TapCtx {
                base: taps.next_base(),
                taps: taps.clone(),
                direction,
                client: conn.client,
                target: conn.target,
                tls: conn.tls.clone(),
                seq: 0,
            },
        })
    }
}

impl TapCtx {
    /// The tap sessions that want this request, if any.
    fn tap<B>(&mut self, req: &Request<B>, balanced: bool) -> Option<Box<tap::Tapped>> {
        let target;
        let authority = match authority_of(req) {
            "" => {
                target = self.target.to_string();
                &target
            }
            named => named,
        };
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
        let tapped = self.taps.tap(
            &facts,
            tap::Meta {
                inbound: self.direction == Direction::Inbound,
                base: self.base,
                stream: self.seq,
                tls: &self.tls,
                headers: req.headers(),
                balanced,
            },
        );
        if tapped.is_some() {
            self.seq += 1;
        }
        tapped
    }
}

impl<S, B> tower::Service<Routed<B>> for Record<S>
where
    S: tower::Service<Outgoing<B>, Response = Answer, Error = Failure>,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Failures become responses: none is the stack's.
        let _ = std::task::ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, routed: Routed<B>) -> Self::Future {
        let started = Instant::now();
        let Routed {
            req,
            route,
            dispatch,
            profile,
        } = routed;
        let activity = self.activity.clone();
        // A dispatched request is counted where it goes: its endpoint, or
        // the original destination if the name turns out not to be a
        // service.
        let mut recorder = match dispatch {
            Some(_) => Recorder::deferred(route, started, activity),
            None => Recorder::new(route, started, activity),
        };
        if self.tap.taps.is_active()
            && let Some(tapped) = self.tap.tap(&req.http, dispatch.is_some())
        {
            recorder.tap(tapped);
        }
        if let Some(p) = &profile {
            recorder.profile(p.route.clone());
        }
        Recorded {
            inner: self.inner.call(Outgoing {
                req,
                dispatch,
                profile,
            }),
            recorder: Some(recorder),
            h2: self.h2,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct Recorded<F> {
        #[pin]
        inner: F,
        // Dropped with the future if the client gives up first: counted
        // then as abandoned.
        recorder: Option<Recorder>,
        h2: bool,
    }
}

impl<F> Future for Recorded<F>
where
    F: Future<Output = Result<Answer, Failure>>,
{
    type Output = Result<Response<ResponseBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut recorder = this.recorder.take().expect("polled after completion");
        recorder.answered();
        let Answer {
            rsp,
            checkin,
            served_by,
        } = match result {
            Ok(answer) => answer,
            Err(failure) => {
                // As linkerd2-proxy's "Request failed": rare, and the one
                // trace of why a client saw a proxy's error.
                tracing::info!(error = %failure, "request failed");
                let (respond, served_by) = failure.respond(*this.h2);
                // A balanced endpoint's failure counts in its series.
                if let Some(endpoint) = served_by {
                    recorder.served_by(endpoint);
                }
                return Poll::Ready(match respond {
                    Respond::Reset(e) => Err(e),
                    Respond::With(status, msg) => Ok(error_response(status, msg, recorder)),
                    Respond::Grpc(code, msg) => Ok(grpc_error_response(code, msg, recorder)),
                });
            }
        };
        if let Some(endpoint) = served_by {
            recorder.served_by(endpoint);
        }
        recorder.response(rsp.status(), rsp.headers());
        Poll::Ready(Ok(
            rsp.map(|b: Incoming| ResponseBody::new(b, recorder, checkin))
        ))
    }
}

/// Why a request got no response from upstream, typed: where it was sent
/// decides which errors it can meet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Its authority cannot be written as the upstream request needs it.
    #[error(transparent)]
    InvalidAuthority(#[from] super::normalize::InvalidAuthority),
    /// To the connection's own target.
    #[error(transparent)]
    Direct(client::Error),
    /// Through discovery.
    #[error(transparent)]
    Dispatch(discovery::DispatchError),
    /// Inbound policy does not let the client use the request's route.
    #[error("the client is not authorized to use the route")]
    Unauthorized { grpc: bool },
    /// The request is on none of the server's routes.
    #[error("no route of the server takes the request")]
    NoRoute { grpc: bool },
}

/// What the client gets instead of a response from upstream.
pub(crate) enum Respond {
    /// The server reset the HTTP/2 stream: reset the client's too, with the
    /// same reason (hyper finds the h2 error in the chain).
    Reset(BoxError),
    /// A response the proxy makes, saying why in `l5d-proxy-error`.
    With(StatusCode, &'static str),
    /// A gRPC error the proxy makes: trailers-only, with this status code.
    Grpc(u32, &'static str),
}

/// gRPC's `PERMISSION_DENIED` and `NOT_FOUND`.
const GRPC_PERMISSION_DENIED: u32 = 7;
const GRPC_NOT_FOUND: u32 = 5;

impl Failure {
    /// The one place errors become responses; with the balanced endpoint
    /// whose series counted the request, if it got that far.
    pub(crate) fn respond(self, h2: bool) -> (Respond, Option<Arc<RouteStats>>) {
        let with = |status, msg| (Respond::With(status, msg), None);
        let (error, served_by) = match self {
            Self::InvalidAuthority(_) => return with(StatusCode::BAD_REQUEST, "invalid authority"),
            Self::Unauthorized { grpc } => {
                const MSG: &str = "unauthorized request on route";
                return match grpc {
                    true => (Respond::Grpc(GRPC_PERMISSION_DENIED, MSG), None),
                    false => with(StatusCode::FORBIDDEN, MSG),
                };
            }
            Self::NoRoute { grpc } => {
                const MSG: &str = "no route found for request";
                return match grpc {
                    true => (Respond::Grpc(GRPC_NOT_FOUND, MSG), None),
                    false => with(StatusCode::NOT_FOUND, MSG),
                };
            }
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
                // As Linkerd's: a 504, counted as a failure.
                discovery::DispatchError::Timeout(_) => {
                    return with(StatusCode::GATEWAY_TIMEOUT, "request timed out");
                }
                discovery::DispatchError::ClientBody(_) => {
                    return with(StatusCode::BAD_REQUEST, "the request body failed");
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

/// A gRPC error as a gRPC server sends it: status 200, and the code and
/// message in the headers, with no body.
fn grpc_error_response(
    code: u32,
    msg: &'static str,
    mut recorder: Recorder,
) -> Response<ResponseBody> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", http::HeaderValue::from(code));
    headers.insert("grpc-message", http::HeaderValue::from_static(msg));
    headers.insert(L5D_PROXY_ERROR, http::HeaderValue::from_static(msg));
    recorder.response(StatusCode::OK, &headers);
    let mut rsp = Response::new(ResponseBody::empty(Some(recorder)));
    *rsp.headers_mut() = headers;
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{discovery::DispatchError, metrics::Metrics};
    use std::time::Duration;

    fn status_of(failure: Failure, h2: bool) -> (u16, &'static str, bool) {
        match failure.respond(h2) {
            (Respond::With(status, msg), served_by) => (status.as_u16(), msg, served_by.is_some()),
            (Respond::Reset(e), _) => panic!("a reset, not a response: {e}"),
            (Respond::Grpc(code, _), _) => panic!("a gRPC error, not a response: {code}"),
        }
    }

    fn refused() -> client::Error {
        client::Error::Connect(std::io::ErrorKind::ConnectionRefused.into())
    }

    fn layer<S>(inner: S) -> (Record<S>, Arc<Activity>) {
        use tower::Layer;
        let conn = super::super::Accepted {
            client: "10.0.0.9:50000".parse().unwrap(),
            target: "10.0.0.1:80".parse().unwrap(),
            tls: Tls::Disabled,
            version: super::super::Version::Http1,
        };
        let activity = Arc::new(Activity::new());
        let layer = Record::layer(&conn, Direction::Outbound, Taps::new(), activity.clone());
        (layer.layer(inner), activity)
    }

    fn routed(metrics: &Metrics) -> Routed<()> {
        Routed {
            req: super::super::Req::new(Request::get("/").body(()).unwrap(), false),
            route: metrics.route(
                Direction::Outbound,
                "web:80",
                "10.0.0.1:80".parse().unwrap(),
                &Tls::Disabled,
                None,
            ),
            dispatch: None,
            profile: None,
        }
    }

    #[tokio::test]
    async fn a_failure_below_is_answered_here() {
        use tower::{Service, ServiceExt};
        let metrics = Metrics::new(Duration::from_secs(60));
        let inner = tower::service_fn(|_: Outgoing<()>| async {
            Err::<Answer, _>(Failure::Dispatch(DispatchError::NoEndpoints(
                discovery::NoEndpoints,
            )))
        });
        let (mut svc, activity) = layer(inner);
        let rsp = svc
            .ready()
            .await
            .unwrap()
            .call(routed(&metrics))
            .await
            .expect("a response, not an error");
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            rsp.headers()[L5D_PROXY_ERROR],
            "the service has no endpoints"
        );
        drop(rsp);
        assert_eq!(
            activity
                .in_flight
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(
            activity
                .abandoned
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[tokio::test]
    async fn a_request_the_client_gives_up_on_is_counted_as_abandoned() {
        use tower::{Service, ServiceExt};
        let metrics = Metrics::new(Duration::from_secs(60));
        let inner =
            tower::service_fn(|_: Outgoing<()>| std::future::pending::<Result<Answer, Failure>>());
        let (mut svc, activity) = layer(inner);
        let pending = svc.ready().await.unwrap().call(routed(&metrics));
        assert_eq!(
            activity
                .in_flight
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        drop(pending);
        assert_eq!(
            activity
                .in_flight
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(
            activity
                .abandoned
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
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
                Failure::InvalidAuthority(super::super::normalize::InvalidAuthority::Unusable(
                    http::Error::from(http::Uri::try_from("http://[::1").unwrap_err()),
                )),
                (400, "invalid authority", false),
            ),
            (
                Failure::InvalidAuthority(super::super::normalize::InvalidAuthority::Hosts(2)),
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
