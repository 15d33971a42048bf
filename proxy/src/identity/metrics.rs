//! How the proxy's certificate is doing, in linkerd2-proxy's metric names.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub(crate) struct IdentityMetrics {
    /// When the current certificate expires (Unix seconds); 0 before the first.
    expiry: Gauge<f64, AtomicU64>,
    refreshes: Counter,
    failures: Counter,
}

impl IdentityMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "identity_cert_expiration_timestamp_seconds",
            "Time when this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).",
            self.expiry.clone(),
        );
        registry.register(
            "identity_cert_refresh",
            "The total number of times this proxy's mTLS identity certificate has been refreshed by the Identity service.",
            self.refreshes.clone(),
        );
        registry.register(
            "identity_cert_refresh_failure",
            "The total number of failed attempts to obtain or renew this proxy's certificate.",
            self.failures.clone(),
        );
    }

    pub(crate) fn certified(&self, expiry: std::time::SystemTime) {
        let secs = expiry
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.expiry.set(secs);
        self.refreshes.inc();
    }

    pub(crate) fn failed(&self) {
        self.failures.inc();
    }
}
