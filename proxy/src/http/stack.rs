//! What the layers of a side's request stack hand each other, and how hyper
//! calls a stack.
//!
//! A connection's stack is built once, when its protocol is known, from the
//! connection's typed target ([`Accepted`]); each request then goes down it
//! as a [`Req`], becomes [`Routed`] once its series (and, outbound, its
//! dispatch) is known, and leaves as [`Outgoing`]. The stacks themselves are
//! composed in `inbound.rs` and `outbound.rs`.

use super::Version;
use crate::{
    discovery::Dispatch, metrics::RouteStats, metrics::Tls, policy::Verdict, profile::Profiled,
};
use http::Request;
use hyper::body::Incoming;
use std::{
    cell::RefCell,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll, Waker},
};

/// An accepted connection once its protocol is known: the target of the
/// stack built for it.
#[derive(Clone, Debug)]
pub(crate) struct Accepted {
    /// The client's address.
    pub(crate) client: SocketAddr,
    /// Its original destination.
    pub(crate) target: SocketAddr,
    /// Mesh TLS on it and the client's proven identity, or why there is none.
    pub(crate) tls: Tls,
    pub(crate) version: Version,
}

/// A request on its way down a stack.
#[derive(Debug)]
pub(crate) struct Req<B = Incoming> {
    pub(crate) http: Request<B>,
    /// An HTTP/1 upgrade (WebSocket, h2c) or CONNECT: it becomes a byte
    /// stream once the server agrees, so it keeps to the connection's own
    /// target and its upstream connection is never reused.
    pub(crate) upgrade: bool,
    /// Inbound, once policy has looked at it.
    pub(crate) verdict: Option<Verdict>,
}

impl<B> Req<B> {
    pub(crate) fn new(http: Request<B>, upgrade: bool) -> Self {
        Self {
            http,
            upgrade,
            verdict: None,
        }
    }
}

/// A request and where it is counted: its authority's series and, for a
/// service name, how it is dispatched over the service's endpoints.
pub(crate) struct Routed<B = Incoming> {
    pub(crate) req: Req<B>,
    pub(crate) route: Arc<RouteStats>,
    /// `None`: to the connection's own target.
    pub(crate) dispatch: Option<Dispatch>,
    /// Its route in the service's profile, if the service has one.
    pub(crate) profile: Option<Profiled>,
}

/// A request past its recording, on its way upstream.
pub(crate) struct Outgoing<B = Incoming> {
    pub(crate) req: Req<B>,
    pub(crate) dispatch: Option<Dispatch>,
    pub(crate) profile: Option<Profiled>,
}

/// A connection's stack as hyper serves it. hyper calls through `&self`,
/// always from the connection's own task, so the stack sits in a `RefCell`.
/// Every layer is always ready (waiting for an endpoint is the balancer's
/// queue's, inside a request's future), so a call needs no `poll_ready`
/// round trip; a debug build checks that.
pub(crate) struct Serve<S>(RefCell<S>);

impl<S> Serve<S> {
    pub(crate) fn new(stack: S) -> Self {
        Self(RefCell::new(stack))
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Serve<S>
where
    S: tower::Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: Request<Incoming>) -> S::Future {
        let mut stack = self.0.borrow_mut();
        if cfg!(debug_assertions) {
            let mut cx = Context::from_waker(Waker::noop());
            assert!(
                matches!(stack.poll_ready(&mut cx), Poll::Ready(Ok(()))),
                "a layer of the request stack was not ready"
            );
        }
        stack.call(req)
    }
}
