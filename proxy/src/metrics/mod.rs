//! The proxy's Prometheus metrics, named and labelled as linkerd2-proxy's are so
//! that Linkerd's queries and dashboards work unchanged.
//!
//! Each label set is interned once (per connection, or per authority on a
//! connection) into a `Arc`'d stats block of atomics; the request path then
//! only increments. Encoding walks the interned blocks on each scrape.
//!
//! A series nothing has held for `LINKERD2_PROXY_METRICS_RETAIN_IDLE` is
//! dropped, as linkerd2-proxy drops its idle series: authorities and
//! endpoints come and go, and the proxy's memory and scrape size must not
//! grow with every one it ever saw.

mod histogram;
mod process;

pub(crate) use self::histogram::Histogram;
use self::histogram::{DURATION_MS, LATENCY_MS};
use crate::{
    cache::IdleCache,
    policy::{AuthzMetrics, RouteLabels},
};
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder,
        LabelValueEncoder, NoLabelSet,
    },
    metrics::MetricType,
    registry::Registry,
};
use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

/// Distinct authorities are client-controlled; past this many per direction
/// new ones share one series rather than growing memory without bound.
const MAX_ROUTES: usize = 10_000;
const OVERFLOW_AUTHORITY: &str = "overflow";

#[derive(Copy, Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// The `tls` label and the labels that go with it, as linkerd2-proxy sets them.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Tls {
    /// Plaintext because identity is disabled on this proxy.
    Disabled,
    /// Plaintext, for this reason.
    None(NoTlsReason),
    /// Mesh mTLS: inbound with the client's identity (when it sent a
    /// certificate), outbound with the server's.
    Established {
        client_id: Option<Arc<str>>,
        server_id: Option<Arc<str>>,
    },
}

/// Why a connection of a proxy with identity is not mesh TLS.
#[derive(Copy, Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum NoTlsReason {
    /// Between the proxy and its own pod's application.
    Loopback,
    /// The client did not start mesh TLS with this proxy.
    NoTlsFromRemote,
    /// Destination gave no identity for the target.
    NotProvidedByServiceDiscovery,
}

impl Tls {
    pub(crate) fn inbound(client_id: Option<Arc<str>>) -> Self {
        Self::Established {
            client_id,
            server_id: None,
        }
    }

    pub(crate) fn outbound(server_id: Arc<str>) -> Self {
        Self::Established {
            client_id: None,
            server_id: Some(server_id),
        }
    }

    /// Plaintext for `reason`, or `Disabled` on a proxy without identity.
    pub(crate) fn plain(identity: bool, reason: NoTlsReason) -> Self {
        if identity {
            Self::None(reason)
        } else {
            Self::Disabled
        }
    }

    /// The `tls` label and the ones that go with it, in order: the one
    /// rendering metrics and tap events share.
    pub(crate) fn labels(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let (tls, reason, client, server) = match self {
            Self::Disabled => ("no_identity", Some("disabled"), None, None),
            Self::None(reason) => ("no_identity", Some(reason.as_str()), None, None),
            Self::Established {
                client_id,
                server_id,
            } => ("true", None, client_id.as_deref(), server_id.as_deref()),
        };
        [
            Some(("tls", tls)),
            reason.map(|r| ("no_tls_reason", r)),
            client.map(|id| ("client_id", id)),
            server.map(|id| ("server_id", id)),
        ]
        .into_iter()
        .flatten()
    }
}

impl NoTlsReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::NoTlsFromRemote => "no_tls_from_remote",
            Self::NotProvidedByServiceDiscovery => "not_provided_by_service_discovery",
        }
    }
}

impl EncodeLabelSet for Tls {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        self.labels().try_for_each(|(k, v)| label(set, k, v))
    }
}

/// An endpoint's metric labels from destination (`namespace`, `service`,
/// `pod`, `deployment`, ...), as the `dst_`-prefixed labels of outbound series.
/// Interned per endpoint, so a series costs a pointer, not a copy.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub(crate) struct DstLabels(Box<[(Box<str>, Box<str>)]>);

