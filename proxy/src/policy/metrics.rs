//! Linkerd's authorization counters: `inbound_http_authz_{allow,deny}_total`
//! and `inbound_tcp_authz_{allow,deny,terminate}_total`, labelled with the
//! target, the server (`srv_*`), the route (`route_*`, HTTP), the
//! authorization that admitted (`authz_*`, allow) and the client's TLS.
//!
//! As the other series, each is interned once and held by what counts in
//! it (a connection, or a connection's last route), and dropped when
//! nothing has held it for the retention.

use super::{Meta, Prefix, RouteLabels};
use crate::{
    cache::IdleCache,
    metrics::{Shown, Tls, label},
};
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeLabelSet, LabelSetEncoder, NoLabelSet},
    metrics::MetricType,
};
use std::{
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

#[derive(Copy, Clone, Debug, Hash, PartialEq, Eq)]
enum Event {
    HttpAllow,
    HttpDeny,
    TcpAllow,
    TcpDeny,
    TcpTerminate,
}

const EVENTS: [(Event, &str, &str); 5] = [
    (
        Event::HttpAllow,
        "inbound_http_authz_allow",
        "The total number of inbound HTTP requests that were authorized.",
    ),
    (
        Event::HttpDeny,
        "inbound_http_authz_deny",
        "The total number of inbound HTTP requests that were denied.",
    ),
    (
        Event::TcpAllow,
        "inbound_tcp_authz_allow",
        "The total number of inbound TCP connections that were authorized.",
    ),
    (
        Event::TcpDeny,
        "inbound_tcp_authz_deny",
        "The total number of inbound TCP connections that were denied.",
    ),
    (
        Event::TcpTerminate,
        "inbound_tcp_authz_terminate",
        "The total number of inbound TCP connections that were terminated due to an authorization change.",
    ),
];

/// What a decision is counted under.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum On {
    Route(Arc<RouteLabels>),
    Server(Arc<Meta>),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    event: Event,
    target: SocketAddr,
    on: On,
    authz: Option<Arc<Meta>>,
    tls: Tls,
}

impl EncodeLabelSet for Key {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        label(set, "target_addr", Shown(self.target))?;
        label(set, "target_ip", Shown(self.target.ip()))?;
        label(set, "target_port", self.target.port())?;
        match &self.on {
            On::Route(r) => r.encode(set)?,
            On::Server(s) => s.encode(Prefix::Srv, set)?,
        }
        if let Some(a) = &self.authz {
            a.encode(Prefix::Authz, set)?;
        }
        self.tls.encode(set)
    }
}

/// One authorization series.
#[derive(Debug)]
pub(crate) struct Counter {
    key: Key,
    n: AtomicU64,
}

impl Counter {
    pub(crate) fn inc(&self) {
        self.n.fetch_add(1, Relaxed);
    }
}

#[derive(Debug)]
pub(crate) struct AuthzMetrics {
    series: IdleCache<Key, Counter>,
}

impl AuthzMetrics {
    pub(crate) fn new(retain_idle: Duration) -> Self {
        Self {
            series: IdleCache::new(retain_idle),
        }
    }

    fn get(&self, key: Key) -> Arc<Counter> {
        self.series.get_or_insert_with(&key, |key| {
            let counter = Counter {
                key: key.clone(),
                n: AtomicU64::new(0),
            };
            (key.clone(), counter)
        })
    }

    pub(crate) fn http(
        &self,
        target: SocketAddr,
        route: &Arc<RouteLabels>,
        allowed_by: Option<&Arc<Meta>>,
        tls: &Tls,
    ) -> Arc<Counter> {
        self.get(Key {
            event: match allowed_by {
                Some(_) => Event::HttpAllow,
                None => Event::HttpDeny,
            },
            target,
            on: On::Route(route.clone()),
            authz: allowed_by.cloned(),
            tls: tls.clone(),
        })
    }

    pub(crate) fn tcp_allow(
        &self,
        target: SocketAddr,
        server: &Arc<Meta>,
        authz: &Arc<Meta>,
        tls: &Tls,
    ) -> Arc<Counter> {
        self.tcp(Event::TcpAllow, target, server, Some(authz), tls)
    }

    pub(crate) fn tcp_deny(
        &self,
        target: SocketAddr,
        server: &Arc<Meta>,
        tls: &Tls,
    ) -> Arc<Counter> {
        self.tcp(Event::TcpDeny, target, server, None, tls)
    }

    pub(crate) fn tcp_terminate(
        &self,
        target: SocketAddr,
        server: &Arc<Meta>,
        tls: &Tls,
    ) -> Arc<Counter> {
        self.tcp(Event::TcpTerminate, target, server, None, tls)
    }

    fn tcp(
        &self,
        event: Event,
        target: SocketAddr,
        server: &Arc<Meta>,
        authz: Option<&Arc<Meta>>,
        tls: &Tls,
    ) -> Arc<Counter> {
        self.get(Key {
            event,
            target,
            on: On::Server(server.clone()),
            authz: authz.cloned(),
            tls: tls.clone(),
        })
    }

    pub(crate) fn sweep(&self, now: Instant) -> usize {
        self.series.sweep(now)
    }

    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let series: Vec<(Key, u64)> = self
            .series
            .values()
            .iter()
            .filter_map(|c| {
                let c = c.upgrade()?;
                Some((c.key.clone(), c.n.load(Relaxed)))
            })
            .collect();
        for (event, name, help) in EVENTS {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (key, n) in series.iter().filter(|(k, _)| k.event == event) {
                e.encode_family(key)?
                    .encode_counter::<NoLabelSet, _, u64>(n, None)?;
            }
        }
        Ok(())
    }
}
