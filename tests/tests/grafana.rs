//! The chart's Grafana dashboards against the real Prometheus that scrapes
//! the local mesh: every panel's query, with its template variables filled
//! in for the demo's `web` workload, must return data, but for the panels
//! only a cluster can fill, listed below with the reason. Also: the files
//! are what `charts/dashboards.py` writes, and their uids and variables are
//! the ones the web dashboard links to.

use linkerd_tests::backends::http1_get;
use linkerd_tests::demo::Demo;
use linkerd_tests::tools::{repo, tool};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Dashboards of workload kinds the local mesh does not run: it has only
/// Deployments (and their pods), so no series carries these labels.
const CLUSTER_ONLY: &[(&str, &str)] = &[
    ("statefulset", "the local mesh runs no StatefulSets"),
    ("daemonset", "the local mesh runs no DaemonSets"),
    (
        "replicaset",
        "the local mesh's pods are not labelled by ReplicaSet",
    ),
    ("job", "the local mesh runs no Jobs"),
    ("cronjob", "the local mesh runs no CronJobs"),
];

/// The demo's values for each template variable.
const VALUES: &[(&str, &str)] = &[
    ("namespace", "emojivoto"),
    ("deployment", "web"),
    ("pod", "web-5d8f9c-0"),
    ("service", "web-svc"),
    ("authority", "web-svc.emojivoto.svc.cluster.local:80"),
];

fn dashboards() -> BTreeMap<String, Value> {
    let dir = repo().join("charts/linkerd/files/grafana");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let kind = p.file_stem().unwrap().to_str().unwrap().to_string();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (kind, v)
        })
        .collect()
}

fn fill(expr: &str) -> String {
    let mut out = expr.to_string();
    for (name, value) in VALUES {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// Grafana's `label_values(SERIES, LABEL)` as the PromQL that lists them.
fn label_values(query: &str) -> String {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values: {query}"));
    let (series, label) = inner.rsplit_once(", ").unwrap();
    format!("count by ({label}) ({series})")
}

async fn query(prometheus: SocketAddr, expr: &str) -> Result<usize, String> {
    let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let (status, body) = http1_get(
        prometheus,
        &prometheus.to_string(),
        &format!("/api/v1/query?query={q}"),
    )
    .await;
    let v: Value = serde_json::from_str(&body).map_err(|_| format!("{status}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{} {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
}

#[test]
fn the_dashboards_are_what_the_generator_writes() {
    let Some(python) = tool("python3") else {
        linkerd_tests::tools::skip("python3 is not installed (tests/run.sh installs it)");
        return;
    };
    let out = std::process::Command::new(python)
        .arg(repo().join("charts/dashboards.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let boards = dashboards();
    let kinds: Vec<&str> = boards.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "authority",
            "cronjob",
            "daemonset",
            "deployment",
            "health",
            "job",
            "namespace",
            "pod",
            "prometheus",
            "replicaset",
            "service",
            "statefulset",
            "top-line"
        ]
    );
    for (kind, board) in &boards {
        assert_eq!(board["uid"], format!("linkerd-{kind}"));
        let vars: Vec<&str> = board["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        // The web dashboard links with var-<kind> and var-namespace.
        match kind.as_str() {
            "top-line" | "health" | "prometheus" => assert!(vars.is_empty(), "{kind}"),
            "namespace" => assert_eq!(vars, ["namespace"]),
            "authority" => assert_eq!(vars, ["authority"]),
            k => assert_eq!(vars, ["namespace", k], "{kind}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_from_the_local_mesh() {
    if tool("prometheus").is_none() {
        linkerd_tests::tools::skip("prometheus is not installed (tests/run.sh installs it)");
        return;
    }
    let demo = Demo::start(
        std::net::Ipv4Addr::new(127, 82, 0, 0),
        &["--scrape-interval", "2s"],
    );
    let prometheus = demo.addr(1, 9090);
    // Rates over 30s need a few scrapes of traffic in every series.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let q = r#"sum(irate(request_total{direction="outbound", deployment="vote-bot"}[30s]))"#;
        if query(prometheus, q).await == Ok(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus had no traffic within 90s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Every query has data once a few scrapes hold every series: checked
    // again, a round every two seconds, until all have or a minute passed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (empty, checked) = loop {
        let (empty, checked) = check_dashboards(prometheus).await;
        if empty.is_empty() || tokio::time::Instant::now() > deadline {
            break (empty, checked);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
    eprintln!("{checked} queries returned data");
    assert!(checked > 100, "only {checked} queries were run");
}

/// Runs every local dashboard's variable and panel queries: those that
/// returned nothing, and how many did.
async fn check_dashboards(prometheus: SocketAddr) -> (Vec<String>, usize) {
    let mut empty = Vec::new();
    let mut checked = 0;
    for (kind, board) in dashboards() {
        if CLUSTER_ONLY.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        for v in board["templating"]["list"].as_array().unwrap() {
            let promql = fill(&label_values(v["query"]["query"].as_str().unwrap()));
            match query(prometheus, &promql).await {
                Ok(n) if n > 0 => checked += 1,
                other => empty.push(format!(
                    "{kind}: variable {}: {promql}: {other:?}",
                    v["name"]
                )),
            }
        }
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = fill(target["expr"].as_str().unwrap());
                assert!(
                    !expr.contains('$'),
                    "{kind}/{}: an unfilled variable in {expr}",
                    panel["title"]
                );
                match query(prometheus, &expr).await {
                    Ok(n) if n > 0 => checked += 1,
                    other => empty.push(format!("{kind}: {}: {expr}: {other:?}", panel["title"])),
                }
            }
        }
    }
    (empty, checked)
}
