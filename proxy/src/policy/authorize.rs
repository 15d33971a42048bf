//! Inbound HTTP authorization: each request is matched to one of its
//! server's routes and checked against the route's authorizations, with
//! the port's policy as it is at that moment. `Authorize` decides and
//! counts; `Enforce`, below the request's recording, answers a request that
//! may not pass, so a denial shows in the route's series and in tap like
//! any other response, and never reaches the application.

use super::{Client, Meta, RouteLabels, Server, metrics::Counter, watch::PortPolicy};
use crate::{
    discovery::Answer,
    http::{Failure, Outgoing, Req},
    metrics::{Metrics, Tls},
};
use futures_util::future::{Either, Ready, ready};
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
};

/// What policy decided for a request.
#[derive(Clone, Debug)]
pub(crate) struct Verdict {
    /// The route it is on, for its series' `srv_*` and `route_*` labels;
    /// `None` when it is on none of the server's routes.
    pub(crate) route: Option<Arc<RouteLabels>>,
    pub(crate) allowed: bool,
}

pub(crate) struct Authorize<S> {
    inner: S,
    policy: PortPolicy,
    /// The port's server as of the last request.
    server: Arc<Server>,
    metrics: Arc<Metrics>,
    target: SocketAddr,
    client: IpAddr,
    tls: Tls,
    /// The counter of the last (route, authorization) decision: on one
    /// connection, the same one over and over.
    last: Option<Last>,
}

struct Last {
    route: Arc<RouteLabels>,
    authz: Option<Arc<Meta>>,
    counter: Arc<Counter>,
}

impl<S> Authorize<S> {
    pub(crate) fn layer(
        policy: PortPolicy,
        metrics: Arc<Metrics>,
        target: SocketAddr,
        client: IpAddr,
        tls: Tls,
    ) -> impl tower::Layer<S, Service = Self> {
        tower::layer::layer_fn(move |inner| {
            let server = policy.borrow().clone();
            Self {
                inner,
                policy: policy.clone(),
                server,
                metrics: metrics.clone(),
                target,
                client,
                tls: tls.clone(),
                last: None,
            }
        })
    }
}

impl<S, B> tower::Service<Req<B>> for Authorize<S>
where
    S: tower::Service<Req<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req<B>) -> S::Future {
        // A policy change applies from the next request on.
        if self.policy.has_changed().unwrap_or(false) {
            self.server = self.policy.borrow_and_update().clone();
            self.last = None;
        }
        let verdict = match self.server.route(&req.http) {
            None => {
                tracing::debug!(server = %self.server.meta, path = req.http.uri().path(), "no route");
                Verdict {
                    route: None,
                    allowed: false,
                }
            }
            Some(route) => {
                let client = Client {
                    ip: self.client,
                    tls: &self.tls,
                };
                let authz = route.authorize(&client);
                let authz_meta = authz.map(|a| &a.meta);
                match &self.last {
                    Some(last)
                        if Arc::ptr_eq(&last.route, &route.labels)
                            && super::same(last.authz.as_ref(), authz_meta) =>
                    {
                        last.counter.inc()
                    }
                    _ => {
                        let counter = self.metrics.authz().http(
                            self.target,
                            &route.labels,
                            authz_meta,
                            &self.tls,
                        );
                        counter.inc();
                        self.last = Some(Last {
                            route: route.labels.clone(),
                            authz: authz_meta.cloned(),
                            counter,
                        });
                    }
                }
                if authz.is_none() {
                    tracing::info!(
                        server = %self.server.meta,
                        route = %route.labels.route,
                        client = %self.client,
                        "request denied by policy"
                    );
                }
                Verdict {
                    route: Some(route.labels.clone()),
                    allowed: authz.is_some(),
                }
            }
        };
        req.verdict = Some(verdict);
        self.inner.call(req)
    }
}

/// Answers a request policy refused, in place of the application.
pub(crate) struct Enforce<S> {
    inner: S,
}

impl<S> Enforce<S> {
    pub(crate) fn layer() -> impl tower::Layer<S, Service = Self> + Clone {
        tower::layer::layer_fn(|inner| Self { inner })
    }
}

impl<S, B> tower::Service<Outgoing<B>> for Enforce<S>
where
    S: tower::Service<Outgoing<B>, Response = Answer, Error = Failure>,
{
    type Response = Answer;
    type Error = Failure;
    type Future = Either<Ready<Result<Answer, Failure>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, out: Outgoing<B>) -> Self::Future {
        match &out.req.verdict {
            Some(v) if !v.allowed => {
                let grpc = crate::http::is_grpc(&out.req.http);
                let failure = match v.route {
                    Some(_) => Failure::Unauthorized { grpc },
                    None => Failure::NoRoute { grpc },
                };
                Either::Left(ready(Err(failure)))
            }
            _ => Either::Right(self.inner.call(out)),
        }
    }
}
