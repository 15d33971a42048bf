//! The scrape configuration's two forms: the chart's, with Kubernetes
//! discovery, and the file-discovery form that any Prometheus runs (Debian's
//! is built without Kubernetes discovery), with the same relabelling.

use serde::Deserialize;

const BEGIN: &str = "# sd: begin";
const END: &str = "# sd: end";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the scrape configuration is not valid YAML: {0}")]
    Yaml(String),
    #[error("job {job}: Kubernetes discovery of role `{role}` has no file form (only `pod`)")]
    Role { job: String, role: String },
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

/// What a job's Kubernetes discovery selects: pods, in these namespaces
/// (all when `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub namespaces: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Source {
    #[serde(default)]
    scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Deserialize)]
struct ScrapeConfig {
    job_name: String,
    #[serde(default)]
    kubernetes_sd_configs: Vec<KubernetesSd>,
}

#[derive(Deserialize)]
struct KubernetesSd {
    role: String,
    #[serde(default)]
    namespaces: Option<Namespaces>,
}

#[derive(Deserialize)]
struct Namespaces {
    #[serde(default)]
    names: Vec<String>,
}

/// The jobs of `source` that discover pods through Kubernetes, which the
/// file form needs targets for.
pub fn jobs(source: &str) -> Result<Vec<Job>, Error> {
    let source: Source = serde_saphyr::from_str(source).map_err(|e| Error::Yaml(e.to_string()))?;
    let mut jobs = Vec::new();
    for sc in source.scrape_configs {
        if sc.kubernetes_sd_configs.is_empty() {
            continue;
        }
        let mut namespaces: Option<Vec<String>> = Some(Vec::new());
        for sd in sc.kubernetes_sd_configs {
            if sd.role != "pod" {
                return Err(Error::Role {
                    job: sc.job_name,
                    role: sd.role,
                });
            }
            match (sd.namespaces.map(|n| n.names), namespaces.as_mut()) {
                (Some(names), Some(all)) if !names.is_empty() => all.extend(names),
                _ => namespaces = None,
            }
        }
        jobs.push(Job {
            name: sc.job_name,
            namespaces,
        });
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_the_kubernetes_discovered_ones() {
        let jobs = jobs(crate::CONFIG).unwrap();
        assert_eq!(
            jobs,
            [
                Job {
                    name: "linkerd-controller".into(),
                    namespaces: Some(vec!["linkerd".into()]),
                },
                Job {
                    name: "linkerd-proxy".into(),
                    namespaces: None,
                },
            ]
        );
        let endpoints = "scrape_configs:\n  - job_name: x\n    kubernetes_sd_configs:\n      - role: endpoints\n";
        assert_eq!(
            super::jobs(endpoints).unwrap_err().to_string(),
            "job x: Kubernetes discovery of role `endpoints` has no file form (only `pod`)"
        );
        assert!(matches!(
            super::jobs("scrape_configs: [").unwrap_err(),
            Error::Yaml(_)
        ));
    }
}
