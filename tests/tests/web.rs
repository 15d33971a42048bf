//! The web dashboard: headless Chromium (Debian's, through playwright-core)
//! against the local mesh through `linkerd dashboard`, its numbers checked
//! against `linkerd stat`; the server's Host check, API errors and Grafana
//! proxy; and `linkerd dashboard` port-forwarding through the Kubernetes API.

use linkerd_tests::backends::http1_get;
use linkerd_tests::cli::linkerd;
use linkerd_tests::demo::Demo;
use linkerd_tests::kubeapi::FakeApi;
use linkerd_tests::proxy::{bin, spawn_listening};
use linkerd_tests::tools::{repo, tool};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// playwright-core, where tests/run.sh installs it.
fn playwright() -> Option<PathBuf> {
    let modules = tool("node")?
        .exists()
        .then(|| repo().join("target/tools/npm/node_modules"))?;
    modules.join("playwright-core").exists().then_some(modules)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `linkerd dashboard --show url`, running; the URL it printed.
async fn dashboard(
    args: &[&str],
    state: Option<&std::path::Path>,
) -> (tokio::process::Child, String) {
    let mut cmd = tokio::process::Command::new(bin("linkerd"));
    cmd.arg("dashboard")
        .args(["--show", "url"])
        .args(args)
        .env_remove("LINKERD_API_ADDR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match state {
        Some(s) => cmd.env("LINKERD_DEMO_STATE", s),
        None => cmd.env("LINKERD_DEMO_STATE", "/nonexistent/linkerd-demo.json"),
    };
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push(line.clone());
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        printed.clone()
    })
    .await
    .expect("linkerd dashboard printed its URL");
    assert_eq!(url[0], "Linkerd dashboard available at:", "{url:?}");
    // Neither the demo's dashboard nor the stand-in web pod has a Grafana:
    // no URL that would answer 503.
    assert!(url[2].starts_with("Press Ctrl-C"), "{url:?}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url[1].clone())
}

/// `src -> dst` of each edge, as `linkerd edges -o json` and the page's
/// graph both name them.
fn edge_pairs(edges: &[Value]) -> Vec<String> {
    edges
        .iter()
        .map(|e| {
            format!(
                "{} -> {}",
                e["src"].as_str().unwrap(),
                e["dst"].as_str().unwrap()
            )
        })
        .collect()
}

fn pct(cell: &str) -> Option<f64> {
    cell.strip_suffix('%')?.parse().ok()
}

