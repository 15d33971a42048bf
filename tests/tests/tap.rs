//! The proxy's tap server across binaries: a real proxy with an identity,
//! tapped over mTLS as the tap controller, with Linkerd2's own API crate.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use linkerd_tests::{
    backends,
    echo::{Msg, echo_client::EchoClient},
    mesh::{self, Mesh, identity},
    proxy::Proxy,
};
use linkerd2_proxy_api::{
    http_types::{HttpMethod, http_method},
    tap::{
        ObserveRequest, TapEvent, eos,
        observe_request::{
            Extract, Match,
            extract::{self, http as extract_http},
            r#match::{self, Http, Seq, http as match_http},
        },
        tap_client::TapClient,
        tap_event::{self, http::Event},
    },
};
use std::{net::SocketAddr, time::Duration};
use tokio::net::TcpStream;
use tonic::{Code, Streaming, transport::Channel};

const NS: &str = "emojivoto";

fn tap_name() -> String {
    identity("linkerd", "linkerd-tap")
}

async fn mesh() -> Mesh {
    Mesh::start(&[("linkerd", "linkerd-tap"), (NS, "web")], &[]).await
}

/// The `web` pod's proxy in front of `app`, serving tap to the tap identity.
async fn web(mesh: &Mesh, app: SocketAddr) -> Proxy {
    let proxy = mesh
        .proxy(NS, "web")
        .inbound_target(app)
        .env("LINKERD2_PROXY_TAP_SVC_NAME", tap_name())
        .spawn()
        .await;
    mesh::ready(&proxy).await;
    proxy
}

async fn tap_client(mesh: &Mesh, proxy: &Proxy, ns: &str, sa: &str) -> TapClient<Channel> {
    let tls = mesh.client_tls(ns, sa).await;
    let channel =
        linkerd_controller::tap::tls_channel(proxy.tap.unwrap(), &identity(NS, "web"), tls);
    TapClient::new(channel)
}

fn path_prefix(prefix: &str) -> Match {
    Match {
        r#match: Some(r#match::Match::Http(Http {
            r#match: Some(match_http::Match::Path(match_http::StringMatch {
                r#match: Some(match_http::string_match::Match::Prefix(prefix.into())),
            })),
        })),
    }
}

fn method_is(m: http_method::Registered) -> Match {
    Match {
        r#match: Some(r#match::Match::Http(Http {
            r#match: Some(match_http::Match::Method(HttpMethod {
                r#type: Some(http_method::Type::Registered(m as i32)),
            })),
        })),
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Bytes) {
    request(addr, "GET", path).await
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "web.emojivoto.svc.cluster.local")
        .header("x-tapped", "yes")
        .body(Full::<Bytes>::default())
        .unwrap();
    let rsp = send.send_request(req).await.unwrap();
    let status = rsp.status().as_u16();
    (status, rsp.into_body().collect().await.unwrap().to_bytes())
}

fn http_event(e: &TapEvent) -> &Event {
    match &e.event {
        Some(tap_event::Event::Http(h)) => h.event.as_ref().unwrap(),
        None => panic!("no event in {e:?}"),
    }
}

async fn next(events: &mut Streaming<TapEvent>) -> TapEvent {
    tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("a tap event in time")
        .expect("tap stream")
        .expect("an event, not the end")
}

