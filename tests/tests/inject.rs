//! `linkerd inject` and `linkerd uninject` against golden files in
//! `tests/golden/inject`: every workload kind, multi-document YAML and `List`,
//! annotation and `--manual` modes, flags as `config.linkerd.io/*` overrides,
//! the stderr report with its `‼` warnings; re-injecting the output changes
//! nothing and uninjecting it gives the input back; each refusal is one line
//! naming the resource, exit 1, and nothing on stdout.
//!
//! `UPDATE_GOLDEN=1 cargo test --test inject` rewrites the golden files.

use linkerd_tests::proxy::bin;
use linkerd_tests::tools::repo;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn golden_dir() -> PathBuf {
    repo().join("tests/golden/inject")
}

/// Runs linkerd in the golden directory, with `stdin` if given.
fn linkerd(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(bin("linkerd"))
        .args(args)
        .current_dir(golden_dir())
        .env_remove("LINKERD_API_ADDR")
        .env("LINKERD_DEMO_STATE", "/nonexistent/linkerd-demo.json")
        // No cluster is reachable: --manual needs --ignore-cluster.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run linkerd");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compares `actual` with the golden file `name`, or rewrites it.
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if want != actual {
        let line = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from its golden file at line {}:\n want: {:?}\n  got: {:?}\n(UPDATE_GOLDEN=1 rewrites it)",
            line + 1,
            want.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).unwrap()
}

const MANUAL: &[&str] = &[
    "inject",
    "--manual",
    "--ignore-cluster",
    "--set-file",
    "identityTrustAnchorsPEM=ca.crt",
];

