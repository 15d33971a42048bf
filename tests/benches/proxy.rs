//! Proxy benchmark: latency and throughput direct vs through `linkerd-proxy`,
//! for HTTP/1 and HTTP/2, at a fixed request rate and at full speed, plus the
//! proxy's memory and CPU. Prints a table; it asserts nothing.
//!
//! Run with `tests/bench.sh` (it builds the release proxy first). The load
//! generator and the backend share one thread of this process and the proxy
//! gets one worker thread (`LINKERD2_PROXY_CORES=1`), so the three fit the
//! two cores this project's machines have.
//!
//! Latency at a fixed rate is measured from each request's scheduled start
//! when the previous request overran its slot, so a stall is not hidden by
//! the requests it delays (coordinated omission); otherwise from the send.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_tests::{
    backends,
    controller::Controller,
    mesh::{self, Mesh},
    proxy::Proxy,
    scale::proc_stats,
};
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 10;
/// Concurrent streams on the one HTTP/2 connection at full speed. With only a
/// few, every batch of requests waits out each hop in lock-step and the run
/// measures wake-up latency rather than what the proxy can carry.
const H2_STREAMS: usize = 100;

#[derive(Copy, Clone, Debug, PartialEq)]
enum Proto {
    Http1,
    H2,
}

#[derive(Copy, Clone, Debug)]
enum Load {
    /// Requests per second, spread evenly over the connections.
    Rate(u32),
    /// As fast as `CONNECTIONS` closed-loop workers can go.
    Max,
}

struct Run {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    /// Sorted latencies in microseconds.
    latencies: Vec<u32>,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        f64::from(self.latencies[i])
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn connect(proto: Proto, addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let io = TokioIo::new(stream);
        match proto {
            Proto::Http1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Self::H1(send)
            }
            Proto::H2 => {
                let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Self::H2(send)
            }
        }
    }

    async fn request(&mut self, authority: &str) -> bool {
        let req = Request::get(format!("http://{authority}/"))
            .header("host", authority)
            .body(Empty::new())
            .unwrap();
        let rsp = match self {
            Self::H1(s) => {
                if s.ready().await.is_err() {
                    return false;
                }
                s.send_request(req).await
            }
            Self::H2(s) => s.send_request(req).await,
        };
        match rsp {
            Ok(rsp) => rsp.status().is_success() && rsp.into_body().collect().await.is_ok(),
            Err(_) => false,
        }
    }
}

