//! The mesh's certificate authority: trust anchors, the issuer that chains to
//! them, and the short-lived leaf certificates it signs for proxies.
//!
//! Everything is ECDSA P-256, as Linkerd's is. `generate` makes a fresh trust
//! anchor and issuer, for `linkerd install` and the local mesh.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType, SerialNumber,
};
use std::time::Duration;
use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, pem::Pem, prelude::FromDer};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("no PEM certificate in the {0}")]
    NoCertificate(&'static str),
    #[error("the {what} is not a valid certificate: {reason}")]
    BadCertificate { what: &'static str, reason: String },
    #[error("the issuer key is not a valid ECDSA P-256 PKCS#8 key: {0}")]
    BadKey(String),
    #[error("the issuer key does not belong to the issuer certificate")]
    KeyMismatch,
    #[error("the issuer certificate is not a CA (basicConstraints CA:TRUE is missing)")]
    NotACa,
    #[error("the issuer certificate expired at {0}")]
    Expired(OffsetDateTime),
    #[error("the issuer certificate is not valid until {0}")]
    NotYetValid(OffsetDateTime),
    #[error("the issuer certificate is not signed by any of the {0} trust anchors")]
    Unchained(usize),
    #[error("the certificate signing request is invalid: {0}")]
    BadCsr(String),
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The roots every proxy trusts, as a PEM bundle (`ca-bundle.crt`).
#[derive(Clone, Debug)]
pub struct TrustAnchors {
    pem: String,
    ders: Vec<Vec<u8>>,
}

impl TrustAnchors {
    pub fn from_pem(pem: &str) -> Result<Self, CaError> {
        let ders = certificates(pem, "trust anchors")?;
        for der in &ders {
            parse("trust anchors", der)?;
        }
        Ok(Self {
            pem: pem.to_string(),
            ders,
        })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn ders(&self) -> &[Vec<u8>] {
        &self.ders
    }
}

/// The intermediate CA that signs proxies' certificates.
pub struct Issuer {
    cert_der: Vec<u8>,
    not_after: OffsetDateTime,
    signer: rcgen::Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Loads and checks an issuer: a CA certificate, valid `now`, signed by
    /// one of `anchors`, whose key is `key_pem`. Linkerd refuses to start
    /// with an issuer that fails any of these; so does this.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        anchors: &TrustAnchors,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let cert_der = certificates(cert_pem, "issuer certificate")?.remove(0);
        let cert = parse("issuer certificate", &cert_der)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::BadKey(e.to_string()))?;
        if !key.is_compatible(&PKCS_ECDSA_P256_SHA256) {
            return Err(CaError::BadKey("not an ECDSA P-256 key".into()));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::KeyMismatch);
        }
        if !cert.is_ca() {
            return Err(CaError::NotACa);
        }
        let validity = cert.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        if now < not_before {
            return Err(CaError::NotYetValid(not_before));
        }
        if now >= not_after {
            return Err(CaError::Expired(not_after));
        }
        let chained = anchors.ders.iter().any(|anchor| {
            parse("trust anchors", anchor)
                .is_ok_and(|anchor| cert.verify_signature(Some(anchor.public_key())).is_ok())
        });
        if !chained {
            return Err(CaError::Unchained(anchors.ders.len()));
        }
        let signer = rcgen::Issuer::from_ca_cert_der(&cert_der.clone().into(), key)?;
        Ok(Self {
            cert_der,
            not_after,
            signer,
        })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Signs `csr` for `identity`: server and client auth, valid from
    /// `skew` before `now` for `lifetime`, but never past the issuer's own
    /// expiry. Only the name is taken from the request.
    pub fn sign(
        &self,
        csr: &Csr,
        identity: &str,
        lifetime: Duration,
        skew: Duration,
        now: OffsetDateTime,
    ) -> Result<Leaf, CaError> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::DnsName(
            identity
                .try_into()
                .map_err(|e: rcgen::Error| CaError::BadCsr(e.to_string()))?,
        )];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity);
        params.distinguished_name = dn;
        params.not_before = now - skew;
        params.not_after = (now + lifetime).min(self.not_after);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&csr.0.public_key, &self.signer)?;
        Ok(Leaf {
            der: cert.der().to_vec(),
            not_after: params.not_after,
        })
    }
}