impl DstLabels {
    /// Later labels override earlier ones of the same name (an address's
    /// over its set's). Names are made valid Prometheus label names.
    pub(crate) fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut by_name = BTreeMap::new();
        for (name, value) in labels {
            let name: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            by_name.insert(format!("dst_{name}").into_boxed_str(), Box::from(value));
        }
        Self(by_name.into_iter().collect())
    }

    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| &**k == name).map(|(_, v)| &**v)
    }
}

impl EncodeLabelSet for DstLabels {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        self.0.iter().try_for_each(|(k, v)| label(set, k, &**v))
    }
}

/// Writes one `key="value"` label of a set.
pub(crate) fn label(
    set: &mut LabelSetEncoder,
    key: &str,
    value: impl EncodeLabelValue,
) -> fmt::Result {
    (key, value).encode(set.encode_label())
}

/// A series' labels followed by its metric's own, borrowed from both.
pub(crate) struct Joined<'a, A, B>(pub(crate) &'a A, pub(crate) &'a B);

impl<A: EncodeLabelSet, B: EncodeLabelSet> EncodeLabelSet for Joined<'_, A, B> {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        self.0.encode(set)?;
        self.1.encode(set)
    }
}

/// A label value written through its `Display` (an address, a status
/// code), with no string made for it.
pub(crate) struct Shown<T>(pub(crate) T);

impl<T: fmt::Display> EncodeLabelValue for Shown<T> {
    fn encode(&self, value: &mut LabelValueEncoder) -> fmt::Result {
        write!(value, "{}", self.0)
    }
}

/// Which end of a proxied connection a TCP series describes.
#[derive(Copy, Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The connection the proxy accepted.
    Src,
    /// The connection the proxy opened.
    Dst,
}

/// How a response is counted: Linkerd's success/failure classification.
#[derive(Copy, Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Class {
    Success,
    Failure,
}

impl Class {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// The outcome of protocol detection on an accepted connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum DetectResult {
    Http1,
    H2,
    /// A TLS ClientHello.
    Tls,
    /// Bytes that are neither HTTP/1 nor HTTP/2.
    Opaque,
    /// The port is configured to skip detection.
    Skipped,
    /// The client sent too little before the detection timeout.
    Timeout,
    /// The client closed before sending anything.
    Eof,
    /// Reading from the client failed.
    Error,
}

const DETECT_RESULTS: [DetectResult; 8] = [
    DetectResult::Http1,
    DetectResult::H2,
    DetectResult::Tls,
    DetectResult::Opaque,
    DetectResult::Skipped,
    DetectResult::Timeout,
    DetectResult::Eof,
    DetectResult::Error,
];

impl DetectResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http/1",
            Self::H2 => "h2",
            Self::Tls => "tls",
            Self::Opaque => "opaque",
            Self::Skipped => "skipped",
            Self::Timeout => "timeout",
            Self::Eof => "eof",
            Self::Error => "error",
        }
    }
}

/// Every metric the proxy exports, shared by all of its tasks.
#[derive(Debug)]
pub(crate) struct Metrics {
    http: HttpMetrics,
    tcp: TcpMetrics,
    detect: DetectMetrics,
    authz: AuthzMetrics,
    profiles: crate::profile::RouteMetrics,
}

