//! Outbound discovery and load balancing across binaries: a controller on a
//! local topology, a proxy that asks it, and real backends.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_tests::{backends, controller::Controller, eventually, proxy::Proxy};
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tokio::net::{TcpListener, TcpStream};

const WEB: &str = "web.emojivoto.svc.cluster.local:80";
/// `web`'s cluster IP: nothing listens there, so only a proxy that resolved
/// it reaches the service.
const WEB_CLUSTER_IP: &str = "127.0.10.1:80";
/// The networks the proxies resolve original destinations in.
const NETWORKS: &str = "127.0.10.0/24";

/// A topology whose `web` service has a pod per backend address, each of
/// deployment `web`.
fn topology(backends: &[SocketAddr]) -> String {
    service_topology("web", "127.0.10.1", 80, backends)
}

fn service_topology(name: &str, cluster_ip: &str, port: u16, backends: &[SocketAddr]) -> String {
    let mut yaml = format!(
        "services:\n  - {{name: {name}, namespace: emojivoto, clusterIP: {cluster_ip}, selector: {{app: {name}}}, ports: [{{port: {port}, targetPort: app}}]}}\npods:\n",
    );
    for (i, b) in backends.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{name: {name}-{i}, namespace: emojivoto, ip: {}, labels: {{app: {name}}}, ports: {{app: {}}}, owner: {{kind: Deployment, name: {name}}}, serviceAccount: {name}}}\n",
            b.ip(),
            b.port()
        ));
    }
    yaml
}

async fn backend(delay: Duration) -> SocketAddr {
    backends::http_delayed(TcpListener::bind("127.0.0.1:0").await.unwrap(), delay)
}

/// A proxy that discovers through `ctl`; its original destination (used for
/// names that are not services) is `fallback`.
async fn proxy(ctl: &Controller, fallback: SocketAddr) -> Proxy {
    Proxy::builder()
        .outbound_target(fallback)
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", ctl.grpc)
        .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", NETWORKS)
        .spawn()
        .await
}

/// Sends `n` requests to `authority` over `conns` HTTP/1 connections and
/// counts which backend answered each (a failure counts as `status NNN`).
async fn spread(proxy: &Proxy, authority: &str, n: usize, conns: usize) -> BTreeMap<String, usize> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        let addr = proxy.outbound;
        let authority = authority.to_string();
        let share = n / conns + usize::from(c < n % conns);
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut seen = Vec::new();
            for _ in 0..share {
                let req = Request::get("/whoami")
                    .header("host", &authority)
                    .body(Full::<Bytes>::default())
                    .unwrap();
                let rsp = send.send_request(req).await.unwrap();
                let status = rsp.status();
                let body = rsp.into_body().collect().await.unwrap().to_bytes();
                // Failures are counted by status, next to the backends.
                seen.push(match status.as_u16() {
                    200 => String::from_utf8(body.to_vec()).unwrap(),
                    other => format!("status {other}"),
                });
            }
            seen
        }));
    }
    let mut counts = BTreeMap::new();
    for t in tasks {
        for who in t.await.unwrap() {
            *counts.entry(who).or_default() += 1;
        }
    }
    counts
}

/// `n` fast backends.
async fn fast_backends(n: usize) -> Vec<SocketAddr> {
    let mut bs = Vec::with_capacity(n);
    for _ in 0..n {
        bs.push(backend(Duration::ZERO).await);
    }
    bs
}

/// A controller serving `web` on `backends`, and a proxy asking it (whose
/// original destination, for other names, is a closed port).
async fn mesh(backends: &[SocketAddr]) -> (Controller, Proxy) {
    let ctl = Controller::destination(&topology(backends)).await;
    let proxy = proxy(&ctl, "127.0.0.1:1".parse().unwrap()).await;
    (ctl, proxy)
}

#[tokio::test]
async fn requests_spread_over_every_endpoint() {
    let bs = fast_backends(3).await;
    let (_ctl, proxy) = mesh(&bs).await;
    let counts = spread(&proxy, WEB, 300, 6).await;
    assert_eq!(counts.values().sum::<usize>(), 300);
    for b in &bs {
        let n = counts.get(&b.to_string()).copied().unwrap_or(0);
        assert!(n >= 30, "{b} got {n} of 300: {counts:?}");
    }
}

