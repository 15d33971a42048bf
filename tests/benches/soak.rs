//! The soak: a meshed client calls a meshed service at a steady rate for
//! `SOAK_MINUTES` (30) while the world moves under it, and the figures say
//! whether anything accumulates.
//!
//! - Endpoint churn: every `SOAK_CHURN_SECONDS` (20) one of the service's
//!   three pods leaves its endpoints and a fourth joins (the pods keep
//!   serving, as a pod that is only rescheduled would, so a failed request
//!   is the mesh's).
//! - Certificate rotation: the identity service issues certificates for 85s
//!   and every proxy renews at 70% of that, about once a minute.
//! - The destination service is killed and started again on its address
//!   every `SOAK_RESTART_SECONDS` (300).
//!
//! Every 30s it samples each process's resident memory and open file
//! descriptors and each proxy's number of `/metrics` series; it prints the
//! samples, the requests that failed (with the proxy's reason), and each
//! process's growth from the end of the warm-up (the first five minutes) to
//! the end. A benchmark, not a test: it prints figures and asserts nothing
//! about time.
//!
//!   tests/soak.sh            # builds release binaries, then this
//!   SOAK_MINUTES=5 tests/soak.sh

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_tests::{
    backends,
    mesh::{self, Mesh},
    proxy::{Proxy, bin, spawn_listening},
    scale::{proc_stats, setting},
};
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};
use tokio::{net::TcpStream, process::Child};

const NS: &str = "soak";
const WEB: &str = "web.soak.svc.cluster.local:80";
const NETWORKS: &str = "127.0.0.0/8";
/// Pods of the service: three in its endpoints at a time, one resting.
const PODS: usize = 4;
const SAMPLE_EVERY: Duration = Duration::from_secs(30);

fn topology(pods: &[SocketAddr], serving: &[usize]) -> String {
    let mut yaml = format!(
        "services:\n  - {{name: web, namespace: {NS}, clusterIP: 127.0.30.1, selector: {{app: web}}, ports: [{{port: 80, targetPort: app}}]}}\npods:\n"
    );
    for i in serving {
        let p = pods[*i];
        writeln!(
            yaml,
            "  - {{name: web-{i}, namespace: {NS}, ip: {}, labels: {{app: web}}, ports: {{app: {}}}, owner: {{kind: Deployment, name: web}}, serviceAccount: web, meshed: true}}",
            p.ip(),
            p.port()
        )
        .unwrap();
    }
    yaml
}

/// The destination service on a fixed address, so that the proxies find a
/// restarted one where the old one was.
async fn destination(addr: SocketAddr, topology: &Path) -> Child {
    let mut cmd = tokio::process::Command::new(bin("linkerd-controller"));
    cmd.args(["destination", "--addr", &addr.to_string()])
        .args(["--admin-addr", "127.0.0.1:0", "--local"])
        .arg(topology)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    spawn_listening(cmd, &["destination", "admin"]).await.0
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn connect(addr: SocketAddr, h2: bool) -> Option<Self> {
        let io = TokioIo::new(TcpStream::connect(addr).await.ok()?);
        Some(if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .ok()?;
            tokio::spawn(conn);
            Self::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
            tokio::spawn(conn);
            Self::H1(send)
        })
    }

    /// One request; why it failed, if it did.
    async fn get(&mut self) -> Result<(), String> {
        let req = Request::get(format!("http://{WEB}/"))
            .header("host", WEB)
            .body(Empty::new())
            .unwrap();
        let rsp = match self {
            Self::H1(s) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => return Err(format!("connection closed: {e}")),
            },
            Self::H2(s) => s.send_request(req).await,
        }
        .map_err(|e| format!("no response: {e}"))?;
        let status = rsp.status();
        let why = rsp.headers().get("l5d-proxy-error").cloned();
        let body = rsp.into_body().collect().await;
        match (status.is_success(), why, body) {
            (true, _, Ok(_)) => Ok(()),
            (_, Some(why), _) => Err(format!("{status}: {}", why.to_str().unwrap_or("?"))),
            (_, None, Err(e)) => Err(format!("{status}: body: {e}")),
            (_, None, Ok(_)) => Err(status.to_string()),
        }
    }
}

