//! `linkerd check` through kube-rs against the fake Kubernetes API: before
//! installing (`--pre`), after "applying" what `linkerd install` prints (its
//! every object put into the API, with each Deployment's pod running from
//! its template), and with meshed pods (`--proxy`); each failure and warning
//! named with its hint, in the table and in JSON.

use linkerd_pki::ca;
use linkerd_tests::cli::{Run, documents, linkerd};
use linkerd_tests::kubeapi::{FakeApi, running_pod};
use linkerd_tests::tools::tool;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Cluster {
    api: FakeApi,
    dir: PathBuf,
    kubeconfig: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    async fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("l5d-check-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let api = FakeApi::start().await;
        let kubeconfig = api.write_kubeconfig(&dir).to_str().unwrap().to_string();
        let now = time::OffsetDateTime::now_utc();
        api.put(node("node-1", now));
        Cluster {
            api,
            dir,
            kubeconfig,
        }
    }

    async fn check(&self, args: &[&str]) -> Run {
        let mut all = vec!["check", "--kubeconfig", &self.kubeconfig];
        all.extend_from_slice(args);
        linkerd(&self.dir, &all).await
    }

    /// What `linkerd install ARGS | kubectl apply -f -` and the
    /// Deployments' controllers would make: every object, and a running,
    /// ready pod per Deployment.
    async fn install(&self, args: &[&str]) -> Vec<Value> {
        linkerd_tests::cli::install(&self.api, &self.dir, args).await
    }
}

fn node(name: &str, heartbeat: time::OffsetDateTime) -> Value {
    let t = heartbeat
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Kubernetes times have whole seconds.
    let t = format!("{}Z", &t[..19]);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name},
        "status": {"conditions": [{
            "type": "Ready", "status": "True",
            "lastHeartbeatTime": t, "lastTransitionTime": t,
        }]},
    })
}

fn set_ready(pod: &mut Value, container: &str, ready: bool) {
    for key in ["containerStatuses", "initContainerStatuses"] {
        for s in pod["status"][key].as_array_mut().into_iter().flatten() {
            if s["name"] == container {
                s["ready"] = json!(ready);
            }
        }
    }
}

/// Each check line of a table: (mark, description).
fn lines(out: &str) -> Vec<(char, String)> {
    out.lines()
        .filter_map(|l| {
            let mut chars = l.chars();
            let mark = chars.next()?;
            matches!(mark, '√' | '‼' | '×').then(|| (mark, chars.as_str().trim().to_string()))
        })
        .collect()
}

/// Asserts that the table shows `mark description`.
#[track_caller]
fn shows(out: &str, mark: char, description: &str) {
    assert!(
        lines(out).contains(&(mark, description.to_string())),
        "no `{mark} {description}` in:\n{out}"
    );
}

/// Asserts that the error under `description` says `text`.
#[track_caller]
fn says(out: &str, description: &str, text: &str) {
    let detail = detail(out, description);
    assert!(
        detail.contains(text),
        "{description}: no {text:?} in:\n{out}"
    );
}

