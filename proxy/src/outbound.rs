//! The outbound side: what an HTTP request from the application meets on
//! its way out of the pod, top to bottom. (Before it: the connection's
//! accept and protocol detection, in `app.rs`.)

use crate::{
    discovery::Resolver,
    http::{
        Accepted, Activity, BoxError, Clients, Discover, Forward, Normalize, Record, ResponseBody,
        Route, Upgrade,
    },
    metrics::{Direction, Metrics},
    tap::Taps,
};
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use tower::ServiceBuilder;

/// The stack for one outbound HTTP connection; `resolver` when destination
/// is configured.
pub(crate) fn http(
    conn: &Accepted,
    clients: &Arc<Clients>,
    resolver: Option<&Arc<Resolver>>,
    metrics: &Arc<Metrics>,
    taps: &Arc<Taps>,
    activity: &Arc<Activity>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = BoxError,
    Future: Send + 'static,
> + Send
+ 'static {
    ServiceBuilder::new()
        // Hop-by-hop headers stop here; an HTTP/1 upgrade becomes a byte
        // stream between application and server.
        .layer(Upgrade::layer(conn.version))
        // Counted in its authority's series...
        .layer(Route::layer(
            metrics.clone(),
            Direction::Outbound,
            conn.target,
            conn.tls.clone(),
        ))
        // ...and, to a service, dispatched over its endpoints (where it is
        // counted in the endpoint's series).
        .layer(Discover::layer(
            resolver.cloned(),
            clients.clone(),
            conn.target,
        ))
        // Its metrics and tap events; a failure becomes a response here.
        .layer(Record::layer(
            conn,
            Direction::Outbound,
            taps.clone(),
            activity.clone(),
        ))
        // In the form the upstream protocol needs.
        .layer(Normalize::layer(conn.target))
        // To the endpoint the balancer picks, or the original destination.
        .service(Forward::new(
            clients.target(conn.target, None),
            conn.version,
        ))
}
