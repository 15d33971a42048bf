//! A meshed world on loopback: a trust anchor and issuer, the identity
//! service (local token backend), and proxies configured with identities.
//!
//! Pods are plain processes here: each proxy's inbound side is told where its
//! application is (`LINKERD2_PROXY_INBOUND_ORIG_DST_ADDR`) and destination is
//! told that the service's endpoints are the proxies' inbound addresses.

use crate::{
    controller::{Backend, Controller},
    proxy::{Builder, Proxy},
};
use linkerd_pki::ca;
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

pub const TRUST_DOMAIN: &str = "cluster.local";

/// The identity name of ServiceAccount `sa` in namespace `ns`.
pub fn identity(ns: &str, sa: &str) -> String {
    linkerd_pki::Naming::new("linkerd", TRUST_DOMAIN).identity(sa, ns)
}

pub struct Mesh {
    pub identity: Controller,
    /// The trust anchor, as the proxies are given it.
    pub trust_anchors: String,
    /// Holds the certificates and the tokens.
    pub dir: PathBuf,
}

impl Mesh {
    /// A fresh trust anchor and issuer, and an identity service that knows a
    /// token for each `(namespace, service account)`; `extra` flags go to
    /// the identity service (`--issuance-lifetime 3s`, say).
    pub async fn start(accounts: &[(&str, &str)], extra: &[&str]) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("l5d-mesh-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mesh dir");
        let trust_anchors = write_certs(&dir);
        let mut tokens = String::from("tokens:\n");
        for (ns, sa) in accounts {
            tokens.push_str(&format!(
                "  - {{token: {ns}-{sa}-token, namespace: {ns}, serviceAccount: {sa}}}\n"
            ));
            std::fs::write(
                dir.join(format!("{ns}-{sa}.token")),
                format!("{ns}-{sa}-token"),
            )
            .unwrap();
        }
        let identity = Controller::identity_with(Backend::Local, &tokens, &dir, extra).await;
        Self {
            identity,
            trust_anchors,
            dir,
        }
    }

    /// A proxy that is ServiceAccount `sa` of namespace `ns`.
    pub fn proxy(&self, ns: &str, sa: &str) -> Builder {
        Proxy::builder()
            .without("LINKERD2_PROXY_IDENTITY_DISABLED")
            .env("LINKERD2_PROXY_IDENTITY_LOCAL_NAME", identity(ns, sa))
            .env("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", &self.trust_anchors)
            .env(
                "LINKERD2_PROXY_IDENTITY_TOKEN_FILE",
                self.dir.join(format!("{ns}-{sa}.token")).display(),
            )
            .env("LINKERD2_PROXY_IDENTITY_SVC_ADDR", self.identity.grpc)
    }
}

/// A fresh trust anchor (a year) and issuer (30 days) in `dir`, named as the
/// chart mounts them (`ca-bundle.crt`, `crt.pem`, `key.pem`); the anchor's PEM.
pub fn write_certs(dir: &std::path::Path) -> String {
    let day = Duration::from_secs(24 * 3600);
    let now = time::OffsetDateTime::now_utc();
    let g = ca::generate(TRUST_DOMAIN, 365 * day, 30 * day, now).expect("generate CA");
    std::fs::write(dir.join("ca-bundle.crt"), &g.trust_anchor_pem).unwrap();
    std::fs::write(dir.join("crt.pem"), &g.issuer_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &g.issuer_key_pem).unwrap();
    g.trust_anchor_pem
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the proxy says it is ready (certified, when meshed).
pub async fn ready(proxy: &Proxy) {
    let ready = crate::eventually(Duration::from_secs(20), || async {
        (proxy.admin("GET", "/ready").await.0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "proxy never became ready");
}

/// A TCP relay that keeps a copy of every byte sent through it towards
/// `upstream`: what a packet capture between two proxies would see.
pub struct Wire {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Wire {
    pub async fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let copy = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let copy = copy.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut dr, mut dw) = down.split();
                    let (mut ur, mut uw) = up.split();
                    let to_up = async {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            match dr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    copy.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if uw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = uw.shutdown().await;
                    };
                    let to_down = async {
                        let _ = tokio::io::copy(&mut ur, &mut dw).await;
                        let _ = dw.shutdown().await;
                    };
                    tokio::join!(to_up, to_down);
                });
            }
        });
        Self { addr, seen }
    }

    /// Every byte clients sent through the relay so far.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Mesh {
    /// TLS settings for a client that is ServiceAccount `sa` of `ns` (a
    /// token for it must be known): a certificate from the identity service,
    /// trusting the mesh's anchor. For talking to proxies as, say, the tap
    /// controller.
    pub async fn client_tls(&self, ns: &str, sa: &str) -> std::sync::Arc<rustls::ClientConfig> {
        use linkerd2_proxy_api::identity::{CertifyRequest, identity_client::IdentityClient};
        use rustls::pki_types::{
            CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject,
        };
        let name = identity(ns, sa);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::new(vec![name.clone()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let mut client = IdentityClient::connect(format!("http://{}", self.identity.grpc))
            .await
            .expect("identity service");
        let token = std::fs::read(self.dir.join(format!("{ns}-{sa}.token"))).expect("token");
        let rsp = client
            .certify(CertifyRequest {
                identity: name,
                token,
                certificate_signing_request: csr.der().to_vec(),
            })
            .await
            .expect("certify")
            .into_inner();
        let mut chain = vec![CertificateDer::from(rsp.leaf_certificate)];
        chain.extend(
            rsp.intermediate_certificates
                .into_iter()
                .map(CertificateDer::from),
        );
        let mut roots = rustls::RootCertStore::empty();
        for anchor in CertificateDer::pem_slice_iter(self.trust_anchors.as_bytes()) {
            roots.add(anchor.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        std::sync::Arc::new(config)
    }
}
