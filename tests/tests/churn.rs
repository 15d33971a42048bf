//! Bounded memory under churn: 10,000 endpoints and 2,000 authorities pass
//! through one outbound proxy, and once they go idle its `/metrics` and its
//! resident memory come back to where they started.
//!
//! The proxy runs with short retentions (series 2s, routes and targets 1s),
//! so "idle" takes seconds rather than Linkerd's ten minutes; the mechanism
//! is the same one the defaults drive.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use linkerd_tests::{backends, controller::Controller, proxy::Proxy};
use std::{
    collections::BTreeSet,
    fmt::Write,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

/// Rounds of endpoint churn: each replaces every pod of the service.
const ROUNDS: u8 = 50;
/// Pods per round: 50 x 200 = 10,000 distinct endpoints.
const PODS: u8 = 200;
/// Names destination does not know, spread over the rounds: each is a
/// route (watched, in case it becomes a service) and a series.
const AUTHORITIES: usize = 2_000;
const WEB: &str = "web.churn.svc.cluster.local:80";
/// How long any one round may take before the test gives up on it.
const ROUND_LIMIT: Duration = Duration::from_secs(20);

/// The service's pods for a round: each its own loopback address, so no
/// endpoint repeats across rounds.
fn pod_ip(round: u8, pod: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, round, pod)
}

fn topology(pods: &[SocketAddr]) -> String {
    let mut yaml = String::from(
        "services:\n  - {name: web, namespace: churn, clusterIP: 127.0.20.1, selector: {app: web}, ports: [{port: 80, targetPort: app}]}\npods:\n",
    );
    for (i, p) in pods.iter().enumerate() {
        writeln!(
            yaml,
            "  - {{name: web-{i}-{}, namespace: churn, ip: {}, labels: {{app: web}}, ports: {{app: {}}}, owner: {{kind: Deployment, name: web}}, serviceAccount: web}}",
            p.ip().to_string().replace('.', "-"),
            p.ip(),
            p.port()
        )
        .unwrap();
    }
    yaml
}

/// HTTP servers on `addrs` that answer with their own address, until the
/// set is dropped (which closes their listeners and connections).
async fn pods(round: u8) -> (Vec<SocketAddr>, JoinSet<()>) {
    let mut set = JoinSet::new();
    let mut addrs = Vec::with_capacity(PODS.into());
    for pod in 1..=PODS {
        let listener = TcpListener::bind((pod_ip(round, pod), 0))
            .await
            .unwrap_or_else(|e| panic!("bind a pod on {}: {e}", pod_ip(round, pod)));
        let addr = listener.local_addr().unwrap();
        addrs.push(addr);
        set.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(addr.to_string()),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
    (addrs, set)
}

/// An HTTP/1 connection through the proxy's outbound side.
async fn connect(proxy: &Proxy) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: &str,
) -> (u16, String) {
    let req = Request::get("/")
        .header("host", authority)
        .body(Full::default())
        .unwrap();
    send.ready()
        .await
        .expect("the proxy keeps the connection open");
    let rsp = send.send_request(req).await.unwrap();
    let status = rsp.status().as_u16();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// What the proxy holds: its resident memory, and its scrape's size and
/// number of samples.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss_kib: u64,
    metrics_bytes: usize,
    samples: usize,
}

