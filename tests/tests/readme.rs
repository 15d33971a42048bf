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