impl Metrics {
    /// Series nothing holds are dropped after `retain_idle`.
    pub(crate) fn new(retain_idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            http: HttpMetrics {
                routes: IdleCache::new(retain_idle),
            },
            tcp: TcpMetrics {
                conns: IdleCache::new(retain_idle),
            },
            detect: DetectMetrics::default(),
            authz: AuthzMetrics::new(retain_idle),
            profiles: crate::profile::RouteMetrics::new(retain_idle),
        })
    }

    /// Drops the series idle for the retention; returns how many went.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        self.http.routes.sweep(now)
            + self.tcp.conns.sweep(now)
            + self.authz.sweep(now)
            + self.profiles.sweep(now)
    }

    /// How many HTTP and TCP series exist.
    #[cfg(test)]
    pub(crate) fn series(&self) -> (usize, usize) {
        (self.http.routes.len(), self.tcp.conns.len())
    }

    /// The stats block for requests to `authority` on one side of the proxy,
    /// sent to `target` (an endpoint with `dst` labels, when discovered).
    pub(crate) fn route(
        &self,
        direction: Direction,
        authority: &str,
        target: SocketAddr,
        tls: &Tls,
        dst: Option<&Arc<DstLabels>>,
    ) -> Arc<RouteStats> {
        self.route_key(direction, authority, target, tls, dst, None)
    }

    /// As `route`, for a request inbound policy put on a server's route:
    /// its series carries the `srv_*` and `route_*` labels.
    pub(crate) fn policy_route(
        &self,
        direction: Direction,
        authority: &str,
        target: SocketAddr,
        tls: &Tls,
        policy: Option<&Arc<RouteLabels>>,
    ) -> Arc<RouteStats> {
        self.route_key(direction, authority, target, tls, None, policy)
    }

    fn route_key(
        &self,
        direction: Direction,
        authority: &str,
        target: SocketAddr,
        tls: &Tls,
        dst: Option<&Arc<DstLabels>>,
        policy: Option<&Arc<RouteLabels>>,
    ) -> Arc<RouteStats> {
        self.http.route(RouteKey {
            direction,
            authority: authority.into(),
            target,
            tls: tls.clone(),
            dst: dst.cloned(),
            policy: policy.cloned(),
        })
    }

    pub(crate) fn authz(&self) -> &AuthzMetrics {
        &self.authz
    }

    /// The series of service profiles' routes.
    pub(crate) fn profile_routes(&self) -> &crate::profile::RouteMetrics {
        &self.profiles
    }

    pub(crate) fn tcp(
        &self,
        direction: Direction,
        peer: Peer,
        target: SocketAddr,
        tls: &Tls,
        dst: Option<&Arc<DstLabels>>,
    ) -> Arc<TcpStats> {
        self.tcp.get(TcpKey {
            direction,
            peer,
            target,
            tls: tls.clone(),
            dst: dst.cloned(),
        })
    }

    pub(crate) fn detected(&self, direction: Direction, result: DetectResult) {
        self.detect.inc(direction, result);
    }

    /// A registry holding these metrics and the process's own.
    pub(crate) fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        registry.register_collector(Box::new(process::Process::new()));
        registry
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.http.encode(&mut encoder)?;
        self.tcp.encode(&mut encoder)?;
        self.authz.encode(&mut encoder)?;
        self.profiles.encode(&mut encoder)?;
        self.detect.encode(&mut encoder)
    }
}

// === HTTP ===

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct RouteKey {
    direction: Direction,
    authority: Box<str>,
    target: SocketAddr,
    tls: Tls,
    dst: Option<Arc<DstLabels>>,
    policy: Option<Arc<RouteLabels>>,
}

#[derive(Debug)]
struct HttpMetrics {
    routes: IdleCache<RouteKey, RouteStats>,
}

/// Counts for one (direction, authority, target, tls) series.
#[derive(Debug)]
pub(crate) struct RouteStats {
    key: RouteKey,
    requests: AtomicU64,
    responses: Responses,
}

/// A series' responses by (status, class, grpc-status). Few distinct
/// triples occur per series; a short list beats a map and is only written
/// when a new one appears.
#[derive(Debug, Default)]
pub(crate) struct Responses(RwLock<Vec<Arc<ResponseStats>>>);

#[derive(Debug)]
pub(crate) struct ResponseStats {
    labels: ResponseLabels,
    total: AtomicU64,
    latency: Histogram,
}

/// What distinguishes a route's response series: `status_code` (absent
/// when no response was produced), `classification`, `grpc_status`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct ResponseLabels {
    status: Option<http::StatusCode>,
    class: Class,
    grpc_status: Option<u32>,
}

impl EncodeLabelSet for ResponseLabels {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        if let Some(s) = self.status {
            label(set, "status_code", s.as_u16())?;
        }
        label(set, "classification", self.class.as_str())?;
        self.grpc_status
            .map_or(Ok(()), |g| label(set, "grpc_status", g))
    }
}