/// A signed leaf certificate.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub der: Vec<u8>,
    pub not_after: OffsetDateTime,
}

/// A parsed certificate signing request whose signature checked out.
pub struct Csr(CertificateSigningRequestParams);

impl Csr {
    pub fn from_der(der: &[u8]) -> Result<Self, CaError> {
        CertificateSigningRequestParams::from_der(&der.into())
            .map(Self)
            .map_err(|e| CaError::BadCsr(e.to_string()))
    }

    /// Every subject alternative name, DNS names as `dns:NAME`, others by kind.
    pub fn sans(&self) -> Vec<String> {
        self.0
            .params
            .subject_alt_names
            .iter()
            .map(|san| match san {
                SanType::DnsName(name) => format!("dns:{}", name.as_str()),
                SanType::IpAddress(ip) => format!("ip:{ip}"),
                SanType::URI(uri) => format!("uri:{}", uri.as_str()),
                SanType::Rfc822Name(mail) => format!("email:{}", mail.as_str()),
                other => format!("{other:?}"),
            })
            .collect()
    }
}

/// A new trust anchor and an issuer signed by it, as PEM.
pub struct Generated {
    pub trust_anchor_pem: String,
    pub trust_anchor_key_pem: String,
    pub issuer_pem: String,
    pub issuer_key_pem: String,
}

/// Makes a trust anchor (`root.linkerd.<trust-domain>`) and an issuer
/// (`identity.linkerd.<trust-domain>`) valid from `now` for the given times.
pub fn generate(
    trust_domain: &str,
    anchor_lifetime: Duration,
    issuer_lifetime: Duration,
    now: OffsetDateTime,
) -> Result<Generated, CaError> {
    let ca = |cn: String, lifetime: Duration, path_len: u8| {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::from_secs(60);
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial());
        params
    };
    let anchor_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let anchor_params = ca(format!("root.linkerd.{trust_domain}"), anchor_lifetime, 1);
    let anchor = anchor_params.self_signed(&anchor_key)?;
    let issuer_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut issuer_params = ca(
        format!("identity.linkerd.{trust_domain}"),
        issuer_lifetime.min(anchor_lifetime),
        0,
    );
    issuer_params.use_authority_key_identifier_extension = true;
    let signer = rcgen::Issuer::new(anchor_params, &anchor_key);
    let issuer = issuer_params.signed_by(&issuer_key, &signer)?;
    Ok(Generated {
        trust_anchor_pem: anchor.pem(),
        trust_anchor_key_pem: anchor_key.serialize_pem(),
        issuer_pem: issuer.pem(),
        issuer_key_pem: issuer_key.serialize_pem(),
    })
}

/// A TLS serving certificate for an in-cluster HTTPS service (the proxy
/// injector's webhook): the CA the API server is given as `caBundle`, and a
/// leaf for `dns_names` signed by it, as PEM.
pub struct Serving {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn generate_serving(
    dns_names: &[String],
    lifetime: Duration,
    now: OffsetDateTime,
) -> Result<Serving, CaError> {
    let Some(first) = dns_names.first() else {
        return Err(CaError::Generate(rcgen::Error::CouldNotParseCertificate));
    };
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("ca.{first}"));
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - Duration::from_secs(60);
    ca_params.not_after = now + lifetime;
    ca_params.serial_number = Some(random_serial());
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut params = CertificateParams::new(dns_names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.clone());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::from_secs(60);
    params.not_after = now + lifetime;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let signer = rcgen::Issuer::new(ca_params, &ca_key);
    let cert = params.signed_by(&key, &signer)?;
    Ok(Serving {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// 16 random bytes: serials must be unique per issuer, and a proxy keeps its
/// key (so a serial derived from it) across renewals.
fn random_serial() -> SerialNumber {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source failed");
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<Vec<u8>>, CaError> {
    let mut ders = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| CaError::BadCertificate {
            what,
            reason: e.to_string(),
        })?;
        if block.label == "CERTIFICATE" {
            ders.push(block.contents);
        }
    }
    if ders.is_empty() {
        return Err(CaError::NoCertificate(what));
    }
    Ok(ders)
}

fn parse<'a>(what: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| CaError::BadCertificate {
            what,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn generated() -> (Generated, TrustAnchors) {
        let g = generate("cluster.local", 365 * DAY, 30 * DAY, now()).unwrap();
        let anchors = TrustAnchors::from_pem(&g.trust_anchor_pem).unwrap();
        (g, anchors)
    }

    fn csr(names: &[&str]) -> (Csr, KeyPair) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        (Csr::from_der(&der).unwrap(), key)
    }

