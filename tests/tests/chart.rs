//! The chart and `linkerd install`: the real `helm` lints the chart and renders
//! it byte-for-byte as `linkerd install` does (defaults, HA, values files,
//! `--set`), every rendered object passes the Kubernetes schemas
//! (`kubernetes-validate --strict`), fresh certificates chain, and bad values
//! are refused in one line.
//!
//! Skips, saying why, where helm or kubernetes-validate is missing
//! (`tests/run.sh` fetches them).

use linkerd_pki::ca;
use linkerd_tests::proxy::bin;
use linkerd_tests::tools::{repo, tool};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run a command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn linkerd(args: &[String]) -> (bool, String, String) {
    run(Command::new(bin("linkerd"))
        .args(args)
        .env_remove("LINKERD_API_ADDR")
        .env("LINKERD_DEMO_STATE", "/nonexistent/linkerd-demo.json"))
}

/// Fixed certificates, so that two renders can be compared.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("l5d-chart-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let day = Duration::from_secs(86400);
        let g = ca::generate("cluster.local", 365 * day, 30 * day, now).unwrap();
        let s = ca::generate_serving(
            &["linkerd-proxy-injector.linkerd.svc".into()],
            365 * day,
            now,
        )
        .unwrap();
        let t = ca::generate_serving(&["linkerd-tap.linkerd.svc".into()], 365 * day, now).unwrap();
        for (file, pem) in [
            ("ca.crt", g.trust_anchor_pem),
            ("issuer.crt", g.issuer_pem),
            ("issuer.key", g.issuer_key_pem),
            ("webhook.crt", s.cert_pem),
            ("webhook.key", s.key_pem),
            ("webhook-ca.crt", s.ca_pem),
            ("tap.crt", t.cert_pem),
            ("tap.key", t.key_pem),
            ("tap-ca.crt", t.ca_pem),
        ] {
            std::fs::write(dir.join(file), pem).unwrap();
        }
        Certs { dir }
    }

    /// `--set-file` flags giving every certificate, for helm and linkerd alike.
    fn set_files(&self) -> Vec<String> {
        [
            ("identityTrustAnchorsPEM", "ca.crt"),
            ("identity.issuer.tls.crtPEM", "issuer.crt"),
            ("identity.issuer.tls.keyPEM", "issuer.key"),
            ("proxyInjector.crtPEM", "webhook.crt"),
            ("proxyInjector.keyPEM", "webhook.key"),
            ("proxyInjector.caBundle", "webhook-ca.crt"),
            ("tap.crtPEM", "tap.crt"),
            ("tap.keyPEM", "tap.key"),
            ("tap.caBundle", "tap-ca.crt"),
        ]
        .iter()
        .flat_map(|(key, file)| {
            [
                "--set-file".to_string(),
                format!("{key}={}", self.dir.join(file).display()),
            ]
        })
        .collect()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The first line where two renders differ, with context, for a failure message.
fn first_difference(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let i = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let from = i.saturating_sub(3);
    format!(
        "line {}:\n helm:    {:?}\n linkerd: {:?}",
        i + 1,
        &a[from..(i + 1).min(a.len())],
        &b[from..(i + 1).min(b.len())]
    )
}

fn values_file(dir: &Path) -> PathBuf {
    let path = dir.join("mine.yaml");
    std::fs::write(
        &path,
        r#"
tolerations:
- key: node-role.kubernetes.io/control-plane
  operator: Exists
  effect: NoSchedule
podAnnotations:
  example.com/long: "a long annotation value with spaces that goes well beyond the eighty column width of go-yaml"
  example.com/number: "1234"
  example.com/yes: "yes"
  example.com/empty: ""
podLabels:
  team: mesh
imagePullSecrets:
- name: regcred
priorityClassName: system-cluster-critical
controllerReplicas: 1000000
proxy:
  logLevel: debug
  opaquePorts: "3306"
  resources:
    cpu: {request: 0.5, limit: 2}
"#,
    )
    .unwrap();
    path
}

#[test]
fn install_prints_exactly_what_helm_template_prints() {
    let Some(helm) = tool("helm") else {
        linkerd_tests::tools::skip(
            "install_prints_exactly_what_helm_template_prints: helm is not installed (tests/run.sh fetches it)",
        );
        return;
    };
    let certs = Certs::new("equal");
    let chart = repo().join("charts/linkerd");
    let ha = chart.join("values-ha.yaml").display().to_string();
    let mine = values_file(&certs.dir).display().to_string();
    // (linkerd install's flags, helm template's flags)
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (vec![], vec![]),
        (strings(&["--ha"]), strings(&["-f", &ha])),
        (strings(&["-f", &mine]), strings(&["-f", &mine])),
        (
            strings(&[
                "--set",
                "prometheus.discovery=kubernetes,prometheus.image=prom/prometheus:v3.5.0",
            ]),
            strings(&[
                "--set",
                "prometheus.discovery=kubernetes,prometheus.image=prom/prometheus:v3.5.0",
            ]),
        ),
        (
            strings(&["--ha", "-f", &mine, "--set", "nodeSelector=null"]),
            strings(&["-f", &ha, "-f", &mine, "--set", "nodeSelector=null"]),
        ),
        (
            strings(&[
                "--set",
                "proxy.uid=3000,image.tag=v9,proxy.nativeSidecar=true,prometheus.enabled=false",
                "--set",
                "installNamespace=false,proxyInit.skipSubnets=10.0.0.0/8\\,192.168.0.0/16",
                "--set-string",
                "controllerLogLevel=debug,proxy.image.version=007",
            ]),
            strings(&[
                "--set",
                "proxy.uid=3000,image.tag=v9,proxy.nativeSidecar=true,prometheus.enabled=false",
                "--set",
                "installNamespace=false,proxyInit.skipSubnets=10.0.0.0/8\\,192.168.0.0/16",
                "--set-string",
                "controllerLogLevel=debug,proxy.image.version=007",
            ]),
        ),
    ];
    let (ok, out, err) = run(Command::new(&helm)
        .arg("lint")
        .arg(&chart)
        .args(certs.set_files()));
    assert!(ok, "helm lint failed:\n{out}{err}");
    assert!(out.contains("0 chart(s) failed"), "{out}");

    for (ours, theirs) in cases {
        let mut args = strings(&["install"]);
        args.extend(certs.set_files());
        args.extend(ours.clone());
        let (ok, installed, err) = linkerd(&args);
        assert!(ok, "linkerd install {ours:?} failed: {err}");
        let (ok, templated, err) = run(Command::new(&helm)
            .args(["template", "linkerd"])
            .arg(&chart)
            .args(["--namespace", "linkerd"])
            .args(certs.set_files())
            .args(&theirs));
        assert!(ok, "helm template {theirs:?} failed: {err}");
        assert!(templated.matches("\n---\n").count() > 20, "{templated}");
        assert!(
            installed == templated,
            "linkerd install {ours:?} differs from helm template {theirs:?} at {}",
            first_difference(&templated, &installed)
        );
    }
}