fn rps(cell: &str) -> Option<f64> {
    cell.strip_suffix("rps")?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_what_stat_shows() {
    let (Some(node), Some(modules)) = (tool("node"), playwright()) else {
        linkerd_tests::tools::skip(
            "node or playwright-core is not installed (tests/run.sh installs them)",
        );
        return;
    };
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !chromium.exists() || tool("prometheus").is_none() {
        linkerd_tests::tools::skip(
            "chromium or prometheus is not installed (tests/run.sh installs them)",
        );
        return;
    }
    let demo = Demo::start(
        std::net::Ipv4Addr::new(127, 81, 0, 0),
        &["--scrape-interval", "2s"],
    );
    assert!(
        demo.output()
            .contains("dashboard       http://127.81.0.1:8084"),
        "{}",
        demo.output()
    );
    let port = free_port().to_string();
    let (_dashboard, url) = dashboard(&["--port", &port], Some(&demo.state)).await;
    assert_eq!(url, format!("http://localhost:{port}"));

    // A second dashboard on the demo's public API, with a (stand-in)
    // Grafana, for the links a mesh with Grafana has.
    let grafana = grafana().await;
    let api = demo.addr(1, 8085).to_string();
    let (_with_grafana, with_grafana, _) = web(&[
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--api-addr",
        &api,
        "--grafana-addr",
        &grafana.to_string(),
    ])
    .await;

    let shots = repo().join("target/web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = tokio::process::Command::new(node)
        .arg(repo().join("web/e2e/dashboard.cjs"))
        .env("NODE_PATH", &modules)
        .env("DASHBOARD_URL", &url)
        .env("GRAFANA_DASHBOARD_URL", format!("http://{with_grafana}"))
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(browser.stderr.take().unwrap()).lines();
    let errors = tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(l)) = stderr.next_line().await {
            all.push_str(&l);
            all.push('\n');
        }
        all
    });

    // The moment the page has read the deployments, `linkerd stat` reads
    // the same Prometheus over the same window.
    let mut stat = None;
    let mut result = None;
    let run = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["event"] == "deployments" {
                let (code, out, err) =
                    demo.linkerd(&["stat", "deploy", "-n", "emojivoto", "-o", "json"]);
                assert_eq!(code, Some(0), "{err}");
                stat = Some(serde_json::from_str::<Value>(&out).unwrap());
            } else if v["event"] == "inject" || v["event"] == "restore" {
                // The demo's flag, given while it runs, changes its rate.
                let rate = if v["event"] == "inject" { "1" } else { "0.15" };
                let (code, out, err) = demo.linkerd(&["demo", "--failure-rate", rate]);
                assert_eq!(code, Some(0), "{err}");
                assert!(out.contains("voting now fails"), "{out}");
            } else if v.is_object() {
                result = Some(v);
            }
        }
    });
    let finished = run.await.is_ok();
    let status = browser.wait().await.unwrap();
    let errors = errors.await.unwrap();
    assert!(
        finished && status.success(),
        "the browser run failed ({status}):\n{errors}"
    );
    let page = result.expect("the browser printed what it read");
    let stat = stat.expect("the page read the deployments");
    assert_eq!(page["problems"], json!([]), "the page logged errors");

    // The namespace page lists the demo's deployments with stat's numbers.
    let rows = page["deployments"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["emoji", "vote-bot", "voting", "web"], "{page:#}");
    for want in stat.as_array().unwrap() {
        let name = want["name"].as_str().unwrap();
        let shown = rows.iter().find(|r| r["name"] == name).unwrap();
        assert_eq!(shown["meshed"], want["meshed"], "{name}");
        match want["success"].as_f64() {
            Some(s) => {
                let on_page = pct(shown["success"].as_str().unwrap()).unwrap();
                assert!(
                    (on_page - s * 100.0).abs() < 3.0,
                    "{name}: page {on_page}%, stat {s}"
                );
                let page_rps = rps(shown["rps"].as_str().unwrap()).unwrap();
                let stat_rps = want["rps"].as_f64().unwrap();
                assert!(
                    (page_rps - stat_rps).abs() <= stat_rps * 0.15 + 0.15,
                    "{name}: page {page_rps}, stat {stat_rps}"
                );
            }
            None => assert_eq!(shown["rps"], "-", "{name} had no traffic"),
        }
    }
    // The charts, read with the tables: a line per deployment with
    // traffic, whose last point is what stat says (the same tolerances).
    let charts = page["charts"].as_array().unwrap();
    for want in stat.as_array().unwrap() {
        let name = want["name"].as_str().unwrap();
        let line = |chart: &str| {
            charts
                .iter()
                .find(|c| c["chart"] == chart && c["name"] == name)
                .unwrap_or_else(|| panic!("no {chart} line for {name}: {page:#}"))
        };
        let Some(s) = want["success"].as_f64() else {
            assert!(
                !charts.iter().any(|c| c["name"] == name),
                "{name} had no traffic, but has a line: {page:#}"
            );
            continue;
        };
        let success = line("success");
        assert!(success["points"].as_u64().unwrap() >= 1, "{success}");
        let last = success["last"].as_f64().unwrap();
        assert!(
            (last - s).abs() * 100.0 < 3.0,
            "{name}: chart {last}, stat {s}"
        );
        let (last, want) = (
            line("rps")["last"].as_f64().unwrap(),
            want["rps"].as_f64().unwrap(),
        );
        assert!(
            (last - want).abs() <= want * 0.15 + 0.15,
            "{name}: chart {last} rps, stat {want}"
        );
        line("latency");
    }
    // Voting's failures raised from 15% to all: its success line dropped
    // at the first redraw after Prometheus scraped them (the redraw under
    // way when they began may have read before).
    let failure = &page["failure"];
    eprintln!("failure injected: {failure}");
    assert!(
        failure["timedOut"].is_null(),
        "no drop in the chart: {failure}"
    );
    assert!(
        failure["redraws"].as_u64().unwrap() <= 2,
        "the drop took more than one refresh: {failure}"
    );
    // The traffic graph: a node per deployment, an arrow per edge that
    // `linkerd edges` lists, each with the caller's traffic on it.
    let (code, out, err) = demo.linkerd(&["edges", "deploy", "-n", "emojivoto", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let edges: Value = serde_json::from_str(&out).unwrap();
    let mut want = edge_pairs(edges.as_array().unwrap());
    want.sort();
    let drawn = page["graph"]["edges"].as_array().unwrap();
    let mut got = edge_pairs(drawn);
    got.sort();
    assert_eq!(got, want, "{page:#}");
    assert_eq!(
        want,
        ["vote-bot -> web", "web -> emoji", "web -> voting"],
        "the demo's calls"
    );
    for e in drawn {
        let rps: f64 = e["rps"].as_str().unwrap().parse().unwrap();
        assert!(rps > 0.0, "{e}");
    }
    let mut nodes: Vec<&str> = page["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["emoji", "vote-bot", "voting", "web"], "{page:#}");
    // The local mesh has no Grafana: no links into one, but to the
    // dashboard's own charts of each deployment.
    assert_eq!(page["grafanaLinks"], json!([]), "{page:#}");
    assert_eq!(
        page["chartLinks"],
        json!([
            "#/namespaces/emojivoto/deployment/emoji?charts",
            "#/namespaces/emojivoto/deployment/vote-bot?charts",
            "#/namespaces/emojivoto/deployment/voting?charts",
            "#/namespaces/emojivoto/deployment/web?charts"
        ]),
        "{page:#}"
    );
    // Where there is a Grafana, each row links to its linkerd-<kind>
    // dashboard with the variables set, and none to the charts; following
    // one reaches Grafana through the dashboard, the path unchanged.
    let with = &page["withGrafana"];
    assert_eq!(
        with["links"],
        json!([
            "/grafana/d/linkerd-deployment?var-deployment=emoji&var-namespace=emojivoto",
            "/grafana/d/linkerd-deployment?var-deployment=vote-bot&var-namespace=emojivoto",
            "/grafana/d/linkerd-deployment?var-deployment=voting&var-namespace=emojivoto",
            "/grafana/d/linkerd-deployment?var-deployment=web&var-namespace=emojivoto"
        ]),
        "{page:#}"
    );
    assert_eq!(with["chartLinks"], 0, "{page:#}");
    assert_eq!(
        with["followed"],
        "grafana saw /grafana/d/linkerd-deployment?var-deployment=web&var-namespace=emojivoto",
        "{page:#}"
    );
    // web's page: vote-bot calls it, it calls emoji and voting, in its
    // graph and its charts.
    let detail = &page["detail"];
    assert_eq!(
        detail["graph"]["edges"],
        json!([
            "in:emojivoto/vote-bot -> deploy/web",
            "deploy/web -> out:emojivoto/emoji",
            "deploy/web -> out:emojivoto/voting"
        ]),
        "{page:#}"
    );
    for line in [
        "success web",
        "rps web",
        "latency P50",
        "latency P99",
        "callers-rps vote-bot",
        "callees-success voting",
        "callees-rps emoji",
    ] {
        assert!(
            detail["charts"].as_array().unwrap().contains(&json!(line)),
            "no {line:?} on web's page: {page:#}"
        );
    }
    // The detail page: vote-bot calls web, web calls emoji and voting, over mTLS.
    let detail: Vec<&str> = page["detail"]["stat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for peer in ["vote-bot", "emoji", "voting"] {
        assert!(detail.contains(&peer), "{detail:?}");
    }
    assert!(page["detail"]["secured"].as_u64().unwrap() >= 3, "{page:#}");
    let calls = page["detail"]["calls"].to_string();
    assert!(
        calls.contains("/emojivoto.v1.EmojiService/FindByShortcode"),
        "{calls}"
    );
    // Each pod calls from its own address: the caller is named by its
    // workload, not only by its identity.
    assert!(
        calls.contains(r#"["FROM","deploy/vote-bot","GET","/api/vote""#),
        "inbound callers by workload: {calls}"
    );
    // web's ServiceProfile (the demo's): its routes, the vote route with
    // its traffic (what web's proxy counted inbound), the others without.
    let routes = page["detail"]["profileRoutes"].as_array().unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "GET /api/list",
            "GET /api/results",
            "GET /api/vote",
            "[DEFAULT]"
        ],
        "{page:#}"
    );
    let vote = &routes[2];
    assert_eq!(vote[1], "web-svc", "{vote}");
    assert!(vote[3].as_str().unwrap().ends_with("rps"), "{vote}");
    assert_eq!(routes[0][3], "-", "no traffic on /api/list: {page:#}");
    // The routes vote-bot calls, by web-svc's profile: every route of
    // it, the vote route with its traffic, effective beside actual.
    let called = page["calledRoutes"].as_array().unwrap();
    let names: Vec<&str> = called
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "GET /api/list",
            "GET /api/results",
            "GET /api/vote",
            "[DEFAULT]"
        ],
        "{page:#}"
    );
    let vote = &called[2];
    assert_eq!(vote["service"], "web-svc", "{vote}");
    for col in ["effective_success", "actual_success"] {
        assert!(vote[col].as_str().unwrap().ends_with('%'), "{col}: {vote}");
    }
    for col in ["effective_rps", "actual_rps"] {
        assert!(
            vote[col].as_str().unwrap().ends_with("rps"),
            "{col}: {vote}"
        );
    }
    // Tap showed live requests, and stopped.
    let tap = page["tap"].as_array().unwrap();
    assert!(tap.len() >= 5, "{page:#}");
    assert!(
        tap.iter().any(|r| r[3] == "/api/vote" && r[0] == "FROM"),
        "{page:#}"
    );
    assert!(tap.iter().any(|r| r[6] == "✔ yes"), "{page:#}");
    assert_eq!(page["tapStatus"], "Stopped.");
    assert_eq!(page["tapDefaultNamespace"], "emojivoto", "{page:#}");
    for p in page["tapPlaceholders"].as_array().unwrap() {
        assert!(p.as_str().unwrap().starts_with("e.g. "), "{page:#}");
    }
    assert_eq!(
        page["overflow"],
        json!([]),
        "panels wider than the 1280px window"
    );
    assert!(!page["top"].as_array().unwrap().is_empty());
    for shot in [
        "namespaces",
        "namespace",
        "namespace-charts",
        "deployment",
        "vote-bot",
        "tap",
        "top",
        "controlplane",
    ] {
        let png = shots.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000),
            "{}",
            png.display()
        );
    }
}

