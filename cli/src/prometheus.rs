//! The local mesh's Prometheus: the chart's scrape configuration with
//! Kubernetes discovery swapped for files, and the files, whose targets carry
//! the `__meta_kubernetes_*` labels Kubernetes would give the same pods. The
//! relabelling, and so every label Linkerd's queries use, is the chart's own.

use std::{collections::BTreeMap, net::SocketAddr};

/// The chart's configuration: the one source.
pub const CONFIG: &str = include_str!("../../charts/linkerd/files/prometheus.yml");

const BEGIN: &str = "# sd: begin";
const END: &str = "# sd: end";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("line {0}: a `{BEGIN}` marker without a job before it")]
    NoJob(usize),
    #[error("line {0}: a `{BEGIN}` marker without its `{END}`")]
    Unclosed(usize),
}

/// `source` with each marked discovery block replaced by file discovery of
/// `targets/<job>.json` (relative to the configuration file), and the
/// scrape interval and timeout set to `interval` (e.g. `5s`) when given.
pub fn local_config(source: &str, interval: Option<&str>) -> Result<String, Error> {
    let mut out = String::with_capacity(source.len());
    let mut job: Option<&str> = None;
    let mut lines = source.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- job_name:") {
            job = Some(name.trim());
        }
        if trimmed == BEGIN {
            let job = job.ok_or(Error::NoJob(n + 1))?;
            let indent = &line[..line.len() - trimmed.len()];
            loop {
                match lines.next() {
                    Some((_, l)) if l.trim_start() == END => break,
                    Some(_) => {}
                    None => return Err(Error::Unclosed(n + 1)),
                }
            }
            out.push_str(&format!(
                "{indent}file_sd_configs:\n{indent}  - files: ['targets/{job}.json']\n{indent}    refresh_interval: 2s\n"
            ));
            continue;
        }
        // A shorter interval takes the timeout down with it: Prometheus
        // refuses a timeout longer than the interval.
        let key = ["scrape_interval:", "scrape_timeout:"]
            .into_iter()
            .find(|k| trimmed.starts_with(k));
        match (interval, key) {
            (Some(i), Some(key)) => {
                let indent = &line[..line.len() - trimmed.len()];
                out.push_str(&format!("{indent}{key} {i}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// A local pod's proxy, as Prometheus should see it.
#[derive(Clone, Debug)]
pub struct ProxyTarget {
    /// The proxy's admin address.
    pub admin: SocketAddr,
    pub namespace: String,
    pub pod: String,
    /// The pod's owner, e.g. (`deployment`, `web`).
    pub owner: Option<(String, String)>,
    /// The pod's own labels.
    pub labels: BTreeMap<String, String>,
}

/// A Kubernetes label name as Prometheus' service discovery spells it.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `targets/linkerd-proxy.json`: each proxy with the labels the Kubernetes
/// discovery of its pod would produce.
pub fn proxy_targets(targets: &[ProxyTarget]) -> String {
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|t| {
            let mut labels = BTreeMap::from([
                (
                    "__meta_kubernetes_namespace".to_string(),
                    t.namespace.clone(),
                ),
                ("__meta_kubernetes_pod_name".to_string(), t.pod.clone()),
                (
                    "__meta_kubernetes_pod_container_name".to_string(),
                    "linkerd-proxy".to_string(),
                ),
                (
                    "__meta_kubernetes_pod_container_port_name".to_string(),
                    "linkerd-admin".to_string(),
                ),
                (
                    "__meta_kubernetes_pod_label_linkerd_io_control_plane_ns".to_string(),
                    "linkerd".to_string(),
                ),
            ]);
            for (k, v) in &t.labels {
                labels.insert(
                    format!("__meta_kubernetes_pod_label_{}", sanitize(k)),
                    v.clone(),
                );
            }
            if let Some((kind, name)) = &t.owner {
                labels.insert(
                    format!(
                        "__meta_kubernetes_pod_label_linkerd_io_proxy_{}",
                        sanitize(kind)
                    ),
                    name.clone(),
                );
            }
            serde_json::json!({ "targets": [t.admin.to_string()], "labels": labels })
        })
        .collect();
    serde_json::to_string_pretty(&groups).expect("JSON of strings")
}

/// A local control-plane service's admin server, as Prometheus should see it.
#[derive(Clone, Debug)]
pub struct ControllerTarget {
    pub admin: SocketAddr,
    /// The service's name (`destination`, `identity`, ...).
    pub component: String,
}

/// `targets/linkerd-controller.json`: each control-plane admin server with
/// the labels its pod's `admin-http` port would have in the chart.
pub fn controller_targets(targets: &[ControllerTarget]) -> String {
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|t| {
            let labels = BTreeMap::from([
                ("__meta_kubernetes_namespace", "linkerd".to_string()),
                (
                    "__meta_kubernetes_pod_name",
                    format!("linkerd-{}-5d8f9c-0", t.component),
                ),
                ("__meta_kubernetes_pod_container_name", t.component.clone()),
                (
                    "__meta_kubernetes_pod_container_port_name",
                    "admin-http".to_string(),
                ),
                (
                    "__meta_kubernetes_pod_label_linkerd_io_control_plane_component",
                    t.component.clone(),
                ),
            ]);
            serde_json::json!({ "targets": [t.admin.to_string()], "labels": labels })
        })
        .collect();
    serde_json::to_string_pretty(&groups).expect("JSON of strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_blocks_become_files() {
        let local = local_config(CONFIG, Some("1s")).unwrap();
        assert!(
            !local
                .lines()
                .any(|l| l.trim_start().starts_with("kubernetes_sd_configs:")),
            "{local}"
        );
        assert!(local.contains("files: ['targets/linkerd-proxy.json']"));
        assert!(local.contains("files: ['targets/linkerd-controller.json']"));
        assert!(local.contains("  scrape_interval: 1s\n"));
        // The relabelling is untouched.
        assert!(local.contains("regex: ^linkerd-proxy;linkerd-admin;linkerd$"));
        let unclosed =
            "scrape_configs:\n  - job_name: x\n    # sd: begin\n    kubernetes_sd_configs: []\n";
        assert_eq!(local_config(unclosed, None), Err(Error::Unclosed(3)));
        assert_eq!(local_config("# sd: begin\n", None), Err(Error::NoJob(1)));
    }

    #[test]
    fn targets_carry_kubernetes_labels() {
        let json = proxy_targets(&[ProxyTarget {
            admin: "127.0.0.10:4191".parse().unwrap(),
            namespace: "emojivoto".into(),
            pod: "web-1".into(),
            owner: Some(("deployment".into(), "web".into())),
            labels: BTreeMap::from([("app.kubernetes.io/name".into(), "web".into())]),
        }]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let labels = &v[0]["labels"];
        assert_eq!(v[0]["targets"][0], "127.0.0.10:4191");
        assert_eq!(
            labels["__meta_kubernetes_pod_label_linkerd_io_proxy_deployment"],
            "web"
        );
        assert_eq!(
            labels["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
            "web"
        );
    }
}
