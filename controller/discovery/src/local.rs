//! The local backend: a YAML file describing services and pods, watched for
//! changes, so the mesh runs on one machine with no cluster.
//!
//! The file is the [`Topology`] in YAML (camelCase, as Kubernetes writes it):
//!
//! ```yaml
//! services:
//!   - {name: web, namespace: emojivoto, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
//! pods:
//!   - {name: web-1, namespace: emojivoto, ip: 127.0.1.1, labels: {app: web}, meshed: true,
//!      owner: {kind: Deployment, name: web}, serviceAccount: web}
//! ```

use super::{Discover, Resolution, Target, Topology, kubernetes::KubeDiscovery};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // The cause is part of the message, so it is not also a `source`.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a valid topology: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Clone)]
pub struct LocalDiscovery {
    topology: watch::Receiver<Arc<Topology>>,
    /// Edits that could not be read or parsed and were ignored: what makes
    /// "a bad edit kept the last topology" observable.
    reload_errors: Counter,
    /// The topology's objects, resolved as Kubernetes' are.
    cache: KubeDiscovery,
}

impl LocalDiscovery {
    /// Loads `path`, failing if it cannot be read or parsed, then re-reads it
    /// every `interval`. A change is applied once the file reads the same on
    /// two polls in a row, so a file caught half-written (editors and `>`
    /// truncate first) is never mistaken for a smaller mesh. An edit that
    /// does not parse is logged and the last good topology kept, so a typo
    /// never empties the mesh.
    pub fn load(path: PathBuf, interval: Duration) -> Result<Self, LoadError> {
        let text = read(&path)?;
        let topology = parse(&path, &text)?;
        let (cache, mut feed) = KubeDiscovery::fed(&topology);
        let (tx, rx) = watch::channel(Arc::new(topology));
        let reload_errors = Counter::default();
        let errors = reload_errors.clone();
        tokio::spawn(async move {
            let mut applied = text;
            let mut pending: Option<String> = None;
            loop {
                tokio::time::sleep(interval).await;
                if tx.is_closed() {
                    return;
                }
                let text = match read(&path) {
                    Ok(text) => text,
                    Err(e) => {
                        errors.inc();
                        tracing::warn!("{e}; keeping the last topology");
                        continue;
                    }
                };
                if text == applied {
                    pending = None;
                    continue;
                }
                if pending.as_ref() != Some(&text) {
                    pending = Some(text);
                    continue;
                }
                pending = None;
                match parse(&path, &text) {
                    Ok(topology) => {
                        tracing::info!(path = %path.display(), "topology updated");
                        feed.relist(&topology);
                        tx.send_replace(Arc::new(topology));
                    }
                    Err(e) => {
                        errors.inc();
                        tracing::warn!("{e}; keeping the last topology");
                    }
                }
                applied = text;
            }
        });
        Ok(Self {
            topology: rx,
            reload_errors,
            cache,
        })
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "discovery_topology_reload_errors",
            "Edits of the topology file that could not be read or parsed, and were ignored",
            self.reload_errors.clone(),
        );
    }

    /// The topology as it is now, and as it changes.
    pub fn topology(&self) -> watch::Receiver<Arc<Topology>> {
        self.topology.clone()
    }
}

impl std::fmt::Debug for LocalDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDiscovery")
            .field("topology", &self.topology.borrow())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.to_path_buf(),
        error,
    })
}

pub(crate) fn parse(path: &Path, text: &str) -> Result<Topology, LoadError> {
    serde_saphyr::from_str(text).map_err(|e| LoadError::Parse {
        path: path.to_path_buf(),
        // The parser's first line says what and where; the rest is a snippet.
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    })
}

impl super::profile::Profiles for LocalDiscovery {
    fn profile(&self, namespace: &str, name: &str) -> super::profile::ProfileWatch {
        let key = (namespace.to_string(), name.to_string());
        super::follow(self.topology.clone(), &key, |topology, (ns, name)| {
            super::profile::find(&topology.service_profiles, ns, name)
        })
    }
}

impl Discover for LocalDiscovery {
    fn watch(&self, target: &Target) -> watch::Receiver<Resolution> {
        self.cache.watch(target)
    }

    fn pods(&self) -> Vec<super::Workload> {
        self.cache.pods()
    }

    fn services(&self) -> Vec<super::ServiceEndpoints> {
        self.cache.services()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::Service {
            namespace: "ns".into(),
            name: "web".into(),
            port: 80,
        }
    }

    const ONE_POD: &str = "services: [{name: web, namespace: ns, selector: {app: web}, ports: [{port: 80}]}]\npods: [{name: a, namespace: ns, ip: 10.0.0.1, labels: {app: web}}]\n";
    const TWO_PODS: &str = "services: [{name: web, namespace: ns, selector: {app: web}, ports: [{port: 80}]}]\npods: [{name: a, namespace: ns, ip: 10.0.0.1, labels: {app: web}}, {name: b, namespace: ns, ip: 10.0.0.2, labels: {app: web}}]\n";

    fn count(r: &Resolution) -> usize {
        match r {
            Resolution::Endpoints(e) => e.addrs.len(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn follows_edits_and_survives_bad_ones() {
        let dir = std::env::temp_dir().join(format!("l5d-local-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("topology.yaml");
        std::fs::write(&path, ONE_POD).unwrap();
        let d = LocalDiscovery::load(path.clone(), Duration::from_millis(10)).unwrap();
        let mut rx = d.watch(&target());
        assert_eq!(count(&rx.borrow_and_update()), 1);

        std::fs::write(&path, TWO_PODS).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count(&rx.borrow_and_update()), 2);

        // A broken edit is ignored; the next good one applies.
        std::fs::write(&path, "services: [{name: web").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!rx.has_changed().unwrap());
        std::fs::write(&path, ONE_POD).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count(&rx.borrow_and_update()), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A writer caught between truncating and finishing the file leaves a
    /// shorter, still valid topology for a moment; it must never be applied.
    #[tokio::test]
    async fn half_written_files_are_not_applied() {
        let dir = std::env::temp_dir().join(format!("l5d-local-half-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("topology.yaml");
        std::fs::write(&path, ONE_POD).unwrap();
        let d = LocalDiscovery::load(path.clone(), Duration::from_millis(40)).unwrap();
        let mut rx = d.watch(&target());
        assert_eq!(count(&rx.borrow_and_update()), 1);
        // The service line alone: valid YAML, but no pods.
        let half = TWO_PODS.lines().next().unwrap();
        std::fs::write(&path, half).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        std::fs::write(&path, TWO_PODS).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            count(&rx.borrow_and_update()),
            2,
            "a half-written file was applied"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        let dir = std::env::temp_dir().join(format!("l5d-local-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "pods:\n  - {name: a, namespace: b, ip: not-an-ip}\n").unwrap();
        let err = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async {
                LocalDiscovery::load(path.clone(), Duration::from_secs(1)).unwrap_err()
            })
            .to_string();
        assert!(!err.contains('\n') && err.contains("bad.yaml"), "{err}");
        let missing = dir.join("missing.yaml");
        let err = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { LocalDiscovery::load(missing, Duration::from_secs(1)).unwrap_err() })
            .to_string();
        assert!(err.starts_with("cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
