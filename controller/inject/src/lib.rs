//! Injection: adds the proxy to a pod template, the one implementation behind
//! `linkerd inject`, `linkerd uninject` and the proxy injector webhook.
//!
//! The proxy, its init container and their volumes come from the chart's
//! `_proxy.tpl` partials, rendered with the installed values overridden by the
//! namespace's and then the pod's `config.linkerd.io/*` annotations, so an
//! injected workload gets exactly what the control plane's own pods get.

mod annotations;

use serde_json::{Map, Value};

use linkerd_chart::{Chart, ChartError, Release};

pub use annotations::{AnnotationError, OVERRIDES};

/// The annotation that opts a namespace or pod in or out.
pub const INJECT: &str = "linkerd.io/inject";
pub const CREATED_BY: &str = "linkerd.io/created-by";
const PROXY: &str = "linkerd-proxy";
const INIT: &str = "linkerd-init";
const VOLUMES: [&str; 3] = [
    "linkerd-proxy-init-xtables-lock",
    "linkerd-identity-end-entity",
    "linkerd-identity-token",
];
/// Annotations and labels injection writes, which uninjection removes.
const INJECTED_ANNOTATIONS: [&str; 4] = [
    CREATED_BY,
    "linkerd.io/proxy-version",
    "linkerd.io/trust-root-sha256",
    INJECT,
];
const INJECTED_LABELS: [&str; 1] = ["linkerd.io/control-plane-ns"];
const WORKLOAD_LABEL_PREFIX: &str = "linkerd.io/proxy-";
/// Sidecars of other meshes: a pod cannot be in two.
const FOREIGN_SIDECARS: [(&str, &str); 3] = [
    ("istio-proxy", "Istio"),
    ("istio-init", "Istio"),
    ("consul-dataplane", "Consul"),
];

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("{kind} {name:?} cannot be injected: {reason}")]
    Refused {
        kind: String,
        name: String,
        reason: String,
    },
    #[error("{kind} {name:?}: {reason}")]
    Invalid {
        kind: String,
        name: String,
        reason: String,
    },
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// What injection did to one object, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Lower-case kind, as `kubectl` names it: `deployment`.
    pub kind: String,
    pub name: String,
    pub outcome: Outcome,
    /// `‼` lines: things that work but that the user should know.
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The proxy was added (or, in annotation mode, the pod template annotated).
    Injected,
    /// A namespace was annotated.
    Annotated,
    /// Not a kind that runs pods: passed through unchanged.
    Skipped,
    Uninjected,
    /// Uninject found nothing to remove.
    Unchanged,
}

impl Outcome {
    pub fn verb(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Annotated => "annotated",
            Outcome::Skipped => "skipped",
            Outcome::Uninjected => "uninjected",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// How to inject.
#[derive(Clone, Debug, Default)]
pub struct How {
    /// Add the proxy itself (`--manual`); otherwise only annotate the pod
    /// template `linkerd.io/inject: enabled` and let the webhook add it.
    pub manual: bool,
    /// `config.linkerd.io/*` annotations to set on every pod template (from
    /// the CLI's flags), kept on the workload so that re-injection and the
    /// webhook see them.
    pub annotations: Map<String, Value>,
}

pub struct Injector {
    chart: std::sync::Arc<Chart>,
    /// The installed values (the cluster's `linkerd-config`, or the chart's).
    values: Value,
    release: Release,
    created_by: String,
}

/// Where a kind keeps its pod template.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

fn get_mut<'v>(v: &'v mut Value, path: &[&str]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(*k))
}

/// `obj[key]` as a map, made one if missing (or null).
fn map_at<'v>(obj: &'v mut Value, key: &str) -> &'v mut Map<String, Value> {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = Value::Object(Map::new());
    }
    obj[key].as_object_mut().expect("made a map above")
}

fn list_at<'v>(obj: &'v mut Value, key: &str) -> &'v mut Vec<Value> {
    if !obj.get(key).is_some_and(Value::is_array) {
        obj[key] = Value::Array(Vec::new());
    }
    obj[key].as_array_mut().expect("made a list above")
}

