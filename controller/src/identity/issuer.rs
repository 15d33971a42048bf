//! The issuer's files, as Kubernetes mounts them (the `linkerd-identity-issuer`
//! Secret's `crt.pem` and `key.pem`, the `linkerd-identity-trust-roots`
//! ConfigMap's `ca-bundle.crt`), loaded at start and re-read when they change.

use linkerd_pki::ca::{CaError, Issuer, TrustAnchors};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use time::OffsetDateTime;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} ({path}): {error}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        error: CaError,
    },
}

#[derive(Clone, Debug)]
pub struct IssuerFiles {
    pub trust_anchors: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl IssuerFiles {
    /// `crt.pem` and `key.pem` in `dir`, as the Secret is mounted.
    pub fn in_dir(dir: &Path, trust_anchors: PathBuf) -> Self {
        Self {
            trust_anchors,
            cert: dir.join("crt.pem"),
            key: dir.join("key.pem"),
        }
    }

    fn read(&self) -> Result<[String; 3], IssuerError> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|error| IssuerError::Read {
                path: path.clone(),
                error,
            })
        };
        Ok([
            read(&self.trust_anchors)?,
            read(&self.cert)?,
            read(&self.key)?,
        ])
    }

    fn parse(&self, [anchors, cert, key]: &[String; 3]) -> Result<Issuer, IssuerError> {
        let anchors = TrustAnchors::from_pem(anchors).map_err(|error| IssuerError::Invalid {
            what: "the trust anchors",
            path: self.trust_anchors.clone(),
            error,
        })?;
        Issuer::from_pem(cert, key, &anchors, OffsetDateTime::now_utc()).map_err(|error| {
            IssuerError::Invalid {
                what: "the issuer",
                path: self.cert.clone(),
                error,
            }
        })
    }

    /// Loads the issuer, failing if it is not usable, then re-reads the
    /// files every `interval`: a valid change replaces the issuer; an
    /// invalid one is logged and the current issuer kept.
    pub fn watch(self, interval: Duration) -> Result<watch::Receiver<Arc<Issuer>>, IssuerError> {
        let mut texts = self.read()?;
        let (tx, rx) = watch::channel(Arc::new(self.parse(&texts)?));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if tx.is_closed() {
                    return;
                }
                let next = match self.read() {
                    Ok(next) if next != texts => next,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!("{e}; keeping the current issuer");
                        continue;
                    }
                };
                match self.parse(&next) {
                    Ok(issuer) => {
                        tracing::info!(expires = %issuer.not_after(), "issuer reloaded");
                        tx.send_replace(Arc::new(issuer));
                    }
                    Err(e) => tracing::warn!("{e}; keeping the current issuer"),
                }
                texts = next;
            }
        });
        Ok(rx)
    }
}