async fn footprint(proxy: &Proxy) -> Footprint {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    let scrape = proxy.metrics().await;
    // Process metrics move on their own (CPU, RSS, fds): the series this
    // test is about are the HTTP and TCP ones.
    let mesh: Vec<_> = scrape
        .text
        .lines()
        .filter(|l| !l.starts_with("process_") && !l.starts_with('#'))
        .collect();
    Footprint {
        rss_kib,
        metrics_bytes: mesh.iter().map(|l| l.len() + 1).sum(),
        samples: mesh.len(),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// `n` requests on each connection at once, the `i`th on connection `c` to
/// `authority(c, i)`.
async fn on_each(
    conns: &mut [Sender],
    n: usize,
    authority: impl Fn(usize, usize) -> String,
) -> Vec<(u16, String)> {
    let authority = &authority;
    let per_conn = conns.iter_mut().enumerate().map(|(c, send)| async move {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(get(send, &authority(c, i)).await);
        }
        out
    });
    futures_util::future::join_all(per_conn).await.concat()
}

const CONNS: usize = 4;

/// Sends one round's requests: to the service until every answer comes from
/// this round's pods and half of them have answered, and to this round's
/// share of unknown names. Returns the pods that answered.
async fn round(
    proxy: &Proxy,
    pods: &[SocketAddr],
    authorities: std::ops::Range<usize>,
) -> BTreeSet<String> {
    let current: BTreeSet<String> = pods.iter().map(|p| p.to_string()).collect();
    let mut seen = BTreeSet::new();
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        conns.push(connect(proxy).await);
    }
    let deadline = Instant::now() + ROUND_LIMIT;
    // Bounded: at most 40 batches of 4 x 25 requests, and the deadline.
    for _ in 0..40 {
        let mut stale = 0;
        for (status, body) in on_each(&mut conns, 25, |_, _| WEB.to_string()).await {
            if status == 200 && current.contains(&body) {
                seen.insert(body);
            } else {
                stale += 1;
            }
        }
        if stale == 0 && seen.len() * 2 >= pods.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy did not move to the new pods in time: {} of {} seen",
            seen.len(),
            pods.len()
        );
    }
    let names = authorities.len().div_ceil(CONNS);
    let start = authorities.start;
    let end = authorities.end;
    let answers = on_each(&mut conns, names, |c, i| {
        let a = (start + c * names + i).min(end - 1);
        format!("name-{a}.churn.svc.cluster.local:80")
    })
    .await;
    for (status, body) in answers {
        assert_eq!(
            status, 200,
            "an unknown name goes to the original destination: {body}"
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churned_endpoints_and_authorities_are_let_go_once_idle() {
    let fallback = backends::http().await;
    let ctl = Controller::destination(&topology(&[])).await;
    let proxy = Proxy::builder()
        .outbound_target(fallback)
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", ctl.grpc)
        .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", "127.0.20.0/24")
        .env("LINKERD2_PROXY_METRICS_RETAIN_IDLE", "2s")
        .env("LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT", "1s")
        .env("LINKERD2_PROXY_CORES", "2")
        .env(
            "MALLOC_ARENA_MAX",
            std::env::var("XA").unwrap_or("8".into()),
        )
        .env(
            "MALLOC_TRIM_THRESHOLD_",
            std::env::var("XT").unwrap_or("131072".into()),
        )
        .spawn()
        .await;

    // One round of the work first, so the start is a proxy that has served
    // it (threads, pools and allocator arenas in place), then gone idle: the
    // 50 rounds after must leave no more behind than this one did.
    let per_round = AUTHORITIES / usize::from(ROUNDS);
    let (addrs, servers) = pods(ROUNDS).await;
    ctl.set_topology(&topology(&addrs));
    round(&proxy, &addrs, AUTHORITIES..AUTHORITIES + per_round).await;
    drop(servers);
    let idle = footprint_when_idle(&proxy).await;

    let mut endpoints = 0;
    let mut busiest = idle;
    let rounds: u8 = std::env::var("XR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ROUNDS);
    for r in 0..rounds {
        let (addrs, servers) = pods(r).await;
        ctl.set_topology(&topology(&addrs));
        let names = per_round * usize::from(r)..per_round * usize::from(r + 1);
        let seen = round(&proxy, &addrs, names).await;
        endpoints += addrs.len();
        assert!(seen.len() >= addrs.len() / 2, "round {r}: {}", seen.len());
        if r % 10 == 9 {
            let now = footprint(&proxy).await;
            if now.samples > busiest.samples {
                busiest = now;
            }
        }
        drop(servers);
    }
    assert_eq!(endpoints, 10_000);
    ctl.set_topology(&topology(&[]));
    let within = |a: u64, b: u64| a * 10 <= b * 11;

    let series_gone = footprint_when_idle(&proxy).await;
    // Freed memory goes back to the system as the allocator's pages decay
    // (jemalloc's background purge, ~10s): poll for it, within a bound.
    let mut after = series_gone;
    let deadline = Instant::now() + Duration::from_secs(40);
    while !within(after.rss_kib, idle.rss_kib) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = footprint(&proxy).await;
    }
    println!(
        "footprint idle at start: {idle:?}\nbusiest seen: {busiest:?}\nseries gone: {series_gone:?}\nidle after churn: {after:?}"
    );
    assert!(
        busiest.samples > idle.samples * 10,
        "the churn was not visible in /metrics: {busiest:?}"
    );
    assert!(
        within(after.metrics_bytes as u64, idle.metrics_bytes as u64),
        "/metrics did not shrink back: {idle:?} -> {after:?}"
    );
    assert!(
        within(after.rss_kib, idle.rss_kib),
        "RSS did not come back within 10%: {idle:?} -> {after:?}"
    );
}

/// The footprint once every HTTP and TCP series of the traffic so far has
/// gone (the admin server's own connections are not counted). Scrapes are
/// spaced out: a scrape of thousands of series is work for the proxy too.
async fn footprint_when_idle(proxy: &Proxy) -> Footprint {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = proxy.metrics().await;
        let left: Vec<_> = m
            .text
            .lines()
            .filter(|l| l.starts_with("request_total") || l.starts_with("tcp_open_total"))
            .collect();
        if left.is_empty() {
            return footprint(proxy).await;
        }
        assert!(
            Instant::now() < deadline,
            "{} series did not go idle, such as {:?}",
            left.len(),
            &left[..left.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
