//! Linkerd's per-route series: `route_request_total`,
//! `route_response_total` and `route_response_latency_ms` count what the
//! client saw (one request, its final response: the effective outcome);
//! `route_actual_*` count each attempt sent upstream, retries included.
//! Labelled `direction`, `dst` (the profile's service) and `rt_route` (none
//! for requests no route matched). Inbound, a server's proxy counts the
//! requests for its own service by the same profile (no `route_actual_*`:
//! it neither retries nor times out).
//!
//! A route's series is held by the profile naming it, and dropped once no
//! profile has named it for the retention.

use crate::{
    cache::IdleCache,
    metrics::{Class, Direction, HttpNames, Responses, encode_http, label},
};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, LabelSetEncoder};
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct RtKey {
    direction: Direction,
    dst: Arc<str>,
    route: Option<Arc<str>>,
}

impl EncodeLabelSet for RtKey {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        label(set, "direction", self.direction.as_str())?;
        label(set, "dst", &*self.dst)?;
        match &self.route {
            Some(r) => label(set, "rt_route", &**r),
            None => Ok(()),
        }
    }
}

/// One route's counts.
#[derive(Debug)]
pub(crate) struct RtStats {
    key: RtKey,
    requests: AtomicU64,
    responses: Responses,
    actual_requests: AtomicU64,
    actual_responses: Responses,
}

impl RtStats {
    /// A request from the client.
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    /// Its final response, as the client saw it.
    pub(crate) fn response(
        &self,
        status: Option<http::StatusCode>,
        grpc_status: Option<u32>,
        class: Class,
        elapsed: Duration,
    ) {
        self.responses.record(status, grpc_status, class, elapsed);
    }

    /// An attempt sent upstream (the first, or a retry).
    pub(crate) fn attempt(&self) {
        self.actual_requests.fetch_add(1, Relaxed);
    }

    /// An attempt's response (`None`: none came, or it was cut short).
    pub(crate) fn attempt_response(
        &self,
        status: Option<http::StatusCode>,
        grpc_status: Option<u32>,
        class: Class,
        elapsed: Duration,
    ) {
        self.actual_responses
            .record(status, grpc_status, class, elapsed);
    }

    #[cfg(test)]
    pub(crate) fn route_name(&self) -> Option<&str> {
        self.key.route.as_deref()
    }
}

#[derive(Debug)]
pub(crate) struct RouteMetrics {
    series: IdleCache<RtKey, RtStats>,
}

impl RouteMetrics {
    pub(crate) fn new(retain_idle: Duration) -> Self {
        Self {
            series: IdleCache::new(retain_idle),
        }
    }

    /// The series of `route` (`None`: the default route) of `dst`, on one
    /// side of the proxy.
    pub(crate) fn route(
        &self,
        direction: Direction,
        dst: &Arc<str>,
        route: Option<Arc<str>>,
    ) -> Arc<RtStats> {
        let key = RtKey {
            direction,
            dst: dst.clone(),
            route,
        };
        self.series.get_or_insert_with(&key, |key| {
            let stats = RtStats {
                key: key.clone(),
                requests: AtomicU64::new(0),
                responses: Responses::default(),
                actual_requests: AtomicU64::new(0),
                actual_responses: Responses::default(),
            };
            (key.clone(), stats)
        })
    }

    pub(crate) fn sweep(&self, now: Instant) -> usize {
        self.series.sweep(now)
    }

    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let series: Vec<_> = self
            .series
            .values()
            .iter()
            .filter_map(|s| s.upgrade())
            .collect();
        let effective: Vec<_> = series
            .iter()
            .map(|s| {
                (
                    s.key.clone(),
                    s.requests.load(Relaxed),
                    s.responses.snapshot(),
                )
            })
            .collect();
        let names = HttpNames {
            request: "route_request",
            response: "route_response",
            latency: "route_response_latency_ms",
        };
        encode_http(encoder, &names, &effective)?;
        let actual: Vec<_> = series
            .iter()
            .map(|s| {
                (
                    s.key.clone(),
                    s.actual_requests.load(Relaxed),
                    s.actual_responses.snapshot(),
                )
            })
            .collect();
        let names = HttpNames {
            request: "route_actual_request",
            response: "route_actual_response",
            latency: "route_actual_response_latency_ms",
        };
        encode_http(encoder, &names, &actual)
    }
}
