//! Entry points for `cargo fuzz` (the repository's `fuzz/` crate), built only
//! under `cfg(fuzzing)`. Each drives one parser of bytes from outside as the
//! proxy runs it, and asserts what must hold for every input: beyond "no
//! panic", that a verdict does not depend on how TCP split the bytes, that
//! bytes read ahead are replayed whole, and that a request leaves the stack
//! without hop-by-hop headers or a client-chosen identity.

use crate::{
    config::{self, ServerConfig},
    detect::{self, Protocol, Verdict},
    http::{
        Activity, BoxError, ClientId, Downgrade, Normalize, Outgoing, Req, ResponseBody, Upgrade,
        Version,
    },
    metrics::{NoTlsReason, Tls},
    tap::Matcher,
    tls::{self, Hello},
};
use bytes::BytesMut;
use http::{HeaderMap, Request, Response, header};
use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tower::ServiceBuilder;

/// One runtime for every run: building one per input would be most of the
/// work.
fn block_on<F: Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
    .block_on(f)
}

/// A client that sends `data` in pieces whose sizes follow `seed`, then
/// closes: the same bytes as one read or as many.
struct Pieces<'a> {
    data: &'a [u8],
    rng: fastrand::Rng,
}

impl<'a> Pieces<'a> {
    fn new(data: &'a [u8], seed: u8) -> Self {
        Self {
            data,
            rng: fastrand::Rng::with_seed(u64::from(seed)),
        }
    }
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let piece = self.rng.usize(1..=64);
        let n = piece.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Protocol detection. `data[0]` picks how the bytes are split.
///
/// The verdict for a prefix, once known, must hold for every longer prefix:
/// otherwise the same bytes are HTTP or opaque by how they were segmented.
pub fn detect(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let within = &data[..data.len().min(detect::CAPACITY)];
    let mut known = None;
    for end in 1..=within.len() {
        match (detect::classify(&within[..end]), known) {
            (Verdict::Known(p), None) => known = Some(p),
            (Verdict::Known(p), Some(k)) => assert_eq!(
                p,
                k,
                "{:?} is {k:?}, but with {:?} more it is {p:?}",
                String::from_utf8_lossy(&within[..end - 1]),
                String::from_utf8_lossy(&within[end - 1..end]),
            ),
            (Verdict::NeedMore, Some(k)) => panic!(
                "{:?} was {k:?}, then needed more",
                String::from_utf8_lossy(&within[..end])
            ),
            (Verdict::NeedMore, None) => {}
        }
    }
    let (_, protocol, read) = block_on(detect::detect(
        &mut Pieces::new(data, seed),
        Duration::from_secs(1),
    ));
    assert!(data.starts_with(&read), "detection lost or changed bytes");
    if let Some(k) = known {
        assert_eq!(protocol, k, "detection disagrees with its classifier");
    } else if read.len() < detect::CAPACITY {
        assert_eq!(protocol, Protocol::Opaque, "an unfinished request line");
    }
}

/// The identity the ClientHello target compares SNI against.
const LOCAL: &str = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local";

/// The ClientHello peek. `data[0]` picks the split; the rest is the client's
/// bytes, of which the first piece arrives with detection's read.
///
/// Whatever the verdict, the buffer holds exactly the bytes read, in order
/// (they are replayed to the application when the hello is not ours); and
/// whether the hello is ours or someone else's does not depend on how the
/// bytes were split.
pub fn tls_hello(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let whole = hello(data, data.len(), seed);
    let first = fastrand::Rng::with_seed(u64::from(seed)).usize(1..=64);
    let split = hello(data, first, seed);
    match (whole, split) {
        (Hello::Ours(_), Hello::Ours(_)) | (Hello::NotOurs, Hello::NotOurs) => {}
        (Hello::Invalid, _) | (_, Hello::Invalid) => {}
        (w, s) => panic!("whole: {}, split: {}", kind(&w), kind(&s)),
    }
}

fn kind(h: &Hello) -> &'static str {
    match h {
        Hello::Ours(_) => "ours",
        Hello::NotOurs => "not ours",
        Hello::Invalid => "invalid",
    }
}