#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    failed: Mutex<BTreeMap<String, u64>>,
}

/// Requests at `rate` a second over three HTTP/1 connections and one
/// HTTP/2 connection, until `stop`; a closed connection is reopened (and
/// counted, as the request it failed).
fn load(addr: SocketAddr, rate: u64, stop: Arc<AtomicBool>, out: Arc<Outcomes>) {
    let per_conn = Duration::from_secs_f64(4.0 / rate as f64);
    for h2 in [false, false, false, true] {
        let (stop, out) = (stop.clone(), out.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(per_conn);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sender = None;
            while !stop.load(Relaxed) {
                tick.tick().await;
                if sender.is_none() {
                    sender = Sender::connect(addr, h2).await;
                }
                let Some(s) = sender.as_mut() else {
                    *out.failed
                        .lock()
                        .unwrap()
                        .entry("connect".into())
                        .or_default() += 1;
                    continue;
                };
                match tokio::time::timeout(Duration::from_secs(10), s.get()).await {
                    Ok(Ok(())) => {
                        out.ok.fetch_add(1, Relaxed);
                    }
                    Ok(Err(why)) => {
                        *out.failed.lock().unwrap().entry(why).or_default() += 1;
                        sender = None;
                    }
                    Err(_) => {
                        *out.failed
                            .lock()
                            .unwrap()
                            .entry("timeout (10s)".into())
                            .or_default() += 1;
                        sender = None;
                    }
                }
            }
        });
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Series in a proxy's scrape: sample lines, not comments.
async fn series(proxy: &Proxy) -> usize {
    let scrape = proxy.metrics().await;
    scrape
        .text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

struct Sample {
    at: Duration,
    /// (RSS KiB, fds) by process.
    procs: BTreeMap<String, (u64, usize)>,
    series: BTreeMap<String, usize>,
    ok: u64,
    failed: u64,
}

#[tokio::main]
async fn main() {
    let minutes = setting("SOAK_MINUTES", 30);
    let rate = setting("SOAK_RATE", 100);
    let churn_every = Duration::from_secs(setting("SOAK_CHURN_SECONDS", 20));
    let restart_every = Duration::from_secs(setting("SOAK_RESTART_SECONDS", 300));
    let total = Duration::from_secs(minutes * 60);
    let warmup = Duration::from_secs(300).min(total / 3);
    println!(
        "soak: {minutes} min, {rate} requests/s, churn every {churn_every:?}, destination restarted every {restart_every:?}, certificates for 85s"
    );

    let mesh = Mesh::start(
        &[(NS, "web"), (NS, "vote-bot")],
        &["--issuance-lifetime", "85s"],
    )
    .await;
    let mut servers = Vec::new();
    for _ in 0..PODS {
        let app = backends::http().await;
        let proxy = mesh.proxy(NS, "web").inbound_target(app).spawn().await;
        mesh::ready(&proxy).await;
        servers.push(proxy);
    }
    let pods: Vec<SocketAddr> = servers.iter().map(|p| p.inbound).collect();
    let dir = mesh.dir.join("destination");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("topology.yaml");
    let mut serving: Vec<usize> = (0..PODS - 1).collect();
    std::fs::write(&file, topology(&pods, &serving)).unwrap();
    let dst_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut dst = destination(dst_addr, &file).await;
    let client = mesh
        .proxy(NS, "vote-bot")
        .outbound_target("127.0.30.1:80".parse().unwrap())
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", dst_addr)
        .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", NETWORKS)
        .spawn()
        .await;
    mesh::ready(&client).await;

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Outcomes::default());
    load(client.outbound, rate, stop.clone(), outcomes.clone());

    let start = Instant::now();
    let (mut next_churn, mut next_restart, mut next_sample) =
        (churn_every, restart_every, Duration::ZERO);
    let (mut churns, mut restarts) = (0u32, 0u32);
    let mut samples = Vec::new();
    while start.elapsed() < total {
        let now = start.elapsed();
        if now >= next_churn {
            // The resting pod joins; the longest-serving one leaves.
            let resting = (0..PODS).find(|i| !serving.contains(i)).unwrap();
            serving.remove(0);
            serving.push(resting);
            let tmp = dir.join("topology.yaml.new");
            std::fs::write(&tmp, topology(&pods, &serving)).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
            churns += 1;
            next_churn += churn_every;
        }
        if now >= next_restart {
            let _ = dst.kill().await;
            dst = destination(dst_addr, &file).await;
            restarts += 1;
            next_restart += restart_every;
        }
        if now >= next_sample {
            let mut procs = BTreeMap::new();
            let mut named: Vec<(String, u32)> = vec![
                ("identity".into(), mesh.identity.pid()),
                ("destination".into(), dst.id().unwrap_or(0)),
                ("client proxy".into(), client.pid()),
            ];
            for (i, s) in servers.iter().enumerate() {
                named.push((format!("server proxy {i}"), s.pid()));
            }
            for (name, pid) in named {
                procs.insert(name, (proc_stats(pid).1, fds(pid)));
            }
            let mut series_count = BTreeMap::new();
            series_count.insert("client proxy".to_string(), series(&client).await);
            for (i, s) in servers.iter().enumerate() {
                series_count.insert(format!("server proxy {i}"), series(s).await);
            }
            let failed = outcomes.failed.lock().unwrap().values().sum();
            let sample = Sample {
                at: now,
                procs,
                series: series_count,
                ok: outcomes.ok.load(Relaxed),
                failed,
            };
            print_sample(&sample, samples.is_empty());
            samples.push(sample);
            next_sample += SAMPLE_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let refreshes = client
        .metrics()
        .await
        .sum("identity_cert_refresh_total", &[]);
    let ok = outcomes.ok.load(Relaxed);
    let failed = outcomes.failed.lock().unwrap().clone();
    println!();
    println!(
        "requests: {ok} succeeded, {} failed; {churns} endpoint changes; {restarts} destination restarts; the client proxy renewed its certificate {refreshes} times",
        failed.values().sum::<u64>()
    );
    for (why, n) in &failed {
        println!("  failed {n}x: {why}");
    }
    if let (Some(first), Some(last)) = (samples.iter().find(|s| s.at >= warmup), samples.last()) {
        println!(
            "from {:.0} min (after the warm-up) to {:.0} min:",
            first.at.as_secs_f64() / 60.0,
            last.at.as_secs_f64() / 60.0
        );
        for (name, (rss, fd)) in &last.procs {
            let (rss0, fd0) = first.procs[name];
            let peak = samples.iter().map(|s| s.procs[name].0).max().unwrap_or(0);
            println!(
                "  {name:<15} RSS {:>6.1} -> {:>6.1} MiB ({:+.1}), peak {:.1}; fds {fd0} -> {fd}",
                rss0 as f64 / 1024.0,
                *rss as f64 / 1024.0,
                (*rss as f64 - rss0 as f64) / 1024.0,
                peak as f64 / 1024.0,
            );
        }
        for (name, n) in &last.series {
            println!("  {name:<15} /metrics series {} -> {n}", first.series[name]);
        }
    }
}

fn print_sample(s: &Sample, header: bool) {
    if header {
        let names: Vec<&String> = s.procs.keys().collect();
        println!(
            "{:>6} {:>9} {:>7}  {}",
            "min",
            "ok",
            "failed",
            names
                .iter()
                .map(|n| format!("{:>24}", format!("{n} MiB/fds")))
                .collect::<String>()
        );
    }
    println!(
        "{:>6.1} {:>9} {:>7}  {}   series {}",
        s.at.as_secs_f64() / 60.0,
        s.ok,
        s.failed,
        s.procs
            .values()
            .map(|(rss, fd)| format!("{:>24}", format!("{:.1}/{fd}", *rss as f64 / 1024.0)))
            .collect::<String>(),
        s.series
            .values()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("/")
    );
}
