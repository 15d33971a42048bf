//! Service profiles through the real proxy: per-route series, retries
//! within the budget, timeouts, and the traffic split, with known traffic
//! from real clients to a real backend that counts what reached it.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_tests::{controller::Controller, eventually, metrics::Scrape, proxy::Proxy};
use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};
use tokio::net::{TcpListener, TcpStream};

const WEB: &str = "web.emojivoto.svc.cluster.local:80";
const CANARY: &str = "web-canary.emojivoto.svc.cluster.local:80";

/// What reached the backend.
#[derive(Default)]
struct Seen {
    /// Requests per path.
    requests: std::sync::Mutex<BTreeMap<String, u64>>,
    /// `/slow` requests dropped before they were answered: cancelled.
    cancelled: AtomicU64,
    /// `/flaky` requests so far: every one whose number ends in 0, 1 or 2
    /// fails, 30% of them.
    flaky: AtomicU64,
}

impl Seen {
    fn count(&self, path: &str) -> u64 {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// A backend: `/flaky` fails 30% of what it gets (500); `/fails` always
/// fails; `/upload` fails unless... always (500), after checking the body is
/// whole (its length is in `x-len`); `/slow` answers after 300 ms, counting
/// a request dropped first; anything else answers its own address.
async fn backend() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, seen.clone(), addr));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Seen>,
    me: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    *seen
        .requests
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default() += 1;
    let status = |s: u16, body: &str| {
        Ok(Response::builder()
            .status(s)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap())
    };
    match path.as_str() {
        "/flaky" => {
            let n = seen.flaky.fetch_add(1, Relaxed);
            if n % 10 < 3 {
                status(500, "flaked")
            } else {
                status(200, "ok")
            }
        }
        "/fails" => status(500, "failed"),
        "/upload" => {
            let want: usize = req.headers()["x-len"].to_str().unwrap().parse().unwrap();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), want, "the body arrived whole");
            status(500, "failed")
        }
        "/slow" => {
            struct Dropped(Arc<Seen>, bool);
            impl Drop for Dropped {
                fn drop(&mut self) {
                    if !self.1 {
                        self.0.cancelled.fetch_add(1, Relaxed);
                    }
                }
            }
            let mut guard = Dropped(seen.clone(), false);
            tokio::time::sleep(Duration::from_millis(300)).await;
            guard.1 = true;
            status(200, "slow")
        }
        _ => status(200, &me.to_string()),
    }
}

fn service(name: &str, cluster_ip: &str, pods: &[SocketAddr]) -> (String, String) {
    let svc = format!(
        "  - {{name: {name}, namespace: emojivoto, clusterIP: {cluster_ip}, selector: {{app: {name}}}, ports: [{{port: 80, targetPort: app}}]}}\n"
    );
    let mut yaml = String::new();
    for (i, p) in pods.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{name: {name}-{i}, namespace: emojivoto, ip: {}, labels: {{app: {name}}}, ports: {{app: {}}}, owner: {{kind: Deployment, name: {name}}}, serviceAccount: {name}}}\n",
            p.ip(),
            p.port()
        ));
    }
    (svc, yaml)
}

/// `web` on `pods` (and `web-canary` on `canary`), with `profile` (the
/// spec of web's ServiceProfile, indented for it).
fn world(pods: &[SocketAddr], canary: &[SocketAddr], profile: &str) -> String {
    let (web_svc, web_pods) = service("web", "127.0.10.1", pods);
    let (canary_svc, canary_pods) = service("web-canary", "127.0.10.2", canary);
    format!(
        "services:\n{web_svc}{canary_svc}pods:\n{web_pods}{canary_pods}serviceProfiles:\n- apiVersion: linkerd.io/v1alpha2\n  kind: ServiceProfile\n  metadata: {{name: web.emojivoto.svc.cluster.local, namespace: emojivoto}}\n  spec:\n{profile}"
    )
}

async fn mesh(world: &str) -> (Controller, Proxy) {
    let ctl = Controller::destination(world).await;
    let proxy = Proxy::builder()
        .outbound_target("127.0.0.1:1".parse().unwrap())
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", ctl.grpc)
        .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", "127.0.10.0/24")
        .spawn()
        .await;
    (ctl, proxy)
}

