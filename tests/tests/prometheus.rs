//! The scrape configuration with a real Prometheus (Debian's package): the
//! chart's configuration passes `promtool check config` in its local form,
//! and Prometheus scraping real proxies gives their series the labels
//! Linkerd's queries group by (`namespace`, `pod`, `deployment`).
//!
//! In a cluster whose Prometheus lacks Kubernetes discovery (Debian's), the
//! `prometheus-targets` sidecar lists the pods from the API: here the fake
//! API, with Prometheus scraping what the sidecar wrote.
//!
//! Skips, saying why, where Prometheus is not installed (`tests/run.sh`
//! installs it).

use linkerd_prometheus::{self as prometheus, ProxyTarget};
use linkerd_tests::{backends, kubeapi::FakeApi, proxy::Proxy};
use serde_json::Value;
use std::{collections::BTreeMap, net::SocketAddr, process::Stdio, time::Duration};

fn installed(tool: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A PromQL query's result vector, as (labels, value).
async fn query(prometheus: SocketAddr, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = backends::http1_request(
        prometheus,
        "GET",
        &format!("/api/v1/query?query={}", encode(q)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect()
}

fn prometheus_missing(test: &str) -> bool {
    for tool in ["prometheus", "promtool"] {
        if !installed(tool) {
            linkerd_tests::tools::skip(format!(
                "{test}: `{tool}` is not installed (apt-get install prometheus)"
            ));
            return true;
        }
    }
    false
}

fn promtool_check(config: &std::path::Path) {
    let check = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Two workloads' proxies (`web`, `vote-bot`) with `web_n` and `bot_n`
/// answered requests through each.
async fn two_workloads(web_n: usize, bot_n: usize) -> (Proxy, Proxy) {
    let web = Proxy::builder()
        .inbound_target(backends::http().await)
        .spawn()
        .await;
    let bot = Proxy::builder()
        .inbound_target(backends::http().await)
        .spawn()
        .await;
    for (proxy, n) in [(&web, web_n), (&bot, bot_n)] {
        for _ in 0..n {
            assert_eq!(
                backends::http1_request(proxy.inbound, "GET", "/").await.0,
                200
            );
        }
    }
    (web, bot)
}

/// A real Prometheus running `config`, storing in `dir/data`; stopped when
/// the child is dropped.
fn start_prometheus(
    config: &std::path::Path,
    dir: &std::path::Path,
) -> (tokio::process::Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    (child, addr)
}

/// `q`'s rows once Prometheus is ready and they number `n`.
async fn rows_once(addr: SocketAddr, q: &str, n: usize) -> Vec<(BTreeMap<String, String>, f64)> {
    linkerd_tests::eventually(Duration::from_secs(40), || async {
        // Not listening yet: try again.
        tokio::net::TcpStream::connect(addr).await.ok()?;
        let ready = backends::http1_request(addr, "GET", "/-/ready").await;
        if ready.0 != 200 {
            return None;
        }
        let rows = query(addr, q).await;
        (rows.len() == n).then_some(rows)
    })
    .await
    .unwrap_or_else(|| panic!("Prometheus never had {n} rows of {q}"))
}

#[tokio::test]
async fn prometheus_scrapes_proxies_with_linkerds_labels() {
    if prometheus_missing("prometheus_scrapes_proxies_with_linkerds_labels") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l5d-prom-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        prometheus::local_config(prometheus::CONFIG, Some("1s")).unwrap(),
    )
    .unwrap();
    promtool_check(&config);

    // Two workloads' proxies, and known traffic through each.
    let (web, bot) = two_workloads(7, 3).await;
    let target = |proxy: &Proxy, pod: &str, deployment: &str| ProxyTarget {
        admin: proxy.admin,
        namespace: "emojivoto".into(),
        pod: pod.into(),
        owner: Some(("deployment".into(), deployment.into())),
        labels: BTreeMap::from([("app".to_string(), deployment.to_string())]),
    };
    std::fs::write(
        dir.join("targets/linkerd-proxy.json"),
        prometheus::proxy_targets(&[
            target(&web, "web-0", "web"),
            target(&bot, "vote-bot-0", "vote-bot"),
        ]),
    )
    .unwrap();
    std::fs::write(dir.join("targets/linkerd-controller.json"), "[]").unwrap();

    let (_prometheus, addr) = start_prometheus(&config, &dir);
    let by_deployment = "sum by (namespace, deployment) (request_total{direction=\"inbound\"})";
    let seen = rows_once(addr, by_deployment, 2).await;
    let counts: BTreeMap<String, f64> = seen
        .iter()
        .map(|(l, v)| (l["deployment"].clone(), *v))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([("vote-bot".to_string(), 3.0), ("web".to_string(), 7.0)])
    );
    assert!(seen.iter().all(|(l, _)| l["namespace"] == "emojivoto"));
    // Each series names its pod and keeps the pod's own labels; nothing of
    // the discovery metadata leaks.
    let web_series = query(addr, "request_total{deployment=\"web\"}").await;
    assert!(!web_series.is_empty());
    for (labels, _) in &web_series {
        assert_eq!(labels["pod"], "web-0", "{labels:?}");
        assert_eq!(labels["app"], "web", "{labels:?}");
        assert_eq!(labels["control_plane_ns"], "linkerd", "{labels:?}");
        assert_eq!(labels["job"], "linkerd-proxy", "{labels:?}");
        assert!(
            labels
                .keys()
                .all(|k| k == "__name__" || !k.starts_with("__")),
            "{labels:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pod as the API server lists it: `app`'s container and, when `admin`
/// is given, a proxy whose admin port it is, at 127.0.0.1.
fn pod(name: &str, app: &str, admin: Option<u16>) -> Value {
    let mut containers = vec![serde_json::json!({"name": app, "image": "demo",
        "ports": [{"name": "http", "containerPort": 8080}]})];
    let mut labels = serde_json::json!({"app": app});
    if let Some(port) = admin {
        containers.push(
            serde_json::json!({"name": "linkerd-proxy", "image": "proxy",
            "ports": [{"name": "linkerd-proxy", "containerPort": 4143},
                      {"name": "linkerd-admin", "containerPort": port}]}),
        );
        labels["linkerd.io/control-plane-ns"] = "linkerd".into();
        labels["linkerd.io/proxy-deployment"] = app.into();
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "emojivoto", "labels": labels},
        "spec": {"containers": containers},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

#[tokio::test]
async fn targets_sidecar_follows_the_pods_and_prometheus_scrapes_them() {
    if prometheus_missing("targets_sidecar_follows_the_pods_and_prometheus_scrapes_them") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l5d-prom-sd-{}", std::process::id()));
    let out = dir.join("out");
    std::fs::create_dir_all(&dir).unwrap();
    // The chart's configuration as its ConfigMap holds it, scraping fast.
    let source = dir.join("prometheus.yml");
    std::fs::write(
        &source,
        prometheus::CONFIG
            .replace("scrape_interval: 10s", "scrape_interval: 1s")
            .replace("scrape_timeout: 10s", "scrape_timeout: 1s"),
    )
    .unwrap();
    let sd = |extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(linkerd_tests::proxy::bin("linkerd-controller"));
        cmd.arg("prometheus-targets")
            .arg("--config")
            .arg(&source)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    };

    // The init container's part: the file form, and empty targets.
    let status = sd(&["--config-only"]).status().await.unwrap();
    assert!(status.success());
    promtool_check(&out.join("prometheus.yml"));
    for job in ["linkerd-proxy", "linkerd-controller"] {
        let targets = std::fs::read_to_string(out.join(format!("targets/{job}.json"))).unwrap();
        assert_eq!(targets, "[]");
    }

    let (web, bot) = two_workloads(5, 2).await;
    let api = FakeApi::start().await;
    let bot_pod = pod("vote-bot-0", "vote-bot", Some(bot.admin.port()));
    api.put(pod("web-0", "web", Some(web.admin.port())));
    api.put(bot_pod.clone());
    // Not meshed: listed, but the relabelling keeps no target of it.
    api.put(pod("db-0", "db", None));
    let kubeconfig = api.write_kubeconfig(&dir);
    let _sd = sd(&[
        "--settle",
        "50ms",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    let proxy_targets = out.join("targets/linkerd-proxy.json");
    let listed = |pods: usize| {
        let file = proxy_targets.clone();
        async move {
            let text = tokio::fs::read_to_string(&file).await.ok()?;
            let groups: Vec<Value> = serde_json::from_str(&text).ok()?;
            let names: std::collections::BTreeSet<String> = groups
                .iter()
                .filter_map(|g| g["labels"]["__meta_kubernetes_pod_name"].as_str())
                .map(String::from)
                .collect();
            (names.len() == pods).then_some(names)
        }
    };
    let names = linkerd_tests::eventually(Duration::from_secs(10), || listed(3))
        .await
        .expect("the sidecar never listed the three pods");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["db-0", "vote-bot-0", "web-0"]
    );

    let (_prometheus, addr) = start_prometheus(&out.join("prometheus.yml"), &dir);
    let by_pod = "sum by (namespace, deployment, pod, app) (request_total{direction=\"inbound\"})";
    let rows = rows_once(addr, by_pod, 2).await;
    let seen: BTreeMap<String, (String, String, f64)> = rows
        .into_iter()
        .map(|(l, v)| {
            (
                l["deployment"].clone(),
                (l["pod"].clone(), l["app"].clone(), v),
            )
        })
        .collect();
    assert_eq!(
        seen,
        BTreeMap::from([
            (
                "vote-bot".to_string(),
                ("vote-bot-0".to_string(), "vote-bot".to_string(), 2.0)
            ),
            (
                "web".to_string(),
                ("web-0".to_string(), "web".to_string(), 5.0)
            ),
        ])
    );

    // A pod deleted: its targets go with the watch event.
    api.delete(&bot_pod);
    linkerd_tests::eventually(Duration::from_secs(10), || listed(2))
        .await
        .expect("the deleted pod's targets stayed");
    let _ = std::fs::remove_dir_all(&dir);
}
