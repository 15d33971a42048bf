//! `linkerd install`: the control plane's manifests, rendered from the chart
//! built into this binary exactly as `helm template` renders it, with fresh
//! certificates where none are given. `linkerd uninstall`: what to delete.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use linkerd_chart::{Chart, Release, values};
use linkerd_pki::ca;
use serde_json::{Value, json};

/// Flags that build chart values, shared with `linkerd inject`.
#[derive(Args, Clone, Debug, Default)]
pub struct ValuesArgs {
    /// Values files (as `helm -f`), later ones winning.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Set values: key1=val1,key2=val2 (as `helm --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Set values as strings, whatever they look like.
    #[arg(long = "set-string", value_name = "KEY=VALUE")]
    pub set_string: Vec<String>,
    /// Set values from files: key=path.
    #[arg(long = "set-file", value_name = "KEY=PATH")]
    pub set_file: Vec<String>,
}

impl ValuesArgs {
    /// Applies the flags onto `values`, in Helm's order: files, then --set,
    /// --set-string, --set-file.
    pub fn apply(&self, values: &mut Value) -> Result<()> {
        for path in &self.values {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            values::coalesce(
                values,
                values::from_yaml(&path.display().to_string(), &text)?,
            );
        }
        for expr in &self.set {
            values::set(values, expr, false)?;
        }
        for expr in &self.set_string {
            values::set(values, expr, true)?;
        }
        for expr in &self.set_file {
            let Some((key, path)) = expr.split_once('=') else {
                bail!("--set-file {expr:?}: expected key=path");
            };
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--set-file {key}: cannot read {path}"))?;
            values::set_file(values, key, text)?;
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    values: ValuesArgs,
    /// High availability: three replicas per service, disruption budgets,
    /// resource limits (the chart's values-ha.yaml, before -f and --set).
    #[arg(long)]
    ha: bool,
    /// The trust anchors' PEM bundle (a new anchor is generated without it).
    #[arg(long, value_name = "FILE")]
    identity_trust_anchors_file: Option<PathBuf>,
    /// The issuer's certificate, signed by a trust anchor.
    #[arg(long, value_name = "FILE")]
    identity_issuer_certificate_file: Option<PathBuf>,
    /// The issuer's private key (PKCS#8 PEM).
    #[arg(long, value_name = "FILE")]
    identity_issuer_key_file: Option<PathBuf>,
    /// How long the certificates the identity service issues last.
    #[arg(long, value_name = "DURATION")]
    identity_issuance_lifetime: Option<String>,
    /// How far back issued certificates start, for skewed clocks.
    #[arg(long, value_name = "DURATION")]
    identity_clock_skew_allowance: Option<String>,
    /// The trust domain of workload identities.
    #[arg(long, value_name = "DOMAIN")]
    identity_trust_domain: Option<String>,
    /// Print only the CustomResourceDefinitions (policy.linkerd.io), to
    /// apply before the control plane, which uses them, as Linkerd's
    /// `linkerd install --crds`.
    #[arg(long)]
    crds: bool,
}

pub fn run(args: InstallArgs, namespace: &str) -> Result<()> {
    let chart = Chart::linkerd()?;
    if args.crds {
        use std::io::Write;
        let crds: Vec<&str> = chart.crds().collect();
        return std::io::stdout()
            .lock()
            .write_all(crds.join("\n---\n").as_bytes())
            .context("cannot write the manifests");
    }
    let values = install_values(&chart, &args, namespace)?;
    let rendered = chart.render(
        &values,
        &Release {
            name: "linkerd".into(),
            namespace: namespace.to_string(),
        },
    )?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(rendered.as_bytes())
        .context("cannot write the manifests")?;
    Ok(())
}

fn install_values(chart: &Chart, args: &InstallArgs, namespace: &str) -> Result<Value> {
    let mut overrides = json!({});
    if args.ha {
        let ha = chart
            .file("values-ha.yaml")
            .context("the chart has no values-ha.yaml")?;
        values::coalesce(
            &mut overrides,
            values::from_yaml("the chart's values-ha.yaml", ha)?,
        );
    }
    let read = |flag: &str, path: &PathBuf| {
        std::fs::read_to_string(path)
            .with_context(|| format!("{flag}: cannot read {}", path.display()))
    };
    if let Some(p) = &args.identity_trust_anchors_file {
        overrides["identityTrustAnchorsPEM"] =
            Value::String(read("--identity-trust-anchors-file", p)?);
    }
    if let Some(p) = &args.identity_issuer_certificate_file {
        overrides["identity"]["issuer"]["tls"]["crtPEM"] =
            Value::String(read("--identity-issuer-certificate-file", p)?);
    }
    if let Some(p) = &args.identity_issuer_key_file {
        overrides["identity"]["issuer"]["tls"]["keyPEM"] =
            Value::String(read("--identity-issuer-key-file", p)?);
    }
    for (flag, value, key) in [
        (
            "--identity-issuance-lifetime",
            &args.identity_issuance_lifetime,
            "issuanceLifetime",
        ),
        (
            "--identity-clock-skew-allowance",
            &args.identity_clock_skew_allowance,
            "clockSkewAllowance",
        ),
    ] {
        if let Some(v) = value {
            parse_duration(v).with_context(|| format!("{flag} {v:?}"))?;
            overrides["identity"]["issuer"][key] = Value::String(v.clone());
        }
    }
    if let Some(d) = &args.identity_trust_domain {
        overrides["identityTrustDomain"] = Value::String(d.clone());
    }
    args.values.apply(&mut overrides)?;

    let mut values = chart.values(overrides)?;
    certificates(&mut values, namespace)?;
    chart.check(&values)?;
    Ok(values)
}

/// Fills in the identity and webhook certificates that were not given, and
/// checks the ones that were: a half-given issuer, or one that does not chain
/// to the anchors, is refused here rather than failing in the cluster.
fn certificates(values: &mut Value, namespace: &str) -> Result<()> {
    let text = |v: &Value, path: &[&str]| {
        path.iter()
            .try_fold(v, |v, k| v.get(*k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let anchors = text(values, &["identityTrustAnchorsPEM"]);
    let crt = text(values, &["identity", "issuer", "tls", "crtPEM"]);
    let key = text(values, &["identity", "issuer", "tls", "keyPEM"]);
    let domain = text(values, &["identityTrustDomain"]);
    let now = time::OffsetDateTime::now_utc();
    match (anchors.is_empty(), crt.is_empty(), key.is_empty()) {
        (true, true, true) => {
            let g = ca::generate(
                &domain,
                Duration::from_secs(10 * 365 * 86400),
                Duration::from_secs(365 * 86400),
                now,
            )?;
            values["identityTrustAnchorsPEM"] = Value::String(g.trust_anchor_pem);
            values["identity"]["issuer"]["tls"]["crtPEM"] = Value::String(g.issuer_pem);
            values["identity"]["issuer"]["tls"]["keyPEM"] = Value::String(g.issuer_key_pem);
        }
        (false, false, false) => {
            let anchors = ca::TrustAnchors::from_pem(&anchors).context("the trust anchors")?;
            ca::Issuer::from_pem(&crt, &key, &anchors, now).context("the identity issuer")?;
        }
        _ => bail!(
            "give the trust anchors, the issuer certificate and the issuer key together \
             (--identity-trust-anchors-file, --identity-issuer-certificate-file, --identity-issuer-key-file), or none of them"
        ),
    }
    // The certificates the API server checks the control plane's webhook
    // and aggregated API with.
    for (key, service) in [
        ("proxyInjector", "linkerd-proxy-injector"),
        ("tap", "linkerd-tap"),
    ] {
        let crt = text(values, &[key, "crtPEM"]);
        let pem_key = text(values, &[key, "keyPEM"]);
        match (crt.is_empty(), pem_key.is_empty()) {
            (true, true) => {
                let service = format!("{service}.{namespace}.svc");
                let s = ca::generate_serving(&[service], Duration::from_secs(365 * 86400), now)?;
                values[key]["crtPEM"] = Value::String(s.cert_pem);
                values[key]["keyPEM"] = Value::String(s.key_pem);
                values[key]["caBundle"] = Value::String(s.ca_pem);
            }
            (false, false) => {}
            _ => bail!("give {key}.crtPEM and {key}.keyPEM together, or neither"),
        }
    }
    Ok(())
}

/// The durations the controller accepts: a number and one of ms, s, m, h.
fn parse_duration(s: &str) -> Result<()> {
    linkerd_duration::parse(s)?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct UninstallArgs {}

/// Prints every object `linkerd install` creates, as much of it as
/// `kubectl delete -f -` needs, in the reverse of the order Helm installs them
/// (the webhook before the Deployments, so a departing injector is asked
/// nothing), and the CRDs last.
/// The objects are those of the installed values (linkerd-config), so
/// that what was left out (`prometheus.enabled=false`) is not listed for a
/// `kubectl delete` that would fail on it.
pub async fn uninstall(target: &crate::api::Target) -> Result<()> {
    let namespace = target.namespace.as_str();
    let chart = Chart::linkerd()?;
    let installed = async {
        let client = target.client().await?;
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, namespace);
        let config = api.get_opt("linkerd-config").await?.ok_or_else(|| {
            anyhow::anyhow!("there is no linkerd-config in namespace {namespace}")
        })?;
        let text = config
            .data
            .as_ref()
            .and_then(|d| d.get("values"))
            .ok_or_else(|| anyhow::anyhow!("linkerd-config has no values"))?;
        let mut overrides = values::from_yaml("linkerd-config's values", text)?;
        // Its certificates are replaced by throwaway ones below.
        for path in [
            &["identityTrustAnchorsPEM"][..],
            &["identity", "issuer", "tls", "crtPEM"],
            &["identity", "issuer", "tls", "keyPEM"],
            &["proxyInjector", "crtPEM"],
            &["proxyInjector", "keyPEM"],
            &["proxyInjector", "caBundle"],
            &["tap", "crtPEM"],
            &["tap", "keyPEM"],
            &["tap", "caBundle"],
        ] {
            let (last, parents) = path.split_last().expect("a path");
            let mut at = &mut overrides;
            for p in parents {
                at = &mut at[*p];
            }
            if let Some(map) = at.as_object_mut() {
                map.remove(*last);
            }
        }
        anyhow::Ok(overrides)
    };
    let mut values = match installed.await {
        Ok(overrides) => chart.values(overrides)?,
        Err(e) => {
            eprintln!(
                "linkerd: listing the chart's default objects ({e:#}); `kubectl delete --ignore-not-found -f -` skips any not there"
            );
            chart.defaults().clone()
        }
    };
    // Throwaway certificates: only the objects' names matter here.
    certificates(&mut values, namespace)?;
    let release = Release {
        name: "linkerd".into(),
        namespace: namespace.to_string(),
    };
    let mut stubs = Vec::new();
    for m in chart.manifests(&values, &release)? {
        let v = &m.object;
        let mut stub = format!(
            "---\napiVersion: {}\nkind: {}\nmetadata:\n  name: {}\n",
            v["apiVersion"].as_str().unwrap_or_default(),
            m.kind(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        );
        if let Some(ns) = v["metadata"]["namespace"].as_str() {
            stub.push_str(&format!("  namespace: {ns}\n"));
        }
        stubs.push(stub);
    }
    stubs.reverse();
    // The CRDs last: deleting one deletes every resource of its kind.
    for text in chart.crds() {
        for doc in text.split("\n---\n") {
            let crd = values::from_yaml("the chart's CRDs", doc)?;
            if let Some(name) = crd["metadata"]["name"].as_str() {
                stubs.push(format!(
                    "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {name}\n"
                ));
            }
        }
    }
    print!("{}", stubs.concat());
    Ok(())
}
