//! The response body the proxy returns: the upstream body, or nothing for a
//! response the proxy made itself, recording the response's metrics when its
//! stream ends.

use super::{Activity, client::Checkin};
use crate::{
    metrics::{Class, RouteStats},
    profile::ProfileRoute,
    tap::Tapped,
};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

/// Counts one request's response once, however its stream ends. Created when
/// the request arrives, so a request abandoned before its response is still
/// counted (as a failure without a status).
#[derive(Debug)]
pub(crate) struct Recorder {
    route: Arc<RouteStats>,
    /// Whether `route` has counted the request.
    counted: bool,
    started: Instant,
    status: Option<StatusCode>,
    grpc: bool,
    grpc_status: Option<u32>,
    activity: Arc<Activity>,
    /// Set once the upstream answered (or failed): until then, dropping the
    /// recorder means the client gave up on the request.
    answered: bool,
    finished: bool,
    /// Set when a tap session observes this request.
    tap: Option<Box<Tapped>>,
    /// Its route in its service's profile: counted there too, as the
    /// client saw it.
    profile: Option<Arc<ProfileRoute>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Recorder {
    /// For a request sent to its own target: counted at once.
    pub(crate) fn new(route: Arc<RouteStats>, started: Instant, activity: Arc<Activity>) -> Self {
        route.request();
        let mut recorder = Self::deferred(route, started, activity);
        recorder.counted = true;
        recorder
    }

    /// For a request whose endpoint is not chosen yet: the endpoint counts
    /// it in its own series ([`Recorder::served_by`]); one that fails
    /// before reaching an endpoint (no endpoints) is counted in `route`'s,
    /// and one the client gives up on first, where it was dispatched.
    pub(crate) fn deferred(
        route: Arc<RouteStats>,
        started: Instant,
        activity: Arc<Activity>,
    ) -> Self {
        activity.begin();
        Self {
            route,
            counted: false,
            started,
            status: None,
            grpc: false,
            grpc_status: None,
            activity,
            answered: false,
            finished: false,
            tap: None,
            profile: None,
        }
    }

    pub(crate) fn tap(&mut self, tapped: Box<Tapped>) {
        self.tap = Some(tapped);
    }

    /// Counts the request in its profile route's series now, and its
    /// response there when it ends.
    pub(crate) fn profile(&mut self, route: Arc<ProfileRoute>) {
        route.stats.request();
        self.profile = Some(route);
    }

    pub(crate) fn answered(&mut self) {
        self.answered = true;
    }

    /// The balanced endpoint that took the request, whose series counted it.
    pub(crate) fn served_by(&mut self, endpoint: Arc<RouteStats>) {
        if let Some(tap) = self.tap.as_mut() {
            let (addr, tls) = endpoint.target();
            tap.endpoint(addr, tls, endpoint.endpoint_labels());
        }
        self.route = endpoint;
        self.counted = true;
    }

    /// Notes the response head; a gRPC error may be in it already
    /// ("trailers-only" responses).
    pub(crate) fn response(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.answered = true;
        self.status = Some(status);
        self.grpc = super::is_grpc_content(headers);
        if self.grpc {
            self.grpc_status = grpc_status(headers);
        }
        if let Some(tap) = self.tap.as_mut() {
            tap.response_init(status, headers);
        }
    }

    fn data(&mut self, n: usize) {
        if let Some(tap) = self.tap.as_mut() {
            tap.data(n);
        }
    }

    fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(tap) = self.tap.as_mut() {
            tap.trailers(trailers);
        }
        if self.grpc
            && let Some(s) = grpc_status(trailers)
        {
            self.grpc_status = Some(s);
        }
    }

