//! Where a request belongs: the series of its authority (both sides) and,
//! outbound, whether its authority is a service to balance over.

use super::{Req, Routed};
use crate::{
    discovery::{Dispatch, InboundProfile, Resolver, Route as DstRoute},
    http::Clients,
    metrics::{Direction, Metrics, RouteStats, Tls},
    policy::RouteLabels,
    profile::{Profile, ProfileWatch, Profiled},
};
use http::{Request, header::HOST};
use std::{
    cell::RefCell,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

/// The value for the last authority (and, inbound, policy route) seen on a
/// connection. Requests on one connection almost always share them, so this
/// skips the shared, locked maps behind it.
struct LastAuthority<T>(RefCell<Option<Last<T>>>);

struct Last<T> {
    authority: Box<str>,
    policy: Option<Arc<RouteLabels>>,
    value: T,
}

impl<T> Default for LastAuthority<T> {
    fn default() -> Self {
        Self(RefCell::new(None))
    }
}

impl<T: Clone> LastAuthority<T> {
    fn get(
        &self,
        authority: &str,
        policy: Option<&Arc<RouteLabels>>,
        make: impl FnOnce() -> T,
    ) -> T {
        let mut cache = self.0.borrow_mut();
        if let Some(last) = cache.as_ref()
            && *last.authority == *authority
            && crate::policy::same(last.policy.as_ref(), policy)
        {
            return last.value.clone();
        }
        let value = make();
        *cache = Some(Last {
            authority: authority.into(),
            policy: policy.cloned(),
            value: value.clone(),
        });
        value
    }
}

/// The authority a request names: its URI's, or its `Host`.
pub(crate) fn authority_of<B>(req: &Request<B>) -> &str {
    match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
    }
}

/// Counts each request in its authority's series for the connection's
/// target and TLS.
pub(crate) struct Route<S> {
    inner: S,
    metrics: Arc<Metrics>,
    direction: Direction,
    target: SocketAddr,
    tls: Tls,
    last: LastAuthority<Arc<RouteStats>>,
}

impl<S> Route<S> {
    pub(crate) fn layer(
        metrics: Arc<Metrics>,
        direction: Direction,
        target: SocketAddr,
        tls: Tls,
    ) -> impl tower::Layer<S, Service = Self> {
        tower::layer::layer_fn(move |inner| Self {
            inner,
            metrics: metrics.clone(),
            direction,
            target,
            tls: tls.clone(),
            last: LastAuthority::default(),
        })
    }
}

impl<S, B> tower::Service<Req<B>> for Route<S>
where
    S: tower::Service<Routed<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req<B>) -> S::Future {
        let policy = req.verdict.as_ref().and_then(|v| v.route.as_ref());
        let route = self.last.get(authority_of(&req.http), policy, || {
            self.metrics.policy_route(
                self.direction,
                authority_of(&req.http),
                self.target,
                &self.tls,
                policy,
            )
        });
        self.inner.call(Routed {
            req,
            route,
            dispatch: None,
            profile: None,
        })
    }
}

/// Outbound: a request to a name destination knows (or to an original
/// destination in its networks, such as a cluster IP) goes over the
/// service's endpoints; others to the original destination. An upgrade
/// keeps to the original destination: it pins one connection anyway.
///
/// Both sides: a request to a service with a profile is put on its route
/// (outbound, to be timed out and retried as the route says; inbound, only
/// to be counted by it).
pub(crate) struct Discover<S> {
    inner: S,
    /// `None` without destination: nothing is balanced or profiled.
    resolver: Option<Arc<Resolver>>,
    /// Outbound: requests are dispatched over the service's endpoints.
    balance: bool,
    clients: Arc<Clients>,
    target: SocketAddr,
    /// The last request's route, by its series: `Route` looked the
    /// authority up already, and on one connection the series is the
    /// authority's, so the name need not be read and compared again.
    last: Option<LastService>,
}

/// A connection's last service, and its profile as last seen.
struct LastService {
    series: Arc<RouteStats>,
    dst: Option<Arc<DstRoute>>,
    /// Holds an inbound request's profile while the connection uses it.
    _inbound: Option<Arc<InboundProfile>>,
    profile: Option<(ProfileWatch, Option<Arc<Profile>>)>,
}

impl LastService {
    /// The service's profile now: one atomic load unless it changed.
    fn profile(&mut self) -> Option<&Arc<Profile>> {
        let (watch, current) = self.profile.as_mut()?;
        if watch.has_changed().unwrap_or(false) {
            *current = watch.borrow_and_update().clone();
        }
        current.as_ref()
    }
}

fn follow(mut watch: ProfileWatch) -> (ProfileWatch, Option<Arc<Profile>>) {
    let current = watch.borrow_and_update().clone();
    (watch, current)
}

impl<S> Discover<S> {
    /// Outbound: balanced and profiled.
    pub(crate) fn layer(
        resolver: Option<Arc<Resolver>>,
        clients: Arc<Clients>,
        target: SocketAddr,
    ) -> impl tower::Layer<S, Service = Self> {
        Self::with(resolver, true, clients, target)
    }

    /// Inbound: profiled only.
    pub(crate) fn inbound(
        resolver: Option<Arc<Resolver>>,
        clients: Arc<Clients>,
        target: SocketAddr,
    ) -> impl tower::Layer<S, Service = Self> {
        Self::with(resolver, false, clients, target)
    }

