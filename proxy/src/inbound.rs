//! The inbound side: what a connection from outside the pod meets on its
//! way to the application, and then each HTTP request on it, top to bottom.

use crate::{
    app::Side,
    config::InboundPolicy,
    detect::{self, Protocol},
    http::{
        self, Accepted, Activity, BoxError, ClientId, Clients, Discover, Downgrade, Forward,
        Normalize, Record, ResponseBody, Route, Upgrade, Version,
    },
    metrics::{Direction, Metrics, NoTlsReason, Peer, Tls},
    tap::Taps,
    tcp,
    tls::{self, Hello},
    transport::{Failed, Metered, Prefixed},
};
use ::http::{Request, Response};
use hyper::body::Incoming;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

/// On ports that skip protocol detection, how long to wait for a meshed
/// client's ClientHello before treating the connection as opaque.
const SKIPPED_PORT_TLS_WAIT: Duration = Duration::from_millis(300);

/// One accepted inbound connection, top to bottom.
pub(crate) async fn serve(
    side: &Side,
    stream: TcpStream,
    client: SocketAddr,
    drain: CancellationToken,
) {
    // Where the client meant to go: the application's port.
    let Some(target) = side.original_dst(&stream, client) else {
        return;
    };
    // Counted once its TLS is known; as plaintext if it ends before.
    let plain = Tls::plain(side.identity.is_some(), NoTlsReason::NoTlsFromRemote);
    let fallback = side
        .metrics
        .tcp(Direction::Inbound, Peer::Src, target, &plain, None);
    let mut io = Metered::unlabelled(stream, fallback.clone());
    // A policy that admits no one.
    if side.policy == InboundPolicy::Deny {
        tracing::debug!(%client, %target, "inbound policy denies every connection; closing");
        return;
    }
    // The protocol: on a port that skips detection, only mesh TLS is looked
    // for, briefly.
    let skip = side.cfg.skip_detect_ports.contains(target.port());
    let timeout = side.cfg.detect_timeout;
    let (result, protocol, mut prefix) = match &side.identity {
        Some(_) if skip => detect::tls_only(&mut io, SKIPPED_PORT_TLS_WAIT).await,
        None if skip => detect::skipped(),
        _ => detect::detect(&mut io, timeout).await,
    };
    side.metrics.detected(Direction::Inbound, result);
    // Mesh TLS for this proxy's name: terminated, the client's identity
    // taken from its certificate, and the protocol detected again inside.
    // (A hello for another name passes through as opaque bytes.)
    if let (Protocol::Tls, Some(local)) = (protocol, &side.identity) {
        let hello = tls::read_hello(&mut io, &mut prefix, local.name(), timeout).await;
        if let Hello::Ours(accepted) = hello {
            let mut conn = match tls::terminate(local, accepted, io, timeout).await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(%client, %target, error = %e, "mesh TLS handshake failed");
                    fallback.tls_failed();
                    return;
                }
            };
            // A policy that admits only meshed clients with an identity.
            if side.policy == InboundPolicy::AllAuthenticated && conn.client_id.is_none() {
                tracing::debug!(%client, %target, "client sent no certificate; policy requires one");
                return;
            }
            let tls = Tls::inbound(conn.client_id);
            let stats = side
                .metrics
                .tcp(Direction::Inbound, Peer::Src, target, &tls, None);
            conn.io.get_mut().0.label(stats);
            let (result, protocol, prefix) = detect::detect(&mut conn.io, timeout).await;
            side.metrics.detected(Direction::Inbound, result);
            let io = Prefixed::new(prefix.freeze(), conn.io);
            return forward(side, io, protocol, client, target, tls, drain).await;
        }
    }
    if side.policy == InboundPolicy::AllAuthenticated {
        tracing::debug!(%client, %target, "plaintext client; policy requires mesh TLS");
        return;
    }
    io.label(fallback);
    let io = Prefixed::new(prefix.freeze(), io);
    forward(side, io, protocol, client, target, plain, drain).await
}

/// To the application: opaque bytes, or each HTTP request through `http`.
async fn forward<I>(
    side: &Side,
    io: I,
    protocol: Protocol,
    client: SocketAddr,
    target: SocketAddr,
    tls: Tls,
    drain: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Failed + Unpin + Send + 'static,
{
    tracing::debug!(%client, %target, ?protocol, "accepted");
    let version = match protocol {
        Protocol::Http1 => Version::Http1,
        Protocol::H2 => Version::H2,
        Protocol::Opaque | Protocol::Tls => {
            let upstream = side.clients.target(target, None).connect_tcp().await;
            let upstream = upstream.map(tcp::Upstream::direct);
            return side.forward_opaque(io, upstream, client, target).await;
        }
    };
    let conn = Accepted {
        client,
        target,
        tls,
        version,
    };
    let activity = Arc::new(Activity::new());
    let stack = self::http(&conn, &side.clients, &side.metrics, &side.taps, &activity);
    http::serve(io, version, stack, &activity, &side.server, drain).await;
}

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