async fn run(
    proto: Proto,
    addr: SocketAddr,
    authority: &'static str,
    load: Load,
    duration: Duration,
) -> Run {
    // HTTP/2 multiplexes every worker over one connection, as gRPC clients do.
    let h2 = if proto == Proto::H2 {
        Some(Sender::connect(proto, addr).await)
    } else {
        None
    };
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    let n = match (proto, load) {
        (Proto::H2, Load::Max) => H2_STREAMS,
        _ => CONNECTIONS,
    };
    for w in 0..n {
        let mut sender = match &h2 {
            Some(Sender::H2(s)) => Sender::H2(s.clone()),
            _ => Sender::connect(proto, addr).await,
        };
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            match load {
                Load::Max => {
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        if sender.request(authority).await {
                            latencies.push(t.elapsed().as_micros() as u32);
                        } else {
                            errors += 1;
                        }
                    }
                }
                Load::Rate(rps) => {
                    let period = Duration::from_secs_f64(n as f64 / f64::from(rps));
                    // Stagger the workers across one period.
                    let first = start + period.mul_f64(w as f64 / n as f64);
                    let mut scheduled = first;
                    let mut late = false;
                    while scheduled < deadline {
                        tokio::time::sleep_until(scheduled.into()).await;
                        // Count from the schedule only when our own previous
                        // request made us late (queueing the server caused);
                        // otherwise from now, so the timer's own 1ms
                        // granularity is not reported as latency.
                        let t = if late { scheduled } else { Instant::now() };
                        if sender.request(authority).await {
                            latencies.push(t.elapsed().as_micros() as u32);
                        } else {
                            errors += 1;
                        }
                        scheduled += period;
                        late = Instant::now() > scheduled;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    Run {
        requests: latencies.len(),
        errors,
        elapsed: start.elapsed(),
        latencies,
    }
}

/// A setting from the environment, or its default.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs: u64 = setting("BENCH_SECONDS", 8);
    let rate: u32 = setting("BENCH_RATE", 2000);
    let cores: u32 = setting("BENCH_PROXY_CORES", 1);
    let protos: Vec<Proto> = match std::env::var("BENCH_PROTO").as_deref() {
        Ok("http1") => vec![Proto::Http1],
        Ok("h2") => vec![Proto::H2],
        _ => vec![Proto::Http1, Proto::H2],
    };
    let duration = Duration::from_secs(secs);
    // Which comparisons to run: proxy, balance3, meshed, tap (all by default).
    let cases: Vec<String> = std::env::var("BENCH_CASES")
        .unwrap_or_else(|_| "proxy,balance3,meshed,tap".into())
        .split(',')
        .map(|c| c.trim().to_string())
        .collect();
    let case = |name: &str| cases.iter().any(|c| c == name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = backends::http().await;
        let proxy = Proxy::builder()
            .inbound_target(backend)
            .env("LINKERD2_PROXY_CORES", cores)
            .env("LINKERD2_PROXY_LOG", "warn,linkerd_proxy::app=info")
            .spawn()
            .await;
        // A pause, not a wait for an event: the idle figure is taken once
        // start-up's allocations have settled.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, idle_rss, _) = proc_stats(proxy.pid());

        println!(
            "linkerd-proxy benchmark: {secs}s per run; HTTP/1 on {CONNECTIONS} connections; HTTP/2 on one connection, {CONNECTIONS} streams at {rate} rps and {H2_STREAMS} at full speed; proxy cores {cores}"
        );
        println!("latencies in microseconds; 'added' is proxy minus direct at the same percentile\n");
        println!(
            "{:<6} {:<10} {:<8} {:>9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>11}",
            "proto",
            "load",
            "path",
            "rps",
            "errors",
            "p50",
            "p99",
            "p999",
            "add p50",
            "add p99",
            "add p999",
            "proxy cpu",
            "loadgen cpu"
        );
        for proto in protos.iter().filter(|_| case("proxy")) {
            for load in [Load::Rate(rate), Load::Max] {
                let paths = Paths {
                    direct: backend,
                    proxied: proxy.inbound,
                    authority: "bench.test",
                    label: "proxy",
                    pids: vec![proxy.pid()],
                };
                measure(*proto, load, &paths, duration).await;
            }
        }
        // Outbound through discovery: a service of three backends, resolved
        // through a controller and balanced per request by peak-EWMA.
        if protos.contains(&Proto::Http1) && case("balance3") {
            let others = [backends::http().await, backends::http().await];
            let topology = format!(
                "services: [{{name: web, namespace: bench, selector: {{app: web}}, ports: [{{port: 80, targetPort: http}}]}}]\npods:\n{}",
                [backend, others[0], others[1]]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| format!("  - {{name: web-{i}, namespace: bench, ip: 127.0.0.1, labels: {{app: web}}, ports: {{http: {}}}}}\n", b.port()))
                    .collect::<String>()
            );
            let controller = Controller::destination(&topology).await;
            let balanced = Proxy::builder()
                .outbound_target(backend)
                .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", controller.grpc)
                .env("LINKERD2_PROXY_CORES", cores)
                .env("LINKERD2_PROXY_LOG", "warn,linkerd_proxy::app=info")
                .spawn()
                .await;
            for load in [Load::Rate(rate), Load::Max] {
                let paths = Paths {
                    direct: backend,
                    proxied: balanced.outbound,
                    authority: "web.bench.svc.cluster.local:80",
                    label: "balance3",
                    pids: vec![balanced.pid()],
                };
                measure(Proto::Http1, load, &paths, duration).await;
            }
        }
        // Meshed: client -> outbound proxy -> mTLS (HTTP/1 carried as
        // HTTP/2) -> inbound proxy -> server; the CPU column is both proxies'.
        let mesh = Mesh::start(
            &[("bench", "client"), ("bench", "web"), ("linkerd", "linkerd-tap")],
            &[],
        )
        .await;
        let server = mesh
            .proxy("bench", "web")
            .inbound_target(backend)
            .env("LINKERD2_PROXY_TAP_SVC_NAME", mesh::identity("linkerd", "linkerd-tap"))
            .env("LINKERD2_PROXY_CORES", cores)
            .env("LINKERD2_PROXY_LOG", "warn,linkerd_proxy::app=info")
            .spawn()
            .await;
        let topology = format!(
            "services: [{{name: web, namespace: bench, selector: {{app: web}}, ports: [{{port: 80, targetPort: http}}]}}]\npods:\n  - {{name: web-0, namespace: bench, ip: 127.0.0.1, labels: {{app: web}}, ports: {{http: {}}}, serviceAccount: web, meshed: true}}\n",
            server.inbound.port()
        );
        let controller = Controller::destination(&topology).await;
        let client = mesh
            .proxy("bench", "client")
            .outbound_target(backend)
            .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", controller.grpc)
            .env("LINKERD2_PROXY_CORES", cores)
            .env("LINKERD2_PROXY_LOG", "warn,linkerd_proxy::app=info")
            .spawn()
            .await;
        mesh::ready(&server).await;
        mesh::ready(&client).await;
        for proto in protos.iter().filter(|_| case("meshed")) {
            for load in [Load::Rate(rate), Load::Max] {
                let paths = Paths {
                    direct: backend,
                    proxied: client.outbound,
                    authority: "web.bench.svc.cluster.local:80",
                    label: "meshed",
                    pids: vec![client.pid(), server.pid()],
                };
                measure(*proto, load, &paths, duration).await;
            }
        }
        let meshed = client.metrics().await;
        let tls = meshed.sum("request_total", &[("tls", "true")]);
        println!("\nmeshed requests the client proxy sent over mTLS: {tls:.0}\n");

        // Tap: the server proxy's inbound path (plaintext from the load
        // generator), first untapped, then with a tap session that observes
        // every request and reads its events as the tap controller would.
        if protos.contains(&Proto::Http1) && case("tap") {
            for load in [Load::Rate(rate), Load::Max] {
                let paths = Paths {
                    direct: backend,
                    proxied: server.inbound,
                    authority: "web.bench.svc.cluster.local:80",
                    label: "untapped",
                    pids: vec![server.pid()],
                };
                measure(Proto::Http1, load, &paths, duration).await;
                let events = tap_everything(&mesh, &server, Some(100)).await;
                let tapped = Paths {
                    label: "tap100",
                    ..paths
                };
                measure(Proto::Http1, load, &tapped, duration).await;
                let seen = events.stop().await;
                println!("tap events read at 100 requests/s: {seen}");
                let events = tap_everything(&mesh, &server, None).await;
                let paths = Paths {
                    label: "tap-all",
                    ..tapped
                };
                measure(Proto::Http1, load, &paths, duration).await;
                let seen = events.stop().await;
                println!("tap events read tapping every request: {seen}");
            }
        }
        let (cpu, rss, peak) = proc_stats(proxy.pid());
        println!(
            "\nproxy memory: idle RSS {:.1} MiB, RSS after load {:.1} MiB, peak RSS {:.1} MiB; total CPU {cpu:.2}s",
            idle_rss as f64 / 1024.0,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    });
}

/// A tap session on `proxy` matching every request, read on its own task.
struct TapReader {
    task: tokio::task::JoinHandle<u64>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl TapReader {
    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

/// A tap of every request `proxy` serves, read as the tap controller does:
/// `per_second` requests at a time, a session each second (the controller's
/// default is 100), or with `None` one session without a limit.
async fn tap_everything(mesh: &Mesh, proxy: &Proxy, per_second: Option<u32>) -> TapReader {
    use linkerd2_proxy_api::tap::{
        ObserveRequest,
        observe_request::{Match, r#match},
        tap_client::TapClient,
    };
    let tls = mesh.client_tls("linkerd", "linkerd-tap").await;
    let (addr, server) = (proxy.tap.unwrap(), mesh::identity("bench", "web"));
    let everything = Match {
        r#match: Some(r#match::Match::Not(Box::new(Match {
            r#match: Some(r#match::Match::Any(r#match::Seq { matches: vec![] })),
        }))),
    };
    let observe = ObserveRequest {
        limit: per_second.unwrap_or(u32::MAX),
        r#match: Some(everything),
        extract: None,
    };
    // On a thread and runtime of their own, as the tap controller is a
    // process of its own: its decoding must not slow the load generator.
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let n = rt.block_on(async move {
            let channel = linkerd_controller::tap::tls_channel(addr, &server, tls);
            let mut client = TapClient::new(channel);
            let mut n = 0u64;
            loop {
                let started = tokio::time::Instant::now();
                let mut events = client
                    .observe(observe.clone())
                    .await
                    .expect("observe")
                    .into_inner();
                loop {
                    tokio::select! {
                        _ = &mut stopped => return n,
                        e = events.message() => match e {
                            Ok(Some(_)) => n += 1,
                            _ => break,
                        },
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return n,
                    _ = tokio::time::sleep_until(started + Duration::from_secs(1)) => {}
                }
            }
        });
        let _ = done_tx.send(n);
    });
    let task = tokio::spawn(async move { done.await.unwrap_or(0) });
    TapReader { task, stop }
}

