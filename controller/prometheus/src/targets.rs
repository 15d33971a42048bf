//! Scrape targets as file discovery reads them, each with the
//! `__meta_kubernetes_*` labels Prometheus' Kubernetes discovery (role `pod`)
//! would give it, so the chart's relabelling applies unchanged: for the pods
//! of a cluster ([`job_targets`]) and for the local mesh's processes
//! ([`proxy_targets`], [`controller_targets`]).

use k8s_openapi::api::core::v1::{Container, Pod};
use std::{collections::BTreeMap, net::SocketAddr};

use super::Job;

type Labels = BTreeMap<String, String>;

/// A Kubernetes label name as Prometheus' service discovery spells it.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `targets/<job>.json` for a job: every port of every container of the
/// pods in its namespaces, as Kubernetes discovery lists them.
pub fn job_targets<'a>(job: &Job, pods: impl IntoIterator<Item = &'a Pod>) -> String {
    let mut groups: Vec<(String, Labels)> = pods
        .into_iter()
        .filter(|pod| match (&job.namespaces, &pod.metadata.namespace) {
            (None, _) => true,
            (Some(names), Some(ns)) => names.contains(ns),
            (Some(_), None) => false,
        })
        .flat_map(pod_targets)
        .collect();
    // A stable order, so an unchanged cluster rewrites nothing.
    groups.sort();
    encode(groups.into_iter())
}

fn encode(groups: impl Iterator<Item = (String, Labels)>) -> String {
    let groups: Vec<serde_json::Value> = groups
        .map(|(target, labels)| serde_json::json!({ "targets": [target], "labels": labels }))
        .collect();
    serde_json::to_string_pretty(&groups).expect("JSON of strings")
}

/// A pod's targets: one per container port, one per container without
/// ports; none before the pod has an IP.
fn pod_targets(pod: &Pod) -> Vec<(String, Labels)> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let Some(ip) = status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) else {
        return Vec::new();
    };
    let meta = &pod.metadata;
    let mut common = Labels::new();
    let mut put = |k: &str, v: &str| {
        common.insert(format!("__meta_kubernetes_{k}"), v.to_string());
    };
    put("namespace", meta.namespace.as_deref().unwrap_or_default());
    put("pod_name", meta.name.as_deref().unwrap_or_default());
    put("pod_ip", ip);
    put("pod_uid", meta.uid.as_deref().unwrap_or_default());
    put("pod_phase", status.phase.as_deref().unwrap_or_default());
    put("pod_host_ip", status.host_ip.as_deref().unwrap_or_default());
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    put("pod_node_name", node.unwrap_or_default());
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    put("pod_ready", if ready { "true" } else { "false" });
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        put("pod_controller_kind", &owner.kind);
        put("pod_controller_name", &owner.name);
    }
    for (k, v) in meta.labels.iter().flatten() {
        let k = sanitize(k);
        put(&format!("pod_label_{k}"), v);
        put(&format!("pod_labelpresent_{k}"), "true");
    }
    for (k, v) in meta.annotations.iter().flatten() {
        let k = sanitize(k);
        put(&format!("pod_annotation_{k}"), v);
        put(&format!("pod_annotationpresent_{k}"), "true");
    }

    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let containers = spec.containers.iter().map(|c| (c, false));
    let inits = spec.init_containers.iter().flatten().map(|c| (c, true));
    let mut targets = Vec::new();
    for (c, init) in containers.chain(inits) {
        let labels = container_labels(&common, c, init);
        let ports = c.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            targets.push((ip.to_string(), labels));
            continue;
        }
        for p in ports {
            let mut labels = labels.clone();
            let mut put = |k: &str, v: String| {
                labels.insert(format!("__meta_kubernetes_pod_container_port_{k}"), v);
            };
            put("name", p.name.clone().unwrap_or_default());
            put("number", p.container_port.to_string());
            put(
                "protocol",
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            );
            // An IPv6 pod address needs brackets before a port.
            let target = if ip.contains(':') {
                format!("[{ip}]:{}", p.container_port)
            } else {
                format!("{ip}:{}", p.container_port)
            };
            targets.push((target, labels));
        }
    }
    targets
}

