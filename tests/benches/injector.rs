//! The proxy injector under a steady stream of pod creations: the fake
//! Kubernetes API holds what `linkerd install` writes (linkerd-config) and
//! 50 namespaces annotated for injection; AdmissionReviews arrive at 20 a
//! second for a minute over one TLS connection, as the API server sends
//! them. Prints, and asserts nothing:
//!
//! - each admission's time to its answer, p50/p90/p99/max;
//! - the API requests the injector made during the run (reads of
//!   namespaces or linkerd-config per admission show here);
//! - the injector's resident memory and CPU seconds per admission.
//!
//! Run with `tests/bench-discovery.sh` (it builds the release controller).
//! `BENCH_NAMESPACES`, `BENCH_ADMISSION_RATE`, `BENCH_SECONDS` scale it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use linkerd_pki::ca;
use linkerd_tests::{
    cli::{documents, linkerd},
    kubeapi::FakeApi,
    proxy::{bin, spawn_listening},
    scale::{pct, proc_stats, setting},
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SERVICE: &str = "linkerd-proxy-injector.linkerd.svc";

/// A pod as a ReplicaSet controller creates it.
fn pod(n: u64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("web-{n}-5d8f9c-"),
            "labels": {"app": format!("web-{n}"), "pod-template-hash": "5d8f9c"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{n}-5d8f9c"),
                "uid": "1", "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "serviceAccountName": "web",
            "containers": [{"name": "web", "image": "buoyantio/emojivoto-web:v11", "ports": [{"containerPort": 8080}]}],
        },
    })
}

fn main() {
    let namespaces = setting("BENCH_NAMESPACES", 50);
    let rate = setting("BENCH_ADMISSION_RATE", 20);
    let seconds = setting("BENCH_SECONDS", 60);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(namespaces, rate, seconds));
}

async fn run(namespaces: u64, rate: u64, seconds: u64) {
    let dir = std::env::temp_dir().join(format!("l5d-bench-injector-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let installed = linkerd(&dir, &["install"]).await;
    assert!(installed.ok, "{}", installed.stderr);
    let config = documents(&installed.stdout)
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "linkerd-config")
        .expect("linkerd-config in the install");
    let api = FakeApi::start().await;
    api.put(config);
    for i in 0..namespaces {
        api.put(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns-{i}"), "annotations": {"linkerd.io/inject": "enabled"}},
        }));
    }
    let kubeconfig = api.write_kubeconfig(&dir);
    let serving = ca::generate_serving(
        &[SERVICE.into()],
        Duration::from_secs(86400),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("tls.crt"), &serving.cert_pem).unwrap();
    std::fs::write(tls.join("tls.key"), &serving.key_pem).unwrap();
    let mut cmd = tokio::process::Command::new(bin("linkerd-controller"));
    cmd.arg("proxy-injector")
        .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--tls-dir")
        .arg(&tls)
        .kill_on_drop(true);
    let (child, addrs) = spawn_listening(cmd, &["proxy-injector", "admin"]).await;
    let pid = child.id().expect("the injector runs");

    // One connection, kept alive, as the API server's.
    let client = linkerd_tests::tls_client_trusting(&serving.ca_pem);
    let tcp = tokio::net::TcpStream::connect(addrs["proxy-injector"])
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(
            rustls::pki_types::ServerName::try_from(SERVICE).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);

    let mut admit = async |n: u64| -> (bool, Duration) {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": format!("00000000-0000-0000-0000-{n:012}"),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": format!("ns-{}", n % namespaces),
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod(n),
                "dryRun": false,
            },
        });
        let req = http::Request::post("/")
            .header("host", SERVICE)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(review.to_string())))
            .unwrap();
        let started = Instant::now();
        // The connection takes the next request once it has finished the
        // last (which it does on its own task).
        sender
            .ready()
            .await
            .expect("the webhook keeps the connection");
        let rsp = sender.send_request(req).await.expect("the webhook answers");
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        let took = started.elapsed();
        let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
        (answer["response"]["patch"].is_string(), took)
    };
    // Warm up: the first admissions load what the injector caches.
    for n in 0..10 {
        admit(n).await;
    }
    let requests_before = api.requests().len();
    let (cpu0, rss0, _) = proc_stats(pid);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut injected = 0;
    let mut n = 10;
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        n += 1;
        let (patched, took) = admit(n).await;
        injected += usize::from(patched);
        latencies.push(took);
    }
    let elapsed = started.elapsed();
    let (cpu1, rss1, hwm) = proc_stats(pid);
    let api_requests: Vec<String> = api.requests()[requests_before..].to_vec();
    latencies.sort();
    println!(
        "{} admissions in {elapsed:.1?} ({:.1}/s) across {namespaces} namespaces, {injected} injected",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "admission -> answer: p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
        pct(&latencies, 0.5),
        pct(&latencies, 0.9),
        pct(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    let reads = api_requests
        .iter()
        .filter(|r| !r.contains("watch=true"))
        .count();
    println!(
        "API requests during the run: {reads} (besides watches: {})",
        api_requests.len() - reads
    );
    println!(
        "injector: CPU {:.2}s ({:.2} ms per admission), RSS {} MiB before, {} MiB after, peak {} MiB",
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1000.0 / latencies.len().max(1) as f64,
        rss0 / 1024,
        rss1 / 1024,
        hwm / 1024
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
