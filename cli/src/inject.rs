//! `linkerd inject` and `linkerd uninject`: Kubernetes YAML in (files,
//! directories, stdin; several documents, `List`s), the same YAML out with the
//! proxy added or removed, and a report on stderr.
//!
//! Nothing reaches stdout unless every document was read and injected: a
//! half-injected stream piped into `kubectl apply` would be worse than none.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use linkerd_chart::{Chart, Release, values, yaml};
use linkerd_inject::{self as inject, How, Injector, Report};
use serde_json::{Map, Value};

use crate::api::Target;
use crate::install::ValuesArgs;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Output {
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// Files or directories of YAML or JSON, or - for stdin.
    #[arg(required = true, value_name = "FILE|DIR|-")]
    inputs: Vec<String>,
    /// Add the proxy here rather than annotating the pods for the proxy
    /// injector to add it.
    #[arg(long)]
    manual: bool,
    /// Do not read the installed configuration from the cluster's
    /// linkerd-config: use the chart's values with -f and --set.
    #[arg(long)]
    ignore_cluster: bool,
    #[command(flatten)]
    values: ValuesArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "yaml")]
    output: Output,
    #[command(flatten)]
    overrides: Overrides,
}

/// Proxy settings, written as `config.linkerd.io/*` annotations on each pod
/// template so that the proxy injector (and a later re-injection) sees them.
#[derive(Args, Debug, Default)]
struct Overrides {
    /// The proxy's log filter.
    #[arg(long, value_name = "FILTER")]
    proxy_log_level: Option<String>,
    /// The proxy's CPU request (as Kubernetes quantities: 100m).
    #[arg(long, value_name = "QUANTITY")]
    proxy_cpu_request: Option<String>,
    /// The proxy's CPU limit.
    #[arg(long, value_name = "QUANTITY")]
    proxy_cpu_limit: Option<String>,
    /// The proxy's memory request (20Mi).
    #[arg(long, value_name = "QUANTITY")]
    proxy_memory_request: Option<String>,
    /// The proxy's memory limit.
    #[arg(long, value_name = "QUANTITY")]
    proxy_memory_limit: Option<String>,
    /// The proxy's admin port.
    #[arg(long, value_name = "PORT")]
    admin_port: Option<String>,
    /// Inbound ports not redirected to the proxy.
    #[arg(long, value_name = "PORTS")]
    skip_inbound_ports: Option<String>,
    /// Outbound ports not redirected to the proxy.
    #[arg(long, value_name = "PORTS")]
    skip_outbound_ports: Option<String>,
    /// Ports proxied as opaque TCP.
    #[arg(long, value_name = "PORTS")]
    opaque_ports: Option<String>,
    /// The user the proxy runs as.
    #[arg(long, value_name = "UID")]
    proxy_uid: Option<String>,
    /// The proxy's image (without a tag).
    #[arg(long, value_name = "IMAGE")]
    proxy_image: Option<String>,
    /// The proxy image's tag.
    #[arg(long, value_name = "TAG")]
    proxy_version: Option<String>,
    /// The init container's image (without a tag).
    #[arg(long, value_name = "IMAGE")]
    init_image: Option<String>,
    /// Run the proxy as a native sidecar (Kubernetes 1.29+), so Jobs finish.
    #[arg(long)]
    native_sidecar: bool,
}

impl Overrides {
    fn annotations(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for (flag, annotation) in [
            (&self.proxy_log_level, "config.linkerd.io/proxy-log-level"),
            (
                &self.proxy_cpu_request,
                "config.linkerd.io/proxy-cpu-request",
            ),
            (&self.proxy_cpu_limit, "config.linkerd.io/proxy-cpu-limit"),
            (
                &self.proxy_memory_request,
                "config.linkerd.io/proxy-memory-request",
            ),
            (
                &self.proxy_memory_limit,
                "config.linkerd.io/proxy-memory-limit",
            ),
            (&self.admin_port, "config.linkerd.io/admin-port"),
            (
                &self.skip_inbound_ports,
                "config.linkerd.io/skip-inbound-ports",
            ),
            (
                &self.skip_outbound_ports,
                "config.linkerd.io/skip-outbound-ports",
            ),
            (&self.opaque_ports, "config.linkerd.io/opaque-ports"),
            (&self.proxy_uid, "config.linkerd.io/proxy-uid"),
            (&self.proxy_image, "config.linkerd.io/proxy-image"),
            (&self.proxy_version, "config.linkerd.io/proxy-version"),
            (&self.init_image, "config.linkerd.io/init-image"),
        ] {
            if let Some(v) = flag {
                out.insert(annotation.to_string(), Value::String(v.clone()));
            }
        }
        if self.native_sidecar {
            out.insert(
                "config.beta.linkerd.io/proxy-enable-native-sidecar".into(),
                Value::String("true".into()),
            );
        }
        out
    }
}

#[derive(Args, Debug)]
pub struct UninjectArgs {
    /// Files or directories of YAML or JSON, or - for stdin.
    #[arg(required = true, value_name = "FILE|DIR|-")]
    inputs: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "yaml")]
    output: Output,
}

/// One document read, with where it came from for error messages.
pub(crate) struct Doc {
    source: String,
    pub(crate) value: Value,
}

fn read_inputs(inputs: &[String]) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for input in inputs {
        if input == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
            parse("stdin", &text, &mut docs)?;
            continue;
        }
        let path = Path::new(input);
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {input}"))?;
        let mut files = Vec::new();
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.to_path_buf());
        }
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            parse(&file.display().to_string(), &text, &mut docs)?;
        }
    }
    Ok(docs)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
    Ok(())
}