impl HttpMetrics {
    fn route(&self, mut key: RouteKey) -> Arc<RouteStats> {
        if let Some(stats) = self.routes.get(&key) {
            return stats;
        }
        // A new series: past the bound, it shares the overflow one.
        // Approximate under concurrency, which is all a bound needs.
        if self.routes.len() >= MAX_ROUTES {
            key.authority = OVERFLOW_AUTHORITY.into();
        }
        self.routes.get_or_insert_with(&key, |key| {
            let stats = RouteStats {
                key: key.clone(),
                requests: AtomicU64::new(0),
                responses: Responses::default(),
            };
            (key.clone(), stats)
        })
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        // Copied out series by series: a scrape must not hold the series, or
        // a proxy scraped often would never see one go idle.
        let routes: Vec<_> = self
            .routes
            .values()
            .iter()
            .filter_map(|r| {
                let r = r.upgrade()?;
                let responses = r.responses.snapshot();
                Some((r.key.clone(), r.requests.load(Relaxed), responses))
            })
            .collect();
        let names = HttpNames {
            request: "request",
            response: "response",
            latency: "response_latency_ms",
        };
        encode_http(encoder, &names, &routes)
    }
}

/// The names of a family of HTTP series: its requests, responses and
/// response latencies.
pub(crate) struct HttpNames {
    pub(crate) request: &'static str,
    pub(crate) response: &'static str,
    pub(crate) latency: &'static str,
}