/// Drops `obj[key]` when it is an empty map or list, so that uninjection
/// gives back what had none.
fn drop_if_empty(obj: &mut Value, key: &str) {
    let empty = match obj.get(key) {
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if empty && let Some(m) = obj.as_object_mut() {
        m.remove(key);
    }
}

fn kind_and_name(obj: &Value) -> (String, String) {
    (
        obj.get("kind")
            .and_then(Value::as_str)
            .unwrap_or("object")
            .to_string(),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .or_else(|| {
                obj.pointer("/metadata/generateName")
                    .and_then(Value::as_str)
            })
            .unwrap_or_default()
            .to_string(),
    )
}

pub fn is_injected(spec: &Value) -> bool {
    let named = |list: &str, name: &str| {
        spec.get(list).and_then(Value::as_array).is_some_and(|l| {
            l.iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(name))
        })
    };
    named("containers", PROXY) || named("initContainers", PROXY)
}

impl Injector {
    pub fn new(
        chart: std::sync::Arc<Chart>,
        values: Value,
        release: Release,
        created_by: impl Into<String>,
    ) -> Self {
        Injector {
            chart,
            values,
            release,
            created_by: created_by.into(),
        }
    }

    pub fn values(&self) -> &Value {
        &self.values
    }

    /// Injects one object of any kind in place. A `List` is injected item by
    /// item: one report per item.
    pub fn inject(&self, obj: &mut Value, how: &How) -> Result<Vec<Report>, InjectError> {
        let (kind, name) = kind_and_name(obj);
        if kind == "List" {
            let mut reports = Vec::new();
            if let Some(items) = obj.get_mut("items").and_then(Value::as_array_mut) {
                for item in items {
                    reports.extend(self.inject(item, how)?);
                }
            }
            return Ok(reports);
        }
        let lower = kind.to_lowercase();
        if kind == "Namespace" {
            annotate(obj, INJECT, "enabled");
            for (k, v) in &how.annotations {
                annotate(obj, k, v.as_str().unwrap_or_default());
            }
            return Ok(vec![report(lower, name, Outcome::Annotated, Vec::new())]);
        }
        let Some(path) = template_path(&kind) else {
            return Ok(vec![report(lower, name, Outcome::Skipped, Vec::new())]);
        };
        let refuse = |reason: String| InjectError::Refused {
            kind: lower.clone(),
            name: name.clone(),
            reason,
        };
        let template =
            get_mut(obj, path).ok_or_else(|| refuse(format!("it has no {}", path.join("."))))?;
        if !template.is_object() {
            return Err(refuse(format!("its {} is not a map", path.join("."))));
        }
        for (k, v) in &how.annotations {
            annotate(template, k, v.as_str().unwrap_or_default());
        }
        let spec = template.get("spec").cloned().unwrap_or(Value::Null);
        refusals(&spec).map_err(|r| refuse(r.to_string()))?;
        let mut warnings = Vec::new();
        if how.manual {
            warnings = self.add_proxy(template, &Map::new(), &kind, &name)?;
        } else {
            // Checked now: the webhook would otherwise skip the pod, silently.
            annotations::apply(&self.values, &Map::new(), template_annotations(template)).map_err(
                |e| InjectError::Invalid {
                    kind: lower.clone(),
                    name: name.clone(),
                    reason: e.to_string(),
                },
            )?;
            warnings.extend(unknown_annotations(
                template_annotations(template),
                &Map::new(),
                &lower,
                &name,
            ));
            annotate(template, INJECT, "enabled");
        }
        if matches!(kind.as_str(), "Job" | "CronJob")
            && !self.native_sidecar(template, &Map::new()).unwrap_or(false)
        {
            warnings.push(format!(
                "{lower} \"{name}\": its pods will not complete while the proxy runs beside them; \
                 annotate them config.beta.linkerd.io/proxy-enable-native-sidecar: \"true\" (Kubernetes 1.29+)"
            ));
        }
        Ok(vec![report(lower, name, Outcome::Injected, warnings)])
    }

