//! Follows the policy controller's answer for each inbound port
//! (`InboundServerPolicies.WatchPort`), one stream per port in use.
//!
//! Until the controller first answers for a port, its server is the default
//! policy from the environment; a connection to a port not heard of yet
//! waits briefly for that first answer, so that a port a `Server` protects
//! is not open to everyone for the moment after the proxy starts. While the
//! controller cannot be reached, nothing waits: a kubelet probe must not
//! take a second because the control plane is still starting (its own pods'
//! probes included). A port no connection has used for `PORT_IDLE` stops
//! being watched.

use super::Server;
use crate::{
    cache::IdleCache,
    config::PolicyConfig,
    control::{Backoff, ControlTls, unless_unwatched},
};
use linkerd_proxy_api::inbound::{
    PortSpec, inbound_server_policies_client::InboundServerPoliciesClient,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;
use tonic::transport::Channel;

/// How long a connection to a port waits for the controller's first answer
/// before the default policy serves it.
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// How long a port's watch outlives its last connection. Long, unlike a
/// discovered name's: a pod's ports are few and fixed, and a port probed
/// every ten seconds must not start a new watch (and wait for its answer)
/// each time.
const PORT_IDLE: Duration = Duration::from_secs(600);

/// Every inbound port's server.
pub(crate) struct Policies {
    default: Arc<Server>,
    controller: Option<(InboundServerPoliciesClient<Channel>, Arc<str>)>,
    ports: IdleCache<u16, PortWatch>,
    /// Set while the last attempt to reach the controller failed.
    unreachable: Arc<AtomicBool>,
    /// Keeps the default's channel open when there is no controller.
    fixed: watch::Sender<Arc<Server>>,
}

struct PortWatch {
    rx: watch::Receiver<Arc<Server>>,
    started: Instant,
    answered: Arc<AtomicBool>,
}

/// A port's server now, and its changes: what a connection holds while it
/// is open.
pub(crate) type PortPolicy = watch::Receiver<Arc<Server>>;

impl Policies {
    pub(crate) fn new(
        default: Arc<Server>,
        controller: Option<(&PolicyConfig, Option<ControlTls>)>,
    ) -> Result<Self, tonic::transport::Error> {
        let controller = match controller {
            Some((cfg, tls)) => {
                let channel = crate::control::channel(&cfg.addr, tls)?;
                Some((
                    InboundServerPoliciesClient::new(channel),
                    cfg.workload.as_str().into(),
                ))
            }
            None => None,
        };
        Ok(Self {
            fixed: watch::Sender::new(default.clone()),
            default,
            controller,
            ports: IdleCache::new(PORT_IDLE),
            unreachable: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The server on `port`: the controller's answer, or the default if it
    /// has not answered within a moment of the port's first use.
    pub(crate) async fn port(&self, port: u16) -> PortPolicy {
        let Some((client, workload)) = &self.controller else {
            return self.fixed.subscribe();
        };
        let watch = self.ports.get_or_insert_with(&port, |&port| {
            let (tx, rx) = watch::channel(self.default.clone());
            let answered = Arc::new(AtomicBool::new(false));
            tokio::spawn(follow(
                client.clone(),
                PortSpec {
                    workload: workload.to_string(),
                    port: port.into(),
                },
                tx,
                answered.clone(),
                self.unreachable.clone(),
            ));
            let started = Instant::now();
            (
                port,
                PortWatch {
                    rx,
                    started,
                    answered,
                },
            )
        });
        let mut rx = watch.rx.clone();
        if !watch.answered.load(Ordering::Acquire) && !self.unreachable.load(Ordering::Relaxed) {
            let deadline = tokio::time::Instant::from_std(watch.started + FIRST_ANSWER_WAIT);
            let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
        }
        // A change from here on is one the connection has not seen.
        rx.borrow_and_update();
        rx
    }

    /// Starts watching ports before their first connection (those the
    /// workload declares), so those never wait.
    pub(crate) fn prefetch(self: &Arc<Self>, ports: impl IntoIterator<Item = u16>) {
        for port in ports {
            let this = self.clone();
            tokio::spawn(async move {
                // Held for a first idle period like any other port's.
                let _rx = this.port(port).await;
            });
        }
    }

    /// Stops watching the ports nothing has used for the idle timeout.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        self.ports.sweep(now)
    }
}

/// Follows the controller's answers for one port while anything holds it,
/// keeping the last good one through outages and reconnecting with backoff.
async fn follow(
    base: InboundServerPoliciesClient<Channel>,
    spec: PortSpec,
    tx: watch::Sender<Arc<Server>>,
    answered: Arc<AtomicBool>,
    unreachable: Arc<AtomicBool>,
) {
    let mut backoff = Backoff::default();
    loop {
        let mut client = base.clone();
        let Some(rsp) = unless_unwatched(&tx, client.watch_port(spec.clone())).await else {
            return;
        };
        match rsp {
            Ok(rsp) => {
                let mut stream = rsp.into_inner();
                loop {
                    let Some(msg) = unless_unwatched(&tx, stream.message()).await else {
                        return;
                    };
                    match msg {
                        Ok(Some(msg)) => match Server::try_from(&msg) {
                            Ok(server) => {
                                backoff.reset();
                                tracing::debug!(port = spec.port, server = %server.meta, "inbound policy");
                                tx.send_replace(Arc::new(server));
                                answered.store(true, Ordering::Release);
                                unreachable.store(false, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::warn!(port = spec.port, error = %e, "ignoring an inbound policy the proxy cannot enforce");
                            }
                        },
                        Ok(None) => break,
                        Err(status) => {
                            tracing::info!(port = spec.port, error = %status.message(), "policy stream failed");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                unreachable.store(true, Ordering::Relaxed);
                tracing::info!(
                    port = spec.port,
                    error = %status.message(),
                    "policy controller unavailable; keeping the last policy and retrying"
                );
            }
        }
        if !backoff.wait(&tx).await {
            return;
        }
    }
}
