//! Tap: a live stream of the requests this proxy handles, for `linkerd tap`.
//!
//! The tap service ([`server`]) registers a session per `Observe` call: a
//! match expression, how many requests it still wants, and a bounded queue
//! towards the client. The request path pays one relaxed atomic load while
//! nobody taps; a tapped request carries a [`Tapped`] that emits its
//! request-init, response-init and response-end events. Events go to a
//! queue with `try_send`: a tap that reads too slowly loses events, never
//! slows the traffic.

mod matcher;
mod server;

pub(crate) use self::matcher::Matcher;
pub(crate) use self::{matcher::Facts, server::serve};
use crate::metrics::Tls;
use linkerd_proxy_api::{
    http_types::{Headers, headers::Header},
    tap::{
        Eos, TapEvent, eos,
        tap_event::{self, http as ev},
    },
};
use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};
use tokio::sync::mpsc;

/// Events a session may have queued before newer ones are dropped.
const QUEUE: usize = 1024;

/// The sessions of this proxy's tap service.
#[derive(Debug, Default)]
pub(crate) struct Taps {
    /// How many sessions there are: the request path's only check.
    active: AtomicUsize,
    sessions: RwLock<Vec<Arc<Session>>>,
    next_id: AtomicU64,
    /// Numbers connections for their events' stream ids.
    next_base: AtomicU32,
}

#[derive(Debug)]
struct Session {
    id: u64,
    matcher: Matcher,
    remaining: AtomicU32,
    headers: bool,
    tx: mpsc::Sender<TapEvent>,
}

impl Taps {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Whether anybody taps: cheap enough for every request.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Relaxed) > 0
    }

    /// A number for a connection's events.
    pub(crate) fn next_base(&self) -> u32 {
        self.next_base.fetch_add(1, Relaxed)
    }

    fn register(
        &self,
        matcher: Matcher,
        limit: u32,
        headers: bool,
    ) -> (u64, mpsc::Receiver<TapEvent>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Relaxed);
        let mut sessions = self.sessions.write().unwrap();
        sessions.push(Arc::new(Session {
            id,
            matcher,
            remaining: AtomicU32::new(limit),
            headers,
            tx,
        }));
        self.active.store(sessions.len(), Relaxed);
        (id, rx)
    }

    /// Ends a session: its queue closes once the requests it already
    /// tapped have finished.
    fn deregister(&self, id: u64) {
        let mut sessions = self.sessions.write().unwrap();
        sessions.retain(|s| s.id != id);
        self.active.store(sessions.len(), Relaxed);
    }

    /// The sessions that want this request, each counting it against its
    /// limit; `None` when none does.
    pub(crate) fn tap(&self, facts: &Facts<'_>, meta: Meta) -> Option<Box<Tapped>> {
        let mut sinks = Vec::new();
        let mut exhausted = false;
        {
            let sessions = self.sessions.read().unwrap();
            for s in sessions.iter() {
                if !s.matcher.matches(facts) {
                    continue;
                }
                let took = s
                    .remaining
                    .fetch_update(Relaxed, Relaxed, |r| r.checked_sub(1));
                match took {
                    Ok(1) => exhausted = true,
                    Ok(_) => {}
                    Err(_) => continue,
                }
                sinks.push(Sink {
                    tx: s.tx.clone(),
                    headers: s.headers,
                });
            }
        }
        if exhausted {
            let mut sessions = self.sessions.write().unwrap();
            sessions.retain(|s| s.remaining.load(Relaxed) > 0);
            self.active.store(sessions.len(), Relaxed);
        }
        if sinks.is_empty() {
            return None;
        }
        Some(Box::new(Tapped::new(sinks, facts, meta)))
    }
}

#[derive(Debug)]
struct Sink {
    tx: mpsc::Sender<TapEvent>,
    headers: bool,
}

/// What a tapped request's events say besides the match facts.
pub(crate) struct Meta<'a> {
    pub(crate) inbound: bool,
    pub(crate) base: u32,
    pub(crate) stream: u64,
    pub(crate) tls: &'a Tls,
    pub(crate) headers: &'a http::HeaderMap,
    /// The balancer has yet to choose the endpoint: the request's first
    /// event waits for [`Tapped::endpoint`] so it names the endpoint.
    pub(crate) balanced: bool,
}

/// One tapped request, from its arrival to the end of its response.
#[derive(Debug)]
pub(crate) struct Tapped {
    sinks: Vec<Sink>,
    /// The fields every event of this request carries.
    template: TapEvent,
    id: ev::StreamId,
    started: Instant,
    response_at: Option<Instant>,
    bytes: u64,
    trailers: Option<http::HeaderMap>,
    ended: bool,
    /// The request-init event, held until the endpoint is known.
    pending: Option<PendingInit>,
}

/// A request-init event not sent yet.
#[derive(Debug)]
struct PendingInit {
    init: ev::RequestInit,
    headers: Option<Headers>,
}