    /// Records the response, once: `clean` is false if the stream failed or
    /// was cut short.
    fn finish(&mut self, clean: bool) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if let Some(route) = self.profile.take() {
            let class = if !clean || route.is_failure(self.status, self.grpc_status) {
                Class::Failure
            } else {
                Class::Success
            };
            route
                .stats
                .response(self.status, self.grpc_status, class, self.started.elapsed());
        }
        if !self.counted {
            if !self.answered {
                // Given up on while its dispatch was pending: wherever it
                // was dispatched counts it (a balanced endpoint, or the
                // original destination); if it got nowhere, nobody does.
                self.finish_uncounted();
                return;
            }
            self.route.request();
        }
        let failed = !clean
            || self.status.is_none_or(|s| s.is_server_error())
            || self.grpc_status.is_some_and(|s| s != 0);
        let class = if failed {
            Class::Failure
        } else {
            Class::Success
        };
        self.route
            .response(self.status, self.grpc_status, class, self.started.elapsed());
        if let Some(tap) = self.tap.as_mut() {
            tap.response_end(clean, self.grpc_status);
        }
        if !self.answered {
            self.activity.abandoned();
        }
        self.activity.end();
    }
}

impl Recorder {
    fn finish_uncounted(&mut self) {
        if let Some(tap) = self.tap.as_mut() {
            tap.response_end(false, None);
        }
        self.activity.abandoned();
        self.activity.end();
    }
}

/// A gRPC status in a head ("trailers-only" responses) or trailers.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    // A constant name: a `&str` key would be parsed on every lookup.
    static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    headers
        .get(&GRPC_STATUS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pin_project_lite::pin_project! {
    #[derive(Debug)]
    pub(crate) struct ResponseBody {
        #[pin]
        inner: Option<Incoming>,
        recorder: Option<Recorder>,
        // Returns an HTTP/1 upstream connection for reuse once the body ends.
        checkin: Option<Checkin>,
    }

    impl PinnedDrop for ResponseBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut rec) = this.recorder.take() {
                // Bodies known to be empty may never be polled to their end.
                let done = this.inner.as_ref().as_pin_ref().is_none_or(|b| b.is_end_stream());
                rec.finish(done);
                if done && let Some(c) = this.checkin.take() {
                    c.done();
                }
            }
        }
    }
}

impl ResponseBody {
    pub(crate) fn new(inner: Incoming, recorder: Recorder, checkin: Option<Checkin>) -> Self {
        Self {
            inner: Some(inner),
            recorder: Some(recorder),
            checkin,
        }
    }

    /// A body for a response the proxy produced; it ends at once.
    pub(crate) fn empty(recorder: Option<Recorder>) -> Self {
        Self {
            inner: None,
            recorder,
            checkin: None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            if let Some(mut rec) = this.recorder.take() {
                rec.finish(true);
            }
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(rec) = this.recorder.as_mut() {
                    if let Some(data) = f.data_ref() {
                        rec.data(data.len());
                    } else if let Some(t) = f.trailers_ref() {
                        rec.trailers(t);
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(mut rec) = this.recorder.take() {
                    rec.finish(false);
                }
            }
            None => {
                if let Some(mut rec) = this.recorder.take() {
                    rec.finish(true);
                }
                if let Some(c) = this.checkin.take() {
                    c.done();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// A request body on its way upstream: the client's own stream, or a copy
/// the proxy holds so that the request can be sent again (a retry).
#[derive(Debug)]
pub(crate) enum RequestBody {
    Stream(Incoming),
    /// No body (a retried `GET`).
    Empty,
    /// Boxed: every request moves through the stack's layers as this type,
    /// and the copy is rare; inline it would make them all larger.
    Buffered(Box<Buffered>),
}

/// A body kept whole for a retry.
#[derive(Debug)]
pub(crate) struct Buffered {
    pub(crate) data: Option<Bytes>,
    pub(crate) trailers: Option<HeaderMap>,
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> Self {
        Self::Stream(body)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Stream(b) => Pin::new(b).poll_frame(cx),
            Self::Empty => Poll::Ready(None),
            Self::Buffered(b) => Poll::Ready(
                b.data
                    .take()
                    .map(Frame::data)
                    .or_else(|| b.trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Stream(b) => b.is_end_stream(),
            Self::Empty => true,
            Self::Buffered(b) => b.data.is_none() && b.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Stream(b) => b.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
            Self::Buffered(b) => {
                SizeHint::with_exact(b.data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
