//! The proxy's own identity: its key, the certificate the identity service
//! signs for it, and the TLS settings every meshed connection uses.
//!
//! The key is made once, at start-up, and never leaves the process (or the
//! identity directory, when one is configured). [`Certifier`] keeps a valid
//! certificate for it; the TLS settings read the current one at each
//! handshake, so a renewal needs no restart and no reconfiguration.

mod certify;
mod metrics;

pub(crate) use self::{certify::Certifier, metrics::IdentityMetrics};
use crate::config::IdentityConfig;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::{
    RootCertStore,
    client::{ResolvesClientCert, WebPkiServerVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use std::{io, path::Path, sync::Arc, time::Duration};
use tokio::sync::watch;

/// The file in the identity directory that holds the private key (PKCS#8).
const KEY_FILE: &str = "key.p8";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a trust anchor in LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS is not usable: {0}")]
    TrustAnchor(rustls::Error),
    #[error("cannot build the TLS settings: {0}")]
    Tls(String),
    #[error("cannot make the proxy's key: {0}")]
    Key(rcgen::Error),
    #[error("the key in {path} is not usable: {reason}")]
    StoredKey { path: String, reason: String },
    #[error("cannot keep the key in {path}: {source}")]
    KeyFile { path: String, source: io::Error },
    #[error("a control-plane service address is not usable: {0}")]
    Service(tonic::transport::Error),
    #[error("{0:?} is not a usable control-plane identity")]
    ServiceName(String),
}

/// A control-plane service's identity as the name to verify it by.
pub(crate) fn service_name(name: &str) -> Result<ServerName<'static>, Error> {
    server_name(name).ok_or_else(|| Error::ServiceName(name.to_string()))
}

/// This proxy's identity, shared by every connection that uses TLS.
pub(crate) struct Local {
    name: Arc<str>,
    current: watch::Receiver<Option<Arc<CertifiedKey>>>,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("name", &self.name)
            .field("certified", &self.is_certified())
            .finish()
    }
}

/// Mesh TLS is TLS 1.3 only, on ring's primitives.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Local {
    /// The identity from `config` and the task that certifies it; nothing
    /// is certified until that task runs.
    pub(crate) fn new(
        config: &IdentityConfig,
        metrics: Arc<IdentityMetrics>,
    ) -> Result<(Arc<Self>, Certifier), Error> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        for der in &config.trust_anchors {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(Error::TrustAnchor)?;
        }
        let roots = Arc::new(roots);
        let key = match &config.dir {
            Some(dir) => stored_key(dir)?,
            None => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::Key)?,
        };
        let csr = csr(&config.local_name, &key)?;
        let (tx, current) = watch::channel(None);
        let resolver = Arc::new(Current(current.clone()));

        let tls = |e: rustls::Error| Error::Tls(e.to_string());
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Tls(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(resolver.clone());
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| Error::Tls(e.to_string()))?;
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_webpki_verifier(server_verifier.clone())
            .with_client_cert_resolver(resolver);

        let name: Arc<str> = config.local_name.as_str().into();
        let local = Arc::new(Self {
            name: name.clone(),
            current,
            server: Arc::new(server),
            client: Arc::new(client),
        });
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let certifier = Certifier::new(
            config,
            name,
            csr,
            key_der,
            provider,
            server_verifier,
            tx,
            metrics,
            local.client.clone(),
        )?;
        Ok((local, certifier))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_certified(&self) -> bool {
        self.current.borrow().is_some()
    }

    /// Resolves once the proxy has a certificate, or with `false` after
    /// `limit`: a connection that needs TLS waits for the first one.
    pub(crate) async fn certified(&self, limit: Duration) -> bool {
        // Nearly always so: no timer, no receiver clone.
        if self.is_certified() {
            return true;
        }
        let mut current = self.current.clone();
        let wait = current.wait_for(Option::is_some);
        matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(_)))
    }

    pub(crate) fn server_config(&self) -> &Arc<rustls::ServerConfig> {
        &self.server
    }

    pub(crate) fn client_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.client
    }
}

/// A peer's identity as a TLS server name.
pub(crate) fn server_name(identity: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(identity.to_string()).ok()
}

/// The identity a certificate proves: its DNS SAN, as Linkerd's are issued.
pub(crate) fn identity_of(cert: &CertificateDer<'_>) -> Option<Arc<str>> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    cert.valid_dns_names().next().map(Arc::from)
}

/// The key kept in the identity directory, made on first use. It is written
/// owner-only, and only there.
fn stored_key(dir: &Path) -> Result<KeyPair, Error> {
    let path = dir.join(KEY_FILE);
    let shown = path.display().to_string();
    match std::fs::read(&path) {
        Ok(der) => {
            let bad = |reason: String| Error::StoredKey {
                path: shown.clone(),
                reason,
            };
            let der = PrivatePkcs8KeyDer::from(der);
            let key = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P256_SHA256)
                .map_err(|e| bad(format!("not a PKCS#8 ECDSA P-256 key ({e})")))?;
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::Key)?;
            write_private(&path, &key.serialize_der()).map_err(|source| Error::KeyFile {
                path: shown,
                source,
            })?;
            Ok(key)
        }
        Err(source) => Err(Error::KeyFile {
            path: shown,
            source,
        }),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A CSR whose one DNS SAN (and common name) is `name`.
fn csr(name: &str, key: &KeyPair) -> Result<Vec<u8>, Error> {
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(Error::Key)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(key).map_err(Error::Key)?;
    Ok(csr.der().to_vec())
}

/// The certificate TLS presents: whatever the certifier last stored.
struct Current(watch::Receiver<Option<Arc<CertifiedKey>>>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Current")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.borrow().clone()
    }
}

impl ResolvesClientCert for Current {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.borrow().clone()
    }

    fn has_certs(&self) -> bool {
        self.0.borrow().is_some()
    }
}
