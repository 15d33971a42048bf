//! The inbound side: what a connection from outside the pod meets on its
//! way to the application, and then each HTTP request on it, top to bottom.

use crate::{
    app::Side,
    detect::{self, Protocol},
    http::{
        self, Accepted, Activity, BoxError, ClientId, Discover, Downgrade, Forward, Normalize,
        Record, ResponseBody, Route, Upgrade, Version,
    },
    metrics::{Direction, NoTlsReason, Peer, Tls},
    policy::{self, Authorize, Enforce, PortPolicy, Protocol as Speaks},
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
    // What the port speaks and whom it admits, as of now.
    let policies = side
        .policies
        .as_ref()
        .expect("the inbound side has policies");
    let mut policy = policies.port(target.port()).await;
    let server = policy.borrow_and_update().clone();
    // The protocol: on a port that skips detection, or whose server is
    // opaque, only mesh TLS is looked for, briefly.
    let skip = side.cfg.skip_detect_ports.contains(target.port())
        || matches!(server.protocol, Speaks::Opaque | Speaks::Tls);
    let timeout = match server.protocol {
        Speaks::Detect { timeout } => timeout,
        _ => side.cfg.detect_timeout,
    };
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
            let tls = Tls::inbound(conn.client_id);
            let stats = side
                .metrics
                .tcp(Direction::Inbound, Peer::Src, target, &tls, None);
            conn.io.get_mut().0.label(stats);
            let (result, protocol, prefix) = match skip {
                true => detect::skipped(),
                false => detect::detect(&mut conn.io, timeout).await,
            };
            side.metrics.detected(Direction::Inbound, result);
            let io = Prefixed::new(prefix.freeze(), conn.io);
            let accepted = Accepted {
                client,
                target,
                tls,
                version: Version::Http1,
            };
            return forward(side, io, protocol, accepted, policy, drain).await;
        }
    }
    io.label(fallback);
    let io = Prefixed::new(prefix.freeze(), io);
    let accepted = Accepted {
        client,
        target,
        tls: plain,
        version: Version::Http1,
    };
    forward(side, io, protocol, accepted, policy, drain).await
}

/// To the application: opaque bytes, or each HTTP request through `http`,
/// as the port's server says and its authorizations allow.
async fn forward<I>(
    side: &Side,
    io: I,
    detected: Protocol,
    mut conn: Accepted,
    mut policy: PortPolicy,
    drain: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Failed + Unpin + Send + 'static,
{
    let server = policy.borrow_and_update().clone();
    let version = match (server.protocol, detected) {
        // HTTP/1 may come from a client proxy as HTTP/2 (`l5d-orig-proto`),
        // so detection still tells which.
        (Speaks::Http1, Protocol::H2) => Some(Version::H2),
        (Speaks::Http1, _) => Some(Version::Http1),
        (Speaks::Http2 | Speaks::Grpc, _) => Some(Version::H2),
        (Speaks::Detect { .. }, Protocol::Http1) => Some(Version::Http1),
        (Speaks::Detect { .. }, Protocol::H2) => Some(Version::H2),
        _ => None,
    };
    let (client, target) = (conn.client, conn.target);
    tracing::debug!(%client, %target, ?detected, server = %server.meta, ?version, "accepted");
    let Some(version) = version else {
        return forward_opaque(side, io, &conn, &server, policy).await;
    };
    conn.version = version;
    let activity = Arc::new(Activity::new());
    let stack = self::http(&conn, side, policy, &activity);
    http::serve(io, version, stack, &activity, &side.server, drain).await;
}

/// Opaque bytes, if the server's authorizations admit the client, for as
/// long as they do.
async fn forward_opaque<I>(
    side: &Side,
    io: I,
    conn: &Accepted,
    server: &policy::Server,
    mut policy: PortPolicy,
) where
    I: AsyncRead + AsyncWrite + Failed + Unpin + Send + 'static,
{
    let (client, target, tls) = (conn.client, conn.target, &conn.tls);
    let who = policy::Client {
        ip: client.ip(),
        tls,
    };
    let authz = side.metrics.authz();
    match server.authorize_tcp(&who) {
        Some(a) => authz.tcp_allow(target, &server.meta, &a.meta, tls).inc(),
        None => {
            tracing::info!(%client, %target, server = %server.meta, "connection denied by policy");
            authz.tcp_deny(target, &server.meta, tls).inc();
            return;
        }
    }
    let upstream = side.clients.target(target, None).connect_tcp().await;
    let upstream = upstream.map(tcp::Upstream::direct);
    tokio::select! {
        () = side.forward_opaque(io, upstream, client, target) => {}
        meta = revoked(&mut policy, &who) => {
            tracing::info!(%client, %target, server = %meta, "authorization revoked; closing the connection");
            authz.tcp_terminate(target, &meta, tls).inc();
        }
    }
}

/// Resolves once a policy change no longer admits `client`: with the
/// server that refused it.
async fn revoked(policy: &mut PortPolicy, client: &policy::Client<'_>) -> Arc<policy::Meta> {
    loop {
        if policy.changed().await.is_err() {
            // The policy can no longer change.
            return std::future::pending().await;
        }
        let server = policy.borrow_and_update().clone();
        if server.authorize_tcp(client).is_none() {
            return server.meta.clone();
        }
    }
}

/// The stack for one inbound HTTP connection.
pub(crate) fn http(
    conn: &Accepted,
    side: &Side,
    policy: PortPolicy,
    activity: &Arc<Activity>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = BoxError,
    Future: Send + 'static,
> + Send
+ 'static {
    let (clients, metrics) = (&side.clients, &side.metrics);
    ServiceBuilder::new()
        // Hop-by-hop headers stop here; an HTTP/1 upgrade becomes a byte
        // stream between client and application.
        .layer(Upgrade::layer(conn.version))
        // The client's verified identity, never what the client says.
        .layer(ClientId::layer(&conn.tls))
        // An HTTP/1 request a client proxy carried over HTTP/2 is HTTP/1
        // again, and its response marked for the client proxy.
        .layer(Downgrade::layer(conn.version))
        // On one of the server's routes, and allowed on it or not...
        .layer(Authorize::layer(
            policy,
            metrics.clone(),
            conn.target,
            conn.client.ip(),
            conn.tls.clone(),
        ))
        // ...counted in its authority's and route's series...
        .layer(Route::layer(
            metrics.clone(),
            Direction::Inbound,
            conn.target,
            conn.tls.clone(),
        ))
        // ...and never balanced: the application is the target.
        .layer(Discover::inbound(
            side.resolver.clone(),
            clients.clone(),
            conn.target,
        ))
        // Its metrics and tap events; a failure becomes a response here.
        .layer(Record::layer(
            conn,
            Direction::Inbound,
            side.taps.clone(),
            activity.clone(),
        ))
        // A request policy refused is answered here, never forwarded.
        .layer(Enforce::layer())
        // In the form the application's protocol needs.
        .layer(Normalize::layer(conn.target))
        // To the application, on this connection's own upstream connection.
        .service(Forward::new(
            clients.target(conn.target, None),
            conn.version,
        ))
}