/// The lines under a check's line: its error and hint.
fn detail(out: &str, description: &str) -> String {
    out.lines()
        .skip_while(|l| !l.ends_with(description))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn pre_passes_on_an_empty_cluster_and_names_what_would_fail() {
    let c = Cluster::new("pre").await;
    let run = c.check(&["--pre"]).await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    for wanted in [
        "can initialize the client",
        "can query the Kubernetes API",
        "is running the minimum Kubernetes API version",
        "control plane namespace does not already exist",
        "can create non-namespaced resources",
        "can create ServiceAccounts",
        "can create Services",
        "can create Deployments",
        "can create ConfigMaps",
        "can create Secrets",
        "can read Secrets",
        "no clock skew detected",
    ] {
        shows(&run.stdout, '√', wanted);
    }
    assert!(
        run.stdout
            .starts_with("kubernetes-api\n--------------\n√ can initialize the client\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("\n\npre-kubernetes-setup\n--------------------\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("\nStatus check results are √\n"),
        "{}",
        run.stdout
    );
    assert!(
        c.api
            .requests()
            .iter()
            .any(|r| r.contains("selfsubjectaccessreviews"))
    );

    // What the user may not do, a namespace in the way and a node whose
    // clock is off are each named, with a hint.
    c.api.deny("create", "secrets");
    c.api.deny("create", "clusterrolebindings");
    c.api
        .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "linkerd"}}));
    c.api.put(node(
        "node-2",
        time::OffsetDateTime::now_utc() - time::Duration::hours(1),
    ));
    let run = c.check(&["--pre"]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.is_empty(),
        "the report says it all: {}",
        run.stderr
    );
    shows(&run.stdout, '×', "can create Secrets");
    shows(&run.stdout, '√', "can read Secrets");
    assert_eq!(
        detail(&run.stdout, "can create Secrets"),
        "    you may not create secrets in namespace linkerd: RBAC: create secrets is not allowed\n    see https://linkerd.io/2/checks/#pre-k8s for hints"
    );
    says(
        &run.stdout,
        "can create non-namespaced resources",
        "you may not create clusterrolebindings",
    );
    assert!(
        detail(
            &run.stdout,
            "control plane namespace does not already exist"
        )
        .contains("\"linkerd\" namespace already exists"),
        "{}",
        run.stdout
    );
    shows(&run.stdout, '‼', "no clock skew detected");
    says(&run.stdout, "no clock skew detected", "node(s) node-2");
    assert!(
        run.stdout.ends_with("\nStatus check results are ×\n"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_installed_control_plane_and_its_data_plane_pass() {
    let c = Cluster::new("installed").await;
    c.install(&[]).await;
    let run = c.check(&[]).await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    let checks = lines(&run.stdout);
    let not_passed: Vec<_> = checks.iter().filter(|(m, _)| *m != '√').collect();
    assert!(not_passed.is_empty(), "{}", run.stdout);
    for wanted in [
        "'linkerd-config' config map exists",
        "control plane pods are ready",
        "control plane ClusterRoles exist",
        "control plane ClusterRoleBindings exist",
        "control plane CustomResourceDefinitions exist",
        "control plane ServiceAccounts exist",
        "control plane MutatingWebhookConfigurations exist",
        "tap API service is running",
        "certificate config is valid",
        "trust anchors are valid for at least 60 days",
        "issuer cert is valid for at least 60 days",
        "issuer cert is issued by the trust anchor",
        "proxy-injector webhook has valid cert",
        "proxy-injector cert is valid for at least 60 days",
        "tap API server has valid cert",
        "tap API server cert is valid for at least 60 days",
        "control plane and cli versions match",
        "control plane proxies are healthy",
    ] {
        shows(&run.stdout, '√', wanted);
    }

    // The same as Linkerd's JSON.
    let run = c.check(&["-o", "json"]).await;
    assert!(run.ok, "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["success"], true);
    let names: Vec<&str> = doc["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["categoryName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "kubernetes-api",
            "kubernetes-version",
            "linkerd-existence",
            "linkerd-config",
            "linkerd-identity",
            "linkerd-webhooks-and-apisvc-tls",
            "control-plane-version",
            "linkerd-control-plane-proxy",
        ]
    );
    let first = &doc["categories"][0]["checks"][0];
    assert_eq!(
        *first,
        json!({"description": "can initialize the client", "result": "success"})
    );

    // A workload injected with the cluster's linkerd-config, its pod running.
    std::fs::write(
        c.dir.join("web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: emojivoto}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: buoyantio/emojivoto-web:v11}]\n",
    )
    .unwrap();
    let injected = linkerd(
        &c.dir,
        &[
            "inject",
            "--manual",
            "--kubeconfig",
            &c.kubeconfig,
            "web.yaml",
        ],
    )
    .await;
    assert!(injected.ok, "{}", injected.stderr);
    let web = documents(&injected.stdout).remove(0);
    c.api
        .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "emojivoto"}}));
    let mut pod = running_pod(&web, 0);
    c.api.put(pod.clone());
    let run = c.check(&["--proxy"]).await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    for wanted in [
        "data plane proxies are ready",
        "data plane proxies certificate match CA",
        "data plane and cli versions match",
    ] {
        shows(&run.stdout, '√', wanted);
    }
    let run = c.check(&["--proxy", "-n", "emojivoto"]).await;
    shows(&run.stdout, '√', "data plane namespace exists");

    // A proxy not (yet) certified, so not ready: named once --wait is up.
    set_ready(&mut pod, "linkerd-proxy", false);
    c.api.put(pod.clone());
    let run = c.check(&["--proxy", "--wait", "2s"]).await;
    assert!(!run.ok);
    shows(&run.stdout, '×', "data plane proxies are ready");
    says(
        &run.stdout,
        "data plane proxies are ready",
        "the linkerd-proxy of pod emojivoto/web-5d8f9-0 is not ready",
    );
    assert!(run.stderr.contains("waiting"), "{}", run.stderr);

    // Injected before the trust anchors were rotated.
    set_ready(&mut pod, "linkerd-proxy", true);
    let other = ca::generate(
        "cluster.local",
        Duration::from_secs(86400 * 365),
        Duration::from_secs(86400 * 100),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    for c in pod["spec"]["containers"].as_array_mut().unwrap() {
        for e in c["env"].as_array_mut().into_iter().flatten() {
            if e["name"] == "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS" {
                e["value"] = json!(other.trust_anchor_pem);
            }
        }
    }
    c.api.put(pod);
    let run = c.check(&["--proxy", "-n", "emojivoto"]).await;
    assert!(run.ok, "a warning is not a failure: {}", run.stdout);
    shows(&run.stdout, '‼', "data plane proxies certificate match CA");
    says(
        &run.stdout,
        "data plane proxies certificate match CA",
        "emojivoto/web-5d8f9-0",
    );
    assert!(run.stdout.ends_with("Status check results are √\n"));
}