fn container_labels(common: &Labels, c: &Container, init: bool) -> Labels {
    let mut labels = common.clone();
    labels.insert(
        "__meta_kubernetes_pod_container_name".into(),
        c.name.clone(),
    );
    labels.insert(
        "__meta_kubernetes_pod_container_image".into(),
        c.image.clone().unwrap_or_default(),
    );
    labels.insert(
        "__meta_kubernetes_pod_container_init".into(),
        init.to_string(),
    );
    labels
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

    fn pod(namespace: &str, ip: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-7d9c-x1", "namespace": namespace, "uid": "u1",
                "labels": {"app": "web", "linkerd.io/proxy-deployment": "web"},
                "annotations": {"linkerd.io/inject": "enabled"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d9c", "uid": "u0", "controller": true}],
            },
            "spec": {
                "nodeName": "node-1",
                "initContainers": [{"name": "linkerd-init", "image": "proxy-init:1"}],
                "containers": [
                    {"name": "web", "image": "demo:1",
                     "ports": [{"name": "http", "containerPort": 8080}]},
                    {"name": "linkerd-proxy", "image": "proxy:1", "ports": [
                        {"name": "linkerd-proxy", "containerPort": 4143},
                        {"name": "linkerd-admin", "containerPort": 4191}]},
                ],
            },
            "status": {
                "phase": "Running", "podIP": ip, "hostIP": "198.18.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .unwrap()
    }

    fn groups(json: &str) -> Vec<serde_json::Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn pods_list_as_kubernetes_discovery_lists_them() {
        let job = Job {
            name: "linkerd-proxy".into(),
            namespaces: None,
        };
        let pods = [pod("emojivoto", Some("198.18.0.7"))];
        let g = groups(&job_targets(&job, &pods));
        // One target per port, one for the init container without ports.
        let targets: Vec<&str> = g
            .iter()
            .map(|g| g["targets"][0].as_str().unwrap())
            .collect();
        assert_eq!(
            targets,
            [
                "198.18.0.7",
                "198.18.0.7:4143",
                "198.18.0.7:4191",
                "198.18.0.7:8080"
            ]
        );
        let admin = &g[2]["labels"];
        for (k, v) in [
            ("namespace", "emojivoto"),
            ("pod_name", "web-7d9c-x1"),
            ("pod_ip", "198.18.0.7"),
            ("pod_ready", "true"),
            ("pod_phase", "Running"),
            ("pod_node_name", "node-1"),
            ("pod_controller_kind", "ReplicaSet"),
            ("pod_controller_name", "web-7d9c"),
            ("pod_container_name", "linkerd-proxy"),
            ("pod_container_init", "false"),
            ("pod_container_port_name", "linkerd-admin"),
            ("pod_container_port_number", "4191"),
            ("pod_container_port_protocol", "TCP"),
            ("pod_label_app", "web"),
            ("pod_labelpresent_app", "true"),
            ("pod_label_linkerd_io_proxy_deployment", "web"),
            ("pod_annotation_linkerd_io_inject", "enabled"),
        ] {
            assert_eq!(admin[format!("__meta_kubernetes_{k}")], v, "{k}: {admin}");
        }
        assert_eq!(
            g[0]["labels"]["__meta_kubernetes_pod_container_init"],
            "true"
        );
    }

    #[test]
    fn namespaces_and_addressless_pods_are_left_out() {
        let job = Job {
            name: "linkerd-controller".into(),
            namespaces: Some(vec!["linkerd".into()]),
        };
        let pods = [pod("emojivoto", Some("198.18.0.7")), pod("linkerd", None)];
        assert_eq!(job_targets(&job, &pods), "[]");
        let pods = [pod("linkerd", Some("198.18.0.9"))];
        assert_eq!(groups(&job_targets(&job, &pods)).len(), 4);
    }
}
