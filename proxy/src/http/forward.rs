//! The bottom of both stacks: a request leaves for the service's endpoints
//! when it was dispatched, or else for the connection's own target, on the
//! connection the client's protocol keeps there.

use super::{
    Outgoing, Req, RequestBody, Version,
    client::{self, Checkin, H1Slot, Target, Upstream},
    record::Failure,
};
use crate::discovery::{Answer, SendFuture};
use futures_util::TryFutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

pub(crate) struct Forward {
    upstream: Upstream,
    /// The client's protocol. A request in another (an inbound HTTP/1
    /// request a client proxy carried over HTTP/2) goes on the target's
    /// HTTP/1 pool.
    version: Version,
}

impl Forward {
    pub(crate) fn new(target: Arc<Target>, version: Version) -> Self {
        Self {
            upstream: Upstream::new(target, version),
            version,
        }
    }

    /// Sends on the client protocol's connection: HTTP/1 keeps one per client
    /// connection, HTTP/2 shares one.
    fn send_direct(
        &mut self,
        req: Request<RequestBody>,
        upgrade: bool,
    ) -> impl Future<Output = Result<(Response<Incoming>, Option<Checkin>), client::Error>> + Send + use<>
    {
        use futures_util::future::Either;
        match &mut self.upstream {
            Upstream::H1(slot) => {
                let (target, held, cached) = slot.parts();
                Either::Left(H1Slot::send(target, held, cached, req, upgrade))
            }
            Upstream::H2 { target, send } => {
                // Refresh this connection's sender from the shared one
                // without waiting; only a missing connection takes the lock.
                if send.as_ref().is_none_or(|s| s.is_closed()) {
                    *send = target.try_h2();
                }
                let h2 = match send.as_mut() {
                    Some(s) => Either::Left(s.send_request(req).map_err(client::Error::from)),
                    None => {
                        let target = target.clone();
                        Either::Right(async move {
                            let mut s = target.h2().await?;
                            Ok(s.send_request(req).await?)
                        })
                    }
                };
                Either::Right(h2.map_ok(|rsp| (rsp, None)))
            }
        }
    }
}

type DirectFuture = Pin<
    Box<dyn Future<Output = Result<(Response<Incoming>, Option<Checkin>), client::Error>> + Send>,
>;

/// A request on its way upstream. Either way it is one allocation: the
/// dispatch's own, or the direct send's.
pub(crate) enum Forwarded {
    Dispatched(SendFuture),
    Direct(DirectFuture),
}

impl tower::Service<Outgoing> for Forward {
    type Response = Answer;
    type Error = Failure;
    type Future = Forwarded;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, out: Outgoing) -> Forwarded {
        let Outgoing {
            req: Req { http, upgrade, .. },
            dispatch,
            profile,
        } = out;
        let http = http.map(RequestBody::from);
        if let Some(dispatch) = dispatch {
            return Forwarded::Dispatched(match profile {
                Some(profiled) if profiled.acts() => crate::profile::send(dispatch, http, profiled),
                _ => dispatch.send(http),
            });
        }
        if self.version == Version::H2 && http.version() != http::Version::HTTP_2 {
            let target = self.upstream.target().clone();
            return Forwarded::Direct(Box::pin(target.send(http)));
        }
        Forwarded::Direct(Box::pin(self.send_direct(http, upgrade)))
    }
}

impl Future for Forwarded {
    type Output = Result<Answer, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Dispatched(f) => f.as_mut().poll(cx).map_err(Failure::Dispatch),
            Self::Direct(f) => f.as_mut().poll(cx).map(|sent| {
                sent.map(|(rsp, checkin)| Answer {
                    rsp,
                    checkin,
                    served_by: None,
                })
                .map_err(Failure::Direct)
            }),
        }
    }
}
