//! The end-to-end test harness: runs the mesh's real binaries against real
//! clients and servers on loopback or in network namespaces.

pub mod backends;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod kubeapi;
pub mod mesh;
pub mod metrics;
pub mod netns;
pub mod pods;
pub mod proxy;
pub mod scale;
pub use linkerd_test_tools as tools;

/// The gRPC service the tests call through the proxy.
pub mod echo {
    include!(concat!(env!("OUT_DIR"), "/linkerd.test.echo.rs"));
}

use std::{future::Future, time::Duration};

/// TLS settings for a client that trusts only the CA in `ca_pem` and shows
/// no certificate: the API server calling a webhook, say.
pub fn tls_client_trusting(ca_pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls' defaults")
    .with_root_certificates(roots)
    .with_no_client_auth();
    std::sync::Arc::new(config)
}

/// Polls `check` until it returns `Some`, for at most `limit`: for state that
/// settles asynchronously (a metric after a connection closes).
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs each scenario (`async fn scenario(backend: Backend)` in the calling
/// module) against both discovery backends, as `local::scenario` and
/// `kubernetes::scenario`: they must answer alike for the same world.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test] async fn $scenario() {
                super::$scenario($crate::controller::Backend::Local).await
            })*
        }
        mod kubernetes {
            $(#[tokio::test] async fn $scenario() {
                super::$scenario($crate::controller::Backend::Kubernetes).await
            })*
        }
    };
}
