//! Outbound discovery and load balancing across binaries: a controller on a
//! local topology, a proxy that asks it, and real backends.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_tests::{backends, controller::Controller, proxy::Proxy};
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tokio::net::{TcpListener, TcpStream};

const WEB: &str = "web.emojivoto.svc.cluster.local:80";

/// A topology whose `web` service has a pod per backend address.
fn topology(backends: &[SocketAddr]) -> String {
    let mut yaml = String::from(
        "services:\n  - {name: web, namespace: emojivoto, selector: {app: web}, ports: [{port: 80, targetPort: http}]}\npods:\n",
    );
    for (i, b) in backends.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{name: web-{i}, namespace: emojivoto, ip: {}, labels: {{app: web}}, ports: {{http: {}}}}}\n",
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
    // The controller polls the file every 20ms and streams the change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = spread(&proxy, WEB, 200, 4).await;
    assert!(!counts.contains_key(&bs[2].to_string()), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 200);
}

#[tokio::test]
async fn traffic_keeps_flowing_when_the_controller_stops() {
    let bs = fast_backends(2).await;
    let (ctl, proxy) = mesh(&bs).await;
    assert_eq!(spread(&proxy, WEB, 20, 2).await.len(), 2);
    drop(ctl);
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    // Under it, but unknown to destination: NotFound, then the original destination.
    let counts = spread(&proxy, "nope.emojivoto.svc.cluster.local:80", 5, 1).await;
    assert_eq!(counts.get(&original.to_string()), Some(&5), "{counts:?}");
    let counts = spread(&proxy, WEB, 5, 1).await;
    assert_eq!(counts.get(&service.to_string()), Some(&5), "{counts:?}");
}

#[tokio::test]
async fn a_service_without_endpoints_fails_fast_with_503() {
    let ctl = Controller::destination(&topology(&[])).await;
    let proxy = proxy(&ctl, "127.0.0.1:1".parse().unwrap()).await;
    let started = std::time::Instant::now();
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", WEB)
        .body(Full::<Bytes>::default())
        .unwrap();
    let rsp = send.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 503);
    assert!(rsp.headers().contains_key("l5d-proxy-error"));
    assert!(started.elapsed() < Duration::from_secs(5));
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
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let live = Duration::from_millis(40);
    let bs = [backend(live).await, backend(live).await, dead_addr];
    let (_ctl, proxy) = mesh(&bs).await;

    let counts = spread(&proxy, WEB, 150, 6).await;
    // Concurrent requests may all reach it before its first failure marks it
    // out; without the back-off it drew 101 of 150.
    let failed = counts.get("status 502").copied().unwrap_or(0);
    assert!(
        failed <= 20,
        "{failed} of 150 requests went to the refusing endpoint: {counts:?}"
    );

    // It comes back: once its back-off (at most 10s) ends it is used again.
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