/// A stand-in Grafana: answers every request with its path.
async fn grafana() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let body = format!("grafana saw {}", req.uri());
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn web(args: &[&str]) -> (tokio::process::Child, SocketAddr, SocketAddr) {
    let mut cmd = tokio::process::Command::new(bin("linkerd-web"));
    // No API server here: taps go to the public API.
    cmd.args(["--tap-via", "public-api"])
        .args(args)
        .kill_on_drop(true);
    let (child, addrs) = spawn_listening(cmd, &["web", "admin"]).await;
    (child, addrs["web"], addrs["admin"])
}

#[tokio::test]
async fn the_server_refuses_other_hosts_and_names_what_fails() {
    let gone = free_port();
    let grafana = grafana().await;
    let (_web, addr, admin) = web(&[
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--api-addr",
        &format!("127.0.0.1:{gone}"),
        "--grafana-addr",
        &grafana.to_string(),
    ])
    .await;
    // DNS rebinding: a page of another site that resolves to this address.
    let (status, body) = http1_get(addr, "evil.example", "/").await;
    assert_eq!(status, 403);
    assert!(body.contains("with a host of 'evil.example'"), "{body}");
    let (status, _) = http1_get(addr, "evil.example", "/api/version").await;
    assert_eq!(status, 403);
    let (status, body) = http1_get(addr, "localhost:50750", "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<script src=\"/app.js\""), "{body}");
    let (status, body) = http1_get(addr, "127.0.0.1", "/app.js").await;
    assert_eq!((status, body.contains("function route()")), (200, true));
    assert_eq!(http1_get(addr, "localhost", "/nothing.js").await.0, 404);

    // The API says what is wrong, as JSON.
    let (status, body) = http1_get(addr, "localhost", "/api/version").await;
    assert_eq!(status, 502, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains(&format!("the public API at 127.0.0.1:{gone}")),
        "{body}"
    );
    let (status, body) = http1_get(addr, "localhost", "/api/stat").await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"error":"kind is required"}"#)
    );
    let (status, body) = http1_get(addr, "localhost", "/api/stat?kind=nothing").await;
    assert_eq!(status, 400);
    assert!(body.contains("is not a resource kind"), "{body}");
    let (status, _) = http1_get(addr, "localhost", "/api/nothing").await;
    assert_eq!(status, 400);
    let (status, body) = http1_get(addr, "localhost", "/api/config").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"controllerNamespace": "linkerd", "grafana": true})
    );
    let (status, _) = linkerd_tests::backends::http1_request(addr, "POST", "/api/version").await;
    assert_eq!(status, 405);
    // A tap that cannot start is an event of the stream, which the page shows.
    let (status, body) = http1_get(
        addr,
        "localhost",
        "/api/tap?resource=deploy/web&namespace=emojivoto",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("event: error\ndata: {\"error\":\"tap through 127.0.0.1:"),
        "{body}"
    );

    // Grafana is behind /grafana/, its path unchanged.
    let (status, body) = http1_get(
        addr,
        "localhost",
        "/grafana/d/linkerd-deployment?var-deployment=web",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "grafana saw /grafana/d/linkerd-deployment?var-deployment=web"
    );

    let (_, metrics) = linkerd_tests::backends::http1_request(admin, "GET", "/metrics").await;
    assert!(
        metrics.contains("web_http_requests_total{route=\"refused-host\"} 2"),
        "{metrics}"
    );

    // Without Grafana its links say so; a bad flag stops start-up in one line.
    let (_plain, addr, _) = web(&["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"]).await;
    let (status, body) = http1_get(addr, "localhost", "/grafana/d/linkerd-pod").await;
    assert_eq!(status, 503);
    assert!(body.contains("no Grafana"), "{body}");
    let out = tokio::process::Command::new(bin("linkerd-web"))
        .args([
            "--enforced-host",
            "(unclosed",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--enforced-host \"(unclosed\" is not a regular expression"),
        "{err}"
    );

    // Its log, like the other components', is plain text in a file or pipe.
    let mut child = std::process::Command::new(bin("linkerd-web"))
        .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("listening on"), "{first:?}");
    assert!(!first.contains('\x1b'), "colour escapes in {first:?}");
}

