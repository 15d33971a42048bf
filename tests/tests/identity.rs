//! The identity service across binaries: a real `linkerd-controller identity`
//! on either token backend, called with Linkerd2's own `linkerd2-proxy-api`.

use linkerd_pki::ca;
use linkerd_tests::{
    controller::{Backend, Controller, identity_command},
    proxy::scrape,
};
use linkerd2_proxy_api::identity::{
    CertifyRequest, CertifyResponse, identity_client::IdentityClient,
};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};
use time::OffsetDateTime;
use tonic::{Code, Status};
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

const WEB: &str = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local";
const DB: &str = "db.emojivoto.serviceaccount.identity.linkerd.cluster.local";
const TOPOLOGY: &str = "tokens:\n  - {token: web-token, namespace: emojivoto, serviceAccount: web}\n  - {token: db-token, namespace: emojivoto, serviceAccount: db}\n";
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A directory holding a fresh trust anchor and issuer, as mounted in a pod.
fn certs(tag: &str, issuer_lifetime: Duration, now: OffsetDateTime) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("l5d-certs-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_certs(&dir, issuer_lifetime, now);
    dir
}

fn write_certs(dir: &Path, issuer_lifetime: Duration, now: OffsetDateTime) {
    let g = ca::generate("cluster.local", 365 * DAY, issuer_lifetime, now).unwrap();
    // Replaced atomically, as a Secret's mount is.
    for (name, text) in [
        ("ca-bundle.crt", g.trust_anchor_pem),
        ("crt.pem", g.issuer_pem),
        ("key.pem", g.issuer_key_pem),
    ] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

fn csr(names: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

async fn certify(
    ctl: &Controller,
    identity: &str,
    token: &str,
    csr: Vec<u8>,
) -> Result<CertifyResponse, Status> {
    let mut client = IdentityClient::connect(format!("http://{}", ctl.grpc))
        .await
        .unwrap();
    client
        .certify(CertifyRequest {
            identity: identity.into(),
            token: token.as_bytes().to_vec(),
            certificate_signing_request: csr,
        })
        .await
        .map(|r| r.into_inner())
}

async fn identity(backend: Backend, certs: &Path, extra: &[&str]) -> Controller {
    let ctl = Controller::identity_with(backend, TOPOLOGY, certs, extra).await;
    if let Some(api) = ctl.api() {
        api.add_token("web-token", "system:serviceaccount:emojivoto:web");
        api.add_token("db-token", "system:serviceaccount:emojivoto:db");
    }
    ctl
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .contents
}

linkerd_tests::on_both_backends!(
    issues_a_certificate_for_a_proven_identity,
    refuses_each_bad_request_with_its_status_and_reason,
);

async fn issues_a_certificate_for_a_proven_identity(backend: Backend) {
    let dir = certs(
        &format!("issue-{backend:?}"),
        30 * DAY,
        OffsetDateTime::now_utc(),
    );
    let ctl = identity(backend, &dir, &[]).await;
    let rsp = certify(&ctl, WEB, "web-token", csr(&[WEB])).await.unwrap();

    let issuer_der = pem_der(&dir.join("crt.pem"));
    assert_eq!(
        rsp.intermediate_certificates,
        std::slice::from_ref(&issuer_der)
    );
    let (_, leaf) = X509Certificate::from_der(&rsp.leaf_certificate).unwrap();
    let (_, issuer) = X509Certificate::from_der(&issuer_der).unwrap();
    leaf.verify_signature(Some(issuer.public_key()))
        .expect("the leaf is signed by the issuer");
    let sans = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        format!("{:?}", sans.general_names),
        format!("[DNSName(\"{WEB}\")]")
    );
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    // 24h from now by default, and valid from 20s ago.
    let valid_until = rsp.valid_until.unwrap().seconds;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (valid_until - (now + 24 * 3600)).abs() < 60,
        "{valid_until}"
    );
    assert!((leaf.validity().not_before.timestamp() - (now - 20)).abs() < 60);

    if let Some(api) = ctl.api() {
        assert_eq!(
            api.reviewed_audiences(),
            [vec!["identity.l5d.io".to_string()]]
        );
    }
    let m = scrape(ctl.admin).await;
    assert_eq!(m.sum("identity_cert_issued_total", &[]), 1.0, "{}", m.text);
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn refuses_each_bad_request_with_its_status_and_reason(backend: Backend) {
    let dir = certs(
        &format!("refuse-{backend:?}"),
        30 * DAY,
        OffsetDateTime::now_utc(),
    );
    let ctl = identity(backend, &dir, &[]).await;
    let cases: [(&str, &str, Vec<u8>, Code, &str); 7] = [
        (
            "",
            "web-token",
            csr(&[WEB]),
            Code::InvalidArgument,
            "missing_field",
        ),
        (WEB, "", csr(&[WEB]), Code::InvalidArgument, "missing_field"),
        (
            WEB,
            "web-token",
            b"not a CSR".to_vec(),
            Code::InvalidArgument,
            "bad_csr",
        ),
        (
            WEB,
            "web-token",
            csr(&[WEB, DB]),
            Code::InvalidArgument,
            "csr_names",
        ),
        (
            WEB,
            "web-token",
            csr(&[DB]),
            Code::InvalidArgument,
            "csr_names",
        ),
        (
            WEB,
            "stolen",
            csr(&[WEB]),
            Code::FailedPrecondition,
            "invalid_token",
        ),
        (
            WEB,
            "db-token",
            csr(&[WEB]),
            Code::FailedPrecondition,
            "identity_mismatch",
        ),
    ];
    for (identity, token, csr, code, reason) in cases {
        let status = certify(&ctl, identity, token, csr).await.unwrap_err();
        assert_eq!(status.code(), code, "{reason}: {status:?}");
        assert!(!status.message().is_empty());
        let m = scrape(ctl.admin).await;
        assert!(
            m.sum("identity_cert_refused_total", &[("reason", reason)]) >= 1.0,
            "{reason}: {}",
            m.text
        );
    }
    // The token's own identity still works.
    assert!(certify(&ctl, DB, "db-token", csr(&[DB])).await.is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_lifetime_is_configurable() {
    let dir = certs("lifetime", 30 * DAY, OffsetDateTime::now_utc());
    let ctl = identity(Backend::Local, &dir, &["--issuance-lifetime", "1h"]).await;
    let rsp = certify(&ctl, WEB, "web-token", csr(&[WEB])).await.unwrap();
    let (_, leaf) = X509Certificate::from_der(&rsp.leaf_certificate).unwrap();
    let validity = leaf.validity();
    assert_eq!(
        validity.not_after.timestamp() - validity.not_before.timestamp(),
        3600 + 20
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A token the API authenticated is not reviewed again while it lasts; a
/// review the API does not answer in time fails `Unavailable` (the proxy
/// retries) instead of holding the call.
#[tokio::test]
async fn token_reviews_are_cached_and_time_out() {
    let dir = certs("reviews", 30 * DAY, OffsetDateTime::now_utc());
    let ctl = identity(Backend::Kubernetes, &dir, &[]).await;
    let api = ctl.api().unwrap();
    for _ in 0..3 {
        certify(&ctl, WEB, "web-token", csr(&[WEB])).await.unwrap();
    }
    assert_eq!(
        api.reviewed_audiences().len(),
        1,
        "the token was reviewed again"
    );
    // Refusals are not remembered: a bad token is reviewed each time.
    for _ in 0..2 {
        let err = certify(&ctl, WEB, "stolen", csr(&[WEB])).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    }
    assert_eq!(api.reviewed_audiences().len(), 3);

    api.delay_token_reviews(Duration::from_secs(60));
    let started = std::time::Instant::now();
    let err = certify(&ctl, DB, "db-token", csr(&[DB])).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("timed out"), "{err:?}");
    assert!(took < Duration::from_secs(30), "the call was held {took:?}");
    println!("an unanswered TokenReview failed after {took:?}");
    // The cached token still works while the API hangs.
    certify(&ctl, WEB, "web-token", csr(&[WEB])).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The issuer's files are re-read: a new issuer signs from then on.
#[tokio::test]
async fn a_rotated_issuer_is_used_without_a_restart() {
    let dir = certs("rotate", 30 * DAY, OffsetDateTime::now_utc());
    let ctl = identity(Backend::Local, &dir, &[]).await;
    let first = certify(&ctl, WEB, "web-token", csr(&[WEB])).await.unwrap();
    write_certs(&dir, 30 * DAY, OffsetDateTime::now_utc());
    let rotated = pem_der(&dir.join("crt.pem"));
    assert_ne!(first.intermediate_certificates[0], rotated);
    let found = linkerd_tests::eventually(Duration::from_secs(5), || async {
        let rsp = certify(&ctl, WEB, "web-token", csr(&[WEB])).await.ok()?;
        (rsp.intermediate_certificates[0] == rotated).then_some(())
    })
    .await;
    assert!(found.is_some(), "the rotated issuer was never used");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The issuer's expiry is exported as soon as it is loaded (an alert must
/// not wait for the first proxy to ask) and follows a rotation.
#[tokio::test]
async fn the_issuers_expiry_is_exported_from_start_up_and_follows_rotation() {
    let dir = certs("expiry", 30 * DAY, OffsetDateTime::now_utc());
    let ctl = identity(Backend::Local, &dir, &[]).await;
    let expiry = || async {
        scrape(ctl.admin)
            .await
            .sum("identity_issuer_expiry_timestamp_seconds", &[])
    };
    let days_left = |at: f64| (at - OffsetDateTime::now_utc().unix_timestamp() as f64) / 86400.0;
    let at_start = expiry().await;
    assert!((days_left(at_start) - 30.0).abs() < 0.01, "{at_start}");

    write_certs(&dir, 10 * DAY, OffsetDateTime::now_utc());
    let rotated = linkerd_tests::eventually(Duration::from_secs(5), || async {
        let at = expiry().await;
        ((days_left(at) - 10.0).abs() < 0.01).then_some(at)
    })
    .await;
    assert!(rotated.is_some(), "the gauge still says {}", expiry().await);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An issuer that cannot sign valid certificates stops start-up with one
/// line that says why.
#[tokio::test]
async fn unusable_issuers_stop_start_up() {
    let now = OffsetDateTime::now_utc();
    let expired = certs("expired", DAY, now - 2 * DAY);
    let unchained = certs("unchained", 30 * DAY, now);
    let other = certs("other", 30 * DAY, now);
    std::fs::copy(other.join("ca-bundle.crt"), unchained.join("ca-bundle.crt")).unwrap();
    for (dir, expected) in [(&expired, "expired"), (&unchained, "not signed by any")] {
        let (mut cmd, _, _) = identity_command(Backend::Local, TOPOLOGY, dir, &[]).await;
        let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
            .await
            .expect("the controller did not exit")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains(expected) && last.contains("crt.pem"),
            "{stderr}"
        );
    }
    for dir in [expired, unchained, other] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
