//! Obtains and renews the proxy's certificate from the identity service.
//!
//! Each round sends the same CSR with the ServiceAccount token read afresh
//! (projected tokens rotate), checks that the answer is a certificate for our
//! key and our name that chains to the trust anchors, and only then makes it
//! current. A failed round leaves the current certificate in place and
//! retries with back-off; a good one is renewed at 70% of its remaining
//! lifetime, as Linkerd's proxy does.

use super::{Error, IdentityMetrics, service_name};
use crate::config::IdentityConfig;
use linkerd_proxy_api::identity::{CertifyRequest, identity_client::IdentityClient};
use rustls::{
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    sign::CertifiedKey,
};
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio::sync::watch;
use tonic::transport::Channel;

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// One Certify call may not take longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Certifier {
    name: Arc<str>,
    token_file: PathBuf,
    csr: Vec<u8>,
    key: PrivateKeyDer<'static>,
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
    client: IdentityClient<Channel>,
    current: watch::Sender<Option<Arc<CertifiedKey>>>,
    metrics: Arc<IdentityMetrics>,
    min_refresh: Duration,
    max_refresh: Duration,
}

/// Why one round failed; logged, then retried.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("cannot read the ServiceAccount token from {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("the identity service refused: {0}")]
    Refused(String),
    #[error("the identity service did not answer within {CALL_TIMEOUT:?}")]
    Timeout,
    #[error("the issued certificate is not usable: {0}")]
    Invalid(String),
}

impl Certifier {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: &IdentityConfig,
        name: Arc<str>,
        csr: Vec<u8>,
        key: PrivateKeyDer<'static>,
        provider: Arc<CryptoProvider>,
        verifier: Arc<WebPkiServerVerifier>,
        current: watch::Sender<Option<Arc<CertifiedKey>>>,
        metrics: Arc<IdentityMetrics>,
        client_config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, Error> {
        // Called to get the first certificate: presents none.
        let tls = match &config.svc_name {
            Some(name) => Some(crate::control::ControlTls {
                config: client_config,
                name: service_name(name)?,
                certified_first: None,
            }),
            None => None,
        };
        let channel = crate::control::channel(&config.svc_addr, tls).map_err(Error::Service)?;
        Ok(Self {
            name,
            token_file: config.token_file.clone(),
            csr,
            key,
            provider,
            verifier,
            client: IdentityClient::new(channel),
            current,
            metrics,
            min_refresh: config.min_refresh,
            max_refresh: config.max_refresh,
        })
    }

    /// Keeps a current certificate for as long as the proxy runs.
    pub(crate) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let wait = match self.round().await {
                Ok(expiry) => {
                    backoff = BACKOFF_MIN;
                    let wait = self.refresh_in(expiry, SystemTime::now());
                    tracing::info!(
                        identity = %self.name,
                        "certified; renewing in {:.1}s",
                        wait.as_secs_f64()
                    );
                    wait
                }
                Err(e) => {
                    self.metrics.failed();
                    let certified = self.current.borrow().is_some();
                    if certified {
                        tracing::warn!(identity = %self.name, error = %e, "certificate renewal failed; keeping the current one");
                    } else {
                        tracing::warn!(identity = %self.name, error = %e, "cannot obtain a certificate yet; not ready");
                    }
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.current.closed() => return,
            }
        }
    }

    /// When to renew a certificate that expires at `expiry`.
    fn refresh_in(&self, expiry: SystemTime, now: SystemTime) -> Duration {
        let left = expiry.duration_since(now).unwrap_or_default();
        let at = left.mul_f64(0.7);
        let bounded = at.clamp(self.min_refresh, self.max_refresh);
        // The lower bound spares the identity service, but never at the
        // price of an expired certificate.
        let wait = if bounded >= left { at } else { bounded };
        wait.max(BACKOFF_MIN)
    }

    /// One Certify call; the new certificate's expiry.
    async fn round(&mut self) -> Result<SystemTime, RoundError> {
        let token =
            tokio::fs::read(&self.token_file)
                .await
                .map_err(|source| RoundError::Token {
                    path: self.token_file.display().to_string(),
                    source,
                })?;
        let req = CertifyRequest {
            identity: self.name.to_string(),
            token,
            certificate_signing_request: self.csr.clone(),
        };
        let rsp = tokio::time::timeout(CALL_TIMEOUT, self.client.certify(req))
            .await
            .map_err(|_| RoundError::Timeout)?
            .map_err(|s| RoundError::Refused(format!("{:?}: {}", s.code(), s.message())))?
            .into_inner();
        let expiry = rsp
            .valid_until
            .and_then(|t| {
                let secs = u64::try_from(t.seconds).ok()?;
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            })
            .ok_or_else(|| RoundError::Invalid("no valid_until".into()))?;
        let key = self.check(rsp.leaf_certificate, rsp.intermediate_certificates)?;
        self.current.send_replace(Some(Arc::new(key)));
        self.metrics.certified(expiry);
        Ok(expiry)
    }

    /// The answer as a certified key, if it is for our key and our name and
    /// chains to the trust anchors.
    fn check(
        &self,
        leaf: Vec<u8>,
        intermediates: Vec<Vec<u8>>,
    ) -> Result<CertifiedKey, RoundError> {
        let invalid = |e: rustls::Error| RoundError::Invalid(e.to_string());
        let leaf = CertificateDer::from(leaf);
        let intermediates: Vec<CertificateDer<'static>> = intermediates
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let name = ServerName::try_from(self.name.to_string())
            .map_err(|e| RoundError::Invalid(e.to_string()))?;
        self.verifier
            .verify_server_cert(&leaf, &intermediates, &name, &[], UnixTime::now())
            .map_err(invalid)?;
        let mut chain = vec![leaf];
        chain.extend(intermediates);
        let key =
            CertifiedKey::from_der(chain, self.key.clone_key(), &self.provider).map_err(invalid)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_seventy_percent_within_bounds() {
        let (tx, _rx) = watch::channel(None);
        let provider = super::super::provider();
        let mut roots = rustls::RootCertStore::empty();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        roots
            .add(ca.self_signed(&ca_key).unwrap().der().clone())
            .unwrap();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let config = IdentityConfig {
            local_name: "a.b.serviceaccount.identity.linkerd.cluster.local".into(),
            trust_anchors: vec![],
            token_file: "/dev/null".into(),
            dir: None,
            svc_addr: "127.0.0.1:1".into(),
            svc_name: None,
            min_refresh: Duration::from_secs(10),
            max_refresh: Duration::from_secs(3600),
        };
        let c = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                Certifier::new(
                    &config,
                    "x".into(),
                    vec![],
                    PrivateKeyDer::Pkcs8(vec![].into()),
                    provider,
                    verifier,
                    tx,
                    Arc::default(),
                    Arc::new(
                        rustls::ClientConfig::builder_with_provider(super::super::provider())
                            .with_safe_default_protocol_versions()
                            .unwrap()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    ),
                )
                .unwrap()
            });
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs| c.refresh_in(now + Duration::from_secs(secs), now);
        assert_eq!(at(1000), Duration::from_secs(700));
        assert_eq!(at(100), Duration::from_secs(70));
        assert_eq!(at(12), Duration::from_secs(10), "min refresh");
        assert_eq!(
            at(5),
            Duration::from_millis(3500),
            "never at or past expiry"
        );
        assert_eq!(at(10 * 24 * 3600), Duration::from_secs(3600), "max refresh");
        assert_eq!(at(0), BACKOFF_MIN, "already expired: soon");
    }
}