#[tokio::test]
async fn tap_streams_each_requests_events_and_ends_at_its_limit() {
    let mesh = mesh().await;
    let web = web(&mesh, backends::http().await).await;
    let mut tap = tap_client(&mesh, &web, "linkerd", "linkerd-tap").await;
    let req = ObserveRequest {
        limit: 2,
        r#match: Some(Match {
            r#match: Some(r#match::Match::All(Seq {
                matches: vec![path_prefix("/"), method_is(http_method::Registered::Get)],
            })),
        }),
        extract: Some(Extract {
            extract: Some(extract::Extract::Http(extract::Http {
                extract: Some(extract_http::Extract::Headers(extract_http::Headers {})),
            })),
        }),
    };
    let mut events = tap.observe(req).await.unwrap().into_inner();

    let (status, body) = get(web.inbound, "/echo-this").await;
    assert_eq!(status, 200);
    let req_init = next(&mut events).await;
    assert_eq!(
        req_init.proxy_direction,
        tap_event::ProxyDirection::Inbound as i32
    );
    let Event::RequestInit(init) = http_event(&req_init) else {
        panic!("{req_init:?}")
    };
    assert_eq!(init.path, "/echo-this");
    assert_eq!(init.authority, "web.emojivoto.svc.cluster.local");
    assert_eq!(
        init.method.as_ref().unwrap().r#type,
        Some(http_method::Type::Registered(
            http_method::Registered::Get as i32
        ))
    );
    let headers = &init.headers.as_ref().unwrap().headers;
    assert!(
        headers
            .iter()
            .any(|h| h.name == "x-tapped" && h.value == b"yes")
    );
    let stream_id = init.id.unwrap();
    let source = req_init.source.as_ref().unwrap();
    assert_eq!(
        source.ip.as_ref().and_then(|ip| ip.ip),
        Some(linkerd2_proxy_api::net::ip_address::Ip::Ipv4(u32::from(
            std::net::Ipv4Addr::LOCALHOST
        )))
    );
    assert_ne!(source.port, 0);
    let labels = &req_init.source_meta.as_ref().unwrap().labels;
    assert_eq!(labels.get("tls").map(String::as_str), Some("no_identity"));

    let rsp = next(&mut events).await;
    let Event::ResponseInit(rsp_init) = http_event(&rsp) else {
        panic!("{rsp:?}")
    };
    assert_eq!(rsp_init.id, Some(stream_id));
    assert_eq!(rsp_init.http_status, 200);
    let end = next(&mut events).await;
    let Event::ResponseEnd(end) = http_event(&end) else {
        panic!("{end:?}")
    };
    assert_eq!(end.id, Some(stream_id));
    assert_eq!(end.response_bytes, body.len() as u64);
    assert!(end.eos.is_none(), "a clean HTTP end: {:?}", end.eos);

    // A POST does not match; the second GET is the last the limit allows.
    assert_eq!(request(web.inbound, "POST", "/posted").await.0, 200);
    get(web.inbound, "/second").await;
    let second = next(&mut events).await;
    let Event::RequestInit(init) = http_event(&second) else {
        panic!("{second:?}")
    };
    assert_eq!(init.path, "/second");
    assert_ne!(init.id, Some(stream_id));
    next(&mut events).await;
    next(&mut events).await;
    get(web.inbound, "/third").await;
    let ended = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("the stream ends");
    assert!(
        matches!(ended, Ok(None)),
        "ends with OK after the limit: {ended:?}"
    );
}