fn manual(extra: &[&str]) -> Vec<String> {
    MANUAL.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn run(args: &[String], stdin: Option<&str>) -> (bool, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    linkerd(&args, stdin)
}

#[test]
fn injects_each_kind_as_the_golden_files_say() {
    for (input, mode, args) in [
        (
            "app.yaml",
            "annotated",
            vec!["inject".to_string(), "app.yaml".into()],
        ),
        ("app.yaml", "manual", manual(&["app.yaml"])),
        ("kinds.yaml", "manual", manual(&["kinds.yaml"])),
        (
            "overrides.yaml",
            "manual",
            manual(&[
                "--proxy-log-level",
                "debug",
                "--proxy-cpu-request",
                "100m",
                "--admin-port",
                "5191",
                "--skip-inbound-ports",
                "9000,9100-9200",
                "--opaque-ports",
                "5432",
                "--native-sidecar",
                "overrides.yaml",
            ]),
        ),
    ] {
        let (ok, out, err) = run(&args, None);
        assert!(ok, "{args:?}: {err}");
        let stem = input.trim_end_matches(".yaml");
        golden(&format!("{stem}.{mode}.out.yaml"), &out);
        golden(&format!("{stem}.{mode}.report.txt"), &err);

        // Re-injecting the output changes nothing.
        let mut again = args.clone();
        *again.last_mut().unwrap() = "-".into();
        let (ok, twice, err) = run(&again, Some(&out));
        assert!(ok, "re-injecting {input}: {err}");
        assert_eq!(twice, out, "re-injecting {input} ({mode}) changed it");

        // Uninjecting the output gives the input back, but for the
        // config.linkerd.io annotations that flags wrote, which stay.
        let (ok, back, err) = linkerd(&["uninject", "-"], Some(&out));
        assert!(ok, "{err}");
        let original = std::fs::read_to_string(golden_dir().join(input)).unwrap();
        let mut back = documents(&back);
        if input == "overrides.yaml" {
            let anns = back[0]["spec"]["template"]["metadata"]["annotations"]
                .as_object_mut()
                .unwrap();
            for flag in [
                "config.linkerd.io/proxy-log-level",
                "config.linkerd.io/proxy-cpu-request",
                "config.linkerd.io/admin-port",
                "config.linkerd.io/skip-inbound-ports",
                "config.linkerd.io/opaque-ports",
                "config.beta.linkerd.io/proxy-enable-native-sidecar",
            ] {
                assert!(anns.remove(flag).is_some(), "{flag} was not kept");
            }
        }
        assert_eq!(back, documents(&original), "uninject of {input} ({mode})");
        assert!(err.contains("uninjected"), "{err}");
    }
}

#[test]
fn the_proxy_is_what_the_chart_says() {
    let (ok, out, _) = run(&manual(&["app.yaml"]), None);
    assert!(ok);
    let docs = documents(&out);
    let web = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &web["spec"]["template"];
    let spec = &pod["spec"];
    // The proxy first, the application after it; the init container first.
    let names: Vec<&str> = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["linkerd-proxy", "web"]);
    assert_eq!(spec["initContainers"][0]["name"], "linkerd-init");
    let proxy = &spec["containers"][0];
    assert_eq!(proxy["securityContext"]["runAsUser"], 2102);
    let ports: Vec<(&str, i64)> = proxy["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("linkerd-proxy", 4143), ("linkerd-admin", 4191)]);
    assert_eq!(proxy["livenessProbe"]["httpGet"]["path"], "/live");
    assert_eq!(proxy["readinessProbe"]["httpGet"]["path"], "/ready");
    let env = |name: &str| {
        proxy["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let anchors = std::fs::read_to_string(golden_dir().join("ca.crt")).unwrap();
    assert_eq!(
        env("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS").trim(),
        anchors.trim()
    );
    assert_eq!(env("LINKERD2_PROXY_INBOUND_LISTEN_ADDR"), "0.0.0.0:4143");
    // The init container: root (a non-root process gets no permitted
    // capabilities from containerd), with NET_ADMIN and NET_RAW only.
    let init = &spec["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(
        init["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(init["securityContext"]["runAsUser"], 0);
    assert_eq!(init["securityContext"]["allowPrivilegeEscalation"], false);
    // The projected token for identity, and the in-memory identity directory.
    let volumes = spec["volumes"].as_array().unwrap();
    let token = volumes
        .iter()
        .find(|v| v["name"] == "linkerd-identity-token")
        .unwrap();
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "identity.l5d.io"
    );
    let end_entity = volumes
        .iter()
        .find(|v| v["name"] == "linkerd-identity-end-entity")
        .unwrap();
    assert_eq!(end_entity["emptyDir"]["medium"], "Memory");
    assert_eq!(
        pod["metadata"]["annotations"]["linkerd.io/created-by"],
        "linkerd/cli 0.1.0"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["linkerd.io/proxy-version"],
        "0.1.0"
    );
    assert_eq!(
        pod["metadata"]["labels"]["linkerd.io/control-plane-ns"],
        "linkerd"
    );

    // The same proxy, byte for byte, as the chart gives the control plane's pods.
    let certs = std::env::temp_dir().join(format!("l5d-inject-certs-{}", std::process::id()));
    let made = Command::new(bin("linkerd-controller"))
        .args(["issuer-certs", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(made.status.success());
    let file = |f: &str| format!("{}", certs.join(f).display());
    let anchors = format!("identityTrustAnchorsPEM={}", file("ca-bundle.crt"));
    let (ok, installed, err) = linkerd(
        &[
            "install",
            "--identity-trust-anchors-file",
            &file("ca-bundle.crt"),
            "--identity-issuer-certificate-file",
            &file("crt.pem"),
            "--identity-issuer-key-file",
            &file("key.pem"),
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, injected, err) = linkerd(
        &[
            "inject",
            "--manual",
            "--ignore-cluster",
            "--set-file",
            &anchors,
            "app.yaml",
        ],
        None,
    );
    assert!(ok, "{err}");
    std::fs::remove_dir_all(&certs).unwrap();
    let control_plane = documents(&installed)
        .into_iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "linkerd-public-api")
        .unwrap();
    // The public API leaves 4191 to its proxy-init (it scrapes proxies
    // directly); tap's init container is the plain one.
    let tap = documents(&installed)
        .into_iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "linkerd-tap")
        .unwrap();
    let web = documents(&injected)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let spec = |d: &Value, list: &str| d["spec"]["template"]["spec"][list][0].clone();
    assert_eq!(spec(&web, "containers"), spec(&control_plane, "containers"));
    assert_eq!(spec(&web, "initContainers"), spec(&tap, "initContainers"));

    // Flags become overrides; the native sidecar is an init container that restarts.
    let (ok, out, _) = run(
        &manual(&["--native-sidecar", "--admin-port", "5191", "overrides.yaml"]),
        None,
    );
    assert!(ok);
    let d = &documents(&out)[0]["spec"]["template"];
    let inits: Vec<&str> = d["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(inits, ["linkerd-init", "linkerd-proxy", "wait-for-db"]);
    assert_eq!(d["spec"]["initContainers"][1]["restartPolicy"], "Always");
    assert_eq!(d["spec"]["containers"][0]["name"], "voting");
    assert_eq!(
        d["spec"]["initContainers"][1]["ports"][1]["containerPort"],
        5191
    );
    assert_eq!(
        d["metadata"]["annotations"]["config.linkerd.io/admin-port"],
        "5191"
    );
}

#[test]
fn inputs_come_from_stdin_directories_and_several_files() {
    let (ok, from_file, _) = linkerd(&["inject", "app.yaml"], None);
    assert!(ok);
    let text = std::fs::read_to_string(golden_dir().join("app.yaml")).unwrap();
    let (ok, from_stdin, _) = linkerd(&["inject", "-"], Some(&text));
    assert!(ok);
    assert_eq!(from_stdin, from_file);

    let dir = std::env::temp_dir().join(format!("l5d-inject-dir-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::copy(golden_dir().join("app.yaml"), dir.join("a.yaml")).unwrap();
    std::fs::copy(golden_dir().join("kinds.yaml"), dir.join("nested/b.yml")).unwrap();
    std::fs::write(dir.join("README.md"), "not yaml").unwrap();
    let (ok, from_dir, err) = linkerd(&["inject", dir.to_str().unwrap()], None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(ok, "{err}");
    let (ok, from_files, _) = linkerd(&["inject", "app.yaml", "kinds.yaml"], None);
    assert!(ok);
    assert_eq!(from_dir, from_files);
    assert_eq!(documents(&from_files).len(), 5 + 6);

    let (ok, json, _) = linkerd(&["inject", "-o", "json", "app.yaml"], None);
    assert!(ok);
    let first: Value = serde_json::Deserializer::from_str(&json)
        .into_iter::<Value>()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        first["metadata"]["annotations"]["linkerd.io/inject"],
        "enabled"
    );
}

#[test]
fn refusals_are_one_line_naming_the_resource() {
    for (file, mode, want) in [
        (
            "refuse-hostnetwork.yaml",
            "annotated",
            "refuse-hostnetwork.yaml: daemonset \"agent\" cannot be injected: it uses hostNetwork: true",
        ),
        (
            "refuse-hostnetwork.yaml",
            "manual",
            "refuse-hostnetwork.yaml: daemonset \"agent\" cannot be injected: it uses hostNetwork: true",
        ),
        (
            "refuse-istio.yaml",
            "manual",
            "refuse-istio.yaml: pod \"p\" cannot be injected: it already has Istio's istio-proxy container",
        ),
        (
            "refuse-broken.yaml",
            "annotated",
            "refuse-broken.yaml is not valid YAML: line 3 column 11",
        ),
        (
            "refuse-not-object.yaml",
            "annotated",
            "refuse-not-object.yaml: document 1 is not a Kubernetes object (it has no kind)",
        ),
        (
            "refuse-bad-annotation.yaml",
            "annotated",
            "refuse-bad-annotation.yaml: pod \"p\": config.linkerd.io/proxy-uid: \"root\" is not a number",
        ),
        ("missing.yaml", "annotated", "cannot read missing.yaml"),
    ] {
        // A good file first: nothing of it may reach stdout either.
        let mut args = if mode == "manual" {
            manual(&[])
        } else {
            vec!["inject".to_string()]
        };
        args.extend(["app.yaml".to_string(), file.to_string()]);
        let (ok, out, err) = run(&args, None);
        assert!(!ok, "{file} ({mode}) was injected");
        assert!(out.is_empty(), "{file} ({mode}) printed: {out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("linkerd: {want}")),
            "{file} ({mode}): {err}"
        );
    }
    // --manual needs the trust anchors: from the cluster, or given.
    let (ok, out, err) = linkerd(
        &["inject", "--manual", "--ignore-cluster", "app.yaml"],
        None,
    );
    assert!(!ok && out.is_empty());
    assert!(err.contains("the trust anchors are unknown"), "{err}");
    let (ok, out, err) = linkerd(&["inject", "--manual", "app.yaml"], None);
    assert!(!ok && out.is_empty());
    assert!(err.contains("--ignore-cluster"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