    fn native_sidecar(
        &self,
        template: &Value,
        namespace: &Map<String, Value>,
    ) -> Result<bool, AnnotationError> {
        let values = annotations::apply(&self.values, namespace, template_annotations(template))?;
        Ok(values
            .pointer("/proxy/nativeSidecar")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    /// Adds the proxy, its init container, volumes, annotations and labels to a
    /// pod template (`metadata` and `spec`), replacing any earlier injection.
    /// `namespace` holds the namespace's annotations, which the pod's override.
    pub fn add_proxy(
        &self,
        template: &mut Value,
        namespace: &Map<String, Value>,
        kind: &str,
        name: &str,
    ) -> Result<Vec<String>, InjectError> {
        let lower = kind.to_lowercase();
        let invalid = |reason: String| InjectError::Invalid {
            kind: lower.clone(),
            name: name.to_string(),
            reason,
        };
        let pod = template_annotations(template);
        let mut warnings = unknown_annotations(pod, namespace, &lower, name);
        let values =
            annotations::apply(&self.values, namespace, pod).map_err(|e| invalid(e.to_string()))?;
        self.chart
            .check(&values)
            .map_err(|e| invalid(e.to_string()))?;
        if values
            .get("identityTrustAnchorsPEM")
            .and_then(Value::as_str)
            .is_none_or(|p| p.trim().is_empty())
        {
            return Err(invalid(
                "the trust anchors are unknown: they come from the cluster's linkerd-config, \
                 or from --set-file identityTrustAnchorsPEM=FILE with --ignore-cluster"
                    .into(),
            ));
        }

        remove_proxy(template, false);
        let render = |partial: &str| -> Result<Value, InjectError> {
            let text = self.chart.render_named(partial, &values, &self.release)?;
            serde_saphyr::from_str::<Value>(&text).map_err(|e| {
                InjectError::Chart(ChartError::Manifest {
                    file: partial.to_string(),
                    reason: e.to_string(),
                })
            })
        };
        let proxy = first(render("linkerd.proxy")?);
        let init = first(render("linkerd.proxy-init")?);
        let volumes = render("linkerd.proxy-volumes")?;
        let added_annotations = render("linkerd.proxy-annotations")?;
        let added_labels = render("linkerd.proxy-labels")?;
        let native = values
            .pointer("/proxy/nativeSidecar")
            .and_then(Value::as_bool)
            == Some(true);

        let spec = map_at_value(template, "spec");
        if let Some(ports) = udp_ports(spec) {
            warnings.push(format!(
                "{lower} \"{name}\": UDP port {ports} is not proxied (the mesh carries TCP only)"
            ));
        }
        let inits = list_at(spec, "initContainers");
        if native {
            inits.insert(0, proxy);
            inits.insert(0, init);
        } else {
            inits.insert(0, init);
            list_at(spec, "containers").insert(0, proxy);
        }
        if let Value::Array(vs) = volumes {
            list_at(spec, "volumes").extend(vs);
        }

        let meta = map_at_value(template, "metadata");
        let anns = map_at(meta, "annotations");
        if let Value::Object(a) = added_annotations {
            anns.extend(a.into_iter().map(|(k, v)| (k, Value::String(scalar(&v)))));
        }
        anns.insert(CREATED_BY.into(), Value::String(self.created_by.clone()));
        let labels = map_at(meta, "labels");
        if let Value::Object(l) = added_labels {
            labels.extend(l.into_iter().map(|(k, v)| (k, Value::String(scalar(&v)))));
        }
        if kind != "Pod" && !name.is_empty() {
            labels.insert(
                format!("{WORKLOAD_LABEL_PREFIX}{lower}"),
                Value::String(name.to_string()),
            );
        }
        Ok(warnings)
    }
}

fn unknown_annotations(
    pod: &Map<String, Value>,
    namespace: &Map<String, Value>,
    kind: &str,
    name: &str,
) -> Vec<String> {
    let mut keys: Vec<&String> = pod
        .keys()
        .chain(namespace.keys())
        .filter(|k| annotations::is_config(k) && !annotations::known(k))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| format!("{kind} \"{name}\": unknown annotation {k} is ignored"))
        .collect()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn first(v: Value) -> Value {
    match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    }
}

fn report(kind: String, name: String, outcome: Outcome, warnings: Vec<String>) -> Report {
    Report {
        kind,
        name,
        outcome,
        warnings,
    }
}

fn annotate(obj: &mut Value, key: &str, value: &str) {
    map_at(map_at_value(obj, "metadata"), "annotations")
        .insert(key.to_string(), Value::String(value.to_string()));
}

fn map_at_value<'v>(obj: &'v mut Value, key: &str) -> &'v mut Value {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = Value::Object(Map::new());
    }
    &mut obj[key]
}

