//! `linkerd-controller prometheus-targets`: Kubernetes discovery for a
//! Prometheus built without it. Beside Prometheus in its pod, it writes the
//! scrape configuration's file form once (`--config-only`, as an init
//! container, so Prometheus starts with it) and then keeps each job's
//! targets file current from a watch of the cluster's pods.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    runtime::{WatchStreamExt, reflector, watcher},
};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::sync::watch;

use linkerd_prometheus::{Error, Job, job_targets, jobs, local_config};

#[derive(Debug, thiserror::Error)]
pub enum SdError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SdError + '_ {
    move |source| SdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `out/prometheus.yml`, the file form of the configuration at
/// `source`, and an empty `out/targets/<job>.json` for each job that has
/// none yet; returns the jobs.
pub fn write_config(source: &Path, out: &Path) -> Result<Vec<Job>, SdError> {
    let text = std::fs::read_to_string(source).map_err(io(source))?;
    let config = |source_err| SdError::Config {
        path: source.to_path_buf(),
        source: source_err,
    };
    let jobs = jobs(&text).map_err(config)?;
    let local = local_config(&text, None).map_err(config)?;
    let targets = out.join("targets");
    std::fs::create_dir_all(&targets).map_err(io(&targets))?;
    for job in &jobs {
        let file = targets.join(format!("{}.json", job.name));
        if !file.exists() {
            write_atomically(&file, "[]")?;
        }
    }
    write_atomically(&out.join("prometheus.yml"), &local)?;
    Ok(jobs)
}

/// Prometheus re-reads a file it is told changed: it must never see half of one.
fn write_atomically(path: &Path, content: &str) -> Result<(), SdError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Watches the cluster's pods and rewrites each job's targets file when
/// what it lists changes, at most once per `settle` (a rollout changes
/// many pods at once). Runs until the watch's stream ends.
pub async fn run(
    client: kube::Client,
    jobs: Vec<Job>,
    out: PathBuf,
    settle: Duration,
) -> Result<(), SdError> {
    let (reader, writer) = reflector::store::<Pod>();
    let (changes, mut changed) = watch::channel(0u64);
    let events = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        // Only the spec, status and labels matter here: the cache need not
        // hold every pod's field-manager history.
        .modify(|pod| pod.managed_fields_mut().clear())
        .reflect(writer);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => changes.send_modify(|n| *n += 1),
                Err(e) => tracing::warn!(error = %e, "watching pods failed; retrying"),
            }
        }
    });
    if reader.wait_until_ready().await.is_err() {
        return Ok(());
    }
    tracing::info!(jobs = jobs.len(), "pods listed; writing targets");
    let mut written: Vec<Option<String>> = vec![None; jobs.len()];
    loop {
        let pods = reader.state();
        for (job, last) in jobs.iter().zip(written.iter_mut()) {
            let json = job_targets(job, pods.iter().map(|p| p.as_ref()));
            if last.as_deref() != Some(json.as_str()) {
                let file = out.join("targets").join(format!("{}.json", job.name));
                write_atomically(&file, &json)?;
                tracing::debug!(job = %job.name, "targets written");
                *last = Some(json);
            }
        }
        if changed.changed().await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(settle).await;
        changed.borrow_and_update();
    }
}
