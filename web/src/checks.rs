//! The control-plane page's checks. In a cluster they are `linkerd check`'s
//! own (the CLI's library), run through the Kubernetes API with the web
//! server's ServiceAccount; in the local mesh, which has no Kubernetes API,
//! each control-plane component is asked whether it is ready. Either way the
//! page gets Linkerd's check JSON.

use crate::server::Web;
use linkerd_cli::healthcheck::{self, Check, Output, Report};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(3);

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
            report.category("linkerd-control-plane");
            for (name, addr) in components {
                let check = Check::named(
                    format!("the {name} service is ready"),
                    "l5d-api-control-ready",
                );
                report.record(&check, ready(*addr).await);
            }
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

/// Whether the admin server at `addr` answers `/ready` with 200.
async fn ready(addr: SocketAddr) -> Result<(), String> {
    use http_body_util::BodyExt;
    let ask = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot reach its admin server at {addr}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("its admin server at {addr} does not speak HTTP: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get("/ready")
            .header(http::header::HOST, addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let rsp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("its admin server at {addr} failed: {e}"))?;
        let status = rsp.status();
        let body = rsp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "its admin server at {addr} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ))
        }
    };
    tokio::time::timeout(READY_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "its admin server at {addr} did not answer within {READY_TIMEOUT:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_name_and_address() {
        assert_eq!(
            parse_component("identity=127.0.0.1:9990"),
            Ok(("identity".into(), "127.0.0.1:9990".parse().unwrap()))
        );
        assert!(parse_component("identity").is_err());
        assert!(parse_component("=127.0.0.1:1").is_err());
        assert!(parse_component("tap=localhost").is_err());
    }
}
