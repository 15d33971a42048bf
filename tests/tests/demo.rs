//! The local mesh (`linkerd demo`) with a real Prometheus: the test sends
//! its own votes through vote-bot's proxy, then `linkerd stat` must show
//! that traffic (count, the voting service's configured failure rate, the
//! emoji service's configured delay), `linkerd edges` the mTLS identities
//! of both ends, and Ctrl-C must leave nothing running.
//!
//! Skips, saying why, where Prometheus is not installed (`tests/run.sh`
//! installs it).

use linkerd_tests::{backends, demo::Demo};
use serde_json::Value;
use std::{net::Ipv4Addr, time::Duration};

fn installed(tool: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

const VOTES: usize = 200;

fn row<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#}"))
}

/// The test's own votes: through vote-bot's outbound proxy, by the web
/// service's cluster name, as vote-bot would send them. A few first, two a
/// second, until `linkerd stat` shows web's rate: then the metrics source
/// knows the series before the votes that are counted (what a counter
/// counted before its first scrape is in no `increase`, as in any
/// Prometheus).
async fn send_votes(demo: &Demo) {
    let outbound = demo.addr(13, 4140);
    let web = "web-svc.emojivoto.svc.cluster.local:80";
    let mut pace = tokio::time::interval(Duration::from_millis(500));
    let mut known = false;
    for _ in 0..60 {
        pace.tick().await;
        backends::http1_get(outbound, web, "/api/vote?choice=:crab:").await;
        let (_, stdout, _) = demo.linkerd(&["stat", "deploy", "-n", "emojivoto", "-o", "json"]);
        let rows: Value = serde_json::from_str(&stdout).unwrap_or_default();
        let rps = rows
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == "web"))
            .and_then(|web| web["rps"].as_f64());
        if rps.is_some_and(|rps| rps > 0.0) {
            known = true;
            break;
        }
    }
    assert!(known, "web's traffic never showed in linkerd stat");
    let mut tasks = Vec::new();
    for worker in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut pace = tokio::time::interval(Duration::from_millis(200));
            for _ in 0..VOTES / 4 {
                pace.tick().await;
                let path = if worker % 2 == 0 {
                    "/api/vote?choice=:crab:"
                } else {
                    "/api/vote?choice=:taco:"
                };
                let (status, _) = backends::http1_get(outbound, web, path).await;
                statuses.push(status);
            }
            statuses
        }));
    }
    let mut ok = 0;
    let mut failed = 0;
    for t in tasks {
        for status in t.await.unwrap() {
            match status {
                200 => ok += 1,
                500 => failed += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    // voting fails exactly a fifth of any run of votes, but web's profile
    // retries a failed vote (within its budget), and a retry lands on
    // another voting turn: the clients see (almost) no failure.
    assert_eq!(ok + failed, VOTES);
    assert!(ok >= VOTES * 95 / 100, "{ok} of {VOTES} votes succeeded");
}

/// The seconds a stat's rates are over: the window, or less when the
/// metrics do not reach back that far yet (the CLI says so on stderr).
fn window_secs(stderr: &str) -> f64 {
    stderr
        .split("the metrics go back only ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(60.0)
}

/// `linkerd stat deploy -o json`, once the last votes are in it.
async fn stat_rows(demo: &Demo) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (code, stdout, stderr) =
            demo.linkerd(&["stat", "deploy", "-n", "emojivoto", "-o", "json"]);
        assert_eq!(code, Some(0), "{stderr}");
        let rows: Value = serde_json::from_str(&stdout).expect("stat -o json is JSON");
        let web = row(&rows, "web");
        let requests = web["rps"].as_f64().unwrap_or(0.0) * window_secs(&stderr);
        eprintln!("web requests in stat: {requests:.1}");
        // web's profile retries failed votes: it gets a few more than sent.
        if requests >= VOTES as f64 * 0.85 && requests <= VOTES as f64 * 1.5 {
            let (_, table, _) = demo.linkerd(&["stat", "deploy", "-n", "emojivoto"]);
            eprintln!("{table}");
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "web's requests never reached {VOTES} (last {requests:.1}): {rows:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `linkerd routes` on the demo's profile for web: votes are retried, so
/// from vote-bot's side the effective success rate is above the actual one
/// (which is web's own, 80%), and more requests were sent than the clients
/// made; web counts every attempt inbound, on the same route.
fn check_routes(demo: &Demo, web_rps: f64) {
    let routes = |args: &[&str]| -> Value {
        let mut all = vec!["routes"];
        all.extend_from_slice(args);
        all.extend(["-n", "emojivoto", "-o", "json"]);
        let (code, out, stderr) = demo.linkerd(&all);
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let find = |rows: &Value, route: &str| -> Value {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == route)
            .cloned()
            .unwrap_or_else(|| panic!("no route {route}: {rows:#}"))
    };
    let out = routes(&["deploy/vote-bot", "--to", "svc/web-svc"]);
    let vote = find(&out, "GET /api/vote");
    let effective = vote["effective_success"].as_f64().unwrap();
    let actual = vote["actual_success"].as_f64().unwrap();
    assert!(near(&vote["actual_success"], 0.8, 0.05), "{vote:#}");
    assert!(effective >= actual + 0.1, "retries lift it: {vote:#}");
    let sent = vote["actual_rps"].as_f64().unwrap();
    assert!(sent > vote["effective_rps"].as_f64().unwrap(), "{vote:#}");
    assert!(
        near(&vote["actual_rps"], web_rps, web_rps * 0.15),
        "{vote:#} against web's {web_rps}rps"
    );
    // The profile's other routes had no traffic; requests on no route
    // would be [DEFAULT].
    assert!(
        find(&out, "GET /api/list")["effective_rps"].is_null(),
        "{out:#}"
    );
    find(&out, "[DEFAULT]");

    let inbound = routes(&["deploy/web"]);
    let vote = find(&inbound, "GET /api/vote");
    assert!(near(&vote["success"], 0.8, 0.05), "{vote:#}");
    assert!(
        near(&vote["rps"], web_rps, web_rps * 0.15),
        "{vote:#} against {web_rps}rps"
    );

    let (_, table, _) = demo.linkerd(&[
        "routes",
        "deploy/vote-bot",
        "-n",
        "emojivoto",
        "--to",
        "svc/web-svc",
        "-o",
        "wide",
    ]);
    eprintln!("{table}");
    assert!(table.starts_with("ROUTE "), "{table}");
    assert!(
        table.contains("ACTUAL_SUCCESS") && table.contains("GET /api/vote"),
        "{table}"
    );
}

fn near(v: &Value, want: f64, tol: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - want).abs() <= tol)
}

/// The rows match the votes sent and the demo's configuration: a fifth of
/// votes fail at voting (so at web), emoji answers after 25ms.
fn check_rows(rows: &Value) {
    let web = row(rows, "web");
    let emoji = row(rows, "emoji");
    let voting = row(rows, "voting");
    let bot = row(rows, "vote-bot");
    assert_eq!(web["meshed"], "1/1");
    assert!(near(&web["success"], 0.8, 0.03), "{web:#}");
    assert!(near(&voting["success"], 0.8, 0.03), "{voting:#}");
    assert!(near(&emoji["success"], 1.0, 0.0), "{emoji:#}");
    // emoji answers after 25ms: its p50 is within that bucket (20, 30].
    let p50 = emoji["latency_ms_p50"].as_f64().unwrap();
    assert!((20.0..=30.0).contains(&p50), "{emoji:#}");
    assert!(web["latency_ms_p50"].as_f64().unwrap() >= 20.0, "{web:#}");
    assert!(
        voting["latency_ms_p50"].as_f64().unwrap() < 20.0,
        "{voting:#}"
    );
    assert_eq!(
        bot["success"],
        Value::Null,
        "vote-bot serves nothing: {bot:#}"
    );
    assert!(
        web["tcp_open_connections"].as_f64().unwrap() >= 1.0,
        "{web:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_and_edges_show_the_traffic_sent() {
    if !installed("prometheus") {
        linkerd_tests::tools::skip("prometheus is not installed (tests/run.sh installs it)");
        return;
    }
    let base = Ipv4Addr::new(127, 78, 0, 0);
    let demo = Demo::start(
        base,
        // Prometheus' scrape timeout is its interval: 2s leaves room for a
        // debug build's proxy on a busy machine.
        &[
            "--rps",
            "0",
            "--scrape-interval",
            "2s",
            "--failure-rate",
            "0.2",
        ],
    );
    let out = demo.output();
    for line in [
        "deploy/web",
        "deploy/emoji",
        "fails 20% of votes",
        "stat deploy -n emojivoto",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }

    send_votes(&demo).await;
    let rows = stat_rows(&demo).await;
    check_rows(&rows);

    // The table shows the same.
    let (_, table, _) = demo.linkerd(&["stat", "deploy", "-n", "emojivoto"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("web "))
        .expect("a web row");
    assert!(line.contains(" 1/1 ") && line.contains("rps"), "{table}");

    // From web's side: the calls to emoji and voting.
    let (_, from, _) = demo.linkerd(&[
        "stat",
        "deploy",
        "-n",
        "emojivoto",
        "--from",
        "deploy/web",
        "-o",
        "json",
    ]);
    let from: Value = serde_json::from_str(&from).unwrap();
    assert_eq!(from.as_array().unwrap().len(), 2, "{from:#}");
    assert!(
        near(&row(&from, "voting")["success"], 0.8, 0.03),
        "{from:#}"
    );

    // Services, as their callers saw them, with their endpoints' pods.
    let (_, svc, _) = demo.linkerd(&["stat", "svc", "-n", "emojivoto", "-o", "json"]);
    let svc: Value = serde_json::from_str(&svc).unwrap();
    let web_svc = row(&svc, "web-svc");
    assert_eq!(web_svc["meshed"], "1/1", "{svc:#}");
    assert!(near(&web_svc["success"], 0.8, 0.03), "{svc:#}");
    assert!(
        near(&row(&svc, "emoji-svc")["success"], 1.0, 0.0),
        "{svc:#}"
    );

    // Edges, with both ends' identities.
    let (code, edges, stderr) = demo.linkerd(&["edges", "deploy", "-n", "emojivoto", "-o", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let edges: Value = serde_json::from_str(&edges).unwrap();
    let id = |sa: &str| format!("{sa}.emojivoto.serviceaccount.identity.linkerd.cluster.local");
    for (src, dst) in [("vote-bot", "web"), ("web", "emoji"), ("web", "voting")] {
        let e = edges
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["src"] == src && e["dst"] == dst)
            .unwrap_or_else(|| panic!("no edge {src} -> {dst}: {edges:#}"));
        assert_eq!(e["client_id"], id(src), "{e:#}");
        assert_eq!(e["server_id"], id(dst), "{e:#}");
    }
    let (_, table, _) = demo.linkerd(&["edges", "deploy", "-n", "emojivoto"]);
    assert!(table.starts_with("SRC "), "{table}");
    assert!(table.lines().skip(1).all(|l| l.ends_with('√')), "{table}");

    // Authorizations: the demo's proxies follow the policy service, and
    // every vote was admitted by web's default policy, on its default route.
    let (code, authz, stderr) =
        demo.linkerd(&["authz", "deploy/web", "-n", "emojivoto", "-o", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let authz: Value = serde_json::from_str(&authz).unwrap();
    let default = authz
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["authorization"] == "default/all-unauthenticated")
        .unwrap_or_else(|| panic!("no default authorization row: {authz:#}"));
    assert_eq!(
        default["server"], "default:all-unauthenticated",
        "{default:#}"
    );
    assert_eq!(default["route"], "default:default", "{default:#}");
    let web_rps = row(&rows, "web")["rps"].as_f64().unwrap();
    assert!(
        near(&default["rps"], web_rps, web_rps * 0.15),
        "authz {default:#} against stat's {web_rps}rps"
    );
    assert!(near(&default["success"], 0.8, 0.03), "{default:#}");
    assert_eq!(default["unauthorized_rps"], 0.0, "{default:#}");
    let (_, table, _) = demo.linkerd(&["authz", "deploy/web", "-n", "emojivoto"]);
    assert!(table.starts_with("ROUTE "), "{table}");

    check_routes(&demo, web_rps);

    // The version, through the same API.
    let (_, version, _) = demo.linkerd(&["version"]);
    assert!(version.contains("Server version: 0.1.0"), "{version}");

    // Ctrl-C: everything stops, every address is free again.
    let (code, out) = demo.interrupt();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing of the demo is left running"), "{out}");
    for (n, port) in [
        (1, 8085),
        (1, 9090),
        (1, 8086),
        (10, 4143),
        (10, 8080),
        (13, 4191),
    ] {
        let [a, b, c, _] = base.octets();
        let addr = std::net::SocketAddr::from((Ipv4Addr::new(a, b, c, n), port));
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still answers"
        );
    }
}

/// Without Prometheus the public API scrapes the proxies itself, and the
/// same votes give the same figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prometheus_the_api_scrapes_the_proxies() {
    let demo = Demo::start(
        Ipv4Addr::new(127, 80, 0, 0),
        &[
            "--no-prometheus",
            "--rps",
            "0",
            "--scrape-interval",
            "1s",
            "--failure-rate",
            "0.2",
        ],
    );
    assert!(
        demo.output()
            .contains("the public API scrapes the proxies itself")
    );
    send_votes(&demo).await;
    let rows = stat_rows(&demo).await;
    check_rows(&rows);

    // The charts' range queries, answered from the same scrape rounds: a
    // point per second over the last minute, each over the 5s before it
    // (a minute-long window would reach back before the first round).
    let (status, body) = backends::http1_get(
        demo.addr(1, 8084),
        "localhost",
        "/api/stat_range?kind=deployment&namespace=emojivoto&range=60&step=1&window=5s",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let range: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(range["timestamps"].as_array().unwrap().len(), 61, "{range}");
    let web = range["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap_or_else(|| panic!("no series for web: {range}"));
    let points: Vec<(f64, f64)> = web["rps"]
        .as_array()
        .unwrap()
        .iter()
        .zip(web["success"].as_array().unwrap())
        .filter_map(|(rps, success)| Some((rps.as_f64()?, success.as_f64()?)))
        .filter(|(rps, _)| *rps > 1.0)
        .collect();
    assert!(!points.is_empty(), "no point with web's votes: {web}");
    // voting fails a fifth of the votes, evenly spread.
    for (_, success) in &points {
        assert!((0.7..=0.9).contains(success), "{web}");
    }

    let (code, edges, stderr) = demo.linkerd(&["edges", "deploy", "-n", "emojivoto"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        edges
            .lines()
            .any(|l| l.starts_with("vote-bot ") && l.ends_with('√')),
        "{edges}"
    );

    // Diagnostics: a pod's proxy metrics (and hashed), destination's answer.
    let (code, metrics, stderr) = demo.linkerd(&[
        "diagnostics",
        "proxy-metrics",
        "-n",
        "emojivoto",
        "deploy/web",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        metrics.starts_with("#\n# POD web-5d8f9c-0 (1 of 1)\n#\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("request_total{direction=\"inbound\""),
        "{metrics}"
    );
    assert!(metrics.contains("web-svc.emojivoto.svc.cluster.local"));
    let (_, hashed, _) = demo.linkerd(&[
        "diagnostics",
        "proxy-metrics",
        "-n",
        "emojivoto",
        "deploy/web",
        "--obfuscate",
    ]);
    assert!(
        hashed.contains("request_total{direction=\"inbound\""),
        "{hashed}"
    );
    assert!(!hashed.contains("web-svc.emojivoto"), "{hashed}");
    assert!(!hashed.contains("serviceaccount.identity"), "{hashed}");
    let (code, endpoints, stderr) = demo.linkerd(&[
        "diagnostics",
        "endpoints",
        "web-svc.emojivoto.svc.cluster.local:80",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = endpoints.lines().collect();
    assert_eq!(lines.len(), 2, "{endpoints}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "emojivoto",
            "127.80.0.10",
            "4143",
            "web-5d8f9c-0",
            "web-svc.emojivoto"
        ],
        "{endpoints}"
    );

    let (code, out) = demo.interrupt();
    assert_eq!(code, Some(0), "{out}");
}

/// Debian's Prometheus package starts a Prometheus on :9090 of every
/// address: the demo's must move to a free port, and its readiness must be
/// its own, not the other server's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_prometheus_port_is_moved_and_its_own_readiness_awaited() {
    if !installed("prometheus") {
        linkerd_tests::tools::skip("prometheus is not installed (tests/run.sh installs it)");
        return;
    }
    let base = Ipv4Addr::new(127, 83, 0, 0);
    // Another server on the usual port, answering 200 to everything.
    let squatter = tokio::net::TcpListener::bind((Ipv4Addr::new(127, 83, 0, 1), 9090))
        .await
        .unwrap();
    backends::http_on(squatter);
    let demo = Demo::start(base, &["--rps", "5", "--scrape-interval", "1s"]);
    let out = demo.output();
    assert!(
        out.contains("127.83.0.1:9090 is taken"),
        "the move is not explained:\n{out}"
    );
    let url = demo.state_json()["prometheus_url"]
        .as_str()
        .expect("the demo runs a Prometheus")
        .to_string();
    assert!(
        url.starts_with("http://127.83.0.1:") && !url.ends_with(":9090"),
        "{url}"
    );
    assert!(out.contains(&format!("prometheus      {url}")), "{out}");
    // Its Prometheus is the one stat reads: the traffic shows.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (code, stdout, stderr) =
            demo.linkerd(&["stat", "deploy/web", "-n", "emojivoto", "-o", "json"]);
        assert_eq!(code, Some(0), "{stderr}");
        let rows: Value = serde_json::from_str(&stdout).unwrap();
        if row(&rows, "web")["rps"].as_f64().is_some_and(|r| r > 0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no traffic in stat: {rows:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // A profile from live traffic: what web's pods received while tapped.
    let (code, yaml, stderr) = demo.linkerd(&[
        "profile",
        "--tap",
        "deploy/web",
        "--tap-duration",
        "3s",
        "web-svc",
        "-n",
        "emojivoto",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let profile: linkerd_discovery::profile::ServiceProfile =
        serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    assert_eq!(profile.check(), Ok(()), "{yaml}");
    assert_eq!(profile.metadata.name, "web-svc.emojivoto.svc.cluster.local");
    let vote = profile
        .spec
        .routes
        .iter()
        .find(|r| r.name == "GET /api/vote")
        .unwrap_or_else(|| panic!("vote-bot's votes are a route: {yaml}"));
    assert_eq!(
        vote.condition.path_regex.as_deref(),
        Some("/api/vote"),
        "{yaml}"
    );

    let (code, out) = demo.interrupt();
    assert_eq!(code, Some(0), "{out}");
}

/// SIGKILL gives the demo no chance to stop its children: the kernel
/// must (they would keep the demo's addresses), and the next demo starts
/// where the killed one left a stale state file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_demo_leaves_nothing_behind() {
    let base = Ipv4Addr::new(127, 84, 0, 0);
    let demo = Demo::start(base, &["--no-prometheus", "--rps", "5"]);
    let state = demo.state.clone();
    let children: Vec<i32> = demo.state_json()["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap() as i32)
        .collect();
    assert!(children.len() >= 9, "{children:?}");
    demo.kill();
    let alive = |pid: &i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while children.iter().any(alive) {
        assert!(
            std::time::Instant::now() < deadline,
            "children outlived the demo by 10s: {:?}",
            children.iter().filter(|p| alive(p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(state.exists(), "a killed demo cannot remove its state file");

    // The same addresses and state file: the next demo starts.
    let mut cmd = std::process::Command::new(linkerd_tests::proxy::bin("linkerd"));
    cmd.args(["demo", "--no-build", "--no-prometheus", "--addr-base"])
        .arg(base.to_string())
        .env("LINKERD_DEMO_STATE", &state);
    let next = Demo::spawn(cmd, base);
    let (code, stdout, stderr) = next.linkerd(&["stat", "deploy", "-n", "emojivoto"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("web "), "{stdout}");
    let (code, out) = next.interrupt();
    assert_eq!(code, Some(0), "{out}");
}

/// `linkerd check` on the local mesh, and tap naming the calling pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_tap_know_the_local_mesh() {
    let base = Ipv4Addr::new(127, 85, 0, 0);
    let demo = Demo::start(base, &["--no-prometheus", "--rps", "10"]);

    let (code, table, stderr) = demo.linkerd(&["check", "--proxy"]);
    assert_eq!(code, Some(0), "{table}{stderr}");
    for line in [
        "linkerd-existence",
        "√ the identity service is ready",
        "√ the public-api service is ready",
        "√ issuer cert is issued by the trust anchor",
        "linkerd-data-plane",
        "√ data plane proxies are ready",
        "√ data plane and cli versions match",
        "Status check results are √",
    ] {
        assert!(table.contains(line), "{line:?} not in:\n{table}");
    }
    assert!(!table.contains('×') && !table.contains('‼'), "{table}");
    let (code, json, _) = demo.linkerd(&["check", "-o", "json"]);
    assert_eq!(code, Some(0));
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["success"], true, "{json:#}");
    let (code, _, stderr) = demo.linkerd(&["check", "--proxy", "-n", "nowhere"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no meshed pods in namespace nowhere"),
        "{stderr}"
    );
    let (code, _, stderr) = demo.linkerd(&["check", "--pre"]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // vote-bot's calls reach web from vote-bot's address, and web's own
    // calls leave from web's: tap names both callers.
    let mut tap = std::process::Command::new(linkerd_tests::proxy::bin("linkerd"))
        .args(["tap", "deploy/web", "-n", "emojivoto", "-o", "wide"])
        .env("LINKERD_DEMO_STATE", &demo.state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = tap.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut found = (None, None);
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if !line.starts_with("req ") {
                continue;
            }
            if line.contains("proxy=in ") {
                found.0 = Some(line);
            } else if line.contains("proxy=out") {
                found.1 = Some(line);
            }
            if let (Some(a), Some(b)) = &found {
                return (a.clone(), b.clone());
            }
        }
        panic!("tap ended before an inbound and an outbound request: {found:?}");
    });
    let (inbound, outbound) = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("tap lines within 30s")
        .unwrap();
    let _ = tap.kill();
    let _ = tap.wait();
    assert!(
        inbound.contains("src=127.85.0.13:") && inbound.contains("src_res=deploy/vote-bot"),
        "{inbound}"
    );
    assert!(
        outbound.contains("src=127.85.0.10:") && outbound.contains("src_res=deploy/web"),
        "{outbound}"
    );
    let (code, out) = demo.interrupt();
    assert_eq!(code, Some(0), "{out}");
}
