//! Binds the listeners and runs the proxy until it is told to stop.
//!
//! Each accepted connection goes down its side's stack: `inbound::serve`
//! or `outbound::serve`.

use crate::{
    config::{Config, ListenerConfig, ServerConfig},
    discovery::Resolver,
    http::Clients,
    identity::{IdentityMetrics, Local},
    metrics::{Direction, Metrics},
    policy::{Policies, Server},
    tap::Taps,
    tcp,
    transport::{ConnectConfig, Failed, OrigDst},
};
use linkerd_admin::{Admin, bind};
use std::{io, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bind(#[from] linkerd_admin::BindError),
    #[error("cannot install the signal handler: {0}")]
    Signal(io::Error),
    #[error(transparent)]
    Identity(#[from] crate::identity::Error),
    #[error("invalid policy service address: {0}")]
    PolicyService(tonic::transport::Error),
}

/// One side of the proxy (inbound or outbound) and what its connections share.
pub(crate) struct Side {
    pub(crate) direction: Direction,
    pub(crate) cfg: ListenerConfig,
    pub(crate) orig_dst: OrigDst,
    pub(crate) server: ServerConfig,
    pub(crate) clients: Arc<Clients>,
    /// Outbound only, when a destination service is configured.
    pub(crate) resolver: Option<Arc<Resolver>>,
    pub(crate) metrics: Arc<Metrics>,
    /// This proxy's identity, unless identity is disabled.
    pub(crate) identity: Option<Arc<Local>>,
    /// Inbound: what each port speaks and whom it admits.
    pub(crate) policies: Option<Arc<Policies>>,
    pub(crate) taps: Arc<Taps>,
}

pub async fn run(config: Config) -> Result<(), Error> {
    let metrics = Metrics::new(config.metrics_retain_idle);
    // Shutting down is asked for (a signal, the admin server's /shutdown):
    // /ready says no and the listeners close. Only then are connections told
    // to drain, so a client that sees this proxy's GOAWAY finds it refusing
    // and sends elsewhere, never to a listener about to close.
    let shutdown = CancellationToken::new();
    let drain = CancellationToken::new();
    let tracker = TaskTracker::new();

    let inbound = bind("inbound", config.inbound.addr).await?;
    let outbound = bind("outbound", config.outbound.addr).await?;
    let admin = bind("admin", config.admin_addr).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Signal)?;

    let identity_metrics = Arc::new(IdentityMetrics::default());
    let identity = match &config.identity {
        Some(cfg) => {
            let (local, certifier) = Local::new(cfg, identity_metrics.clone())?;
            tracing::info!(identity = %local.name(), "identity enabled; obtaining a certificate");
            tokio::spawn(certifier.run());
            Some(local)
        }
        None => None,
    };
    let resolver = match config.destination {
        Some(dst) => {
            let resolver = Resolver::new(dst, identity.as_ref(), config.discovery_idle_timeout)?;
            Some(Arc::new(resolver))
        }
        None => None,
    };
    let policies = {
        let default = Server::from_default(
            config.inbound_policy,
            &config.cluster_networks,
            config.inbound.detect_timeout,
        );
        let controller = match &config.policy {
            Some(cfg) => {
                let tls = match (&cfg.svc_name, &identity) {
                    (Some(name), Some(local)) => Some(crate::control::ControlTls {
                        config: local.client_config().clone(),
                        name: crate::identity::service_name(name)?,
                        certified_first: Some(local.clone()),
                    }),
                    _ => None,
                };
                Some((cfg, tls))
            }
            None => None,
        };
        let policies = Policies::new(default, controller).map_err(Error::PolicyService)?;
        Arc::new(policies)
    };
    policies.prefetch(config.inbound_ports.iter().copied());
    let taps = Taps::new();
    match (&config.tap_svc_name, &identity) {
        (Some(tap_identity), Some(local)) => {
            let control = bind("tap", config.control_addr).await?;
            tokio::spawn(crate::tap::serve(
                control,
                local.clone(),
                tap_identity.as_str().into(),
                taps.clone(),
                drain.clone(),
            ));
        }
        (Some(_), None) => {
            tracing::warn!("tap needs identity (it is mTLS only); not serving tap");
        }
        (None, _) => {}
    }
    let mut registry = metrics.registry();
    if identity.is_some() {
        identity_metrics.register(&mut registry);
    }
    let mut admin_server = Admin::new(registry).shutdown_on(shutdown.clone());
    if let Some(identity) = identity.clone() {
        // Without its first certificate the proxy cannot take part in the
        // mesh: not ready until then.
        admin_server = admin_server.ready_when(move || {
            if identity.is_certified() {
                Ok(())
            } else {
                Err("identity not certified yet")
            }
        });
    }
    tokio::spawn(admin_server.serve(admin));
    let mut all_clients = Vec::with_capacity(2);
    let mut accepting = Vec::with_capacity(2);
    for (direction, listener, cfg) in [
        (Direction::Inbound, inbound, config.inbound),
        (Direction::Outbound, outbound, config.outbound),
    ] {
        let clients = Arc::new(Clients::new(
            direction,
            ConnectConfig {
                timeout: cfg.connect_timeout,
                source_ip: cfg.source_ip,
            },
            metrics.clone(),
            identity.clone(),
            config.discovery_idle_timeout,
        ));
        all_clients.push(clients.clone());
        let side = Arc::new(Side {
            direction,
            orig_dst: cfg
                .orig_dst_override
                .map_or(OrigDst::Kernel, OrigDst::Fixed),
            clients,
            // Inbound, only for the profiles of the services requests name.
            resolver: resolver.clone(),
            cfg,
            server: config.server.clone(),
            metrics: metrics.clone(),
            identity: identity.clone(),
            policies: Some(policies.clone()).filter(|_| direction == Direction::Inbound),
            taps: taps.clone(),
        });
        accepting.push(tokio::spawn(accept(
            listener,
            side,
            shutdown.clone(),
            drain.clone(),
            tracker.clone(),
        )));
    }
    let every = crate::cache::sweep_interval(
        config
            .metrics_retain_idle
            .min(config.discovery_idle_timeout),
    );
    tokio::spawn(sweep(every, resolver, policies, all_clients, metrics));

    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM, draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, draining"),
        _ = shutdown.cancelled() => tracing::info!("draining"),
    }
    shutdown.cancel();
    for listener in accepting {
        let _ = listener.await;
    }
    drain.cancel();
    tracker.close();
    let grace = config.shutdown_grace_period;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            "grace period of {grace:?} ended with connections still open; closing them"
        );
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Lets go of what nothing has used for a while. Routes first: a dropped
/// route releases its endpoints' targets, and they their series.
async fn sweep(
    every: Duration,
    resolver: Option<Arc<Resolver>>,
    policies: Arc<Policies>,
    clients: Vec<Arc<Clients>>,
    metrics: Arc<Metrics>,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = std::time::Instant::now();
        let routes = resolver.as_ref().map_or(0, |r| r.sweep(now)) + policies.sweep(now);
        let targets: usize = clients.iter().map(|c| c.sweep(now)).sum();
        let series = metrics.sweep(now);
        if routes + targets + series > 0 {
            tracing::debug!(routes, targets, series, "dropped what went idle");
        }
    }
}

