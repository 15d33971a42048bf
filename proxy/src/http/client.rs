//! Pooled upstream HTTP clients, one per (target, protocol).
//!
//! The proxy keeps the client's protocol: HTTP/1 requests go upstream as
//! HTTP/1 on a pool of keep-alive connections, HTTP/2 requests share one
//! multiplexed connection. A client is looked up once per accepted connection,
//! never per request.

use crate::{
    metrics::{Direction, Metrics, Peer, TcpStats, Tls},
    transport::{self, Metered},
};
use http::Uri;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{
        self,
        connect::{Connected, Connection},
    },
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::net::TcpStream;

pub(crate) type Client = legacy::Client<Connect, Incoming>;

/// How long an unused upstream connection stays in the pool.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle HTTP/1 connections kept per target; more are closed when released.
const POOL_MAX_IDLE: usize = 64;

#[derive(Copy, Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Version {
    Http1,
    H2,
}

/// Every client this side of the proxy has made, by target and protocol.
#[derive(Debug)]
pub(crate) struct Clients {
    direction: Direction,
    connect_timeout: Duration,
    metrics: Arc<Metrics>,
    clients: Mutex<HashMap<(SocketAddr, Version), Client>>,
}

impl Clients {
    pub(crate) fn new(
        direction: Direction,
        connect_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            direction,
            connect_timeout,
            metrics,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, target: SocketAddr, version: Version) -> Client {
        let mut clients = self.clients.lock().unwrap();
        clients
            .entry((target, version))
            .or_insert_with(|| {
                let connect = Connect {
                    target,
                    timeout: self.connect_timeout,
                    stats: self
                        .metrics
                        .tcp(self.direction, Peer::Dst, target, &Tls::Disabled),
                };
                let mut b = legacy::Client::builder(TokioExecutor::new());
                b.timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .pool_max_idle_per_host(POOL_MAX_IDLE);
                if version == Version::H2 {
                    b.http2_only(true)
                        .http2_keep_alive_interval(Duration::from_secs(10))
                        .http2_keep_alive_timeout(Duration::from_secs(20));
                }
                b.build(connect)
            })
            .clone()
    }
}

/// Connects to one fixed target, whatever the request's URI says: the URI
/// carries the logical authority, the target is where the proxy must go.
#[derive(Clone, Debug)]
pub(crate) struct Connect {
    target: SocketAddr,
    timeout: Duration,
    stats: Arc<TcpStats>,
}

impl Connection for Metered<TcpStream> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl tower_service::Service<Uri> for Connect {
    type Response = TokioIo<Metered<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let Self {
            target,
            timeout,
            stats,
        } = self.clone();
        Box::pin(async move {
            let stream = transport::connect(target, timeout).await?;
            Ok(TokioIo::new(Metered::new(stream, stats)))
        })
    }
}