/// `n` requests (`method path`, `body` bytes) to `authority` over `conns`
/// HTTP/1 connections; each answer's status and body.
async fn send(
    proxy: &Proxy,
    authority: &str,
    method: &str,
    path: &str,
    body: usize,
    n: usize,
    conns: usize,
) -> Vec<(u16, String)> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        let share = n / conns + usize::from(c < n % conns);
        let (addr, authority, method, path) = (
            proxy.outbound,
            authority.to_string(),
            method.to_string(),
            path.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut out = Vec::new();
            for _ in 0..share {
                let req = Request::builder()
                    .method(method.as_str())
                    .uri(path.as_str())
                    .header("host", &authority)
                    .header("x-len", body.to_string())
                    .body(Full::new(Bytes::from(vec![b'x'; body])))
                    .unwrap();
                let rsp = send.send_request(req).await.unwrap();
                let status = rsp.status().as_u16();
                let text = rsp.into_body().collect().await.unwrap().to_bytes();
                out.push((status, String::from_utf8_lossy(&text).into_owned()));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn ok(answers: &[(u16, String)]) -> usize {
    answers.iter().filter(|(s, _)| *s == 200).count()
}

/// A route's series, summed over their other labels.
fn route_sum(m: &Scrape, name: &str, route: &str, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("direction", "outbound"), ("dst", WEB), ("rt_route", route)];
    labels.extend_from_slice(extra);
    m.sum(name, &labels)
}

/// Waits until the proxy's profile for web has routes: its first request
/// shows up in the route's series.
async fn profiled(proxy: &Proxy, path: &str, route: &str) {
    let found = eventually(Duration::from_secs(10), || async {
        send(proxy, WEB, "GET", path, 0, 1, 1).await;
        let m = proxy.metrics().await;
        (route_sum(&m, "route_request_total", route, &[]) > 0.0).then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "no route series for {route}:\n{}",
        proxy.metrics().await.text
    );
}

const FLAKY: &str = "    routes:
    - name: GET /flaky
      condition: {method: GET, pathRegex: /flaky}
      isRetryable: true
    - name: GET /fails
      condition: {method: GET, pathRegex: /fails}
    - name: POST /upload
      condition: {method: POST, pathRegex: /upload}
      isRetryable: true
    retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 1, ttl: 10s}
";

/// A route failing 30% of the time, retryable with a 20% budget: the
/// client's success rate is well above the backend's, and what reached the
/// backend stays within the budget: the originals, 20% of them, and the
/// minimum's reserve (1/s over the 10 s TTL).
#[tokio::test]
async fn retries_lift_the_success_rate_within_the_budget() {
    let (pod, seen) = backend().await;
    let (_ctl, proxy) = mesh(&world(&[pod], &[], FLAKY)).await;
    profiled(&proxy, "/flaky", "GET /flaky").await;
    let before = seen.count("/flaky");
    let m0 = proxy.metrics().await;
    let series = |m: &Scrape, name: &str, extra: &[(&str, &str)]| {
        route_sum(m, name, "GET /flaky", extra) - route_sum(&m0, name, "GET /flaky", extra)
    };
    const N: usize = 1_000;
    let answers = send(&proxy, WEB, "GET", "/flaky", 0, N, 4).await;
    let attempts = seen.count("/flaky") - before;
    let effective = ok(&answers) as f64 / N as f64;
    // The backend fails 3 in every 10 of what it gets.
    let raw = 0.7;
    println!("{N} requests: {attempts} attempts, effective success {effective:.3}");
    assert!(
        effective >= raw + 0.1,
        "effective success {effective} is not above the raw {raw}"
    );
    let limit = N as f64 * 1.2 + 10.0 + 1.0;
    assert!(
        (attempts as f64) <= limit,
        "{attempts} attempts for {N} requests: over the budget's {limit}"
    );
    assert!(attempts > N as u64, "some requests were retried");

    let m = proxy.metrics().await;
    let requests = series(&m, "route_request_total", &[]);
    let actual = series(&m, "route_actual_request_total", &[]);
    let succeeded = series(&m, "route_response_total", &[("classification", "success")]);
    assert_eq!(requests, N as f64, "the client's requests");
    assert_eq!(actual, attempts as f64, "every attempt: {}", m.text);
    assert_eq!(succeeded, ok(&answers) as f64);
    let actual_failed = series(
        &m,
        "route_actual_response_total",
        &[("classification", "failure"), ("status_code", "500")],
    );
    let actual_ok = series(
        &m,
        "route_actual_response_total",
        &[("classification", "success")],
    );
    assert_eq!(actual_failed + actual_ok, attempts as f64, "{}", m.text);
    assert_eq!(
        actual_ok,
        ok(&answers) as f64,
        "only the last attempt may succeed"
    );
}

/// A route that is not retryable is tried once, and so is a POST whose body
/// is larger than the proxy keeps for a retry; a small one is retried,
/// whole.
#[tokio::test]
async fn what_may_not_be_retried_is_tried_once() {
    let (pod, seen) = backend().await;
    let (_ctl, proxy) = mesh(&world(&[pod], &[], FLAKY)).await;
    profiled(&proxy, "/fails", "GET /fails").await;

    let before = seen.count("/fails");
    let answers = send(&proxy, WEB, "GET", "/fails", 0, 20, 2).await;
    assert_eq!(ok(&answers), 0);
    assert_eq!(
        seen.count("/fails") - before,
        20,
        "not retryable: once each"
    );

    let big = 100 * 1024;
    let answers = send(&proxy, WEB, "POST", "/upload", big, 5, 1).await;
    assert!(answers.iter().all(|(s, _)| *s == 500), "{answers:?}");
    assert_eq!(
        seen.count("/upload"),
        5,
        "a body over 64 KiB is never retried"
    );

    let answers = send(&proxy, WEB, "POST", "/upload", 1024, 5, 1).await;
    assert!(answers.iter().all(|(s, _)| *s == 500), "{answers:?}");
    assert!(
        seen.count("/upload") > 10,
        "a small body is retried (whole: the backend checks its length): {}",
        seen.count("/upload")
    );
}

/// A 100 ms timeout on a 300 ms route: the client gets a 504 counted as the
/// route's failure, and the backend sees its request cancelled.
#[tokio::test]
async fn a_route_timeout_answers_504_and_cancels_upstream() {
    let (pod, seen) = backend().await;
    let profile = "    routes:
    - name: GET /slow
      condition: {method: GET, pathRegex: /slow}
      timeout: 100ms
";
    let (_ctl, proxy) = mesh(&world(&[pod], &[], profile)).await;
    profiled(&proxy, "/slow", "GET /slow").await;
    let timed_out = |m: &Scrape| {
        route_sum(
            m,
            "route_response_total",
            "GET /slow",
            &[("status_code", "504"), ("classification", "failure")],
        )
    };
    let before = timed_out(&proxy.metrics().await);
    let cancelled_before = seen.cancelled.load(Relaxed);

    // Over HTTP/2, so that the cancellation is a stream reset upstream.
    let stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let req = Request::get(format!("http://{WEB}/slow"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let rsp = h2.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 504);
        assert_eq!(rsp.headers()["l5d-proxy-error"], "request timed out");
    }
    println!("5 timed-out requests in {:?}", started.elapsed());
    let cancelled = eventually(Duration::from_secs(5), || async {
        (seen.cancelled.load(Relaxed) - cancelled_before >= 5).then_some(())
    })
    .await;
    assert!(
        cancelled.is_some(),
        "the backend saw {} cancelled",
        seen.cancelled.load(Relaxed)
    );
    let m = proxy.metrics().await;
    assert_eq!(timed_out(&m) - before, 5.0, "{}", m.text);
}

/// A 90/10 split between web and its canary lands within 5 points of its
/// weights over 1,000 requests, and moves when the weights change.
#[tokio::test]
async fn the_traffic_split_follows_dst_overrides() {
    let (web, _) = backend().await;
    let (canary, _) = backend().await;
    let split = |web_w: &str, canary_w: &str| {
        format!(
            "    dstOverrides:\n    - {{authority: {WEB}, weight: {web_w}}}\n    - {{authority: {CANARY}, weight: {canary_w}}}\n"
        )
    };
    let (ctl, proxy) = mesh(&world(&[web], &[canary], &split("900m", "100m"))).await;
    let share = |answers: &[(u16, String)]| {
        assert_eq!(ok(answers), answers.len(), "{answers:?}");
        answers
            .iter()
            .filter(|(_, who)| *who == canary.to_string())
            .count()
    };
    let moved = eventually(Duration::from_secs(10), || async {
        let n = share(&send(&proxy, WEB, "GET", "/", 0, 100, 2).await);
        (n > 0).then_some(n)
    })
    .await;
    assert!(moved.is_some(), "the split never applied");
    let n = share(&send(&proxy, WEB, "GET", "/", 0, 1_000, 4).await);
    println!("90/10: {n} of 1000 to the canary");
    assert!(
        (50..=150).contains(&n),
        "{n} of 1000 to the canary, not 10% ± 5"
    );

    ctl.set_topology(&world(&[web], &[canary], &split("500m", "500m")));
    let moved = eventually(Duration::from_secs(10), || async {
        let n = share(&send(&proxy, WEB, "GET", "/", 0, 100, 2).await);
        (n >= 30).then_some(n)
    })
    .await;
    assert!(moved.is_some(), "the new weights never applied");
    let n = share(&send(&proxy, WEB, "GET", "/", 0, 1_000, 4).await);
    println!("50/50: {n} of 1000 to the canary");
    assert!(
        (450..=550).contains(&n),
        "{n} of 1000 to the canary, not 50% ± 5"
    );
}

/// A server's proxy counts the requests for its own service by the
/// service's profile (as Linkerd's inbound route metrics, which `linkerd
/// routes deploy/web` reads), and only counts: a failing retryable route is
/// not retried inbound.
#[tokio::test]
async fn inbound_requests_are_counted_by_their_services_profile() {
    let (pod, seen) = backend().await;
    let ctl = Controller::destination(&world(&[pod], &[], FLAKY)).await;
    let proxy = Proxy::builder()
        .inbound_target(pod)
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", ctl.grpc)
        .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", "127.0.10.0/24")
        .spawn()
        .await;
    let inbound = |m: &Scrape, route: &str| {
        m.sum(
            "route_request_total",
            &[("direction", "inbound"), ("dst", WEB), ("rt_route", route)],
        )
    };
    let found = eventually(Duration::from_secs(10), || async {
        linkerd_tests::backends::http1_get(proxy.inbound, WEB, "/fails").await;
        let m = proxy.metrics().await;
        (inbound(&m, "GET /fails") > 0.0).then_some(())
    })
    .await;
    assert!(found.is_some(), "{}", proxy.metrics().await.text);
    let before = seen.count("/fails");
    let m0 = proxy.metrics().await;
    for _ in 0..10 {
        let (status, _) = linkerd_tests::backends::http1_get(proxy.inbound, WEB, "/fails").await;
        assert_eq!(status, 500);
    }
    assert_eq!(seen.count("/fails") - before, 10, "inbound never retries");
    let m = proxy.metrics().await;
    let failed = |m: &Scrape| {
        m.sum(
            "route_response_total",
            &[
                ("direction", "inbound"),
                ("dst", WEB),
                ("rt_route", "GET /fails"),
                ("classification", "failure"),
                ("status_code", "500"),
            ],
        )
    };
    assert_eq!(failed(&m) - failed(&m0), 10.0, "{}", m.text);
    assert!(
        !m.has("route_actual_request_total", &[("direction", "inbound")])
            || m.sum("route_actual_request_total", &[("direction", "inbound")]) == 0.0,
        "no attempts inbound"
    );
}

/// A service whose port is marked opaque (`config.linkerd.io/opaque-ports`;
/// 7000, which is not among the proxy's own skip-detection ports)
/// gets its bytes through at once: the proxy learns it from destination's
/// profile and does not wait for the client to speak, so a server-first
/// protocol's greeting arrives without the detection timeout; the same
/// service unmarked waits for it.
#[tokio::test]
async fn an_opaque_port_skips_protocol_detection() {
    use tokio::io::AsyncReadExt;
    let backend = linkerd_tests::backends::server_first().await;
    let world = |annotations: &str| {
        format!(
            "services:\n  - {{name: db, namespace: data, clusterIP: 127.0.10.5, selector: {{app: db}}, {annotations} ports: [{{port: 7000, targetPort: mysql}}]}}\npods:\n  - {{name: db-0, namespace: data, ip: {}, labels: {{app: db}}, ports: {{mysql: {}}}, owner: {{kind: StatefulSet, name: db}}, serviceAccount: db}}\n",
            backend.ip(),
            backend.port()
        )
    };
    let greeting = |annotations: &'static str| {
        let world = world(annotations);
        async move {
            let ctl = Controller::destination(&world).await;
            let proxy = Proxy::builder()
                .outbound_target("127.0.10.5:7000".parse().unwrap())
                .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", ctl.grpc)
                .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", "127.0.10.0/24")
                .env("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT", "3s")
                .spawn()
                .await;
            let started = std::time::Instant::now();
            let mut client = TcpStream::connect(proxy.outbound).await.unwrap();
            let mut banner = vec![0; linkerd_tests::backends::BANNER.len()];
            tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut banner))
                .await
                .expect("the greeting arrives")
                .unwrap();
            assert_eq!(banner, linkerd_tests::backends::BANNER);
            started.elapsed()
        }
    };
    let marked = greeting("annotations: {config.linkerd.io/opaque-ports: '7000'},").await;
    println!("greeting through an opaque port after {marked:?}");
    assert!(
        marked < Duration::from_secs(2),
        "opaque: no detection wait ({marked:?})"
    );
    let unmarked = greeting("").await;
    println!("greeting through an unmarked port after {unmarked:?}");
    assert!(
        unmarked >= Duration::from_secs(3),
        "unmarked: after detection's timeout ({unmarked:?})"
    );
}
