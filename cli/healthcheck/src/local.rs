//! `linkerd check` for the local mesh (`linkerd demo`), which has no
//! Kubernetes API: what a cluster's checks read from objects is read here
//! from the demo's own parts. Each control-plane component's admin server
//! says whether it is ready, the certificates are the files the identity
//! service was started with, and (`--proxy`) each pod's proxy says whether
//! it is ready (it is once it holds a certificate) and which version it is.

use super::{CLIENT_VERSION, Check, DP_READY, DP_VERSION, Report, certs};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// What the local mesh is made of, as its state file lists it.
#[derive(Clone, Debug, Default)]
pub struct LocalMesh {
    /// Each control-plane component and its admin address.
    pub components: Vec<(String, SocketAddr)>,
    /// The identity service's trust anchors (`ca-bundle.crt`) and issuer
    /// certificate (`crt.pem`).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Each meshed pod (`namespace/name`) and its proxy's admin address.
    pub proxies: Vec<(String, SocketAddr)>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(3);

const CERT_FILES: Check = Check::new(
    "certificate config is valid",
    "l5d-identity-cert-config-valid",
);

/// Runs the local mesh's checks into `report`; `proxy` adds the data plane.
pub async fn run(report: &mut Report, mesh: &LocalMesh, proxy: bool) {
    report.category("linkerd-existence");
    for (name, addr) in &mesh.components {
        let check = Check::named(
            format!("the {name} service is ready"),
            "l5d-api-control-ready",
        )
        .retry();
        report.run(check, || ready(*addr)).await;
    }

    if let Some((anchors_file, issuer_file)) = &mesh.identity {
        report.category("linkerd-identity");
        let read = |path: &PathBuf, what: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
                .and_then(|pem| certs::bundle(&pem, what))
        };
        let files = report
            .run(CERT_FILES, || async {
                let anchors = read(anchors_file, "trust anchors")?;
                let issuer = read(issuer_file, "issuer certificate")?.remove(0);
                Ok((anchors, issuer))
            })
            .await;
        if let Some((anchors, issuer)) = files {
            super::identity_certs(
                report,
                &anchors,
                &issuer,
                &anchors_file.display().to_string(),
            );
        }
    }

    if proxy {
        report.category("linkerd-data-plane");
        let versions = report
            .run(DP_READY, || async {
                let mut sick = Vec::new();
                let mut versions = Vec::new();
                for (pod, addr) in &mesh.proxies {
                    match ready(*addr).await {
                        Ok(()) => versions.push((pod.clone(), proxy_version(*addr).await)),
                        Err(e) => sick.push(format!("the proxy of {pod} is not ready: {e}")),
                    }
                }
                if sick.is_empty() {
                    Ok(versions)
                } else {
                    Err(sick.join("\n"))
                }
            })
            .await;
        if let Some(versions) = versions {
            let stale: Vec<String> = versions
                .iter()
                .filter(|(_, v)| v.as_deref() != Some(CLIENT_VERSION))
                .map(|(pod, v)| {
                    format!(
                        "{pod} runs proxy version {} but the CLI is on {CLIENT_VERSION}",
                        v.as_deref().unwrap_or("unknown")
                    )
                })
                .collect();
            report.record(
                &DP_VERSION,
                if stale.is_empty() {
                    Ok(())
                } else {
                    Err(stale.join("\n"))
                },
            );
        }
    }
}

/// The `version` label of a proxy's `proxy_build_info`.
async fn proxy_version(addr: SocketAddr) -> Option<String> {
    let (_, text) = get(addr, "/metrics").await.ok()?;
    text.lines()
        .find(|l| l.starts_with("proxy_build_info{"))
        .and_then(|l| l.split("version=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(String::from)
}

/// Whether the admin server at `addr` answers `/ready` with 200.
async fn ready(addr: SocketAddr) -> Result<(), String> {
    let (status, body) = get(addr, "/ready").await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "its admin server at {addr} answered {status}: {}",
            body.trim()
        ))
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<(http::StatusCode, String), String> {
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
        let req = http::Request::get(path)
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
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(READY_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "its admin server at {addr} did not answer within {READY_TIMEOUT:?}"
            ))
        })
}