#[tokio::test]
async fn most_requests_move_away_from_a_slow_endpoint() {
    let slow = backend(Duration::from_millis(40)).await;
    let bs = [
        backend(Duration::ZERO).await,
        backend(Duration::ZERO).await,
        slow,
    ];
    let (_ctl, proxy) = mesh(&bs).await;
    let counts = spread(&proxy, WEB, 600, 6).await;
    let to_slow = counts.get(&slow.to_string()).copied().unwrap_or(0);
    // An even spread would give it 200; peak-EWMA keeps it far below.
    assert!(
        to_slow < 60,
        "the slow endpoint got {to_slow} of 600: {counts:?}"
    );
}

#[tokio::test]
async fn a_removed_endpoint_gets_no_more_requests() {
    let bs = fast_backends(3).await;
    let (ctl, proxy) = mesh(&bs).await;
    assert_eq!(spread(&proxy, WEB, 60, 3).await.len(), 3);
    ctl.set_topology(&topology(&bs[..2]));
    // The controller polls the file every 20ms and streams the change: once
    // a round of requests misses the removed endpoint, the proxy has it.
    let gone = bs[2].to_string();
    let removed = eventually(Duration::from_secs(10), || async {
        (!spread(&proxy, WEB, 20, 2).await.contains_key(&gone)).then_some(())
    })
    .await;
    assert!(removed.is_some(), "{gone} kept getting requests");
    let counts = spread(&proxy, WEB, 200, 4).await;
    assert!(!counts.contains_key(&bs[2].to_string()), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 200);
}

#[tokio::test]
async fn traffic_keeps_flowing_when_the_controller_stops() {
    let bs = fast_backends(2).await;
    let (ctl, proxy) = mesh(&bs).await;
    assert_eq!(spread(&proxy, WEB, 20, 2).await.len(), 2);
    let grpc = ctl.grpc;
    drop(ctl);
    let gone = eventually(Duration::from_secs(5), || async {
        TcpStream::connect(grpc).await.err()
    })
    .await;
    assert!(gone.is_some(), "the controller still answers");
    let counts = spread(&proxy, WEB, 100, 2).await;
    assert_eq!(counts.values().sum::<usize>(), 100);
    assert_eq!(counts.len(), 2, "{counts:?}");
}

#[tokio::test]
async fn other_names_go_to_the_original_destination() {
    let service = backend(Duration::ZERO).await;
    let original = backend(Duration::ZERO).await;
    let ctl = Controller::destination(&topology(&[service])).await;
    let proxy = proxy(&ctl, original).await;
    // Not under the resolved suffix: not even asked about.
    let counts = spread(&proxy, "example.com:80", 5, 1).await;
    assert_eq!(counts.get(&original.to_string()), Some(&5), "{counts:?}");
    // Under it, but unknown to destination (no such service, said on a
    // stream that stays open): the original destination.
    let counts = spread(&proxy, "nope.emojivoto.svc.cluster.local:80", 5, 1).await;
    assert_eq!(counts.get(&original.to_string()), Some(&5), "{counts:?}");
    let counts = spread(&proxy, WEB, 5, 1).await;
    assert_eq!(counts.get(&service.to_string()), Some(&5), "{counts:?}");
}

#[tokio::test]
async fn a_service_without_endpoints_fails_fast_with_503() {
    let ctl = Controller::destination(&topology(&[])).await;
    let proxy = proxy(&ctl, "127.0.0.1:1".parse().unwrap()).await;
    // (A 503 carries l5d-proxy-error: `timed_request` checks it.)
    let (status, took) = timed_request(&proxy, WEB).await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(5));
}

