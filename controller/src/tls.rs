//! The TLS the control plane serves the Kubernetes API server with (the
//! injector's webhook, tap's aggregated API): a certificate `linkerd install`
//! made for the service's DNS name, not a mesh identity, since the API server
//! checks it against the `caBundle` it was given.

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use std::sync::Arc;

/// Why a certificate, key or client CA cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate is not PEM: {0}")]
    CertificatePem(#[source] rustls::pki_types::pem::Error),
    #[error("no certificate in the certificate file")]
    NoCertificate,
    #[error("the key is not PEM: {0}")]
    KeyPem(#[source] rustls::pki_types::pem::Error),
    #[error("the certificate and key do not fit: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client CA is not usable: {0}")]
    ClientCa(String),
}

/// A server's TLS from its certificate chain and key (PEM). With
/// `client_cas`, a client certificate is verified against them when one is
/// given (the handler decides what an anonymous client may do).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_cas: Option<&str>,
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(TlsError::KeyPem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_cas {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS handshake on an accepted connection, ten seconds at most; a
/// failure is logged (at debug: scanners and health checks are common) and
/// the connection dropped.
pub async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::CertificatePem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(chain)
}