/// Where one comparison sends its load.
struct Paths {
    /// A backend, without the proxy.
    direct: SocketAddr,
    /// The proxy listener to go through.
    proxied: SocketAddr,
    authority: &'static str,
    /// How the proxied row is named.
    label: &'static str,
    /// The proxies' processes, for their CPU time.
    pids: Vec<u32>,
}

/// The CPU time `pids` used so far, in seconds.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| proc_stats(*pid).0).sum()
}

/// Runs `load` direct and proxied and prints both rows.
async fn measure(proto: Proto, load: Load, paths: &Paths, duration: Duration) {
    // Warm both paths (connections, pools, allocator) first.
    run(
        proto,
        paths.direct,
        "bench.test",
        Load::Max,
        Duration::from_millis(500),
    )
    .await;
    run(
        proto,
        paths.proxied,
        paths.authority,
        Load::Max,
        Duration::from_millis(500),
    )
    .await;
    let (own_before, _, _) = proc_stats(std::process::id());
    let direct = run(proto, paths.direct, "bench.test", load, duration).await;
    let (own_direct, _, _) = proc_stats(std::process::id());
    let cpu_before = cpu_of(&paths.pids);
    let proxied = run(proto, paths.proxied, paths.authority, load, duration).await;
    let cpu_after = cpu_of(&paths.pids);
    let (own_after, _, _) = proc_stats(std::process::id());
    let load_name = match load {
        Load::Rate(r) => format!("{r}rps"),
        Load::Max => "max".to_string(),
    };
    let proto_name = match proto {
        Proto::Http1 => "http1",
        Proto::H2 => "h2",
    };
    for (path, r) in [("direct", &direct), (paths.label, &proxied)] {
        let (added, cpu, own) = if path == "direct" {
            (
                ["".into(), "".into(), "".into()],
                String::new(),
                own_direct - own_before,
            )
        } else {
            (
                [0.5, 0.99, 0.999].map(|p| format!("{:.0}", r.pct(p) - direct.pct(p))),
                format!("{:.2}s", cpu_after - cpu_before),
                own_after - own_direct,
            )
        };
        println!(
            "{:<6} {:<10} {:<8} {:>9.0} {:>7} {:>8.0} {:>8.0} {:>8.0} {:>9} {:>9} {:>9} {:>9} {:>10.2}s",
            proto_name,
            load_name,
            path,
            r.rps(),
            r.errors,
            r.pct(0.5),
            r.pct(0.99),
            r.pct(0.999),
            added[0],
            added[1],
            added[2],
            cpu,
            own
        );
    }
}