#[tokio::test]
async fn http2_requests_are_balanced_too() {
    let bs = fast_backends(3).await;
    let (_ctl, proxy) = mesh(&bs).await;
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let requests = (0..150).map(|_| {
        let mut send = send.clone();
        async move {
            let req = Request::get(format!("http://{WEB}/whoami"))
                .body(Full::<Bytes>::default())
                .unwrap();
            let rsp = send.send_request(req).await.unwrap();
            assert_eq!(rsp.status(), 200);
            String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        }
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for who in futures_util::future::join_all(requests).await {
        *counts.entry(who).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
}

/// An endpoint that refuses connections costs a request or two, then is
/// left out until it accepts connections again. The live endpoints are
/// slower than a new endpoint's assumed latency, so without that a
/// latency-aware balancer would favour the refusing one's fast failures.
#[tokio::test]
async fn a_refusing_endpoint_is_avoided_until_it_recovers() {
    // A port that refuses connections, held (bound, never listening, and
    // without SO_REUSEADDR) so that no other test's listener takes it
    // meanwhile: once freed, a CI run saw it taken by the TCP test's echo
    // backend, whose echoes became 502s here.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let live = Duration::from_millis(40);
    let bs = [backend(live).await, backend(live).await, dead_addr];
    let (_ctl, proxy) = mesh(&bs).await;

    let counts = spread(&proxy, WEB, 150, 6).await;
    // Concurrent requests may all pick it before its first refusal marks it
    // out, but a refused request never left, so another endpoint takes it.
    // (Without the back-off it drew 101 of 150; before refused requests were
    // offered again, up to 20 failed.)
    assert!(
        !counts.keys().any(|k| k.starts_with("status")),
        "requests failed at the refusing endpoint: {counts:?}"
    );

    // It comes back: a probe after its back-off (at most 500ms) finds it.
    drop(dead);
    backends::http_on(TcpListener::bind(dead_addr).await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let counts = spread(&proxy, WEB, 30, 3).await;
        assert!(
            !counts.keys().any(|k| k.starts_with("status")),
            "{counts:?}"
        );
        if counts.contains_key(&dead_addr.to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never used again: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Outbound series are per endpoint, with destination's labels for it, so
/// Linkerd's dashboards can group by `dst_deployment`, `dst_pod`, ...
#[tokio::test]
async fn outbound_metrics_carry_each_endpoints_labels() {
    let bs = fast_backends(3).await;
    let (_ctl, proxy) = mesh(&bs).await;
    let counts = spread(&proxy, WEB, 60, 3).await;
    let m = proxy.metrics_when_closed().await;
    let service = [
        ("direction", "outbound"),
        ("authority", WEB),
        ("dst_namespace", "emojivoto"),
        ("dst_service", "web"),
        ("dst_deployment", "web"),
        ("dst_serviceaccount", "web"),
    ];
    assert_eq!(m.sum("request_total", &service), 60.0, "{}", m.text);
    assert_eq!(
        m.sum(
            "response_total",
            &[&service[..], &[("classification", "success")]].concat()
        ),
        60.0
    );
    for (i, b) in bs.iter().enumerate() {
        let pod = format!("web-{i}");
        let endpoint = [("dst_pod", pod.as_str()), ("target_addr", &b.to_string())];
        let answered = counts.get(&b.to_string()).copied().unwrap_or(0) as f64;
        assert_eq!(m.sum("request_total", &endpoint), answered, "{pod}");
        assert_eq!(
            m.sum("response_latency_ms_count", &endpoint),
            answered,
            "{pod}"
        );
        if answered > 0.0 {
            let tcp = [
                ("peer", "dst"),
                ("dst_pod", pod.as_str()),
                ("target_addr", &b.to_string()),
            ];
            assert!(m.sum("tcp_open_total", &tcp) >= 1.0, "{pod}: {}", m.text);
        }
    }
    // Nothing was counted against the logical target without an endpoint.
    assert_eq!(
        m.sum(
            "request_total",
            &[("direction", "outbound"), ("target_addr", "127.0.0.1:1")]
        ),
        0.0
    );
}

/// HTTP whose authority is no service name, sent to a service's cluster IP,
/// is resolved by that address and balanced.
#[tokio::test]
async fn http_to_a_cluster_ip_is_balanced() {
    let bs = fast_backends(3).await;
    let ctl = Controller::destination(&topology(&bs)).await;
    let proxy = proxy(&ctl, WEB_CLUSTER_IP.parse().unwrap()).await;
    let counts = spread(&proxy, "web", 90, 3).await;
    assert_eq!(counts.values().sum::<usize>(), 90, "{counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    let m = proxy.metrics_when_closed().await;
    assert_eq!(
        m.sum(
            "response_total",
            &[("authority", "web"), ("dst_service", "web")]
        ),
        0.0,
        "endpoints are labelled with the address they were resolved by"
    );
    assert_eq!(
        m.sum(
            "response_total",
            &[("authority", WEB_CLUSTER_IP), ("dst_service", "web")]
        ),
        90.0,
        "{}",
        m.text
    );
}

/// An address in the resolved networks that destination does not know is
/// not a service: its connections go to it directly.
#[tokio::test]
async fn unknown_addresses_go_to_the_original_destination() {
    let listener = TcpListener::bind("127.0.10.9:0").await.unwrap();
    let original = backends::http_on(listener);
    let ctl = Controller::destination(&topology(&fast_backends(1).await)).await;
    let proxy = proxy(&ctl, original).await;
    let counts = spread(&proxy, "anything", 5, 1).await;
    assert_eq!(counts.get(&original.to_string()), Some(&5), "{counts:?}");
}

/// Opens `n` opaque connections through `proxy` at once, keeps them all
/// open, and counts which backend each reached.
async fn connections(proxy: &Proxy, n: usize) -> BTreeMap<String, usize> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut held = Vec::new();
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let stream = TcpStream::connect(proxy.outbound).await.unwrap();
        let mut stream = BufReader::new(stream);
        let mut who = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut who))
            .await
            .expect("no greeting within 5s")
            .unwrap();
        // The connection is whole: it echoes.
        stream.write_all(b"ping\n").await.unwrap();
        let mut echo = String::new();
        stream.read_line(&mut echo).await.unwrap();
        assert_eq!(echo, "ping\n");
        *counts.entry(who.trim().to_string()).or_default() += 1;
        held.push(stream);
    }
    counts
}

/// Opaque TCP to a service's cluster IP is balanced per connection over its
/// endpoints, by open connections; removed endpoints get no new ones.
#[tokio::test]
async fn tcp_connections_are_balanced_over_the_service() {
    const DB: &str = "127.0.10.2:5432";
    let bs = [
        backends::tcp_whoami().await,
        backends::tcp_whoami().await,
        backends::tcp_whoami().await,
    ];
    let ctl = Controller::destination(&service_topology("db", "127.0.10.2", 5432, &bs)).await;
    let proxy = proxy(&ctl, DB.parse().unwrap()).await;

    let first = connections(&proxy, 30).await;
    assert_eq!(first.values().sum::<usize>(), 30, "{first:?}");
    for b in &bs {
        // Least of two random choices by open connections: close to 10 each.
        let n = first.get(&b.to_string()).copied().unwrap_or(0);
        assert!(n >= 8, "{b} got {n} of 30 connections: {first:?}");
    }

    ctl.set_topology(&service_topology("db", "127.0.10.2", 5432, &bs[..2]));
    let gone = bs[2].to_string();
    // Connections made while the change travels, by backend: counted below.
    let polled = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    let removed = eventually(Duration::from_secs(10), || async {
        let round = connections(&proxy, 10).await;
        for (backend, n) in &round {
            *polled.borrow_mut().entry(backend.clone()).or_default() += n;
        }
        (!round.contains_key(&gone)).then_some(())
    })
    .await;
    assert!(removed.is_some(), "{gone} kept getting connections");
    let polled = polled.into_inner();
    let counts = connections(&proxy, 20).await;
    assert!(!counts.contains_key(&bs[2].to_string()), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 20);

    let m = proxy.metrics_when_closed().await;
    let db = [
        ("direction", "outbound"),
        ("peer", "dst"),
        ("dst_service", "db"),
        ("dst_deployment", "db"),
    ];
    let during: usize = polled.values().sum();
    assert_eq!(
        m.sum("tcp_open_total", &db),
        (50 + during) as f64,
        "{}",
        m.text
    );
    let removed = (first[&gone] + polled.get(&gone).copied().unwrap_or(0)) as f64;
    assert_eq!(
        m.sum(
            "tcp_open_total",
            &[&db[..], &[("dst_pod", "db-2")]].concat()
        ),
        removed
    );
}

/// A service without endpoints cannot take a connection: the client's is
/// closed at once rather than left hanging.
#[tokio::test]
async fn tcp_to_a_service_without_endpoints_is_closed() {
    use tokio::io::AsyncReadExt;
    let ctl = Controller::destination(&service_topology("db", "127.0.10.2", 5432, &[])).await;
    let proxy = proxy(&ctl, "127.0.10.2:5432".parse().unwrap()).await;
    let mut stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let mut buf = [0; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the connection was left open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// A request its client gives up on belongs to the endpoint it was sent
/// to: counted there as a failure, never in a series of the service's
/// address without an endpoint, where no connection went.
#[tokio::test]
async fn an_abandoned_request_counts_at_its_endpoint() {
    let slow = backend(Duration::from_millis(800)).await;
    let (_ctl, proxy) = mesh(&[slow]).await;
    // One answered request, so the route is resolved and balanced.
    let warm = spread(&proxy, WEB, 1, 1).await;
    assert_eq!(warm.get(&slow.to_string()), Some(&1), "{warm:?}");
    let abandoned = 5;
    for _ in 0..abandoned {
        let stream = TcpStream::connect(proxy.outbound).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", WEB)
            .body(Full::<Bytes>::default())
            .unwrap();
        let gave_up =
            tokio::time::timeout(Duration::from_millis(100), send.send_request(req)).await;
        assert!(gave_up.is_err(), "the slow backend answered in 100ms");
        drop(send);
        conn.abort();
    }
    let m = proxy.metrics_when_closed().await;
    let endpoint = [
        ("direction", "outbound"),
        ("authority", WEB),
        ("dst_pod", "web-0"),
        ("target_addr", &slow.to_string()),
    ];
    let counted = 1.0 + f64::from(abandoned);
    assert_eq!(m.sum("request_total", &endpoint), counted, "{}", m.text);
    assert_eq!(m.sum("response_total", &endpoint), counted, "{}", m.text);
    assert_eq!(
        m.sum(
            "response_total",
            &[&endpoint[..], &[("classification", "failure")]].concat()
        ),
        f64::from(abandoned),
        "{}",
        m.text
    );
    // All of the route's requests are the endpoint's.
    let route = [("direction", "outbound"), ("authority", WEB)];
    assert_eq!(m.sum("request_total", &route), counted, "{}", m.text);
    assert_eq!(m.sum("response_total", &route), counted, "{}", m.text);
}

/// One request with its own connection: its status and how long it took.
async fn timed_request(proxy: &Proxy, authority: &str) -> (u16, Duration) {
    let started = std::time::Instant::now();
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/whoami")
        .header("host", authority)
        .body(Full::<Bytes>::default())
        .unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("no answer within 10s: the request hung")
        .unwrap();
    let status = rsp.status().as_u16();
    if status == 503 {
        assert!(rsp.headers().contains_key("l5d-proxy-error"));
    }
    (status, started.elapsed())
}

/// With every endpoint refusing, requests do not queue for ever: after
/// the fail-fast timeout they get 503 at once, and the moment an endpoint
/// accepts again they reach it.
#[tokio::test]
async fn every_endpoint_refusing_fails_fast_and_recovers_at_once() {
    let mut dead = Vec::new();
    for _ in 0..2 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        dead.push(l.local_addr().unwrap());
    }
    let ctl = Controller::destination(&topology(&dead)).await;
    let failfast = Duration::from_millis(500);
    let proxy = Proxy::builder()
        .outbound_target("127.0.0.1:1".parse().unwrap())
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", ctl.grpc)
        .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", NETWORKS)
        .env("LINKERD2_PROXY_OUTBOUND_HTTP_FAILFAST_TIMEOUT", "500ms")
        .spawn()
        .await;
    // (The listeners above were dropped: both ports refuse.)

    // Each endpoint's first refusal is a 502; then no endpoint is ready, and
    // requests wait at most the fail-fast timeout before their 503.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, took) = timed_request(&proxy, WEB).await;
        assert!(
            took < failfast + Duration::from_secs(2),
            "a request took {took:?} with fail-fast at {failfast:?}"
        );
        statuses.push(status);
    }
    assert!(
        statuses.iter().all(|s| *s == 502 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 502).count() <= 4,
        "refused endpoints kept getting requests: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    // Failing fast: the next ones are answered without waiting.
    let (status, took) = timed_request(&proxy, WEB).await;
    assert_eq!(status, 503);
    assert!(took < failfast, "{took:?}");

    // One comes back: requests reach it as soon as a probe finds it.
    backends::http_on(TcpListener::bind(dead[0]).await.unwrap());
    let back = std::time::Instant::now();
    let recovered = linkerd_tests::eventually(Duration::from_secs(5), || async {
        let (status, _) = timed_request(&proxy, WEB).await;
        (status == 200).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "never recovered");
    println!(
        "recovered {:?} after the endpoint came back",
        back.elapsed()
    );
    let counts = spread(&proxy, WEB, 20, 2).await;
    assert_eq!(counts.get(&dead[0].to_string()), Some(&20), "{counts:?}");
}