#[tokio::test]
async fn control_plane_problems_are_named_with_hints() {
    let c = Cluster::new("problems").await;
    // An issuer that expires in 30 days: a warning.
    let now = time::OffsetDateTime::now_utc();
    let certs = ca::generate(
        "cluster.local",
        Duration::from_secs(86400 * 3650),
        Duration::from_secs(86400 * 30),
        now,
    )
    .unwrap();
    for (file, pem) in [
        ("ca.crt", &certs.trust_anchor_pem),
        ("issuer.crt", &certs.issuer_pem),
        ("issuer.key", &certs.issuer_key_pem),
    ] {
        std::fs::write(c.dir.join(file), pem).unwrap();
    }
    let objects = c
        .install(&[
            "--identity-trust-anchors-file",
            "ca.crt",
            "--identity-issuer-certificate-file",
            "issuer.crt",
            "--identity-issuer-key-file",
            "issuer.key",
        ])
        .await;
    let run = c.check(&[]).await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    shows(
        &run.stdout,
        '‼',
        "issuer cert is valid for at least 60 days",
    );
    assert!(
        detail(&run.stdout, "issuer cert is valid for at least 60 days")
            .starts_with("    identity.linkerd.cluster.local will expire on "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(
        "see https://linkerd.io/2/checks/#l5d-identity-issuer-cert-not-expiring-soon for hints"
    ));

    // The tap pod's container stops being ready; a webhook whose caBundle
    // is another CA's; a ClusterRole gone.
    let tap = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "linkerd-tap")
        .unwrap();
    let mut pod = running_pod(tap, 0);
    set_ready(&mut pod, "tap", false);
    c.api.put(pod);
    let mut webhook = objects
        .iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap()
        .clone();
    let other = ca::generate_serving(
        &["linkerd-proxy-injector.linkerd.svc".into()],
        Duration::from_secs(86400),
        now,
    )
    .unwrap();
    use base64::Engine as _;
    webhook["webhooks"][0]["clientConfig"]["caBundle"] =
        json!(base64::engine::general_purpose::STANDARD.encode(&other.ca_pem));
    c.api.put(webhook);
    let role = objects
        .iter()
        .find(|o| {
            o["kind"] == "ClusterRole" && o["metadata"]["name"] == "linkerd-linkerd-destination"
        })
        .unwrap();
    c.api.delete(role);

    let run = c.check(&["--wait", "1s"]).await;
    assert!(!run.ok);
    shows(&run.stdout, '×', "control plane pods are ready");
    assert_eq!(
        detail(&run.stdout, "control plane pods are ready"),
        "    container tap of pod/linkerd-tap-5d8f9-0 is not ready\n    see https://linkerd.io/2/checks/#l5d-api-control-ready for hints"
    );
    shows(&run.stdout, '×', "control plane ClusterRoles exist");
    says(
        &run.stdout,
        "control plane ClusterRoles exist",
        "missing ClusterRoles: linkerd-linkerd-destination",
    );
    shows(&run.stdout, '√', "control plane ClusterRoleBindings exist");
    shows(&run.stdout, '×', "proxy-injector webhook has valid cert");
    says(
        &run.stdout,
        "proxy-injector webhook has valid cert",
        "not signed by the caBundle",
    );
    assert!(
        run.stdout.ends_with("\nStatus check results are ×\n"),
        "{}",
        run.stdout
    );

    let run = c.check(&["--wait", "0s", "-o", "json"]).await;
    assert!(!run.ok);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["success"], false);
    let failed = linkerd_tests::cli::failed_checks(&doc);
    assert_eq!(failed.len(), 3, "{doc:#}");
    assert_eq!(failed[0]["description"], "control plane pods are ready");
    assert_eq!(
        failed[0]["hint"],
        "https://linkerd.io/2/checks/#l5d-api-control-ready"
    );
    assert_eq!(
        failed[0]["error"],
        "container tap of pod/linkerd-tap-5d8f9-0 is not ready"
    );

    // `-o short`: only what is wrong.
    let run = c.check(&["--wait", "0s", "-o", "short"]).await;
    assert!(!run.stdout.contains('√'), "{}", run.stdout);
    assert_eq!(
        lines(&run.stdout).len(),
        4,
        "three errors and the issuer's warning: {}",
        run.stdout
    );
}