fn template_annotations(template: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Why a pod cannot take the proxy, if it cannot.
/// Why a pod cannot be meshed at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "it uses hostNetwork: true, where the proxy's iptables rules would capture the node's traffic"
    )]
    HostNetwork,
    #[error("it already has {mesh}'s {container} container; a pod can be in one mesh only")]
    OtherMesh {
        mesh: &'static str,
        container: &'static str,
    },
}

pub fn refusals(spec: &Value) -> Result<(), Refusal> {
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Err(Refusal::HostNetwork);
    }
    for list in ["containers", "initContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            if let Some((container, mesh)) = FOREIGN_SIDECARS.iter().find(|(n, _)| *n == name) {
                return Err(Refusal::OtherMesh { mesh, container });
            }
        }
    }
    Ok(())
}

fn udp_ports(spec: &Value) -> Option<String> {
    let ports: Vec<String> = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(|p| p.get("protocol").and_then(Value::as_str) == Some("UDP"))
        .filter_map(|p| p.get("containerPort").map(|n| n.to_string()))
        .collect();
    (!ports.is_empty()).then(|| ports.join(", "))
}

/// Removes what injection adds to a pod template; true if there was any.
/// `opt_in` removes `linkerd.io/inject` too, which annotation-mode injection
/// adds (but which a user may have written, so re-injection keeps it).
pub fn remove_proxy(template: &mut Value, opt_in: bool) -> bool {
    let mut changed = false;
    if let Some(spec) = template.get_mut("spec") {
        for (list, names) in [
            ("containers", &[PROXY][..]),
            ("initContainers", &[PROXY, INIT][..]),
            ("volumes", &VOLUMES[..]),
        ] {
            if let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) {
                let before = items.len();
                items.retain(|c| {
                    !names.contains(&c.get("name").and_then(Value::as_str).unwrap_or_default())
                });
                changed |= items.len() != before;
            }
            if list != "containers" {
                drop_if_empty(spec, list);
            }
        }
    }
    if let Some(meta) = template.get_mut("metadata") {
        if let Some(anns) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            for k in INJECTED_ANNOTATIONS
                .iter()
                .filter(|k| opt_in || **k != INJECT)
            {
                changed |= anns.remove(*k).is_some();
            }
        }
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            let before = labels.len();
            labels.retain(|k, _| {
                !INJECTED_LABELS.contains(&k.as_str()) && !k.starts_with(WORKLOAD_LABEL_PREFIX)
            });
            changed |= labels.len() != before;
        }
        drop_if_empty(meta, "annotations");
        drop_if_empty(meta, "labels");
    }
    drop_if_empty(template, "metadata");
    changed
}

/// `linkerd uninject` of one object: the proxy and everything injection added
/// removed from its pod template (or a namespace's inject annotation).
pub fn uninject(obj: &mut Value) -> Vec<Report> {
    let (kind, name) = kind_and_name(obj);
    if kind == "List" {
        return obj
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .flat_map(uninject)
            .collect();
    }
    let lower = kind.to_lowercase();
    let changed = if kind == "Namespace" {
        let removed = obj
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
            .is_some_and(|a| a.remove(INJECT).is_some());
        if let Some(meta) = obj.get_mut("metadata") {
            drop_if_empty(meta, "annotations");
        }
        removed
    } else if let Some(path) = template_path(&kind) {
        get_mut(obj, path).is_some_and(|t| remove_proxy(t, true))
    } else {
        return vec![report(lower, name, Outcome::Skipped, Vec::new())];
    };
    let outcome = if changed {
        Outcome::Uninjected
    } else {
        Outcome::Unchanged
    };
    vec![report(lower, name, outcome, Vec::new())]
}