    #[test]
    fn generated_issuers_load_and_sign() {
        let (g, anchors) = generated();
        let issuer = Issuer::from_pem(&g.issuer_pem, &g.issuer_key_pem, &anchors, now()).unwrap();
        let name = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local";
        let (req, _) = csr(&[name]);
        assert_eq!(req.sans(), [format!("dns:{name}")]);
        let at = now();
        let leaf = issuer
            .sign(&req, name, DAY, Duration::from_secs(20), at)
            .unwrap();
        let cert = parse("leaf", &leaf.der).unwrap();
        let issuer_cert = parse("issuer", issuer.cert_der()).unwrap();
        assert!(
            cert.verify_signature(Some(issuer_cert.public_key()))
                .is_ok()
        );
        assert!(!cert.is_ca());
        let validity = cert.validity();
        assert_eq!(
            validity.not_after.timestamp() - validity.not_before.timestamp(),
            24 * 3600 + 20
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let sans = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(sans.general_names.len(), 1);
    }

    #[test]
    fn leaves_never_outlive_the_issuer() {
        let at = now();
        let g = generate("cluster.local", 365 * DAY, Duration::from_secs(3600), at).unwrap();
        let anchors = TrustAnchors::from_pem(&g.trust_anchor_pem).unwrap();
        let issuer = Issuer::from_pem(&g.issuer_pem, &g.issuer_key_pem, &anchors, at).unwrap();
        let (req, _) = csr(&["a.b"]);
        let leaf = issuer.sign(&req, "a.b", DAY, Duration::ZERO, at).unwrap();
        assert_eq!(leaf.not_after, issuer.not_after());
    }

    #[test]
    fn bad_issuers_are_refused_with_the_reason() {
        let (g, anchors) = generated();
        let (other, other_anchors) = generated();
        // Signed by another root.
        let err = Issuer::from_pem(&g.issuer_pem, &g.issuer_key_pem, &other_anchors, now());
        assert!(matches!(err, Err(CaError::Unchained(1))), "{err:?}");
        // Someone else's key.
        let err = Issuer::from_pem(&g.issuer_pem, &other.issuer_key_pem, &anchors, now());
        assert!(matches!(err, Err(CaError::KeyMismatch)), "{err:?}");
        // Expired: checked a year and a day on.
        let later = now() + 366 * DAY;
        let err = Issuer::from_pem(&g.issuer_pem, &g.issuer_key_pem, &anchors, later);
        assert!(matches!(err, Err(CaError::Expired(_))), "{err:?}");
        // A leaf is not a CA.
        let issuer = Issuer::from_pem(&g.issuer_pem, &g.issuer_key_pem, &anchors, now()).unwrap();
        let (req, key) = csr(&["a.b"]);
        let leaf = issuer
            .sign(&req, "a.b", DAY, Duration::ZERO, now())
            .unwrap();
        let leaf_pem = pem_of(&leaf.der);
        let mut chain = TrustAnchors::from_pem(&g.issuer_pem).unwrap();
        chain.ders.push(anchors.ders[0].clone());
        let err = Issuer::from_pem(&leaf_pem, &key.serialize_pem(), &chain, now());
        assert!(matches!(err, Err(CaError::NotACa)), "{err:?}");
        // Not PEM at all.
        let err = Issuer::from_pem("hello", &g.issuer_key_pem, &anchors, now());
        assert!(matches!(err, Err(CaError::NoCertificate(_))), "{err:?}");
        assert!(Csr::from_der(b"garbage").is_err());
    }

    fn pem_of(der: &[u8]) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", der))
    }
}