pub(crate) fn parse(source: &str, text: &str, docs: &mut Vec<Doc>) -> Result<()> {
    // A stream of JSON objects, as `-o json` prints several (and kubectl
    // reads them): YAML would need `---` between them. The fuzzer found
    // `linkerd inject -o json` output that `linkerd inject` refused.
    if text.trim_start().starts_with('{') {
        let values = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{source} is not valid JSON: {e}"))?;
        return add_docs(source, values, docs);
    }
    let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        let first = e.to_string();
        let line = first.lines().next().unwrap_or_default();
        anyhow::anyhow!(
            "{source} is not valid YAML: {}",
            line.trim_start_matches("error: ")
        )
    })?;
    add_docs(source, values, docs)
}

fn add_docs(source: &str, values: Vec<Value>, docs: &mut Vec<Doc>) -> Result<()> {
    for (i, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        if !value.is_object() || value.get("kind").and_then(Value::as_str).is_none() {
            bail!(
                "{source}: document {} is not a Kubernetes object (it has no kind)",
                i + 1
            );
        }
        docs.push(Doc {
            source: source.to_string(),
            value,
        });
    }
    Ok(())
}

fn print_docs(docs: &[Doc], output: Output) -> Result<()> {
    let out = render_docs(docs, output)?;
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("cannot write the output")?;
    Ok(())
}

pub(crate) fn render_docs(docs: &[Doc], output: Output) -> Result<String> {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        match output {
            Output::Yaml => {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&yaml::to_string(&doc.value));
            }
            Output::Json => {
                out.push_str(&serde_json::to_string_pretty(&doc.value)?);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn print_reports(reports: &[Report]) {
    let mut text = String::from("\n");
    for r in reports {
        text.push_str(&format!("{} \"{}\" {}\n", r.kind, r.name, r.outcome.verb()));
        for w in &r.warnings {
            text.push_str(&format!("‼ {w}\n"));
        }
    }
    text.push('\n');
    eprint!("{text}");
}

/// The values injection renders the proxy with: the cluster's linkerd-config
/// (only needed to add the proxy), or with --ignore-cluster the chart's.
async fn installed_values(args: &InjectArgs, chart: &Chart, target: &Target) -> Result<Value> {
    let mut overrides = Value::Object(Map::new());
    if args.manual && !args.ignore_cluster {
        let client = target.client().await.context(
            "cannot reach the cluster for linkerd-config; --ignore-cluster injects with the chart's values",
        )?;
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, &target.namespace);
        let config = api.get("linkerd-config").await.with_context(|| {
            format!(
                "cannot read linkerd-config in namespace {}; is the control plane installed? \
                 (--ignore-cluster injects with the chart's values)",
                target.namespace
            )
        })?;
        let text = config
            .data
            .as_ref()
            .and_then(|d| d.get("values"))
            .context("linkerd-config has no values")?;
        overrides = values::from_yaml("linkerd-config's values", text)?;
    }
    args.values.apply(&mut overrides)?;
    Ok(chart.values(overrides)?)
}

pub async fn inject(args: InjectArgs, target: &Target) -> Result<()> {
    let mut docs = read_inputs(&args.inputs)?;
    let chart = Chart::linkerd()?;
    let values = installed_values(&args, &chart, target).await?;
    let injector = Injector::new(
        std::sync::Arc::new(chart),
        values,
        Release {
            name: "linkerd".into(),
            namespace: target.namespace.clone(),
        },
        format!("linkerd/cli {}", env!("CARGO_PKG_VERSION")),
    );
    let how = How {
        manual: args.manual,
        annotations: args.overrides.annotations(),
    };
    let mut reports = Vec::new();
    for doc in &mut docs {
        let r = injector
            .inject(&mut doc.value, &how)
            .with_context(|| doc.source.clone())?;
        reports.extend(r);
    }
    print_docs(&docs, args.output)?;
    print_reports(&reports);
    Ok(())
}

pub fn uninject(args: UninjectArgs) -> Result<()> {
    let mut docs = read_inputs(&args.inputs)?;
    let mut reports = Vec::new();
    for doc in &mut docs {
        reports.extend(inject::uninject(&mut doc.value));
    }
    print_docs(&docs, args.output)?;
    print_reports(&reports);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/inject_yaml.rs: `-o json` prints one
    /// object after another, which read as YAML is one broken document.
    #[test]
    fn reads_back_what_it_prints_as_json() {
        let docs = vec![
            Doc {
                source: "a".into(),
                value: serde_json::json!({"kind": "Namespace", "metadata": {"name": "a"}}),
            },
            Doc {
                source: "b".into(),
                value: serde_json::json!({"kind": "Service", "metadata": {"name": "b"}}),
            },
        ];
        for output in [Output::Yaml, Output::Json] {
            let printed = render_docs(&docs, output).unwrap();
            let mut again = Vec::new();
            parse("printed", &printed, &mut again).unwrap();
            let values: Vec<_> = again.iter().map(|d| &d.value).collect();
            assert_eq!(values, [&docs[0].value, &docs[1].value], "{output:?}");
        }
        let mut none = Vec::new();
        let e = parse("in.json", "{\"kind\": \"Pod\"} {", &mut none).unwrap_err();
        assert!(
            e.to_string().starts_with("in.json is not valid JSON: "),
            "{e}"
        );
    }
}
