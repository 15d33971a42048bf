//! The tap controller's own identity, and its mesh TLS to proxies.
//!
//! Proxies serve tap only to a client proving the tap controller's identity
//! (`LINKERD2_PROXY_TAP_SVC_NAME`). The controller gets that certificate the
//! way a proxy does: a P-256 key made at start, a CSR with its ServiceAccount
//! token to the identity service, renewed at 70% of its lifetime.

use linkerd_proxy_api::identity::{CertifyRequest, identity_client::IdentityClient};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

/// How the controller obtains its certificate.
#[derive(Clone, Debug)]
pub struct CredentialsConfig {
    /// The controller's identity, e.g.
    /// `linkerd-tap.linkerd.serviceaccount.identity.linkerd.cluster.local`.
    pub name: String,
    pub trust_anchors_pem: String,
    pub token_file: PathBuf,
    /// The identity service, `host:port`.
    pub identity_addr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the trust anchors hold no usable certificate")]
    NoTrustAnchors,
    #[error("cannot make a key and CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the identity service address {0:?} is not usable")]
    Address(String),
}

/// The controller's current TLS client settings, renewed in the background.
#[derive(Clone)]
pub struct Credentials {
    current: watch::Receiver<Option<Arc<rustls::ClientConfig>>>,
}

impl Credentials {
    /// Starts obtaining (and renewing) the certificate.
    pub fn start(config: CredentialsConfig) -> Result<Self, CredentialsError> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(config.trust_anchors_pem.as_bytes()).flatten() {
            roots
                .add(cert)
                .map_err(|_| CredentialsError::NoTrustAnchors)?;
        }
        if roots.is_empty() {
            return Err(CredentialsError::NoTrustAnchors);
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let csr = rcgen::CertificateParams::new(vec![config.name.clone()])?
            .serialize_request(&key)?
            .der()
            .to_vec();
        let channel = Endpoint::from_shared(format!("http://{}", config.identity_addr))
            .map_err(|_| CredentialsError::Address(config.identity_addr.clone()))?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        let (tx, current) = watch::channel(None);
        let renew = Renew {
            config,
            roots: Arc::new(roots),
            key: key.serialize_der(),
            csr,
            client: IdentityClient::new(channel),
            tx,
        };
        tokio::spawn(renew.run());
        Ok(Self { current })
    }

    /// The settings once there is a certificate (waiting a little for the
    /// first).
    pub async fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut current = self.current.clone();
        let wait = current.wait_for(Option::is_some);
        match tokio::time::timeout(Duration::from_secs(5), wait).await {
            Ok(Ok(config)) => Ok(config.clone().expect("waited for it")),
            _ => Err("the identity service has not certified it".into()),
        }
    }
}

struct Renew {
    config: CredentialsConfig,
    roots: Arc<rustls::RootCertStore>,
    key: Vec<u8>,
    csr: Vec<u8>,
    client: IdentityClient<Channel>,
    tx: watch::Sender<Option<Arc<rustls::ClientConfig>>>,
}

impl Renew {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let wait = match self.round().await {
                Ok(valid_until) => {
                    backoff = Duration::from_millis(500);
                    let left = valid_until
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    tracing::info!(identity = %self.config.name, "tap controller certified");
                    left.mul_f64(0.7).max(Duration::from_millis(500))
                }
                Err(e) => {
                    tracing::warn!(identity = %self.config.name, error = %e, "cannot obtain the tap controller's certificate; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.tx.closed() => return,
            }
        }
    }

    async fn round(&mut self) -> Result<SystemTime, String> {
        let token = tokio::fs::read(&self.config.token_file)
            .await
            .map_err(|e| format!("cannot read {}: {e}", self.config.token_file.display()))?;
        let rsp = self
            .client
            .certify(CertifyRequest {
                identity: self.config.name.clone(),
                token,
                certificate_signing_request: self.csr.clone(),
            })
            .await
            .map_err(|s| format!("the identity service refused: {}", s.message()))?
            .into_inner();
        let mut chain = vec![CertificateDer::from(rsp.leaf_certificate)];
        chain.extend(
            rsp.intermediate_certificates
                .into_iter()
                .map(CertificateDer::from),
        );
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the issued certificate is not usable: {e}"))?;
        self.tx.send_replace(Some(Arc::new(config)));
        let valid_until = rsp
            .valid_until
            .and_then(|t| u64::try_from(t.seconds).ok())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            .ok_or("no valid_until")?;
        Ok(valid_until)
    }
}

/// A gRPC channel to a proxy (its tap port, say) over mesh TLS to its
/// identity, as `tls`'s client; it connects on first use.
pub fn channel(addr: SocketAddr, identity: &str, tls: Arc<rustls::ClientConfig>) -> Channel {
    let name = ServerName::try_from(identity.to_string()).ok();
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
            let (tls, name) = (tls.clone(), name.clone());
            async move {
                let name = name.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a DNS-like identity")
                })?;
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
}
