//! The outbound side: what a connection from the application meets on its
//! way out of the pod, and then each HTTP request on it, top to bottom.

use crate::{
    app::Side,
    detect::{self, Protocol},
    discovery::Resolver,
    http::{
        self, Accepted, Activity, BoxError, Clients, Discover, Forward, Normalize, Record,
        ResponseBody, Route, Upgrade, Version,
    },
    metrics::{Direction, Metrics, NoTlsReason, Peer, Tls},
    tap::Taps,
    tcp,
    transport::{Metered, Prefixed},
};
use ::http::{Request, Response};
use hyper::body::Incoming;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

/// How long a connection to an address destination knows waits for its
/// first answer on whether the address is opaque; only the first
/// connection to an address waits, while its route is held or fresh.
const OPAQUE_LOOKUP: std::time::Duration = std::time::Duration::from_millis(500);

/// One accepted outbound connection, top to bottom.
pub(crate) async fn serve(
    side: &Side,
    stream: TcpStream,
    client: SocketAddr,
    drain: CancellationToken,
) {
    // Where the application meant to go.
    let Some(target) = side.original_dst(&stream, client) else {
        return;
    };
    // The client is the application, next to us: never mesh TLS.
    let loopback = Tls::plain(side.identity.is_some(), NoTlsReason::Loopback);
    let stats = side
        .metrics
        .tcp(Direction::Outbound, Peer::Src, target, &loopback, None);
    let mut io = Metered::unlabelled(stream, stats.clone());
    // An original destination destination knows (a cluster IP, a pod) is
    // followed by address: its endpoints for opaque bytes, and whether it
    // is marked opaque.
    let route = side
        .resolver
        .as_ref()
        .and_then(|r| r.addr_route(target, &side.clients));
    let marked_opaque = match &route {
        Some(route) => route.opaque(OPAQUE_LOOKUP).await,
        None => false,
    };
    // The protocol, unless the port skips detection.
    let (result, protocol, prefix) =
        if marked_opaque || side.cfg.skip_detect_ports.contains(target.port()) {
            detect::skipped()
        } else {
            detect::detect(&mut io, side.cfg.detect_timeout).await
        };
    side.metrics.detected(Direction::Outbound, result);
    io.label(stats);
    let io = Prefixed::new(prefix.freeze(), io);
    tracing::debug!(%client, %target, ?protocol, "accepted");
    let version = match protocol {
        Protocol::Http1 => Version::Http1,
        Protocol::H2 => Version::H2,
        // Opaque bytes: over the service's endpoints when the original
        // destination is one destination knows (a cluster IP), or straight
        // to it.
        Protocol::Opaque | Protocol::Tls => {
            let direct = side.clients.target(target, None);
            let upstream = match route {
                Some(route) => crate::discovery::connect(route, direct).await,
                None => direct.connect_tcp().await.map(tcp::Upstream::direct),
            };
            return side.forward_opaque(io, upstream, client, target).await;
        }
    };
    // Requests' own series say whether their upstream is meshed.
    let tls = Tls::plain(
        side.identity.is_some(),
        NoTlsReason::NotProvidedByServiceDiscovery,
    );
    let conn = Accepted {
        client,
        target,
        tls,
        version,
    };
    let activity = Arc::new(Activity::new());
    let stack = self::http(
        &conn,
        &side.clients,
        side.resolver.as_ref(),
        &side.metrics,
        &side.taps,
        &activity,
    );
    http::serve(io, version, stack, &activity, &side.server, drain).await;
}

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