/// Encodes `names`' request and response counters and latency histogram for
/// `series`: (labels, requests, responses) each.
pub(crate) fn encode_http<K: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    names: &HttpNames,
    series: &[(K, u64, Vec<Arc<ResponseStats>>)],
) -> fmt::Result {
    let mut e = encoder.encode_descriptor(
        names.request,
        "Total count of HTTP requests.",
        None,
        MetricType::Counter,
    )?;
    for (key, requests, _) in series {
        e.encode_family(key)?
            .encode_counter::<NoLabelSet, _, u64>(requests, None)?;
    }
    let responses: Vec<_> = series
        .iter()
        .flat_map(|(key, _, rsps)| rsps.iter().map(move |s| (key, s)))
        .collect();
    let mut e = encoder.encode_descriptor(
        names.response,
        "Total count of HTTP responses.",
        None,
        MetricType::Counter,
    )?;
    for (key, rsp) in &responses {
        e.encode_family(&Joined(*key, &rsp.labels))?
            .encode_counter::<NoLabelSet, _, u64>(&rsp.total.load(Relaxed), None)?;
    }
    let mut e = encoder.encode_descriptor(
        names.latency,
        "Elapsed times between a request's headers being received and its response stream completing.",
        None,
        MetricType::Histogram,
    )?;
    for (key, rsp) in &responses {
        let (sum, count, buckets) = rsp.latency.snapshot();
        e.encode_family(&Joined(*key, &rsp.labels))?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

impl EncodeLabelSet for RouteKey {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        label(set, "direction", self.direction.as_str())?;
        label(set, "authority", &*self.authority)?;
        label(set, "target_addr", Shown(self.target))?;
        self.tls.encode(set)?;
        if let Some(p) = &self.policy {
            p.encode(set)?;
        }
        self.dst.as_deref().map_or(Ok(()), |d| d.encode(set))
    }
}

impl RouteStats {
    /// Where the series' requests went, and over what TLS: for a tapped
    /// request, which endpoint the balancer chose.
    pub(crate) fn target(&self) -> (SocketAddr, &Tls) {
        (self.key.target, &self.key.tls)
    }

    /// The endpoint's labels from destination, without their `dst_` prefix.
    pub(crate) fn endpoint_labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.key.dst.iter().flat_map(|d| {
            d.0.iter()
                .map(|(k, v)| (k.strip_prefix("dst_").unwrap_or(k), &**v))
        })
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    /// Records a finished response. `status` is `None` when no response was
    /// produced at all (the request failed before its headers).
    pub(crate) fn response(
        &self,
        status: Option<http::StatusCode>,
        grpc_status: Option<u32>,
        class: Class,
        elapsed: std::time::Duration,
    ) {
        self.responses.record(status, grpc_status, class, elapsed);
    }
}

impl Responses {
    /// Counts a response and its latency in its series.
    pub(crate) fn record(
        &self,
        status: Option<http::StatusCode>,
        grpc_status: Option<u32>,
        class: Class,
        elapsed: std::time::Duration,
    ) {
        let labels = ResponseLabels {
            status,
            class,
            grpc_status,
        };
        let matches = |r: &ResponseStats| r.labels == labels;
        let found = self.0.read().unwrap().iter().find(|r| matches(r)).cloned();
        let stats = match found {
            Some(s) => s,
            None => {
                let mut rsps = self.0.write().unwrap();
                match rsps.iter().find(|r| matches(r)) {
                    Some(s) => s.clone(),
                    None => {
                        let s = Arc::new(ResponseStats {
                            labels,
                            total: AtomicU64::new(0),
                            latency: Histogram::new(LATENCY_MS),
                        });
                        rsps.push(s.clone());
                        s
                    }
                }
            }
        };
        stats.total.fetch_add(1, Relaxed);
        stats.latency.observe(elapsed);
    }

    /// The series so far, for a scrape.
    pub(crate) fn snapshot(&self) -> Vec<Arc<ResponseStats>> {
        self.0.read().unwrap().clone()
    }
}

// === TCP ===

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TcpKey {
    direction: Direction,
    peer: Peer,
    target: SocketAddr,
    tls: Tls,
    dst: Option<Arc<DstLabels>>,
}

#[derive(Debug)]
struct TcpMetrics {
    conns: IdleCache<TcpKey, TcpStats>,
}

/// Counts for the connections of one (direction, peer, target, tls) series.
#[derive(Debug)]
pub(crate) struct TcpStats {
    key: TcpKey,
    open_total: AtomicU64,
    open: AtomicI64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    duration: Histogram,
    /// Closes by errno name; `""` is a clean close.
    closes: RwLock<Vec<(&'static str, AtomicU64)>>,
    /// Mesh TLS handshakes that failed (a peer that did not prove the
    /// identity expected of it, say).
    tls_failures: AtomicU64,
}

impl TcpMetrics {
    fn get(&self, key: TcpKey) -> Arc<TcpStats> {
        self.conns.get_or_insert_with(&key, |key| {
            let stats = TcpStats {
                key: key.clone(),
                open_total: AtomicU64::new(0),
                open: AtomicI64::new(0),
                read_bytes: AtomicU64::new(0),
                write_bytes: AtomicU64::new(0),
                duration: Histogram::new(DURATION_MS),
                closes: RwLock::new(Vec::new()),
                tls_failures: AtomicU64::new(0),
            };
            (key.clone(), stats)
        })
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        // Copied out series by series, as for HTTP: the scrape holds none.
        let conns: Vec<_> = self
            .conns
            .values()
            .iter()
            .filter_map(|s| s.upgrade().map(|s| TcpSnapshot::of(&s)))
            .collect();
        type Read = fn(&TcpSnapshot) -> u64;
        let counters: [(&str, &str, Read); 3] = [
            ("tcp_open", "Total count of opened connections.", |s| {
                s.open_total
            }),
            (
                "tcp_read_bytes",
                "Total count of bytes read from peers.",
                |s| s.read_bytes,
            ),
            (
                "tcp_write_bytes",
                "Total count of bytes written to peers.",
                |s| s.write_bytes,
            ),
        ];
        for (name, help, value) in counters {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &conns {
                e.encode_family(&s.key)?
                    .encode_counter::<NoLabelSet, _, u64>(&value(s), None)?;
            }
        }
        let mut e = encoder.encode_descriptor(
            "tls_handshake_failure",
            "Total count of mesh TLS handshakes that failed.",
            None,
            MetricType::Counter,
        )?;
        for s in conns.iter().filter(|s| s.tls_failures > 0) {
            e.encode_family(&s.key)?
                .encode_counter::<NoLabelSet, _, u64>(&s.tls_failures, None)?;
        }
        let mut e = encoder.encode_descriptor(
            "tcp_close",
            "Total count of closed connections.",
            None,
            MetricType::Counter,
        )?;
        for s in &conns {
            for (errno, n) in &s.closes {
                e.encode_family(&Joined(&s.key, &[("errno", *errno)]))?
                    .encode_counter::<NoLabelSet, _, u64>(n, None)?;
            }
        }
        let mut e = encoder.encode_descriptor(
            "tcp_open_connections",
            "Number of currently open connections.",
            None,
            MetricType::Gauge,
        )?;
        for s in &conns {
            e.encode_family(&s.key)?.encode_gauge(&s.open)?;
        }
        let mut e = encoder.encode_descriptor(
            "tcp_connection_duration_ms",
            "Connection lifetimes.",
            None,
            MetricType::Histogram,
        )?;
        for s in &conns {
            let (sum, count, buckets) = &s.duration;
            e.encode_family(&s.key)?
                .encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?;
        }
        Ok(())
    }
}

/// One TCP series' values as of a scrape.
struct TcpSnapshot {
    key: TcpKey,
    open_total: u64,
    open: i64,
    read_bytes: u64,
    write_bytes: u64,
    tls_failures: u64,
    closes: Vec<(&'static str, u64)>,
    duration: (f64, u64, Vec<(f64, u64)>),
}

impl TcpSnapshot {
    fn of(s: &TcpStats) -> Self {
        Self {
            key: s.key.clone(),
            open_total: s.open_total.load(Relaxed),
            open: s.open.load(Relaxed),
            read_bytes: s.read_bytes.load(Relaxed),
            write_bytes: s.write_bytes.load(Relaxed),
            tls_failures: s.tls_failures.load(Relaxed),
            closes: s
                .closes
                .read()
                .unwrap()
                .iter()
                .map(|(e, n)| (*e, n.load(Relaxed)))
                .collect(),
            duration: s.duration.snapshot(),
        }
    }
}

impl EncodeLabelSet for TcpKey {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        let peer = match self.peer {
            Peer::Src => "src",
            Peer::Dst => "dst",
        };
        label(set, "direction", self.direction.as_str())?;
        label(set, "peer", peer)?;
        label(set, "target_addr", Shown(self.target))?;
        self.tls.encode(set)?;
        self.dst.as_deref().map_or(Ok(()), |d| d.encode(set))
    }
}

impl TcpStats {
    pub(crate) fn opened(&self) {
        self.open_total.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
    }

    pub(crate) fn tls_failed(&self) {
        self.tls_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn read(&self, n: usize) {
        self.read_bytes.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn wrote(&self, n: usize) {
        self.write_bytes.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn closed(&self, errno: &'static str, lifetime: std::time::Duration) {
        self.open.fetch_sub(1, Relaxed);
        self.duration.observe(lifetime);
        if let Some((_, n)) = self
            .closes
            .read()
            .unwrap()
            .iter()
            .find(|(e, _)| *e == errno)
        {
            n.fetch_add(1, Relaxed);
            return;
        }
        let mut closes = self.closes.write().unwrap();
        match closes.iter().find(|(e, _)| *e == errno) {
            Some((_, n)) => {
                n.fetch_add(1, Relaxed);
            }
            None => closes.push((errno, AtomicU64::new(1))),
        }
    }
}

// === Detection ===

struct DetectLabels(Direction, DetectResult);

impl EncodeLabelSet for DetectLabels {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        label(set, "direction", self.0.as_str())?;
        label(set, "result", self.1.as_str())
    }
}

#[derive(Debug, Default)]
struct DetectMetrics {
    counts: [[AtomicU64; DETECT_RESULTS.len()]; 2],
}

impl DetectMetrics {
    fn inc(&self, direction: Direction, result: DetectResult) {
        let i = DETECT_RESULTS
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.counts[direction as usize][i].fetch_add(1, Relaxed);
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let mut e = encoder.encode_descriptor(
            "protocol_detect",
            "Total count of protocol detection outcomes on accepted connections.",
            None,
            MetricType::Counter,
        )?;
        for direction in [Direction::Inbound, Direction::Outbound] {
            for (i, result) in DETECT_RESULTS.iter().enumerate() {
                let n = self.counts[direction as usize][i].load(Relaxed);
                e.encode_family(&DetectLabels(direction, *result))?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        Ok(())
    }
}
