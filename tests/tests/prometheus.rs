//! The scrape configuration with a real Prometheus (Debian's package): the
//! chart's configuration passes `promtool check config` in its local form,
//! and Prometheus scraping real proxies gives their series the labels
//! Linkerd's queries group by (`namespace`, `pod`, `deployment`).
//!
//! Skips, saying why, where Prometheus is not installed (`tests/run.sh`
//! installs it).

use linkerd_cli::prometheus::{self, ProxyTarget};
use linkerd_tests::{backends, proxy::Proxy};
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

#[tokio::test]
async fn prometheus_scrapes_proxies_with_linkerds_labels() {
    for tool in ["prometheus", "promtool"] {
        if !installed(tool) {
            linkerd_tests::tools::skip(format!(
                "prometheus_scrapes_proxies_with_linkerds_labels: `{tool}` is not installed (apt-get install prometheus)"
            ));
            return;
        }
    }
    let dir = std::env::temp_dir().join(format!("l5d-prom-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        prometheus::local_config(prometheus::CONFIG, Some("1s")).unwrap(),
    )
    .unwrap();
    let check = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // Two workloads' proxies, and known traffic through each.
    let web = Proxy::builder()
        .inbound_target(backends::http().await)
        .spawn()
        .await;
    let bot = Proxy::builder()
        .inbound_target(backends::http().await)
        .spawn()
        .await;
    for (proxy, n) in [(&web, 7), (&bot, 3)] {
        for _ in 0..n {
            assert_eq!(
                backends::http1_request(proxy.inbound, "GET", "/").await.0,
                200
            );
        }
    }
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let _prometheus = tokio::process::Command::new("prometheus")
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

    let by_deployment = "sum by (namespace, deployment) (request_total{direction=\"inbound\"})";
    let seen = linkerd_tests::eventually(Duration::from_secs(30), || async {
        // Not listening yet: try again.
        tokio::net::TcpStream::connect(addr).await.ok()?;
        let ready = backends::http1_request(addr, "GET", "/-/ready").await;
        if ready.0 != 200 {
            return None;
        }
        let rows = query(addr, by_deployment).await;
        (rows.len() == 2).then_some(rows)
    })
    .await
    .expect("Prometheus never had both workloads' series");
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
