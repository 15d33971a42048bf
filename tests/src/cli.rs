//! Running the `linkerd` CLI from async tests, whose runtime may be serving
//! the fake Kubernetes API the CLI asks: so never a blocking wait.

use crate::proxy::bin;
use serde_json::Value;
use std::path::Path;

/// What a command printed, and whether it succeeded.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `linkerd ARGS` in `dir`, away from any local demo or `LINKERD_API_ADDR`.
pub async fn linkerd(dir: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(bin("linkerd"))
        .args(args)
        .current_dir(dir)
        .env_remove("LINKERD_API_ADDR")
        .env("LINKERD_DEMO_STATE", "/nonexistent/linkerd-demo.json")
        .output()
        .await
        .expect("the linkerd binary runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `linkerd install --crds`, then `linkerd install ARGS`, each applied to
/// `api` as `| kubectl apply -f -` would: the control plane's objects.
pub async fn install(api: &crate::kubeapi::FakeApi, dir: &Path, args: &[&str]) -> Vec<Value> {
    let crds = linkerd(dir, &["install", "--crds"]).await;
    assert!(crds.ok, "{}", crds.stderr);
    api.apply(&documents(&crds.stdout));
    let mut all = vec!["install"];
    all.extend_from_slice(args);
    let run = linkerd(dir, &all).await;
    assert!(run.ok, "{}", run.stderr);
    api.apply(&documents(&run.stdout))
}

/// The objects of a multi-document YAML stream, as `linkerd install` prints.
pub fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("each document is YAML"))
        .filter(|d| d.is_object())
        .collect()
}

/// The checks a `linkerd check -o json` report (or the dashboard's) failed.
pub fn failed_checks(report: &Value) -> Vec<&Value> {
    report["categories"]
        .as_array()
        .expect("a check report has categories")
        .iter()
        .flat_map(|c| c["checks"].as_array().expect("a category has checks"))
        .filter(|c| c["result"] == "error")
        .collect()
}
