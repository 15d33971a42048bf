//! The README's commands, run as a newcomer would run them.

use std::process::Command;

/// `tests/proxy-demo.sh` (the README's run command) works end to end: it
/// puts the proxy in front of an app and the metrics count the demo's traffic.
#[test]
fn proxy_demo_runs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new("bash")
        .args(["tests/proxy-demo.sh", "--once"])
        .current_dir(root)
        .env("PROFILE", "debug")
        .env("DEMO_NO_BUILD", "1")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let count = |direction: &str, status: &str| -> f64 {
        stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("response_total"))
            .filter(|l| {
                l.contains(&format!("direction=\"{direction}\""))
                    && l.contains(&format!("status_code=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("inbound", "200"), 10.0, "{stdout}");
    assert_eq!(count("inbound", "404"), 1.0, "{stdout}");
    assert_eq!(count("outbound", "200"), 5.0, "{stdout}");
}

/// The README's first command (`cargo build ... && target/debug/linkerd
/// demo`) and the commands it suggests, as written: the demo starts, and
/// `stat`, `edges` and `tap` show its traffic. The build is the one
/// `tests/run.sh` has done; the demo runs on its own addresses and state
/// file.
#[test]
fn readme_demo_commands_work() {
    if !installed("prometheus") {
        linkerd_tests::tools::skip("prometheus is not installed (tests/run.sh installs it)");
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let commands: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .collect();
    let run = commands
        .iter()
        .find(|c| c.starts_with("cargo build") && c.contains("linkerd demo"))
        .expect("the README builds and runs the demo");
    let args: Vec<&str> = run
        .split_once("target/debug/linkerd ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let base = std::net::Ipv4Addr::new(127, 79, 0, 0);
    let mut cmd = Command::new(linkerd_tests::proxy::bin("linkerd"));
    cmd.args(&args)
        .args(["--addr-base", &base.to_string()])
        .current_dir(root)
        // Not under cargo here: nothing to build.
        .env_remove("CARGO");
    let demo = linkerd_tests::demo::Demo::spawn(cmd, base);
    let out = demo.output();
    assert!(
        out.contains("target/debug/linkerd stat deploy -n emojivoto"),
        "{out}"
    );

    let next: Vec<Vec<&str>> = commands
        .iter()
        .filter_map(|c| c.strip_prefix("target/debug/linkerd "))
        // A `#` starts the README's comment on the command.
        .map(|c| {
            c.split('#')
                .next()
                .unwrap_or(c)
                .split_whitespace()
                .collect()
        })
        .collect();
    assert!(next.len() >= 3, "{next:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for args in next {
        if args[0] == "tap" {
            // Runs until interrupted: a few lines, then it is stopped.
            let mut child = Command::new(linkerd_tests::proxy::bin("linkerd"))
                .args(&args)
                .env("LINKERD_DEMO_STATE", &demo.state)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let first = std::io::BufRead::lines(std::io::BufReader::new(stdout))
                .next()
                .and_then(Result::ok)
                .unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
            assert!(first.starts_with("req id="), "tap printed {first:?}");
            continue;
        }
        if args[0] == "dashboard" {
            // Serves until interrupted: its URL answers with the dashboard.
            let mut child = Command::new(linkerd_tests::proxy::bin("linkerd"))
                .args(&args)
                // The README's command on a port of its own: 50750 may be
                // taken on a shared machine (CI once found it so).
                .args(["--port", "0"])
                .env("LINKERD_DEMO_STATE", &demo.state)
                // The browser it opens: one that does nothing.
                .env("BROWSER", "true")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let lines: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
                .take(2)
                .map_while(Result::ok)
                .collect();
            assert_eq!(
                lines.first().map(String::as_str),
                Some("Linkerd dashboard available at:"),
                "{lines:?}"
            );
            let port = lines[1].rsplit(':').next().unwrap().parse::<u16>().unwrap();
            let page = std::process::Command::new("curl")
                .args(["-sf", &format!("http://localhost:{port}/api/version")])
                .output()
                .unwrap();
            let _ = child.kill();
            let _ = child.wait();
            let body = String::from_utf8_lossy(&page.stdout);
            assert!(
                body.contains("\"release\""),
                "the dashboard answered {body:?}"
            );
            continue;
        }
        // Prometheus needs a scrape or two before stat and edges have rows.
        loop {
            let (code, stdout, stderr) = demo.linkerd(&args);
            assert_eq!(code, Some(0), "{args:?}: {stderr}");
            let ready = match args[0] {
                "stat" => stdout
                    .lines()
                    .any(|l| l.starts_with("web ") && l.contains("rps")),
                "edges" => stdout.lines().any(|l| l.starts_with("vote-bot ")),
                _ => true,
            };
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{args:?} never showed the demo's traffic: {stdout}"
            );
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let (code, out) = demo.interrupt();
    assert_eq!(code, Some(0), "{out}");
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}
