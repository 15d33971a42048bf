//! Prometheus for the mesh. The chart's scrape configuration
//! (`charts/linkerd/files/prometheus.yml`) is the one source; it discovers
//! pods through Kubernetes. Where that discovery is not available (Debian's
//! Prometheus is built without it; the local mesh has no Kubernetes) the
//! same configuration runs in its file form ([`local_config`]) with targets
//! that carry the `__meta_kubernetes_*` labels Kubernetes would give them
//! ([`targets`]), so every label Linkerd's queries use comes from the same
//! relabelling. In a cluster, the controller's `prometheus-targets` keeps
//! those files current from a watch of the pods.

mod config;
mod targets;

pub use config::{Error, Job, jobs, local_config};
pub use targets::{ControllerTarget, ProxyTarget, controller_targets, job_targets, proxy_targets};

/// The chart's configuration: the one source.
pub const CONFIG: &str = include_str!("../../../charts/linkerd/files/prometheus.yml");

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