#[test]
fn rendered_objects_pass_the_kubernetes_schemas() {
    let Some(validate) = tool("kubernetes-validate") else {
        linkerd_tests::tools::skip(
            "rendered_objects_pass_the_kubernetes_schemas: kubernetes-validate is not installed (tests/run.sh installs it)",
        );
        return;
    };
    let certs = Certs::new("schemas");
    for (name, extra) in [
        ("default", vec![]),
        ("ha", strings(&["--ha"])),
        (
            "native-sidecar",
            strings(&["--set", "proxy.nativeSidecar=true"]),
        ),
    ] {
        let mut args = strings(&["install"]);
        args.extend(certs.set_files());
        args.extend(extra);
        let (ok, manifests, err) = linkerd(&args);
        assert!(ok, "{err}");
        let file = certs.dir.join(format!("{name}.yaml"));
        std::fs::write(&file, &manifests).unwrap();
        for version in ["1.31.0", "1.34.0"] {
            let (ok, out, err) = run(Command::new(&validate)
                .args(["--strict", "--quiet", "-k", version])
                .arg(&file));
            assert!(ok, "{name} against Kubernetes {version}:\n{out}{err}");
        }
    }
    // The check is real: a wrong object fails it.
    let bad = certs.dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: http}]}\n",
    )
    .unwrap();
    let (ok, ..) = run(Command::new(&validate)
        .args(["--strict", "--quiet"])
        .arg(&bad));
    assert!(
        !ok,
        "kubernetes-validate passed a Service whose port is a string"
    );
}

/// Each rendered document as (kind, name, object).
fn objects(manifests: &str) -> Vec<(String, String, Value)> {
    manifests
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        // Empty, or only comments (as the CRDs' file opens).
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| {
            let v: Value = serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"));
            let kind = v["kind"].as_str().unwrap().to_string();
            let name = v["metadata"]["name"].as_str().unwrap().to_string();
            (kind, name, v)
        })
        .collect()
}