#[tokio::test]
async fn no_control_plane_an_old_cluster_and_no_cluster_fail_clearly() {
    let c = Cluster::new("absent").await;
    c.api.set_server_version(1, 19);
    let run = c.check(&[]).await;
    assert!(!run.ok);
    let checks = lines(&run.stdout);
    shows(
        &run.stdout,
        '×',
        "is running the minimum Kubernetes API version",
    );
    says(
        &run.stdout,
        "is running the minimum Kubernetes API version",
        "Kubernetes is on version 1.19, but version 1.22 or later is required",
    );
    // Nothing installed: the first control-plane check says so, and the
    // rest, which need it, are not run.
    assert_eq!(
        checks.last().unwrap(),
        &('×', "'linkerd-config' config map exists".to_string()),
        "{}",
        run.stdout
    );
    says(
        &run.stdout,
        "'linkerd-config' config map exists",
        "is the control plane installed?",
    );

    // An API server that is not there.
    let dir = c.dir.join("gone");
    std::fs::create_dir_all(&dir).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        std::fs::read_to_string(&c.kubeconfig)
            .unwrap()
            .replace(&c.api.addr.port().to_string(), &port.to_string()),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = linkerd(
        &dir,
        &["check", "--kubeconfig", kubeconfig.to_str().unwrap()],
    )
    .await;
    assert!(!run.ok);
    assert!(started.elapsed() < Duration::from_secs(30));
    let checks = lines(&run.stdout);
    assert_eq!(
        checks,
        [
            ('√', "can initialize the client".to_string()),
            ('×', "can query the Kubernetes API".to_string())
        ],
        "{}",
        run.stdout
    );

    // An address alone is neither a cluster nor the demo (whose parts
    // check reads from its state file).
    let run = linkerd(&dir, &["check", "--api-addr", "127.0.0.1:8085"]).await;
    assert!(!run.ok);
    assert!(run.stdout.is_empty());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("--api-addr alone names neither"),
        "{}",
        run.stderr
    );
    let run = linkerd(&dir, &["check", "--wait", "soon"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("not a duration"), "{}", run.stderr);
}

