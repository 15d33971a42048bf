//! The renderer against the real `helm template`: the same chart, values
//! files and `--set` flags give the same bytes, as Helm merges and types
//! them (files in order, then `--set`, `--set-string`, `--set-file`).

use linkerd_chart::{Chart, Release, values};
use linkerd_pki::ca;
use linkerd_test_tools::{repo, skip, tool};
use serde_json::{Value, json};
use std::{path::PathBuf, process::Command, time::Duration};

/// One rendering's values, as `helm template`'s flags give them.
#[derive(Default)]
struct Flags {
    files: Vec<PathBuf>,
    set: Vec<&'static str>,
    set_string: Vec<&'static str>,
}

impl Flags {
    fn helm_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for f in &self.files {
            args.extend(["-f".to_string(), f.display().to_string()]);
        }
        for s in &self.set {
            args.extend(["--set".to_string(), s.to_string()]);
        }
        for s in &self.set_string {
            args.extend(["--set-string".to_string(), s.to_string()]);
        }
        args
    }

    fn values(&self, certs: &[(&str, PathBuf)]) -> Value {
        let mut values = json!({});
        for f in &self.files {
            let text = std::fs::read_to_string(f).unwrap();
            values::coalesce(
                &mut values,
                values::from_yaml(&f.display().to_string(), &text).unwrap(),
            );
        }
        for s in &self.set {
            values::set(&mut values, s, false).unwrap();
        }
        for s in &self.set_string {
            values::set(&mut values, s, true).unwrap();
        }
        for (key, file) in certs {
            values::set_file(&mut values, key, std::fs::read_to_string(file).unwrap()).unwrap();
        }
        values
    }
}

/// Certificates the chart requires, written once for both renderers.
fn certs(dir: &std::path::Path) -> Vec<(&'static str, PathBuf)> {
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
    [
        ("identityTrustAnchorsPEM", g.trust_anchor_pem),
        ("identity.issuer.tls.crtPEM", g.issuer_pem),
        ("identity.issuer.tls.keyPEM", g.issuer_key_pem),
        ("proxyInjector.crtPEM", s.cert_pem),
        ("proxyInjector.keyPEM", s.key_pem),
        ("proxyInjector.caBundle", s.ca_pem),
        ("tap.crtPEM", t.cert_pem),
        ("tap.keyPEM", t.key_pem),
        ("tap.caBundle", t.ca_pem),
    ]
    .into_iter()
    .map(|(key, pem)| {
        let path = dir.join(key);
        std::fs::write(&path, pem).unwrap();
        (key, path)
    })
    .collect()
}

#[test]
fn renders_what_helm_template_renders() {
    let Some(helm) = tool("helm") else {
        skip("renders_what_helm_template_renders: helm is not installed (tests/run.sh fetches it)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("l5d-chart-helm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = certs(&dir);
    let chart_dir = repo().join("charts/linkerd");
    let chart = Chart::linkerd().unwrap();
    let cases = [
        Flags::default(),
        Flags {
            files: vec![chart_dir.join("values-ha.yaml")],
            ..Flags::default()
        },
        Flags {
            files: vec![chart_dir.join("values-ha.yaml")],
            set: vec!["nodeSelector=null,controllerReplicas=5"],
            ..Flags::default()
        },
        Flags {
            set: vec![
                "proxy.uid=3000,image.tag=v9,proxy.nativeSidecar=true,prometheus.enabled=false",
                "proxyInit.skipSubnets=10.0.0.0/8\\,192.168.0.0/16,podLabels.team=mesh",
            ],
            set_string: vec!["controllerLogLevel=debug,proxy.image.version=007"],
            ..Flags::default()
        },
    ];
    for flags in &cases {
        let values = chart.values(flags.values(&certs)).unwrap();
        let ours = chart.render(&values, &Release::default()).unwrap();
        let out = Command::new(&helm)
            .args(["template", "linkerd"])
            .arg(&chart_dir)
            .args(["--namespace", "linkerd"])
            .args(certs.iter().flat_map(|(key, file)| {
                [
                    "--set-file".to_string(),
                    format!("{key}={}", file.display()),
                ]
            }))
            .args(flags.helm_args())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm template {:?}: {}",
            flags.helm_args(),
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = String::from_utf8(out.stdout).unwrap();
        assert!(theirs.matches("\n---\n").count() > 20, "{theirs}");
        if ours != theirs {
            let line = ours
                .lines()
                .zip(theirs.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "helm template {:?} differs at line {}:\n helm:    {:?}\n ours:    {:?}",
                flags.helm_args(),
                line + 1,
                theirs.lines().nth(line),
                ours.lines().nth(line)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
