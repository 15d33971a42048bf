//! The Helm chart in `charts/linkerd`, embedded, and rendered as `helm template`
//! renders it: the single source of the manifests `linkerd install` prints and
//! of the proxy that `linkerd inject` and the proxy injector add to a pod.

#[cfg(any(fuzzing, test))]
pub mod fuzz;
pub mod template;
pub mod values;
pub mod yaml;

use serde_json::{Map, Value, json};

pub use values::ValuesError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/chart_files.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the chart's {file} is broken: {reason}")]
    Broken { file: String, reason: String },
    #[error(transparent)]
    Values(#[from] ValuesError),
    #[error("values don't fit the chart's schema: {0}")]
    Schema(String),
    #[error("rendering the chart failed: {0}")]
    Render(#[from] template::Error),
    #[error("YAML parse error on {file}: {reason}")]
    Manifest { file: String, reason: String },
}

/// Who the chart is rendered for: Helm's `.Release`.
#[derive(Clone, Debug)]
pub struct Release {
    pub name: String,
    pub namespace: String,
}

impl Default for Release {
    fn default() -> Self {
        Release {
            name: "linkerd".into(),
            namespace: "linkerd".into(),
        }
    }
}

pub struct Chart {
    name: String,
    version: String,
    app_version: String,
    defaults: Value,
    schema: Option<Value>,
    templates: template::Templates,
    /// The templates that print manifests, by their path in the chart.
    manifests: Vec<String>,
}

impl Chart {
    /// The chart built into this binary.
    pub fn linkerd() -> Result<Chart, ChartError> {
        Chart::from_files(embedded::FILES.iter().copied())
    }

    fn from_files<'a>(
        files: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<Chart, ChartError> {
        let broken = |file: &str, reason: String| ChartError::Broken {
            file: file.to_string(),
            reason,
        };
        let mut meta = None;
        let mut defaults = Value::Object(Map::new());
        let mut schema = None;
        let mut templates = template::Templates::default();
        let mut sources = Vec::new();
        for (path, text) in files {
            match path {
                "Chart.yaml" => {
                    let m: Value =
                        serde_saphyr::from_str(text).map_err(|e| broken(path, e.to_string()))?;
                    meta = Some(m);
                }
                "values.yaml" => defaults = values::from_yaml("the chart's values.yaml", text)?,
                "values.schema.json" => {
                    schema =
                        Some(serde_json::from_str(text).map_err(|e| broken(path, e.to_string()))?);
                }
                p if p.starts_with("templates/") => sources.push((p.to_string(), text)),
                _ => {}
            }
            templates.add_file(path, text);
        }
        let meta = meta.ok_or_else(|| broken("Chart.yaml", "missing".into()))?;
        let field = |k: &str| {
            meta.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let name = field("name");
        let mut manifests = Vec::new();
        for (path, text) in &sources {
            let full = format!("{name}/{path}");
            templates.add(&full, text)?;
            let base = path.rsplit('/').next().unwrap_or(path);
            if !base.starts_with('_') && !base.eq_ignore_ascii_case("NOTES.txt") {
                manifests.push(full);
            }
        }
        // Helm renders the files in path order before sorting by kind.
        manifests.sort();
        Ok(Chart {
            version: field("version"),
            app_version: field("appVersion"),
            name,
            defaults,
            schema,
            templates,
            manifests,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn app_version(&self) -> &str {
        &self.app_version
    }

    /// The chart's own `values.yaml`.
    pub fn defaults(&self) -> &Value {
        &self.defaults
    }

    /// A file of the chart (`values-ha.yaml`, `files/prometheus.yml`, ...).
    pub fn file(&self, path: &str) -> Option<&'static str> {
        embedded::FILES
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, t)| *t)
    }

    /// The chart's CustomResourceDefinitions (`crds/`, never templated),
    /// which Helm installs before the templates, and `linkerd install
    /// --crds` prints: a manifest cannot create a CRD and use it at once.
    pub fn crds(&self) -> impl Iterator<Item = &'static str> {
        embedded::FILES
            .iter()
            .filter(|(p, _)| p.starts_with("crds/"))
            .map(|(_, t)| *t)
    }

    /// The chart's defaults with `overrides` coalesced onto them, checked
    /// against the chart's schema.
    pub fn values(&self, overrides: Value) -> Result<Value, ChartError> {
        let mut values = self.defaults.clone();
        values::coalesce(&mut values, overrides);
        self.check(&values)?;
        Ok(values)
    }

    /// Checks complete values against the chart's schema.
    pub fn check(&self, values: &Value) -> Result<(), ChartError> {
        match &self.schema {
            Some(schema) => schema::check(schema, values).map_err(ChartError::Schema),
            None => Ok(()),
        }
    }

    /// Helm's top-level object for a render.
    fn context(&self, values: &Value, release: &Release) -> Value {
        json!({
            "Values": values,
            "Release": {
                "Name": release.name,
                "Namespace": release.namespace,
                "Service": "Helm",
                "IsInstall": true,
                "IsUpgrade": false,
                "Revision": 1,
            },
            "Chart": {
                "Name": self.name,
                "Version": self.version,
                "AppVersion": self.app_version,
            },
            "Files": { template::FILES: true },
        })
    }

    /// Renders one named template (a `define` of the chart) with `values` (already
    /// coalesced): how injection builds the proxy from the chart's partials.
    pub fn render_named(
        &self,
        name: &str,
        values: &Value,
        release: &Release,
    ) -> Result<String, ChartError> {
        Ok(self
            .templates
            .render(name, &self.context(values, release))?)
    }

    /// What `helm template RELEASE CHART -n NAMESPACE` prints for `values`
    /// (already coalesced): each manifest as `---`, `# Source: PATH`, its text.
    pub fn render(&self, values: &Value, release: &Release) -> Result<String, ChartError> {
        let mut out = String::new();
        for m in self.manifests(values, release)? {
            out.push_str("---\n# Source: ");
            out.push_str(&m.source);
            out.push('\n');
            out.push_str(&m.text);
            out.push('\n');
        }
        Ok(out)
    }

    /// The rendered manifests, ordered by kind as Helm installs them, then by
    /// file and position.
    pub fn manifests(
        &self,
        values: &Value,
        release: &Release,
    ) -> Result<Vec<Manifest>, ChartError> {
        let ctx = self.context(values, release);
        let mut docs = Vec::new();
        for path in &self.manifests {
            let text = self.templates.render(path, &ctx)?;
            if text.trim().is_empty() {
                continue;
            }
            for doc in split_manifests(&text) {
                let object: Value =
                    serde_saphyr::from_str(doc).map_err(|e| ChartError::Manifest {
                        file: path.clone(),
                        reason: e.to_string().lines().next().unwrap_or_default().to_string(),
                    })?;
                docs.push(Manifest {
                    source: path.clone(),
                    text: doc.to_string(),
                    object,
                });
            }
        }
        docs.sort_by(|a, b| kind_order(a.kind(), b.kind()));
        Ok(docs)
    }
}

/// One rendered object: the template it came from, its text, and its parse.
pub struct Manifest {
    pub source: String,
    pub text: String,
    pub object: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Helm's `SplitManifests`: documents separated by lines starting `---`, each
/// trimmed, empty ones dropped.
fn split_manifests(text: &str) -> Vec<&str> {
    let text = text.trim();
    let mut docs = Vec::new();
    let mut start = 0;
    let mut search = 0;
    loop {
        let at = if search == 0 && text.starts_with("---") {
            Some(0)
        } else {
            text[search..].find("\n---").map(|i| i + search)
        };
        let Some(at) = at else {
            docs.push(&text[start..]);
            break;
        };
        docs.push(&text[start..at]);
        let sep = if at == 0 { 3 } else { at + 4 };
        start = sep + (text[sep..].len() - text[sep..].trim_start().len());
        search = start.max(sep);
    }
    docs.into_iter()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}

/// Helm's `InstallOrder` (3.17, as `helm template` shows it): known kinds in
/// this order, unknown kinds after them by name (webhook configurations are
/// not in Helm's list: they sort among the unknown, by name); equal kinds
/// keep their order (the sort is stable).
fn kind_order(a: &str, b: &str) -> std::cmp::Ordering {
    const ORDER: &[&str] = &[
        "PriorityClass",
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodSecurityPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "SecretList",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleList",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "Role",
        "RoleList",
        "RoleBinding",
        "RoleBindingList",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "APIService",
    ];
    let pos = |k: &str| ORDER.iter().position(|o| *o == k);
    match (pos(a), pos(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

mod schema;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_split_as_helm_splits_them() {
        assert_eq!(
            split_manifests("---\na: 1\n---\nb: 2\n  ---x\n---\n"),
            vec!["a: 1", "b: 2\n  ---x"]
        );
        // The separator's pattern eats the blank lines after it, so a `---` right
        // after them starts the next document rather than separating one.
        assert_eq!(
            split_manifests("a: 1\n---\n\n---\nb: 2"),
            vec!["a: 1", "---\nb: 2"]
        );
        assert_eq!(split_manifests("a: 1\n--- \nb: 2"), vec!["a: 1", "b: 2"]);
    }

    #[test]
    fn kinds_sort_in_install_order() {
        let mut kinds = vec![
            "Deployment",
            "Zed",
            "Namespace",
            "Apple",
            "Secret",
            "Deployment",
        ];
        kinds.sort_by(|a, b| kind_order(a, b));
        assert_eq!(
            kinds,
            [
                "Namespace",
                "Secret",
                "Deployment",
                "Deployment",
                "Apple",
                "Zed"
            ]
        );
    }
}