fn hello(data: &[u8], first: usize, seed: u8) -> Hello {
    let (head, rest) = data.split_at(first.min(data.len()));
    let mut buf = BytesMut::from(head);
    let mut io = Pieces::new(rest, seed);
    let verdict = block_on(tls::read_hello(
        &mut io,
        &mut buf,
        LOCAL,
        Duration::from_secs(1),
    ));
    assert!(
        data.starts_with(&buf),
        "the hello's bytes were lost or changed"
    );
    verdict
}

/// What the connection's client proved, from one byte of the input.
fn tls_of(byte: u8) -> Tls {
    match byte % 3 {
        0 => Tls::None(NoTlsReason::NoTlsFromRemote),
        1 => Tls::Established {
            client_id: Some(Arc::from(
                "vote-bot.emojivoto.serviceaccount.identity.linkerd.cluster.local",
            )),
            server_id: None,
        },
        _ => Tls::Established {
            client_id: None,
            server_id: None,
        },
    }
}

/// An HTTP/1 connection's bytes through the inbound request layers that
/// rewrite what the application sees. `data[0]` picks the client's TLS.
pub fn http1_inbound(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    inbound(Version::Http1, tls_of(flags), data.to_vec());
}

/// The same for an HTTP/2 connection; the preface is added, so the input is
/// the frames after it.
pub fn http2_inbound(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(data);
    inbound(Version::H2, tls_of(flags), bytes);
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) no hop may forward; `Upgrade` and
/// `TE: trailers` are checked on their own.
const HOP_BY_HOP: &[&str] = &["keep-alive", "proxy-connection", "transfer-encoding"];

