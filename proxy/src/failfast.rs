//! Fail-fast: a service that has not been ready for a while fails its
//! requests at once instead of queueing them, until it is ready again.
//!
//! It sits between a route's queue (`tower::buffer`) and its balancer: when
//! no endpoint can take a request (all refusing, all backing off) for the
//! timeout, the request waiting at the head of the queue and every one
//! behind it get [`Unavailable`] (a 503) immediately, rather than each
//! waiting out its own timeout or the client's patience. The first time the
//! balancer is ready again, requests flow to it; nothing is failed while it
//! is, however long a single request takes.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A route's endpoints were all unavailable for the fail-fast timeout.
#[derive(Debug, thiserror::Error)]
#[error("the service has been unavailable for {0:?}")]
pub(crate) struct Unavailable(pub(crate) Duration);

pub(crate) struct FailFast<S> {
    inner: S,
    timeout: Duration,
    state: State,
}

enum State {
    /// The inner service was ready the last time it was asked.
    Open,
    /// It is not ready: failing fast once this fires.
    Waiting(Pin<Box<Sleep>>),
    /// It has not been ready for the timeout: requests fail at once.
    Failing,
}

impl<S> FailFast<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            state: State::Open,
        }
    }

    /// Whether requests are being failed now (for tests).
    #[cfg(test)]
    fn is_failing(&self) -> bool {
        matches!(self.state, State::Failing)
    }
}

pin_project_lite::pin_project! {
    /// The inner service's response, or the fail-fast error: no allocation
    /// either way.
    #[project = ResponseProj]
    pub(crate) enum ResponseFuture<F> {
        Inner { #[pin] future: F },
        Failed { error: Option<Unavailable> },
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Inner { future } => future.poll(cx).map_err(Into::into),
            ResponseProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion").into()))
            }
        }
    }
}

impl<S, Req> tower::Service<Req> for FailFast<S>
where
    S: tower::Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(ready) => {
                if matches!(self.state, State::Failing) {
                    tracing::info!("service available again; no longer failing fast");
                }
                self.state = State::Open;
                return Poll::Ready(ready.map_err(Into::into));
            }
            Poll::Pending => {}
        }
        // Not ready: its poll registered our wake-up for when it is.
        loop {
            match &mut self.state {
                State::Open => {
                    let deadline = Instant::now() + self.timeout;
                    self.state = State::Waiting(Box::pin(tokio::time::sleep_until(deadline)));
                }
                State::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    tracing::info!(
                        timeout = ?self.timeout,
                        "service unavailable; failing requests fast"
                    );
                    self.state = State::Failing;
                }
                // Ready, so that the queue hands over requests to fail.
                State::Failing => return Poll::Ready(Ok(())),
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if matches!(self.state, State::Failing) {
            return ResponseFuture::Failed {
                error: Some(Unavailable(self.timeout)),
            };
        }
        ResponseFuture::Inner {
            future: self.inner.call(req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::Service;
    use tower_test::mock;

    #[tokio::test(start_paused = true)]
    async fn unready_past_the_timeout_fails_fast_and_recovers_at_once() {
        let (inner, mut handle) = mock::pair::<&'static str, &'static str>();
        let mut svc = FailFast::new(inner, Duration::from_secs(3));
        handle.allow(0);

        // Unready, within the timeout: callers wait.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(svc.poll_ready(&mut cx).is_pending());

        // Past it: ready, and every request fails at once with Unavailable.
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..3 {
            assert!(svc.poll_ready(&mut cx).is_ready());
            assert!(svc.is_failing());
            let err = svc.call("req").await.unwrap_err();
            assert!(err.is::<Unavailable>(), "{err}");
        }

        // The inner service is ready again: the next request reaches it.
        handle.allow(1);
        assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        assert!(!svc.is_failing());
        let rsp = svc.call("req");
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req, "req");
        send.send_response("rsp");
        assert_eq!(rsp.await.unwrap(), "rsp");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_service_never_fails_fast() {
        let (inner, mut handle) = mock::pair::<&'static str, &'static str>();
        let mut svc = FailFast::new(inner, Duration::from_secs(3));
        handle.allow(1);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        let rsp = svc.call("slow");
        // A slow response is not unavailability.
        tokio::time::advance(Duration::from_secs(10)).await;
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response("late");
        assert_eq!(rsp.await.unwrap(), "late");
    }
}