    fn with(
        resolver: Option<Arc<Resolver>>,
        balance: bool,
        clients: Arc<Clients>,
        target: SocketAddr,
    ) -> impl tower::Layer<S, Service = Self> {
        tower::layer::layer_fn(move |inner| Self {
            inner,
            resolver: resolver.clone(),
            balance,
            clients: clients.clone(),
            target,
            last: None,
        })
    }
}

impl<S, B> tower::Service<Routed<B>> for Discover<S>
where
    S: tower::Service<Routed<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut routed: Routed<B>) -> S::Future {
        if let Some(resolver) = self.resolver.as_ref().filter(|_| !routed.req.upgrade) {
            let last = match &mut self.last {
                Some(last) if Arc::ptr_eq(&last.series, &routed.route) => last,
                slot => {
                    let authority = authority_of(&routed.req.http);
                    let (dst, inbound, profile) = if self.balance {
                        let dst = resolver
                            .route(authority, &self.clients)
                            .or_else(|| resolver.addr_route(self.target, &self.clients));
                        let profile = dst.as_ref().map(|d| follow(d.profile()));
                        (dst, None, profile)
                    } else {
                        let inbound = resolver.inbound_profile(authority, &self.clients);
                        let profile = inbound.as_ref().map(|p| follow(p.profile()));
                        (None, inbound, profile)
                    };
                    slot.insert(LastService {
                        series: routed.route.clone(),
                        dst,
                        _inbound: inbound,
                        profile,
                    })
                }
            };
            let mut dst = last.dst.clone();
            if let Some(profile) = last.profile() {
                routed.profile = Some(Profiled {
                    route: profile.route_for(&routed.req.http).clone(),
                    budget: profile.budget().clone(),
                });
                // The traffic split: another service takes this request.
                if self.balance
                    && let Some(to) = profile.split(|| fastrand::u64(..))
                    && let Some(other) = resolver.route(to, &self.clients)
                {
                    dst = Some(other);
                }
            }
            routed.dispatch = dst.and_then(|dst| {
                Dispatch::new(dst, || {
                    (self.clients.target(self.target, None), routed.route.clone())
                })
            });
        }
        self.inner.call(routed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::DestinationConfig, transport::ConnectConfig};
    use http::Response;
    use std::time::Duration;
    use tower::{Layer, Service, ServiceExt};
    use tower_test::mock;

    const IDLE: Duration = Duration::from_secs(60);

    fn req(authority: &str, upgrade: bool) -> Req<()> {
        Req::new(
            Request::get("/").header(HOST, authority).body(()).unwrap(),
            upgrade,
        )
    }

    #[tokio::test]
    async fn requests_are_counted_by_authority() {
        let metrics = Metrics::new(IDLE);
        let (mock, mut handle) = mock::pair::<Routed<()>, Response<()>>();
        let target = "10.0.0.1:8080".parse().unwrap();
        let mut svc =
            Route::layer(metrics.clone(), Direction::Inbound, target, Tls::Disabled).layer(mock);
        let mut seen = Vec::new();
        for authority in ["web:80", "web:80", "emoji:8080"] {
            handle.allow(1);
            svc.ready().await.unwrap();
            let call = svc.call(req(authority, false));
            let (routed, send) = handle.next_request().await.unwrap();
            assert!(routed.dispatch.is_none(), "inbound never balances");
            seen.push(routed.route);
            send.send_response(Response::new(()));
            call.await.unwrap();
        }
        assert!(Arc::ptr_eq(&seen[0], &seen[1]), "one series per authority");
        assert!(!Arc::ptr_eq(&seen[1], &seen[2]));
        assert_eq!(metrics.series().0, 2);
    }

    #[tokio::test]
    async fn service_names_are_dispatched_and_upgrades_are_not() {
        let config = DestinationConfig {
            addr: "127.0.0.1:1".into(),
            svc_name: None,
            suffixes: vec!["svc.cluster.local.".into()],
            networks: vec!["10.0.0.0/8".parse().unwrap()],
            http_queue: Default::default(),
        };
        let metrics = Metrics::new(IDLE);
        let clients = Arc::new(Clients::new(
            Direction::Outbound,
            ConnectConfig {
                timeout: Duration::from_secs(1),
                source_ip: None,
            },
            metrics.clone(),
            None,
            IDLE,
        ));
        let resolver = Arc::new(Resolver::new(config, None, IDLE).unwrap());
        let (mock, mut handle) = mock::pair::<Routed<()>, Response<()>>();
        // Not in destination's networks: only names are discovered.
        let target = "192.168.0.1:80".parse().unwrap();
        let mut svc = Route::layer(metrics, Direction::Outbound, target, Tls::Disabled)
            .layer(Discover::layer(Some(resolver), clients, target).layer(mock));
        for (authority, upgrade, dispatched) in [
            ("web.ns.svc.cluster.local:80", false, true),
            ("web.ns.svc.cluster.local:80", true, false),
            ("example.com:80", false, false),
        ] {
            handle.allow(1);
            svc.ready().await.unwrap();
            let call = svc.call(req(authority, upgrade));
            let (routed, send) = handle.next_request().await.unwrap();
            assert_eq!(
                routed.dispatch.is_some(),
                dispatched,
                "{authority} upgrade={upgrade}"
            );
            send.send_response(Response::new(()));
            call.await.unwrap();
        }
    }
}