fn inbound(version: Version, tls: Tls, bytes: Vec<u8>) {
    let target = "10.0.0.7:8080".parse().expect("an address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stack = ServiceBuilder::new()
        .map_request({
            // The request as hyper parsed it, before any layer ran.
            let seen = seen.clone();
            move |req: Request<hyper::body::Incoming>| {
                seen.lock()
                    .unwrap()
                    .push((req.uri().clone(), req.headers().clone()));
                req
            }
        })
        .layer(Upgrade::layer(version))
        .layer(ClientId::layer(&tls))
        .layer(Downgrade::layer(version))
        .map_request(|req: Req| Outgoing {
            req,
            dispatch: None,
            profile: None,
        })
        .layer(Normalize::layer(target))
        .service(Application {
            tls: tls.clone(),
            version,
            seen: seen.clone(),
        });
    block_on(async move {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let cfg = ServerConfig {
            h1_header_read_timeout: Duration::from_millis(100),
            max_header_size: 16 * 1024,
            h2_max_concurrent_streams: 100,
            h2_max_pending_accept_reset_streams: 20,
            idle_timeout: Duration::from_millis(200),
        };
        let activity = Activity::new();
        let drain = tokio_util::sync::CancellationToken::new();
        let serve = crate::http::serve(server, version, stack, &activity, &cfg, drain);
        let talk = async move {
            let (mut rx, mut tx) = tokio::io::split(client);
            let send = async {
                let _ = tx.write_all(&bytes).await;
                let _ = tx.shutdown().await;
            };
            let drain = async {
                let mut sink = [0; 4096];
                while matches!(rx.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            tokio::join!(send, drain);
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            tokio::join!(serve, talk);
        })
        .await;
    });
}

/// Stands for the application: checks each request as it would receive it.
#[derive(Clone)]
struct Application {
    tls: Tls,
    version: Version,
    seen: Arc<Mutex<Vec<(http::Uri, HeaderMap)>>>,
}

impl tower::Service<Outgoing> for Application {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, out: Outgoing) -> Self::Future {
        let req = &out.req.http;
        let (original_uri, original) = self
            .seen
            .lock()
            .unwrap()
            .pop()
            .expect("the request as sent");
        let headers = req.headers();
        for name in HOP_BY_HOP {
            assert!(!headers.contains_key(*name), "{name} was forwarded");
        }
        for listed in original
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
        {
            let upgrade = out.req.upgrade && listed.eq_ignore_ascii_case("upgrade");
            // `Host` is end to end whatever Connection says: it reaches the
            // application (as the client sent it, or as an absolute-form
            // URI's authority replaced it).
            if listed.eq_ignore_ascii_case("host") {
                if let Some(host) = original.get(header::HOST)
                    && original_uri.authority().is_none()
                    && req.version() != http::Version::HTTP_2
                {
                    assert_eq!(
                        headers.get(header::HOST),
                        Some(host),
                        "Host, named by Connection, was not the client's"
                    );
                }
                continue;
            }
            if !upgrade && !listed.is_empty() {
                assert!(
                    !headers.contains_key(listed),
                    "{listed}, named by Connection, was forwarded"
                );
            }
        }
        if out.req.upgrade {
            // The handshake must reach the application: `Connection: upgrade`.
            let connection: Vec<_> = headers.get_all(header::CONNECTION).iter().collect();
            assert_eq!(connection, ["upgrade"], "an upgrade's Connection");
        } else {
            assert!(
                !headers.contains_key(header::CONNECTION),
                "Connection was forwarded"
            );
            assert!(
                !headers.contains_key(header::UPGRADE),
                "Upgrade was forwarded"
            );
        }
        for te in headers.get_all(header::TE) {
            assert_eq!(te, "trailers", "TE other than trailers was forwarded");
        }
        let client_id: Vec<_> = headers.get_all("l5d-client-id").iter().collect();
        match &self.tls {
            Tls::Established {
                client_id: Some(id),
                ..
            } => assert_eq!(
                client_id,
                [id.as_ref()],
                "l5d-client-id is not the proven one"
            ),
            _ => assert!(client_id.is_empty(), "a client chose its l5d-client-id"),
        }
        if self.version == Version::H2 {
            assert!(
                !headers.contains_key("l5d-orig-proto"),
                "l5d-orig-proto reached the application"
            );
        }
        match req.version() {
            http::Version::HTTP_2 => {
                assert!(req.uri().authority().is_some(), "HTTP/2 without authority");
            }
            _ if req.method() == http::Method::CONNECT => {}
            _ => {
                assert!(req.uri().authority().is_none(), "HTTP/1 not in origin-form");
                assert_eq!(headers.get_all(header::HOST).iter().count(), 1, "Host");
            }
        }
        let mut rsp = Response::new(ResponseBody::empty(None));
        *rsp.version_mut() = req.version();
        std::future::ready(Ok(rsp))
    }
}

/// A tap request, as a tap client sends it: protobuf, decoded as tonic
/// decodes it. A match the proxy accepts must evaluate, and `not` must be
/// its match's negation.
pub fn tap_match(data: &[u8]) {
    use linkerd_proxy_api::tap::{
        ObserveRequest,
        observe_request::{Match, r#match},
    };
    use prost::Message;
    let Ok(ObserveRequest {
        r#match: Some(proto),
        ..
    }) = ObserveRequest::decode(data)
    else {
        return;
    };
    let Ok(matcher) = Matcher::new(&proto) else {
        return;
    };
    let negated = Match {
        r#match: Some(r#match::Match::Not(Box::new(proto))),
    };
    let not = Matcher::new(&negated);
    let labels = [("app".to_string(), "web".to_string())].into();
    let method = http::Method::POST;
    let facts = crate::tap::Facts {
        source: "10.0.0.1:41000".parse().expect("an address"),
        destination: "10.0.0.7:8080".parse().expect("an address"),
        destination_labels: &labels,
        scheme: "http",
        method: &method,
        authority: "web-svc.emojivoto.svc.cluster.local:80",
        path: "/api/vote?choice=:doughnut:",
    };
    let m = matcher.matches(&facts);
    // One level deeper may pass the depth limit; otherwise it must agree.
    if let Ok(not) = not {
        assert_eq!(not.matches(&facts), !m);
    }
}

/// Every variable the proxy reads, in the order a byte of input picks them.
const VARS: &[&str] = &[
    config::ENV_LOG,
    config::ENV_INBOUND_LISTEN_ADDR,
    config::ENV_OUTBOUND_LISTEN_ADDR,
    config::ENV_ADMIN_LISTEN_ADDR,
    config::ENV_CONTROL_LISTEN_ADDR,
    config::ENV_TAP_SVC_NAME,
    config::ENV_INBOUND_ORIG_DST_ADDR,
    config::ENV_OUTBOUND_ORIG_DST_ADDR,
    config::ENV_OUTBOUND_SOURCE_IP,
    config::ENV_INBOUND_DETECT_TIMEOUT,
    config::ENV_OUTBOUND_DETECT_TIMEOUT,
    config::ENV_INBOUND_CONNECT_TIMEOUT,
    config::ENV_OUTBOUND_CONNECT_TIMEOUT,
    config::ENV_OUTBOUND_HTTP_QUEUE_CAPACITY,
    config::ENV_OUTBOUND_HTTP_FAILFAST_TIMEOUT,
    config::ENV_METRICS_RETAIN_IDLE,
    config::ENV_OUTBOUND_DISCOVERY_IDLE_TIMEOUT,
    config::ENV_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION,
    config::ENV_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION,
    config::ENV_SHUTDOWN_GRACE_PERIOD,
    config::ENV_IDENTITY_DISABLED,
    config::ENV_IDENTITY_DIR,
    config::ENV_IDENTITY_TRUST_ANCHORS,
    config::ENV_IDENTITY_TOKEN_FILE,
    config::ENV_IDENTITY_LOCAL_NAME,
    config::ENV_IDENTITY_SVC_ADDR,
    config::ENV_IDENTITY_SVC_NAME,
    config::ENV_IDENTITY_MIN_REFRESH,
    config::ENV_IDENTITY_MAX_REFRESH,
    config::ENV_INBOUND_DEFAULT_POLICY,
    config::ENV_POLICY_CLUSTER_NETWORKS,
    config::ENV_POLICY_SVC_ADDR,
    config::ENV_POLICY_SVC_NAME,
    config::ENV_POLICY_WORKLOAD,
    config::ENV_INBOUND_PORTS,
    config::ENV_HTTP1_HEADER_READ_TIMEOUT,
    config::ENV_HTTP_MAX_HEADER_SIZE,
    config::ENV_HTTP2_MAX_CONCURRENT_STREAMS,
    config::ENV_HTTP2_MAX_PENDING_ACCEPT_RESETS,
    config::ENV_IDLE_TIMEOUT,
    config::ENV_CORES,
    config::ENV_DESTINATION_SVC_ADDR,
    config::ENV_DESTINATION_SVC_NAME,
    config::ENV_DESTINATION_GET_SUFFIXES,
    config::ENV_DESTINATION_GET_NETWORKS,
];

/// The proxy's environment, as the injector (or a user's override) writes
/// it: lines of a variable's index byte then its value. Bad values must be
/// refused with an error naming the variable, never a panic.
pub fn config_env(data: &[u8]) {
    let mut env = HashMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((&which, value)) = line.split_first() else {
            continue;
        };
        let name = VARS[usize::from(which) % VARS.len()];
        env.insert(
            name.to_string(),
            String::from_utf8_lossy(value).into_owned(),
        );
    }
    if let Err(e) = config::Config::from_env(&env) {
        let message = e.to_string();
        assert!(
            VARS.iter().any(|v| message.starts_with(v)),
            "an error that names no variable: {message}"
        );
        assert!(!message.contains('\n'), "a multi-line error: {message}");
    }
}

#[cfg(test)]
mod corpus {
    use linkerd_test_tools::fuzz_replay as replay;

    #[test]
    fn detect() {
        replay("detect", super::detect);
    }

    #[test]
    fn tls_hello() {
        replay("tls_hello", super::tls_hello);
    }

    #[test]
    fn http1_inbound() {
        replay("http1_inbound", super::http1_inbound);
    }

    #[test]
    fn http2_inbound() {
        replay("http2_inbound", super::http2_inbound);
    }

    #[test]
    fn tap_match() {
        replay("tap_match", super::tap_match);
    }

    #[test]
    fn proxy_config() {
        replay("proxy_config", super::config_env);
    }
}
