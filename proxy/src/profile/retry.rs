//! A profiled request's way upstream: its route's timeout over all of its
//! attempts, and retries of a retryable route while the profile's budget
//! allows, each attempt counted in the route's `route_actual_*` series.
//!
//! A retry needs the request again. Its body is buffered only when it is
//! known to be small (empty, or a `Content-Length` up to 64 KiB): the proxy
//! never holds back a stream to find out how long it is, so a streaming body
//! (most gRPC calls) is sent once, as is a larger one.

use super::ProfileRoute;
use crate::{
    discovery::{Answer, Dispatch, DispatchError, SendFuture},
    http::{Buffered, RequestBody, grpc_status},
    metrics::Class,
};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::Body;
use std::{sync::Arc, time::Instant};
use tower::retry::budget::{Budget, TpsBudget};

/// The largest request body kept for a retry, as Linkerd's.
const MAX_BUFFERED: u64 = 64 * 1024;

/// At most this many attempts per request, whatever the budget holds: a
/// budget refills, and one request must not take all of it.
const MAX_ATTEMPTS: usize = 10;

/// A request's route in its service's profile, and the profile's budget.
#[derive(Clone, Debug)]
pub(crate) struct Profiled {
    pub(crate) route: Arc<ProfileRoute>,
    pub(crate) budget: Arc<TpsBudget>,
}

impl Profiled {
    /// Whether its dispatch needs more than a send: a timeout or retries.
    pub(crate) fn acts(&self) -> bool {
        self.route.acts()
    }
}

/// Sends `req` as its route says: within its timeout, retried if it may be.
pub(crate) fn send(dispatch: Dispatch, req: Request<RequestBody>, p: Profiled) -> SendFuture {
    Box::pin(async move {
        let attempts = attempts(dispatch, req, &p);
        match p.route.timeout() {
            // Dropping the attempt in flight cancels it upstream: an HTTP/2
            // stream is reset, an HTTP/1 connection closed.
            Some(timeout) => tokio::time::timeout(timeout, attempts)
                .await
                .unwrap_or(Err(DispatchError::Timeout(timeout))),
            None => attempts.await,
        }
    })
}

async fn attempts(
    dispatch: Dispatch,
    req: Request<RequestBody>,
    p: &Profiled,
) -> Result<Answer, DispatchError> {
    let route = &p.route;
    if !route.retryable() {
        return attempt(route, dispatch, req).await.0;
    }
    p.budget.deposit();
    let (parts, body) = req.into_parts();
    let (data, trailers) = match buffer(body).await? {
        Kept::Whole(data, trailers) => (data, trailers),
        Kept::Stream(body) => {
            return attempt(route, dispatch, Request::from_parts(parts, body))
                .await
                .0;
        }
    };
    let again = |data: &Option<Bytes>, trailers: &Option<HeaderMap>| {
        let body = match (data, trailers) {
            (None, None) => RequestBody::Empty,
            (data, trailers) => RequestBody::Buffered(Box::new(Buffered {
                data: data.clone(),
                trailers: trailers.clone(),
            })),
        };
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        req
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let (result, class) = attempt(route, dispatch.clone(), again(&data, &trailers)).await;
        let retry = match &result {
            Ok(_) => class == Class::Failure,
            // An endpoint's failure (refused, reset): another may serve it.
            // No endpoints, or failing fast: a retry would meet the same.
            Err(e) => matches!(e, DispatchError::Endpoint(_)),
        };
        if !retry || tries >= MAX_ATTEMPTS || !p.budget.withdraw() {
            return result;
        }
        discard(result);
        tracing::debug!(
            attempt = tries,
            "retrying a failed request on a retryable route"
        );
    }
}

/// One attempt, counted in the route's actual series, and how its answer
/// is classified. An attempt cut short (the route's timeout) is counted as
/// a failure without a status.
async fn attempt(
    route: &ProfileRoute,
    dispatch: Dispatch,
    req: Request<RequestBody>,
) -> (Result<Answer, DispatchError>, Class) {
    struct Counted<'a> {
        route: &'a ProfileRoute,
        started: Instant,
        done: bool,
    }
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            if !self.done {
                self.route.stats.attempt_response(
                    None,
                    None,
                    Class::Failure,
                    self.started.elapsed(),
                );
            }
        }
    }
    route.stats.attempt();
    let mut counted = Counted {
        route,
        started: Instant::now(),
        done: false,
    };
    let result = dispatch.send(req).await;
    counted.done = true;
    let (status, grpc) = match &result {
        Ok(a) => (Some(a.rsp.status()), grpc_status(a.rsp.headers())),
        Err(_) => (None, None),
    };
    let class = if route.is_failure(status, grpc) {
        Class::Failure
    } else {
        Class::Success
    };
    route
        .stats
        .attempt_response(status, grpc, class, counted.started.elapsed());
    (result, class)
}

/// A failed attempt given up for a retry: the endpoint that served it
/// counted the request, so it counts the failure too.
fn discard(result: Result<Answer, DispatchError>) {
    use crate::discovery::EndpointError;
    let (stats, status, grpc) = match &result {
        Ok(a) => match &a.served_by {
            Some(s) => (s, Some(a.rsp.status()), grpc_status(a.rsp.headers())),
            None => return,
        },
        Err(DispatchError::Endpoint(EndpointError::Failed { stats, .. })) => (stats, None, None),
        Err(_) => return,
    };
    stats.response(status, grpc, Class::Failure, std::time::Duration::ZERO);
}

enum Kept {
    /// The whole body, to send as often as needed.
    Whole(Option<Bytes>, Option<HeaderMap>),
    /// Too long or of unknown length: sent once, as it streams.
    Stream(RequestBody),
}

/// Reads a body known to fit in `MAX_BUFFERED`; leaves any other alone.
async fn buffer(mut body: RequestBody) -> Result<Kept, DispatchError> {
    if body.is_end_stream() {
        return Ok(Kept::Whole(None, None));
    }
    match body.size_hint().exact() {
        Some(n) if n <= MAX_BUFFERED => {}
        _ => return Ok(Kept::Stream(body)),
    }
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| DispatchError::ClientBody(e.into()))?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() as u64 + chunk.len() as u64 > MAX_BUFFERED {
                    // Longer than it said: hyper fails such a body anyway.
                    return Err(DispatchError::ClientBody(
                        "the request body is longer than its content-length".into(),
                    ));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    let data = (!data.is_empty()).then(|| data.freeze());
    Ok(Kept::Whole(data, trailers))
}