fn headers_proto(headers: &http::HeaderMap) -> Headers {
    Headers {
        headers: headers
            .iter()
            .map(|(k, v)| Header {
                name: k.as_str().to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect(),
    }
}

/// The metrics' TLS labels, but for `no_tls_reason`, which tap does not
/// show (Linkerd's tap events carry `tls` alone).
fn tls_labels(tls: &Tls) -> BTreeMap<String, String> {
    tls.labels()
        .filter(|(k, _)| *k != "no_tls_reason")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Tapped {
    fn new(sinks: Vec<Sink>, f: &Facts<'_>, meta: Meta<'_>) -> Self {
        let tls = tls_labels(meta.tls);
        // The peer the TLS labels describe: the client inbound, the server
        // outbound.
        let (source_labels, mut destination_labels) = if meta.inbound {
            (tls, BTreeMap::new())
        } else {
            (BTreeMap::new(), tls)
        };
        destination_labels.extend(
            f.destination_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let template = TapEvent {
            source: Some(f.source.into()),
            source_meta: Some(tap_event::EndpointMeta {
                labels: source_labels.into_iter().collect(),
            }),
            destination: Some(f.destination.into()),
            destination_meta: Some(tap_event::EndpointMeta {
                labels: destination_labels.into_iter().collect(),
            }),
            route_meta: None,
            proxy_direction: if meta.inbound {
                tap_event::ProxyDirection::Inbound as i32
            } else {
                tap_event::ProxyDirection::Outbound as i32
            },
            event: None,
        };
        let id = ev::StreamId {
            base: meta.base,
            stream: meta.stream,
        };
        let wants_headers = sinks.iter().any(|s| s.headers);
        let mut tapped = Self {
            sinks,
            template,
            id,
            started: Instant::now(),
            response_at: None,
            bytes: 0,
            trailers: None,
            ended: false,
            pending: Some(PendingInit {
                init: ev::RequestInit {
                    id: Some(id),
                    method: Some(f.method.into()),
                    scheme: Some(matcher::scheme_proto(f.scheme)),
                    authority: f.authority.to_string(),
                    path: f.path.to_string(),
                    headers: None,
                },
                headers: wants_headers.then(|| headers_proto(meta.headers)),
            }),
        };
        if !meta.balanced {
            tapped.send_init();
        }
        tapped
    }

    /// The endpoint the balancer chose: the events name it, its TLS and
    /// its labels from destination, as an endpoint-level tap would.
    pub(crate) fn endpoint<'a>(
        &mut self,
        addr: std::net::SocketAddr,
        tls: &Tls,
        labels: impl Iterator<Item = (&'a str, &'a str)>,
    ) {
        if self.pending.is_none() {
            return;
        }
        let mut destination_labels = tls_labels(tls);
        destination_labels.extend(labels.map(|(k, v)| (k.to_string(), v.to_string())));
        self.template.destination = Some(addr.into());
        self.template.destination_meta = Some(tap_event::EndpointMeta {
            labels: destination_labels.into_iter().collect(),
        });
        self.send_init();
    }

    /// Sends the request-init event, if it has not gone yet; each sink gets
    /// the headers only if its session asked for them.
    fn send_init(&mut self) {
        let Some(PendingInit { init, headers }) = self.pending.take() else {
            return;
        };
        self.emit_each(|with_headers| {
            let mut init = init.clone();
            if with_headers {
                init.headers = headers.clone();
            }
            ev::Event::RequestInit(init)
        });
    }

    /// Sends one event to every sink; a full or closed queue loses it.
    fn emit_each(&self, event: impl Fn(bool) -> ev::Event) {
        for sink in &self.sinks {
            let mut e = self.template.clone();
            e.event = Some(tap_event::Event::Http(tap_event::Http {
                event: Some(event(sink.headers)),
            }));
            let _ = sink.tx.try_send(e);
        }
    }

    pub(crate) fn response_init(&mut self, status: http::StatusCode, headers: &http::HeaderMap) {
        // A request answered before reaching an endpoint (none was ready).
        self.send_init();
        let now = Instant::now();
        self.response_at = Some(now);
        let since = proto_duration(now - self.started);
        let id = self.id;
        self.emit_each(|with_headers| {
            ev::Event::ResponseInit(ev::ResponseInit {
                id: Some(id),
                since_request_init: Some(since),
                http_status: u32::from(status.as_u16()),
                headers: with_headers.then(|| headers_proto(headers)),
            })
        });
    }

    pub(crate) fn data(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    pub(crate) fn trailers(&mut self, trailers: &http::HeaderMap) {
        if self.sinks.iter().any(|s| s.headers) {
            self.trailers = Some(trailers.clone());
        }
    }

    /// The response ended: cleanly (with its gRPC status, if any), or not.
    pub(crate) fn response_end(&mut self, clean: bool, grpc_status: Option<u32>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.send_init();
        let now = Instant::now();
        let since_request = proto_duration(now - self.started);
        let since_response = proto_duration(now - self.response_at.unwrap_or(now));
        let eos = match (clean, grpc_status) {
            (true, Some(code)) => Some(Eos {
                end: Some(eos::End::GrpcStatusCode(code)),
            }),
            (true, None) => None,
            // The stream was cut short: INTERNAL_ERROR, as h2 would reset it.
            (false, _) => Some(Eos {
                end: Some(eos::End::ResetErrorCode(2)),
            }),
        };
        let (id, bytes, trailers) = (self.id, self.bytes, self.trailers.take());
        self.emit_each(|with_headers| {
            ev::Event::ResponseEnd(ev::ResponseEnd {
                id: Some(id),
                since_request_init: Some(since_request),
                since_response_init: Some(since_response),
                response_bytes: bytes,
                eos,
                trailers: trailers
                    .as_ref()
                    .filter(|_| with_headers)
                    .map(headers_proto),
            })
        });
    }
}

fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}