#[tokio::test]
async fn tap_reports_grpc_status_and_filters_that_match_nothing_see_nothing() {
    let mesh = mesh().await;
    let web = web(&mesh, backends::grpc_echo().await).await;
    let mut tap = tap_client(&mesh, &web, "linkerd", "linkerd-tap").await;
    let mut nothing = tap
        .observe(ObserveRequest {
            limit: 10,
            r#match: Some(path_prefix("/nothing/")),
            extract: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut grpc_events = tap
        .observe(ObserveRequest {
            limit: 10,
            r#match: Some(path_prefix("/linkerd.test.echo.Echo/")),
            extract: None,
        })
        .await
        .unwrap()
        .into_inner();

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", web.inbound))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut echo = EchoClient::new(channel);
    echo.unary(Msg {
        text: "ok".into(),
        count: 1,
    })
    .await
    .unwrap();
    let err = echo
        .fail(Msg {
            text: String::new(),
            count: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let mut ends = Vec::new();
    while ends.len() < 2 {
        let e = next(&mut grpc_events).await;
        if let Event::ResponseEnd(end) = http_event(&e) {
            ends.push(end.eos.and_then(|e| e.end));
        }
    }
    assert_eq!(
        ends,
        [
            Some(eos::End::GrpcStatusCode(0)),
            Some(eos::End::GrpcStatusCode(5))
        ]
    );
    let quiet = tokio::time::timeout(Duration::from_millis(300), nothing.message()).await;
    assert!(quiet.is_err(), "a filter matching nothing saw {quiet:?}");
}

#[tokio::test]
async fn only_the_tap_identity_may_tap() {
    let mesh = mesh().await;
    let web = web(&mesh, backends::http().await).await;
    let any = ObserveRequest {
        limit: 1,
        r#match: Some(path_prefix("/")),
        extract: None,
    };
    // Another workload's certificate.
    let mut impostor = tap_client(&mesh, &web, NS, "web").await;
    let refused = impostor.observe(any.clone()).await;
    assert!(refused.is_err(), "{refused:?}");
    // Plaintext gRPC.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", web.tap.unwrap()))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let refused = TapClient::new(channel).observe(any.clone()).await;
        assert!(refused.is_err(), "{refused:?}");
    }
    // The tap controller is served, and bad requests are refused by name.
    let mut tap = tap_client(&mesh, &web, "linkerd", "linkerd-tap").await;
    let no_limit = ObserveRequest {
        limit: 0,
        ..any.clone()
    };
    let e = tap.observe(no_limit).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("limit"), "{e:?}");
    let no_match = ObserveRequest {
        r#match: None,
        ..any.clone()
    };
    let e = tap.observe(no_match).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(tap.observe(any).await.is_ok());
}

linkerd_tests::on_both_backends!(the_tap_controller_finds_pods_on_either_backend);

/// `web-0` at its own loopback address `ip`: its application there too (as
/// inbound traffic reaches it), its proxy's tap on `ip:4190`. Returns the
/// proxy and the pod's topology entry.
async fn loopback_web_pod(mesh: &Mesh, ip: &str) -> (Proxy, String) {
    let app = backends::http_on(tokio::net::TcpListener::bind((ip, 0)).await.unwrap());
    let web = mesh
        .proxy(NS, "web")
        .inbound_target(app)
        .env("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", format!("{ip}:0"))
        .env("LINKERD2_PROXY_CONTROL_LISTEN_ADDR", format!("{ip}:4190"))
        .env("LINKERD2_PROXY_TAP_SVC_NAME", tap_name())
        .spawn()
        .await;
    mesh::ready(&web).await;
    let entry = format!(
        "  - {{name: web-0, namespace: {NS}, ip: {ip}, labels: {{app: web}}, owner: {{kind: Deployment, name: web}}, serviceAccount: web, meshed: true}}\n"
    );
    (web, entry)
}

/// The tap controller on `backend` holding `topology`, certified by `mesh`'s
/// identity service, with `extra` flags.
async fn tap_controller(
    mesh: &Mesh,
    backend: linkerd_tests::controller::Backend,
    topology: &str,
    extra: &[&str],
) -> linkerd_tests::controller::Controller {
    let token = mesh.dir.join("linkerd-linkerd-tap.token");
    let trust = mesh.dir.join("ca-bundle.crt");
    let identity_addr = mesh.identity.grpc.to_string();
    let mut args = vec![
        "--identity-addr",
        &identity_addr,
        "--token-file",
        token.to_str().unwrap(),
        "--trust-anchors",
        trust.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    linkerd_tests::controller::Controller::tap_with(backend, topology, &args).await
}

/// The tap controller on either discovery backend: a pod at its own loopback
/// address (its proxy's tap on 4190 there, as in a pod) is found as
/// `deploy/web` and its requests come back named by their pods.
async fn the_tap_controller_finds_pods_on_either_backend(
    backend: linkerd_tests::controller::Backend,
) {
    use linkerd_proxy_api::{
        tap::tap_event::{Event as Ev, http::Event as Http},
        tap_controller::{Resource, TapRequest, tap_by_resource_client::TapByResourceClient},
    };
    // Each backend gets its own address: the two runs may overlap.
    let ip = match backend {
        linkerd_tests::controller::Backend::Local => "127.0.0.41",
        linkerd_tests::controller::Backend::Kubernetes => "127.0.0.42",
    };
    let mesh = mesh().await;
    let (web, entry) = loopback_web_pod(&mesh, ip).await;
    let tap = tap_controller(&mesh, backend, &format!("pods:\n{entry}"), &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", tap.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = TapByResourceClient::new(channel);
    let target = |kind: &str, name: &str| Resource {
        r#type: kind.into(),
        namespace: NS.into(),
        name: name.into(),
    };
    // A Kubernetes backend lists after start: ask until the pod is known.
    let mut events = linkerd_tests::eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        let req = TapRequest {
            target: Some(target("deploy", "web")),
            ..Default::default()
        };
        async move { client.tap(req).await.ok() }
    })
    .await
    .expect("tap deploy/web")
    .into_inner();
    get(web.inbound, "/named").await;
    let init = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("an event in time")
        .expect("tap stream")
        .expect("an event");
    let Some(Ev::Http(h)) = &init.event else {
        panic!("{init:?}")
    };
    assert!(matches!(&h.event, Some(Http::RequestInit(r)) if r.path == "/named"));
    let dst = &init.destination_meta.as_ref().unwrap().labels;
    assert_eq!(dst.get("pod").map(String::as_str), Some("web-0"));
    assert_eq!(dst.get("deployment").map(String::as_str), Some("web"));

    // Refusals name the problem.
    let e = client
        .tap(TapRequest {
            target: Some(target("deploy", "nothing")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("no pods found for deployment/nothing"),
        "{e:?}"
    );
    let e = client
        .tap(TapRequest {
            target: Some(target("svc", "web")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

/// A CA and client certificates it signed for each of `cns`, as the API
/// server's front proxy has: the CA, then (certificate, key) per name, PEM.
fn front_proxy(cns: &[&str]) -> (String, Vec<(String, String)>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "front-proxy-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let certs = cns
        .iter()
        .map(|cn| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, *cn);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        })
        .collect();
    (ca_pem, certs)
}

/// One request straight to the tap API (not through the API server) with
/// `client` (certificate and key) or none: its status and body.
async fn tap_api_request(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    user: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            ServerName::try_from("linkerd-tap.linkerd.svc").unwrap(),
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("x-remote-user", user)
        .header("x-remote-group", "system:authenticated")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let rsp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = rsp.status().as_u16();
    if status == 200 {
        // A stream: until its first whole event.
        let mut body = rsp.into_body();
        let mut data = Vec::new();
        let mut decoder = linkerd_proxy_api::tap_controller::api::Decoder::default();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), body.frame()).await;
            let chunk = match next {
                Ok(Some(Ok(f))) => f.into_data().unwrap_or_default(),
                other => return Err(format!("no event: {other:?}")),
            };
            data.extend_from_slice(&chunk);
            decoder.push(&chunk);
            if decoder.next_event().map_err(|e| e.to_string())?.is_some() {
                return Ok((status, Bytes::from(data)));
            }
        }
    }
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, body))
}

/// In a cluster, `linkerd tap` goes through the Kubernetes API, as
/// Linkerd's: the API server checks the user's RBAC on `tap.linkerd.io`,
/// then proxies to tap's aggregated API with its front-proxy certificate;
/// tap believes the user only with that certificate and asks the API server
/// again (SubjectAccessReview) before tapping.
#[tokio::test]
async fn linkerd_tap_goes_through_the_api_servers_aggregation_and_rbac() {
    use linkerd_proxy_api::tap_controller::{Resource, TapRequest, api as tap_api};
    use tokio::io::{AsyncBufReadExt, BufReader};
    let web_ip = "127.0.0.45";
    let mesh = mesh().await;
    let (web, web_pod) = loopback_web_pod(&mesh, web_ip).await;

    // The cluster: the web pod, the API server's front-proxy settings, and
    // tap's serving certificate (as `linkerd install` makes it).
    let api = linkerd_tests::kubeapi::FakeApi::start().await;
    api.set_topology(&serde_saphyr::from_str(&format!("pods:\n{web_pod}")).unwrap());
    let (fp_ca, certs) = front_proxy(&["front-proxy-client", "someone-else"]);
    let (fp_cert, fp_key) = certs[0].clone();
    let (stranger_cert, stranger_key) = certs[1].clone();
    api.put(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "requestheader-client-ca-file": fp_ca,
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        },
    }));
    let serving = linkerd_pki::ca::generate_serving(
        &["linkerd-tap.linkerd.svc".into()],
        Duration::from_secs(86400),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let tls_dir = mesh.dir.join("tap-tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    std::fs::write(tls_dir.join("tls.crt"), &serving.cert_pem).unwrap();
    std::fs::write(tls_dir.join("tls.key"), &serving.key_pem).unwrap();
    let apiserver_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.46:0").unwrap();
        l.local_addr().unwrap()
    };
    let token = mesh.dir.join("linkerd-linkerd-tap.token");
    let trust = mesh.dir.join("ca-bundle.crt");
    let identity_addr = mesh.identity.grpc.to_string();
    let _tap = linkerd_tests::controller::Controller::tap_on(
        api.clone(),
        &[
            "--identity-addr",
            &identity_addr,
            "--token-file",
            token.to_str().unwrap(),
            "--trust-anchors",
            trust.to_str().unwrap(),
            "--apiserver-tls-dir",
            tls_dir.to_str().unwrap(),
            "--apiserver-addr",
            &apiserver_addr.to_string(),
        ],
    )
    .await;
    api.aggregate(linkerd_tests::kubeapi::Aggregated {
        prefix: "/apis/tap.linkerd.io/".into(),
        upstream: apiserver_addr,
        server_name: "linkerd-tap.linkerd.svc".into(),
        ca_pem: serving.ca_pem.clone(),
        client_cert_pem: fp_cert.clone(),
        client_key_pem: fp_key.clone(),
    });
    let kubeconfig = api.write_kubeconfig(&mesh.dir);
    let linkerd = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(linkerd_tests::proxy::bin("linkerd"));
        cmd.args(["--kubeconfig", kubeconfig.to_str().unwrap()])
            .args(args)
            .env_remove("LINKERD_API_ADDR")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };

    // The cluster's admin taps: events.
    let mut cli = linkerd(&["tap", "deploy/web", "-n", NS]).spawn().unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    let seen = async {
        loop {
            get(web.inbound, "/through-the-api").await;
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
            {
                return line;
            }
        }
    };
    let line = match tokio::time::timeout(Duration::from_secs(15), seen).await {
        Ok(line) => line,
        Err(_) => {
            let _ = cli.start_kill();
            let out = cli.wait_with_output().await.unwrap();
            panic!(
                "linkerd tap printed nothing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    assert!(line.starts_with("req "), "{line}");
    assert!(line.contains(":path=/through-the-api"), "{line}");
    let tapped = "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/deployments/web/tap";
    assert!(
        api.requests()
            .iter()
            .any(|r| *r == format!("POST {tapped} as admin")),
        "{:?}",
        api.requests()
    );
    // Tap asked the API server about the user, for the target's tap.
    let review = api
        .subject_reviews()
        .into_iter()
        .find(|r| r["user"] == "admin")
        .expect("a SubjectAccessReview");
    let attrs = &review["resourceAttributes"];
    assert_eq!(
        (
            attrs["verb"].as_str(),
            attrs["group"].as_str(),
            attrs["resource"].as_str(),
            attrs["subresource"].as_str(),
            attrs["namespace"].as_str(),
            attrs["name"].as_str()
        ),
        (
            Some("watch"),
            Some("tap.linkerd.io"),
            Some("deployments"),
            Some("tap"),
            Some(NS),
            Some("web")
        )
    );
    drop(cli);

    // A user without RBAC on tap.linkerd.io: the API server refuses, in
    // its words, and tap is never asked.
    let out = linkerd(&["--as", "alice", "tap", "deploy/web", "-n", NS])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"deployments.tap.linkerd.io "web" is forbidden: User "alice" cannot watch resource "deployments/tap" in API group "tap.linkerd.io" in the namespace "emojivoto""#),
        "{stderr}"
    );
    assert!(!api.subject_reviews().iter().any(|r| r["user"] == "alice"));
    // Bound to the tap reader role: the same user's tap shows events.
    api.grant("alice", "watch", "tap.linkerd.io");
    let mut cli = linkerd(&["--as", "alice", "tap", "deploy/web", "-n", NS])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    let seen = async {
        loop {
            get(web.inbound, "/as-alice").await;
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
            {
                return line;
            }
        }
    };
    let line = tokio::time::timeout(Duration::from_secs(15), seen)
        .await
        .expect("alice's tap shows a request");
    assert!(line.contains(":path=/as-alice"), "{line}");
    drop(cli);

    // Straight to tap's port, past the API server: without the front
    // proxy's certificate the user headers count for nothing; with it, tap
    // still asks the API server whether the user may tap.
    let req = TapRequest {
        target: Some(Resource {
            r#type: "deployment".into(),
            namespace: NS.into(),
            name: "web".into(),
        }),
        ..Default::default()
    };
    let body = prost::Message::encode_to_vec(&req);
    let ca = serving.ca_pem.as_str();
    let (status, text) = tap_api_request(apiserver_addr, ca, None, "admin", tapped, body.clone())
        .await
        .unwrap();
    assert_eq!(status, 401, "{text:?}");
    assert!(String::from_utf8_lossy(&text).contains("front-proxy certificate"));
    // A certificate from another CA fails the handshake (or the request).
    let (_, others) = front_proxy(&["front-proxy-client"]);
    let other = tap_api_request(
        apiserver_addr,
        ca,
        Some((&others[0].0, &others[0].1)),
        "admin",
        tapped,
        body.clone(),
    )
    .await;
    assert!(other.is_err(), "{other:?}");
    // The front proxy's CA, but a name not in requestheader-allowed-names.
    let (status, text) = tap_api_request(
        apiserver_addr,
        ca,
        Some((&stranger_cert, &stranger_key)),
        "admin",
        tapped,
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "{text:?}");
    assert!(String::from_utf8_lossy(&text).contains("requestheader-allowed-names"));
    // The front proxy, for a user RBAC does not allow: tap's own review
    // refuses, in the API server's words.
    let (status, text) = tap_api_request(
        apiserver_addr,
        ca,
        Some((&fp_cert, &fp_key)),
        "mallory",
        tapped,
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "{text:?}");
    let refusal = tap_api::refusal(&text);
    assert!(
        refusal.contains(r#"User "mallory" cannot watch resource "deployments/tap""#),
        "{refusal}"
    );
    assert!(api.subject_reviews().iter().any(|r| r["user"] == "mallory"));
    // A body naming another target than the path is refused.
    let other_target = TapRequest {
        target: Some(Resource {
            r#type: "deployment".into(),
            namespace: "kube-system".into(),
            name: "coredns".into(),
        }),
        ..Default::default()
    };
    let (status, _) = tap_api_request(
        apiserver_addr,
        ca,
        Some((&fp_cert, &fp_key)),
        "admin",
        tapped,
        prost::Message::encode_to_vec(&other_target),
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    // The granted user gets the stream: a length-prefixed event frame.
    let traffic = tokio::spawn(async move {
        for _ in 0..100 {
            get(web.inbound, "/direct").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (status, frame) = tap_api_request(
        apiserver_addr,
        ca,
        Some((&fp_cert, &fp_key)),
        "alice",
        tapped,
        body,
    )
    .await
    .unwrap();
    traffic.abort();
    assert_eq!(status, 200);
    let mut decoder = tap_api::Decoder::default();
    decoder.push(&frame);
    let event = decoder.next_event().unwrap().expect("a whole event frame");
    assert!(format!("{event:?}").contains("/direct"), "{event:?}");
}
