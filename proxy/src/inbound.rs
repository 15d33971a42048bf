//! The inbound side: what an HTTP request from outside the pod meets on its
//! way to the application, top to bottom. (Before it: the connection's
//! accept, protocol detection, mesh TLS and policy, in `app.rs`.)

use crate::{
    http::{
        Accepted, Activity, BoxError, ClientId, Clients, Discover, Downgrade, Forward, Normalize,
        Record, ResponseBody, Route, Upgrade,
    },
    metrics::{Direction, Metrics},
    tap::Taps,
};
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use tower::ServiceBuilder;

/// The stack for one inbound HTTP connection.
pub(crate) fn http(
    conn: &Accepted,
    clients: &Arc<Clients>,
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
        // stream between client and application.
        .layer(Upgrade::layer(conn.version))
        // The client's verified identity, never what the client says.
        .layer(ClientId::layer(&conn.tls))
        // An HTTP/1 request a client proxy carried over HTTP/2 is HTTP/1
        // again, and its response marked for the client proxy.
        .layer(Downgrade::layer(conn.version))
        // Counted in its authority's series...
        .layer(Route::layer(
            metrics.clone(),
            Direction::Inbound,
            conn.target,
            conn.tls.clone(),
        ))
        // ...and never balanced: the application is the target.
        .layer(Discover::layer(None, clients.clone(), conn.target))
        // Its metrics and tap events; a failure becomes a response here.
        .layer(Record::layer(
            conn,
            Direction::Inbound,
            taps.clone(),
            activity.clone(),
        ))
        // In the form the application's protocol needs.
        .layer(Normalize::layer(conn.target))
        // To the application, on this connection's own upstream connection.
        .service(Forward::new(
            clients.target(conn.target, None),
            conn.version,
        ))
}