fn find<'a>(objs: &'a [(String, String, Value)], kind: &str, name: &str) -> &'a Value {
    &objs
        .iter()
        .find(|(k, n, _)| k == kind && n == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .2
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

#[test]
fn prometheus_runs_the_built_image_with_its_targets_sidecar() {
    let containers = |spec: &Value, key: &str| -> Vec<String> {
        spec[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let prometheus = |spec: &Value| -> Value {
        spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "prometheus")
            .unwrap()
            .clone()
    };
    // Default: bin/images' Debian Prometheus, which has no Kubernetes
    // discovery, so the sidecar lists the pods for it.
    let (ok, out, err) = linkerd(&strings(&["install"]));
    assert!(ok, "{err}");
    let objs = objects(&out);
    let spec = &find(&objs, "Deployment", "linkerd-prometheus")["spec"]["template"]["spec"];
    assert_eq!(
        containers(spec, "initContainers"),
        ["linkerd-init", "prometheus-config"]
    );
    assert_eq!(
        containers(spec, "containers"),
        ["linkerd-proxy", "prometheus-targets", "prometheus"]
    );
    let prom = prometheus(spec);
    assert_eq!(prom["image"], "ghcr.io/linkerd-rs/prometheus:0.1.0");
    assert_eq!(
        prom["args"][0],
        "--config.file=/var/run/prometheus/prometheus.yml"
    );
    assert_eq!(spec["initContainers"][1]["args"][0], "prometheus-targets");
    assert_eq!(spec["initContainers"][1]["args"][1], "--config-only");
    // The sidecar lists pods: its service account may.
    let role = find(&objs, "ClusterRole", "linkerd-linkerd-prometheus");
    let rules = serde_json::to_string(&role["rules"]).unwrap();
    assert!(
        rules.contains("\"pods\"") && rules.contains("\"watch\""),
        "{rules}"
    );

    // An upstream image discovers the pods itself.
    let (ok, out, err) = linkerd(&strings(&[
        "install",
        "--set",
        "prometheus.discovery=kubernetes,prometheus.image=prom/prometheus:v3.5.0",
    ]));
    assert!(ok, "{err}");
    let objs = objects(&out);
    let spec = &find(&objs, "Deployment", "linkerd-prometheus")["spec"]["template"]["spec"];
    assert_eq!(containers(spec, "initContainers"), ["linkerd-init"]);
    assert_eq!(
        containers(spec, "containers"),
        ["linkerd-proxy", "prometheus"]
    );
    let prom = prometheus(spec);
    assert_eq!(prom["image"], "prom/prometheus:v3.5.0");
    assert_eq!(
        prom["args"][0],
        "--config.file=/etc/prometheus/prometheus.yml"
    );

    let (ok, _, err) = linkerd(&strings(&["install", "--set", "prometheus.discovery=dns"]));
    assert!(!ok);
    assert!(err.contains("prometheus.discovery"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn install_generates_certificates_that_chain() {
    let (ok, first, err) = linkerd(&strings(&["install"]));
    assert!(ok, "{err}");
    let objs = objects(&first);
    let anchors = find(&objs, "ConfigMap", "linkerd-identity-trust-roots")["data"]["ca-bundle.crt"]
        .as_str()
        .unwrap()
        .to_string();
    let issuer = &find(&objs, "Secret", "linkerd-identity-issuer")["data"];
    let (crt, key) = (
        b64(issuer["crt.pem"].as_str().unwrap()),
        b64(issuer["key.pem"].as_str().unwrap()),
    );
    let anchors = ca::TrustAnchors::from_pem(&anchors).unwrap();
    ca::Issuer::from_pem(&crt, &key, &anchors, time::OffsetDateTime::now_utc())
        .expect("the generated issuer chains to the generated anchor");
    // Every proxy trusts the same anchor the ConfigMap holds.
    let deploy = find(&objs, "Deployment", "linkerd-destination");
    let proxy = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(proxy["name"], "linkerd-proxy");
    let env = proxy["env"].as_array().unwrap();
    let pem = env
        .iter()
        .find(|e| e["name"] == "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    assert_eq!(pem.trim(), anchors.pem().trim());

    // The webhook's certificate names its service and chains to the caBundle.
    let tls = &find(&objs, "Secret", "linkerd-proxy-injector-k8s-tls")["data"];
    let webhook = find(
        &objs,
        "MutatingWebhookConfiguration",
        "linkerd-proxy-injector-webhook-config",
    );
    let bundle = b64(webhook["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap());
    let leaf = b64(tls["tls.crt"].as_str().unwrap());
    let (_, leaf_pem) = x509_parser::pem::parse_x509_pem(leaf.as_bytes()).unwrap();
    let leaf = leaf_pem.parse_x509().unwrap();
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(sans, ["DNSName(linkerd-proxy-injector.linkerd.svc)"]);
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(bundle.as_bytes()).unwrap();
    let ca_cert = ca_pem.parse_x509().unwrap();
    leaf.verify_signature(Some(ca_cert.public_key()))
        .expect("the webhook certificate is signed by the caBundle");
    assert_eq!(webhook["webhooks"][0]["failurePolicy"], "Ignore");

    // Private keys stay out of linkerd-config.
    let config = find(&objs, "ConfigMap", "linkerd-config")["data"]["values"]
        .as_str()
        .unwrap();
    assert!(!config.contains("PRIVATE KEY"), "{config}");
    assert!(config.contains("identityTrustAnchorsPEM"), "{config}");

    // A second install makes new ones.
    let (_, second, _) = linkerd(&strings(&["install"]));
    let again = objects(&second);
    assert_ne!(
        find(&again, "ConfigMap", "linkerd-identity-trust-roots"),
        find(&objs, "ConfigMap", "linkerd-identity-trust-roots")
    );
}

#[test]
fn install_refuses_bad_values_in_one_line() {
    let certs = Certs::new("refusals");
    let other = Certs::new("refusals-other");
    let file = |c: &Certs, f: &str| c.dir.join(f).display().to_string();
    let bad_yaml = certs.dir.join("bad.yaml");
    std::fs::write(&bad_yaml, "proxy: [").unwrap();
    for (args, want) in [
        (
            strings(&["--set", "proxy.uid=abc"]),
            "values don't fit the chart's schema: proxy.uid: expected integer, got string \"abc\"",
        ),
        (
            strings(&["--set", "proxy.logLevle=debug"]),
            "values don't fit the chart's schema: proxy: unknown value \"logLevle\"",
        ),
        (
            strings(&["--set", "proxy.ports.admin=70000"]),
            "proxy.ports.admin: 70000 is more than the maximum 65535",
        ),
        (strings(&["--set", "a[x]=1"]), "has a bad list index \"x\""),
        (
            strings(&["-f", &bad_yaml.display().to_string()]),
            "is not valid YAML",
        ),
        (
            strings(&["-f", "/nonexistent/values.yaml"]),
            "cannot read /nonexistent/values.yaml",
        ),
        (
            strings(&["--identity-trust-anchors-file", &file(&certs, "ca.crt")]),
            "give the trust anchors, the issuer certificate and the issuer key together",
        ),
        (
            strings(&[
                "--identity-trust-anchors-file",
                &file(&certs, "ca.crt"),
                "--identity-issuer-certificate-file",
                &file(&other, "issuer.crt"),
                "--identity-issuer-key-file",
                &file(&other, "issuer.key"),
            ]),
            "the identity issuer: the issuer certificate is not signed by any of the 1 trust anchors",
        ),
        (
            // A bare number: its unit would be a guess.
            strings(&["--identity-issuance-lifetime", "24"]),
            "--identity-issuance-lifetime \"24\": \"24\" is not a duration",
        ),
    ] {
        let mut full = strings(&["install"]);
        full.extend(args.clone());
        let (ok, out, err) = linkerd(&full);
        assert!(!ok, "install {args:?} succeeded");
        assert!(out.is_empty(), "install {args:?} printed manifests: {out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "install {args:?}: {err}");
    }
}

#[test]
fn uninstall_lists_every_installed_object() {
    let (ok, crds, err) = linkerd(&strings(&["install", "--crds"]));
    assert!(ok, "{err}");
    let (ok, installed, err) = linkerd(&strings(&["install"]));
    assert!(ok, "{err}");
    let (ok, listed, err) = linkerd(&strings(&["uninstall"]));
    assert!(ok, "{err}");
    let mut want: Vec<(String, String)> = objects(&installed)
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect();
    let got: Vec<(String, String)> = objects(&listed)
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect();
    want.reverse();
    // The CRDs last: deleting one deletes every object of its kind.
    want.extend(objects(&crds).into_iter().map(|(k, n, _)| (k, n)));
    assert_eq!(got, want);
    let position = |kind: &str| got.iter().position(|(k, _)| k == kind).unwrap();
    assert!(position("MutatingWebhookConfiguration") < position("Deployment"));
    assert_eq!(got[got.len() - 7].0, "Namespace");
    assert!(
        got[got.len() - 6..]
            .iter()
            .all(|(k, _)| k == "CustomResourceDefinition")
    );
}
