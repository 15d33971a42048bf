//! `io.linkerd.proxy.identity.Identity`: the mesh's certificate authority
//! signs each proxy's certificate once its token proves who it is.
//!
//! `Certify` checks, in order: every field is present; the CSR's only name
//! is the requested identity; the token is valid; the token's service account
//! is exactly that identity. Only then is the CSR signed.

pub mod issuer;
pub mod tokens;

use self::tokens::{ServiceAccount, TokenError, Validate};
use linkerd_pki::{
    Naming,
    ca::{Csr, Issuer},
};
use linkerd_proxy_api::identity::{CertifyRequest, CertifyResponse, identity_server};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use std::{sync::Arc, time::Duration};
use time::OffsetDateTime;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// How identities are named and how long their certificates last.
#[derive(Clone, Debug)]
pub struct Config {
    pub naming: Naming,
    pub lifetime: Duration,
    pub clock_skew: Duration,
}

impl Config {
    /// The identity of a service account (SPEC, "Identity").
    pub fn identity(&self, sa: &ServiceAccount) -> String {
        self.naming.identity(&sa.name, &sa.namespace)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    issued: Counter,
    refused: Family<RefusedLabels, Counter>,
    issuer_expiry: Gauge,
}

impl Metrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "identity_cert_issued",
            "Certificates issued to proxies",
            self.issued.clone(),
        );
        registry.register(
            "identity_cert_refused",
            "Certify requests refused, by reason",
            self.refused.clone(),
        );
        registry.register(
            "identity_issuer_expiry_timestamp_seconds",
            "When the current issuer certificate expires",
            self.issuer_expiry.clone(),
        );
    }

    /// Keeps `identity_issuer_expiry_timestamp_seconds` at the issuer's
    /// expiry from the moment it is loaded and through every reload, so an
    /// alert on it fires even before any proxy asks for a certificate.
    pub fn follow_issuer(&self, mut issuer: watch::Receiver<Arc<Issuer>>) {
        let gauge = self.issuer_expiry.clone();
        gauge.set(issuer.borrow_and_update().not_after().unix_timestamp());
        tokio::spawn(async move {
            while issuer.changed().await.is_ok() {
                gauge.set(issuer.borrow_and_update().not_after().unix_timestamp());
            }
        });
    }

    fn refused(&self, reason: Refusal) {
        self.refused.get_or_create(&RefusedLabels { reason }).inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: Refusal,
}

/// Why a Certify request was refused: the `reason` label.
#[derive(Copy, Clone, Debug, Hash, PartialEq, Eq)]
enum Refusal {
    MissingField,
    BadCsr,
    CsrNames,
    InvalidToken,
    TokenReviewFailed,
    IdentityMismatch,
    IssuerExpired,
    SigningFailed,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::MissingField => "missing_field",
            Self::BadCsr => "bad_csr",
            Self::CsrNames => "csr_names",
            Self::InvalidToken => "invalid_token",
            Self::TokenReviewFailed => "token_review_failed",
            Self::IdentityMismatch => "identity_mismatch",
            Self::IssuerExpired => "issuer_expired",
            Self::SigningFailed => "signing_failed",
        }
    }
}

impl EncodeLabelValue for Refusal {
    fn encode(&self, value: &mut LabelValueEncoder) -> std::fmt::Result {
        self.as_str().encode(value)
    }
}

pub struct Identity<V> {
    issuer: watch::Receiver<Arc<Issuer>>,
    validator: V,
    config: Config,
    metrics: Metrics,
}

impl<V: Validate> Identity<V> {
    pub fn new(
        issuer: watch::Receiver<Arc<Issuer>>,
        validator: V,
        config: Config,
        metrics: Metrics,
    ) -> Self {
        Self {
            issuer,
            validator,
            config,
            metrics,
        }
    }

    pub fn into_server(self) -> identity_server::IdentityServer<Self> {
        identity_server::IdentityServer::new(self)
    }

    async fn certify(&self, req: CertifyRequest) -> Result<CertifyResponse, (Refusal, Status)> {
        let missing = [
            ("identity", req.identity.is_empty()),
            ("token", req.token.is_empty()),
            (
                "certificate_signing_request",
                req.certificate_signing_request.is_empty(),
            ),
        ];
        if let Some((field, _)) = missing.iter().find(|(_, empty)| *empty) {
            return Err((
                Refusal::MissingField,
                Status::invalid_argument(format!("the request has no {field}")),
            ));
        }
        let csr = Csr::from_der(&req.certificate_signing_request)
            .map_err(|e| (Refusal::BadCsr, Status::invalid_argument(e.to_string())))?;
        let sans = csr.sans();
        if sans != [format!("dns:{}", req.identity)] {
            return Err((
                Refusal::CsrNames,
                Status::invalid_argument(format!(
                    "the CSR must name exactly the requested identity {:?} as its one DNS SAN; it names {sans:?}",
                    req.identity
                )),
            ));
        }
        let sa = match self.validator.validate(&req.token).await {
            Ok(sa) => sa,
            Err(TokenError::Invalid(why)) => {
                return Err((
                    Refusal::InvalidToken,
                    Status::failed_precondition(format!("the token is not valid: {why}")),
                ));
            }
            Err(TokenError::Unavailable(why)) => {
                return Err((
                    Refusal::TokenReviewFailed,
                    Status::unavailable(format!("the token could not be checked: {why}")),
                ));
            }
        };
        let proven = self.config.identity(&sa);
        if proven != req.identity {
            return Err((
                Refusal::IdentityMismatch,
                Status::failed_precondition(format!(
                    "the token is service account {}/{}, whose identity is {proven}, not {}",
                    sa.namespace, sa.name, req.identity
                )),
            ));
        }
        let issuer = self.issuer.borrow().clone();
        let now = OffsetDateTime::now_utc();
        if issuer.not_after() <= now {
            return Err((
                Refusal::IssuerExpired,
                Status::unavailable(format!(
                    "the issuer certificate expired at {}; rotate it",
                    issuer.not_after()
                )),
            ));
        }
        let leaf = issuer
            .sign(
                &csr,
                &req.identity,
                self.config.lifetime,
                self.config.clock_skew,
                now,
            )
            .map_err(|e| (Refusal::SigningFailed, Status::internal(e.to_string())))?;
        Ok(CertifyResponse {
            leaf_certificate: leaf.der,
            intermediate_certificates: vec![issuer.cert_der().to_vec()],
            valid_until: Some(prost_types::Timestamp {
                seconds: leaf.not_after.unix_timestamp(),
                nanos: 0,
            }),
        })
    }
}

#[tonic::async_trait]
impl<V: Validate> identity_server::Identity for Identity<V> {
    async fn certify(
        &self,
        req: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let req = req.into_inner();
        let identity = req.identity.clone();
        match Identity::certify(self, req).await {
            Ok(rsp) => {
                self.metrics.issued.inc();
                tracing::info!(%identity, "issued a certificate");
                Ok(Response::new(rsp))
            }
            Err((reason, status)) => {
                self.metrics.refused(reason);
                tracing::info!(%identity, reason = reason.as_str(), error = %status.message(), "refused a certificate");
                Err(status)
            }
        }
    }
}