async fn accept(
    listener: TcpListener,
    side: Arc<Side>,
    shutdown: CancellationToken,
    drain: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            // Not one more connection once shutting down: the listener
            // closes with this task.
            biased;
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client)) => {
                tracker.spawn(side.clone().serve(stream, client, drain.clone()));
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning on the error,
                // and keep serving the connections already open.
                tracing::warn!(error = %e, direction = side.direction.as_str(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Side {
    /// A connection to serve: by the side's stack (`inbound::serve`,
    /// `outbound::serve`).
    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
        drain: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        match self.direction {
            Direction::Inbound => crate::inbound::serve(&self, stream, client, drain).await,
            Direction::Outbound => crate::outbound::serve(&self, stream, client, drain).await,
        }
    }

    /// The connection's original destination; `None` (logged) if it has
    /// none, or is addressed to the proxy itself (forwarding it would loop).
    pub(crate) fn original_dst(
        &self,
        stream: &TcpStream,
        client: SocketAddr,
    ) -> Option<SocketAddr> {
        match self.orig_dst.lookup(stream) {
            Ok(Some(target)) => Some(target),
            Ok(None) => {
                tracing::debug!(%client, "connection was not redirected to the proxy; closing");
                None
            }
            Err(e) => {
                // Per connection and caused by the peer: not worth more than debug.
                tracing::debug!(%client, error = %e, "connection has no original destination; closing");
                None
            }
        }
    }

    /// Serves a detected connection's opaque bytes: to `upstream`, or the
    /// error on the client's connection.
    pub(crate) async fn forward_opaque<I>(
        &self,
        mut io: I,
        upstream: io::Result<tcp::Upstream>,
        client: SocketAddr,
        target: SocketAddr,
    ) where
        I: AsyncRead + AsyncWrite + Failed + Unpin + Send + 'static,
    {
        let forwarded = match upstream {
            Ok(upstream) => tcp::forward(&mut io, upstream).await,
            Err(e) => Err(e),
        };
        if let Err(e) = forwarded {
            tracing::debug!(%client, %target, error = %e, "TCP forwarding ended with an error");
            io.failed(&e);
        }
    }
}