#[tokio::test]
async fn dashboard_port_forwards_to_the_clusters_web_pod() {
    // The web pod's address: a loopback address of its own, port 8084.
    let pod_ip = "127.0.84.1";
    let (_web, _, _) = web(&[
        "--addr",
        &format!("{pod_ip}:8084"),
        "--admin-addr",
        "127.0.0.1:0",
    ])
    .await;
    let api = FakeApi::start().await;
    let dir = std::env::temp_dir().join(format!("l5d-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = api.write_kubeconfig(&dir);
    let kubeconfig = kubeconfig.to_str().unwrap();

    // No web pod yet: said in one line once --wait is up.
    let run = linkerd(
        &dir,
        &[
            "dashboard",
            "--kubeconfig",
            kubeconfig,
            "--show",
            "url",
            "--wait",
            "1s",
        ],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("no running web pod in namespace linkerd after 1s"),
        "{}",
        run.stderr
    );

    api.put(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "linkerd-web-5d8f9-x2x", "namespace": "linkerd",
                     "labels": {"linkerd.io/control-plane-component": "web"}},
        "spec": {"containers": [{"name": "web"}]},
        "status": {"phase": "Running", "podIP": pod_ip},
    }));
    let port = free_port().to_string();
    let (_dashboard, url) = dashboard(&["--kubeconfig", kubeconfig, "--port", &port], None).await;
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..2 {
        let (status, body) = http1_get(local, &format!("localhost:{port}"), "/api/config").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["controllerNamespace"],
            "linkerd"
        );
    }
    assert_eq!(url, format!("http://localhost:{port}"));
    let forwards = api
        .requests()
        .iter()
        .filter(|r| {
            r.contains("/pods/linkerd-web-5d8f9-x2x/portforward") && r.contains("ports=8084")
        })
        .count();
    assert_eq!(
        forwards,
        3,
        "one port-forward to ask whether there is a Grafana, then one per connection: {:?}",
        api.requests()
    );
    let _ = std::fs::remove_dir_all(&dir);

    // The local mesh's dashboard, when no demo runs.
    let run = linkerd(
        &std::env::temp_dir(),
        &["dashboard", "--api-addr", "127.0.0.1:1", "--show", "url"],
    )
    .await;
    assert!(!run.ok);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no local mesh with a dashboard is running"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn the_control_plane_page_runs_linkerd_check_in_a_cluster() {
    let api = FakeApi::start().await;
    let dir = std::env::temp_dir().join(format!("l5d-web-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let objects = linkerd_tests::cli::install(&api, &dir, &[]).await;
    // The web server reaches the API as in a pod, here through $KUBECONFIG.
    let kubeconfig = api.write_kubeconfig(&dir);
    let mut cmd = tokio::process::Command::new(bin("linkerd-web"));
    cmd.args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .kill_on_drop(true);
    let (_web, addrs) = spawn_listening(cmd, &["web", "admin"]).await;
    let check = || async {
        let (status, body) = http1_get(addrs["web"], "localhost", "/api/check").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let report = check().await;
    assert_eq!(report["success"], true, "{report:#}");
    let categories: Vec<&str> = report["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["categoryName"].as_str().unwrap())
        .collect();
    for c in [
        "kubernetes-api",
        "linkerd-existence",
        "linkerd-identity",
        "linkerd-control-plane-proxy",
    ] {
        assert!(categories.contains(&c), "{categories:?}");
    }
    // A component's pod goes: the page says which check fails, and why.
    let tap = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "linkerd-tap")
        .unwrap();
    api.delete(&linkerd_tests::kubeapi::running_pod(tap, 0));
    let report = check().await;
    assert_eq!(report["success"], false);
    let failed = linkerd_tests::cli::failed_checks(&report);
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["description"], "control plane pods are ready");
    assert_eq!(failed[0]["error"], "no pods for \"linkerd-tap\"");
    let _ = std::fs::remove_dir_all(&dir);

    // The local form asks each component, and names the one that is down.
    let gone = free_port();
    let (_local, local, _) = web(&[
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--checks",
        "local",
        "--component",
        &format!("identity={}", addrs["admin"]),
        "--component",
        &format!("tap=127.0.0.1:{gone}"),
    ])
    .await;
    let (_, body) = http1_get(local, "localhost", "/api/check").await;
    let report: Value = serde_json::from_str(&body).unwrap();
    let lines: Vec<String> = report["categories"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["result"].as_str().unwrap(),
                c["description"].as_str().unwrap(),
                c["error"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(lines[0], "success the identity service is ready ");
    assert!(
        lines[1].starts_with(&format!(
            "error the tap service is ready cannot reach its admin server at 127.0.0.1:{gone}"
        )),
        "{lines:?}"
    );
    let out = tokio::process::Command::new(bin("linkerd-web"))
        .args(["--component", "tap=nowhere", "--checks", "local"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nowhere\" is not an address"));
}
