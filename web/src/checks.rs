//! The control-plane page's checks. In a cluster they are `linkerd check`'s
//! own (the CLI's library), run through the Kubernetes API with the web
//! server's ServiceAccount; in the local mesh, which has no Kubernetes API,
//! each control-plane component is asked whether it is ready. Either way the
//! page gets Linkerd's check JSON.

use crate::server::Web;
use linkerd_healthcheck::{self as healthcheck, Check, Output, Report};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    Kubernetes,
    Local,
}

pub(crate) enum Checks {
    Kubernetes,
    Local(Vec<(String, SocketAddr)>),
}

impl Checks {
    pub(crate) fn new(mode: Mode, components: Vec<(String, SocketAddr)>) -> anyhow::Result<Self> {
        match mode {
            Mode::Kubernetes if components.is_empty() => Ok(Checks::Kubernetes),
            Mode::Kubernetes => anyhow::bail!("--component is for --checks local"),
            Mode::Local => Ok(Checks::Local(components)),
        }
    }
}

/// `NAME=HOST:PORT`.
pub(crate) fn parse_component(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| "not NAME=HOST:PORT".to_string())?;
    let addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an address such as 127.0.0.1:9990"))?;
    if name.is_empty() {
        return Err("the component has no name".into());
    }
    Ok((name.to_string(), addr))
}

const VERSION: Check = Check::new(
    "can retrieve the control plane version",
    "l5d-version-control",
);
const VERSIONS_MATCH: Check = Check::new(
    "control plane and dashboard versions match",
    "l5d-version-control",
)
.warning();

pub(crate) async fn run(web: &Web) -> Value {
    let mut report = Report::new(Output::Quiet, Duration::ZERO);
    match &web.checks {
        Checks::Kubernetes => {
            let client = async {
                kube::Client::try_default()
                    .await
                    .map_err(|e| format!("no Kubernetes configuration for the dashboard: {e}"))
            };
            let options = healthcheck::Options {
                proxy: true,
                ..Default::default()
            };
            healthcheck::run(&mut report, &options, client, &web.controller_namespace).await;
        }
        Checks::Local(components) => {
            let mesh = healthcheck::local::LocalMesh {
                components: components.clone(),
                ..Default::default()
            };
            healthcheck::local::run(&mut report, &mesh, false).await;
            report.category("control-plane-version");
            match crate::api::version(web).await {
                Ok(v) => {
                    report.record(&VERSION, Ok(()));
                    let release = v["release"].as_str().unwrap_or_default();
                    let mine = env!("CARGO_PKG_VERSION");
                    report.record(
                        &VERSIONS_MATCH,
                        if release == mine {
                            Ok(())
                        } else {
                            Err(format!(
                                "the control plane is on {release}, the dashboard on {mine}"
                            ))
                        },
                    );
                }
                Err(e) => report.record(&VERSION, Err(e)),
            }
        }
    }
    report.json()
}