/// Runs kubectl against the fake API with `input` on its stdin.
async fn kubectl(kubectl: &Path, kubeconfig: &str, args: &[&str], input: &str) -> Run {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl answers within a minute")
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn kubectl_applies_what_install_prints_and_check_passes_on_it() {
    let Some(kubectl_bin) = tool("kubectl") else {
        linkerd_tests::tools::skip(
            "kubectl_applies_what_install_prints_and_check_passes_on_it: kubectl is not installed (tests/run.sh fetches it)",
        );
        return;
    };
    let c = Cluster::new("kubectl").await;
    let install = linkerd(&c.dir, &["install"]).await;
    assert!(install.ok, "{}", install.stderr);
    let objects = documents(&install.stdout);

    // `linkerd install | kubectl apply --dry-run=client -f -`: kubectl maps
    // every object to its resource through discovery and creates nothing.
    let dry = kubectl(
        &kubectl_bin,
        &c.kubeconfig,
        &["apply", "--dry-run=client", "--validate=false", "-f", "-"],
        &install.stdout,
    )
    .await;
    assert!(dry.ok, "{}", dry.stderr);
    let reported: Vec<&str> = dry.stdout.lines().collect();
    assert_eq!(reported.len(), objects.len(), "{}", dry.stdout);
    assert!(
        reported.iter().all(|l| l.ends_with(" created (dry run)")),
        "{}",
        dry.stdout
    );
    assert!(reported.contains(&"deployment.apps/linkerd-destination created (dry run)"));
    assert!(reported.contains(&"mutatingwebhookconfiguration.admissionregistration.k8s.io/linkerd-proxy-injector-webhook-config created (dry run)"));
    assert!(
        !c.api.requests().iter().any(|r| r.starts_with("POST")),
        "a dry run creates nothing"
    );

    // For real: the CRDs first (`linkerd install --crds`), then each object;
    // the Deployments' pods start.
    let crds = linkerd(&c.dir, &["install", "--crds"]).await;
    assert!(crds.ok, "{}", crds.stderr);
    let applied = kubectl(
        &kubectl_bin,
        &c.kubeconfig,
        &["apply", "--validate=false", "-f", "-"],
        &crds.stdout,
    )
    .await;
    assert!(applied.ok, "{}", applied.stderr);
    assert_eq!(
        applied.stdout.matches(".policy.linkerd.io created").count(),
        5,
        "{}",
        applied.stdout
    );
    assert!(
        applied
            .stdout
            .contains("serviceprofiles.linkerd.io created"),
        "{}",
        applied.stdout
    );
    let applied = kubectl(
        &kubectl_bin,
        &c.kubeconfig,
        &["apply", "--validate=false", "-f", "-"],
        &install.stdout,
    )
    .await;
    assert!(applied.ok, "{}", applied.stderr);
    assert_eq!(
        applied
            .stdout
            .lines()
            .filter(|l| l.ends_with(" created"))
            .count(),
        objects.len(),
        "{}",
        applied.stdout
    );
    for deployment in objects.iter().filter(|o| o["kind"] == "Deployment") {
        c.api.put(running_pod(deployment, 0));
    }
    let run = c.check(&[]).await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(
        lines(&run.stdout).iter().all(|(m, _)| *m == '√'),
        "{}",
        run.stdout
    );

    // kubectl reads back what it created.
    let got = kubectl(
        &kubectl_bin,
        &c.kubeconfig,
        &[
            "get",
            "configmap",
            "linkerd-config",
            "-n",
            "linkerd",
            "-o",
            "name",
        ],
        "",
    )
    .await;
    assert_eq!(
        got.stdout.trim(),
        "configmap/linkerd-config",
        "{}",
        got.stderr
    );
}
