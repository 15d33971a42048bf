//! What `linkerd check` asks of a certificate: its algorithm, its validity
//! now and in 60 days, its names, and who signed it.

use time::OffsetDateTime;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A parsed certificate, its DER kept for signature checks.
pub(crate) struct Cert {
    der: Vec<u8>,
    /// The subject's common name, or the whole subject without one.
    pub(crate) name: String,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

/// The key algorithms the mesh signs and verifies with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    EcdsaP256,
    Rsa,
    Other(String),
}

impl Cert {
    fn parsed(&self) -> X509Certificate<'_> {
        // Parsed once already in `bundle`, so this cannot fail.
        X509Certificate::from_der(&self.der)
            .expect("parsed before")
            .1
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        let cert = self.parsed();
        let key = cert.public_key();
        if key.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
            return Algorithm::Rsa;
        }
        if key.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = key
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve.as_ref() == Some(&OID_EC_P256) {
                return Algorithm::EcdsaP256;
            }
            return Algorithm::Other(format!(
                "ECDSA on curve {}",
                curve
                    .map(|c| c.to_id_string())
                    .unwrap_or_else(|| "unknown".into())
            ));
        }
        Algorithm::Other(key.algorithm.algorithm.to_id_string())
    }

    /// Fails when `now` is outside the certificate's validity.
    pub(crate) fn valid_at(&self, now: OffsetDateTime) -> Result<(), String> {
        if now < self.not_before {
            return Err(format!(
                "{} is not valid before {}",
                self.name,
                date(self.not_before)
            ));
        }
        if now >= self.not_after {
            return Err(format!("{} expired on {}", self.name, date(self.not_after)));
        }
        Ok(())
    }

    /// Fails when the certificate expires within `days` of `now`.
    pub(crate) fn valid_for_days(&self, now: OffsetDateTime, days: i64) -> Result<(), String> {
        if self.not_after < now + time::Duration::days(days) {
            return Err(format!(
                "{} will expire on {}",
                self.name,
                date(self.not_after)
            ));
        }
        Ok(())
    }

    /// Whether one of `issuers` signed this certificate.
    pub(crate) fn signed_by_any(&self, issuers: &[Cert]) -> bool {
        let cert = self.parsed();
        issuers.iter().any(|issuer| {
            cert.verify_signature(Some(issuer.parsed().public_key()))
                .is_ok()
        })
    }

    /// The DNS names the certificate is valid for.
    pub(crate) fn dns_names(&self) -> Vec<String> {
        let cert = self.parsed();
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// Every certificate of a PEM bundle; `what` names it in errors.
pub(crate) fn bundle(pem: &str, what: &str) -> Result<Vec<Cert>, String> {
    let mut certs = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("the {what} are not PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let (_, cert) = X509Certificate::from_der(&block.contents)
            .map_err(|e| format!("the {what} hold an invalid certificate: {e}"))?;
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(String::from)
            .unwrap_or_else(|| cert.subject().to_string());
        let validity = cert.validity();
        certs.push(Cert {
            name,
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            der: block.contents.clone(),
        });
    }
    if certs.is_empty() {
        return Err(format!("the {what} hold no PEM certificate"));
    }
    Ok(certs)
}

fn date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_pki::ca;
    use std::time::Duration;

    fn generated(now: OffsetDateTime) -> ca::Generated {
        ca::generate(
            "cluster.local",
            Duration::from_secs(365 * 86400),
            Duration::from_secs(30 * 86400),
            now,
        )
        .unwrap()
    }

    #[test]
    fn an_issuer_expiring_within_60_days_is_flagged_and_chains_to_its_anchor() {
        let now = OffsetDateTime::now_utc();
        let g = generated(now);
        let anchors = bundle(&g.trust_anchor_pem, "trust anchors").unwrap();
        let issuer = bundle(&g.issuer_pem, "issuer certificate")
            .unwrap()
            .remove(0);
        assert_eq!(anchors[0].algorithm(), Algorithm::EcdsaP256);
        assert!(issuer.valid_at(now).is_ok());
        assert!(anchors[0].valid_for_days(now, 60).is_ok());
        let soon = issuer.valid_for_days(now, 60).unwrap_err();
        assert!(soon.contains("will expire on"), "{soon}");
        assert!(issuer.signed_by_any(&anchors));
        assert!(!anchors[0].signed_by_any(std::slice::from_ref(&issuer)));
        let later = now + time::Duration::days(31);
        assert!(issuer.valid_at(later).unwrap_err().contains("expired on"));
    }

    #[test]
    fn a_serving_certificate_names_its_service() {
        let now = OffsetDateTime::now_utc();
        let s = ca::generate_serving(
            &["linkerd-proxy-injector.linkerd.svc".into()],
            Duration::from_secs(86400),
            now,
        )
        .unwrap();
        let cert = bundle(&s.cert_pem, "certificate").unwrap().remove(0);
        assert_eq!(cert.dns_names(), ["linkerd-proxy-injector.linkerd.svc"]);
        let ca = bundle(&s.ca_pem, "CA").unwrap();
        assert!(cert.signed_by_any(&ca));
    }

    #[test]
    fn garbage_is_named() {
        assert_eq!(
            bundle("nothing here", "trust anchors").err().unwrap(),
            "the trust anchors hold no PEM certificate"
        );
    }
}
