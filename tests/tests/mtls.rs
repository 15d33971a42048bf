//! Automatic mTLS across binaries: proxies certified by the real identity
//! service, told by the real destination service which endpoints are meshed,
//! carrying HTTP/1, HTTP/2, gRPC and TCP to each other over mesh TLS.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use linkerd_tests::{
    backends::{self, h2_get, http1_get},
    controller::Controller,
    echo::{Msg, echo_client::EchoClient},
    eventually,
    mesh::{self, Mesh, Wire, contains, identity},
    proxy::Proxy,
};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const NS: &str = "emojivoto";
const WEB: &str = "web.emojivoto.svc.cluster.local:80";
const EMOJI: &str = "emoji.emojivoto.svc.cluster.local:8080";
/// `db`'s cluster IP and port: opaque TCP is resolved by address.
const DB_CLUSTER_IP: &str = "127.0.10.3:7000";
const NETWORKS: &str = "127.0.10.0/24";

/// A service whose one pod (meshed, ServiceAccount `sa`) is at `endpoint`.
fn service(name: &str, cluster_ip: &str, port: u16, sa: &str, endpoint: SocketAddr) -> String {
    format!(
        "services:\n  - {{name: {name}, namespace: {NS}, clusterIP: {cluster_ip}, selector: {{app: {name}}}, ports: [{{port: {port}, targetPort: app}}]}}\npods:\n  - {{name: {name}-0, namespace: {NS}, ip: {}, labels: {{app: {name}}}, ports: {{app: {}}}, owner: {{kind: Deployment, name: {name}}}, serviceAccount: {sa}, meshed: true}}\n",
        endpoint.ip(),
        endpoint.port()
    )
}

/// Concatenates topologies of one service each.
fn topology(parts: &[String]) -> String {
    let (mut services, mut pods) = (String::from("services:\n"), String::from("pods:\n"));
    for p in parts {
        let (s, rest) = p.split_once("pods:\n").unwrap();
        services.push_str(s.trim_start_matches("services:\n"));
        pods.push_str(rest);
    }
    services + &pods
}

/// A meshed server pod: its application and its proxy, reached through a
/// relay that records the bytes on the wire.
struct Pod {
    proxy: Proxy,
    wire: Wire,
}

async fn pod(mesh: &Mesh, sa: &str, app: SocketAddr) -> Pod {
    let proxy = mesh.proxy(NS, sa).inbound_target(app).spawn().await;
    mesh::ready(&proxy).await;
    let wire = Wire::to(proxy.inbound).await;
    Pod { proxy, wire }
}

/// The client pod's proxy, discovering through `dst`.
async fn client(mesh: &Mesh, dst: &Controller) -> Proxy {
    let proxy = mesh
        .proxy(NS, "vote-bot")
        .outbound_target(DB_CLUSTER_IP.parse().unwrap())
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", dst.grpc)
        .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", NETWORKS)
        .spawn()
        .await;
    mesh::ready(&proxy).await;
    proxy
}

#[tokio::test]
async fn proxies_mesh_http1_http2_grpc_and_tcp_over_mtls() {
    let mesh = Mesh::start(
        &[(NS, "web"), (NS, "emoji"), (NS, "db"), (NS, "vote-bot")],
        &[],
    )
    .await;
    let web = pod(&mesh, "web", backends::http().await).await;
    let emoji = pod(&mesh, "emoji", backends::grpc_echo().await).await;
    let db = pod(&mesh, "db", backends::tcp_echo().await).await;
    let dst = Controller::destination(&topology(&[
        service("web", "127.0.10.1", 80, "web", web.wire.addr),
        service("emoji", "127.0.10.2", 8080, "emoji", emoji.wire.addr),
        service("db", "127.0.10.3", 7000, "db", db.wire.addr),
    ]))
    .await;
    let client = client(&mesh, &dst).await;
    let client_id = identity(NS, "vote-bot");

    // HTTP/1: arrives as HTTP/1.1 with the client's proven identity, having
    // crossed the wire as HTTP/2.
    let (status, body) = http1_get(client.outbound, WEB, "/headers").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("version: HTTP/1.1"), "{body}");
    assert!(
        body.contains(&format!("l5d-client-id: {client_id}")),
        "{body}"
    );
    assert!(!body.contains("l5d-orig-proto"), "{body}");
    // A client cannot claim an identity: the proxy sets the header itself.
    let stream = TcpStream::connect(client.outbound).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let spoofed = Request::get("/headers")
        .header("host", WEB)
        .header(
            "l5d-client-id",
            "admin.linkerd.serviceaccount.identity.linkerd.cluster.local",
        )
        .body(Full::<Bytes>::default())
        .unwrap();
    let rsp = send.send_request(spoofed).await.unwrap();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(!body.contains("admin.linkerd"), "{body}");
    assert!(body.contains(&client_id), "{body}");
    drop(send);

    // HTTP/2.
    let (status, body) = h2_get(client.outbound, WEB, "/headers").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("version: HTTP/2.0"), "{body}");
    assert!(
        body.contains(&format!("l5d-client-id: {client_id}")),
        "{body}"
    );

    // gRPC, unary and streaming.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", client.outbound))
        .unwrap()
        .origin(format!("http://{EMOJI}").parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut grpc = EchoClient::new(channel);
    let rsp = grpc
        .unary(Msg {
            text: "secret-grpc-payload".into(),
            count: 1,
        })
        .await
        .unwrap();
    assert_eq!(rsp.into_inner().text, "secret-grpc-payload");
    let mut stream = grpc
        .server_stream(Msg {
            text: "s".into(),
            count: 50,
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 50);
    drop((stream, grpc));

    // Opaque TCP to the service's cluster IP.
    let mut tcp = TcpStream::connect(client.outbound).await.unwrap();
    let payload = b"\x00\x01secret-tcp-payload";
    tcp.write_all(payload).await.unwrap();
    let mut echoed = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&echoed, payload);
    drop(tcp);

    // What crossed the wire between the proxies: TLS records only.
    for (pod, secrets) in [
        (&web, &["GET", "/headers", "l5d-orig-proto", WEB][..]),
        (&emoji, &["secret-grpc-payload", "Echo"][..]),
        (&db, &["secret-tcp-payload"][..]),
    ] {
        let seen = pod.wire.seen();
        assert!(!seen.is_empty(), "no traffic crossed the wire");
        assert_eq!(seen[0], 0x16, "the first byte is a TLS handshake record");
        for secret in secrets {
            assert!(
                !contains(&seen, secret.as_bytes()),
                "{secret:?} crossed the wire in plaintext"
            );
        }
    }

    // Both sides say so in their metrics.
    let m = client.metrics_when_closed().await;
    for (sa, n) in [("web", 3.0), ("emoji", 2.0)] {
        let server_id = identity(NS, sa);
        let labels = [
            ("direction", "outbound"),
            ("tls", "true"),
            ("server_id", server_id.as_str()),
        ];
        assert_eq!(m.sum("request_total", &labels), n, "{sa}: {}", m.text);
    }
    let db_id = identity(NS, "db");
    let db_tcp = [
        ("peer", "dst"),
        ("tls", "true"),
        ("server_id", db_id.as_str()),
    ];
    assert_eq!(m.sum("tcp_open_total", &db_tcp), 1.0, "{}", m.text);
    assert_eq!(
        m.sum("request_total", &[("tls", "no_identity")]),
        0.0,
        "{}",
        m.text
    );
    for (pod, n) in [(&web, 3.0), (&emoji, 2.0)] {
        let m = pod.proxy.metrics().await;
        let labels = [
            ("direction", "inbound"),
            ("tls", "true"),
            ("client_id", client_id.as_str()),
        ];
        assert_eq!(m.sum("request_total", &labels), n, "{}", m.text);
        assert_eq!(m.sum("response_total", &[("classification", "success")]), n);
    }
    let m = db.proxy.metrics_when_closed().await;
    let src = [
        ("peer", "src"),
        ("tls", "true"),
        ("client_id", client_id.as_str()),
    ];
    assert_eq!(m.sum("tcp_open_total", &src), 1.0, "{}", m.text);
    assert_eq!(
        m.sum("tcp_read_bytes_total", &[("peer", "dst")]),
        payload.len() as f64,
        "the application got the plaintext back: {}",
        m.text
    );
}

#[tokio::test]
async fn a_peer_with_the_wrong_identity_is_refused_without_plaintext_fallback() {
    let mesh = Mesh::start(&[(NS, "web"), (NS, "db"), (NS, "vote-bot")], &[]).await;
    // Destination says `web`'s endpoint is ServiceAccount `web`, but the
    // proxy there is `db`.
    let impostor = pod(&mesh, "db", backends::http().await).await;
    let dst =
        Controller::destination(&service("web", "127.0.10.1", 80, "web", impostor.wire.addr)).await;
    let client = client(&mesh, &dst).await;

    // The handshake fails, so the endpoint is unreachable: the request
    // waits for another until the fail-fast timeout, as in Linkerd.
    let (status, _) = http1_get(client.outbound, WEB, "/headers").await;
    assert_eq!(status, 503);
    let web_id = identity(NS, "web");
    let m = client.metrics().await;
    let failed = [("peer", "dst"), ("server_id", web_id.as_str())];
    assert!(
        m.sum("tls_handshake_failure_total", &failed) >= 1.0,
        "{}",
        m.text
    );
    let seen = impostor.wire.seen();
    assert_eq!(seen.first(), Some(&0x16), "only TLS was attempted");
    assert!(!contains(&seen, b"/headers"), "no plaintext fallback");
    let m = impostor.proxy.metrics().await;
    assert_eq!(m.sum("request_total", &[]), 0.0, "{}", m.text);
}

#[tokio::test]
async fn certificates_rotate_while_traffic_flows() {
    let mesh = Mesh::start(
        &[(NS, "web"), (NS, "vote-bot")],
        &["--issuance-lifetime", "3s"],
    )
    .await;
    let app = backends::http().await;
    let web = mesh
        .proxy(NS, "web")
        .inbound_target(app)
        .env("LINKERD2_PROXY_IDENTITY_MIN_REFRESH", "1s")
        .spawn()
        .await;
    mesh::ready(&web).await;
    let dst = Controller::destination(&service("web", "127.0.10.1", 80, "web", web.inbound)).await;
    let client = mesh
        .proxy(NS, "vote-bot")
        .env("LINKERD2_PROXY_IDENTITY_MIN_REFRESH", "1s")
        .outbound_target(DB_CLUSTER_IP.parse().unwrap())
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", dst.grpc)
        .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", NETWORKS)
        .spawn()
        .await;
    mesh::ready(&client).await;
    let first_expiry = client
        .metrics()
        .await
        .sum("identity_cert_expiration_timestamp_seconds", &[]);

    // Every request on a new client connection, for 7s (past two lifetimes).
    let start = tokio::time::Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(7) && sent < 500 {
        let (status, body) = http1_get(client.outbound, WEB, "/headers").await;
        assert_eq!(status, 200, "request {sent} failed: {body}");
        sent += 1;
        // Paced load across the rotation, not a wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for proxy in [&client, &web] {
        let m = proxy.metrics().await;
        assert!(
            m.sum("identity_cert_refresh_total", &[]) >= 3.0,
            "{}",
            m.text
        );
    }
    let m = client.metrics().await;
    assert!(m.sum("identity_cert_expiration_timestamp_seconds", &[]) > first_expiry + 2.0);
    assert_eq!(
        m.sum(
            "response_total",
            &[("tls", "true"), ("classification", "success")]
        ),
        sent as f64
    );
}

#[tokio::test]
async fn not_ready_until_certified_and_retries_until_it_is() {
    let mesh = Mesh::start(&[(NS, "web")], &[]).await;
    let token = mesh.dir.join("emojivoto-web.token");
    let saved = std::fs::read(&token).unwrap();
    std::fs::remove_file(&token).unwrap();
    let proxy = mesh.proxy(NS, "web").spawn().await;
    let refused = eventually(Duration::from_secs(5), || async {
        let m = proxy.metrics().await;
        (m.sum("identity_cert_refresh_failure_total", &[]) >= 1.0).then_some(())
    })
    .await;
    assert!(refused.is_some(), "the proxy never tried to certify");
    let (status, body) = proxy.admin("GET", "/ready").await;
    assert_eq!((status, body.trim()), (503, "identity not certified yet"));
    let m = proxy.metrics().await;
    assert!(
        m.sum("identity_cert_refresh_failure_total", &[]) >= 1.0,
        "{}",
        m.text
    );

    // The token appears (the kubelet mounted it late): certified on retry.
    std::fs::write(&token, saved).unwrap();
    mesh::ready(&proxy).await;
    let m = proxy.metrics().await;
    assert_eq!(m.sum("identity_cert_refresh_total", &[]), 1.0);
    assert!(m.sum("identity_cert_expiration_timestamp_seconds", &[]) > 0.0);
}

#[tokio::test]
async fn all_authenticated_policy_refuses_plaintext_and_anonymous_clients() {
    let mesh = Mesh::start(&[(NS, "web"), (NS, "vote-bot")], &[]).await;
    let web = mesh
        .proxy(NS, "web")
        .inbound_target(backends::http().await)
        .env("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY", "all-authenticated")
        .spawn()
        .await;
    mesh::ready(&web).await;
    // Plaintext HTTP: refused with 403, as Linkerd's proxy refuses it.
    let (status, _) = http1_get(web.inbound, WEB, "/headers").await;
    assert_eq!(status, 403);
    // Plaintext bytes that are not HTTP: the connection is closed without
    // an answer.
    let mut plain = TcpStream::connect(web.inbound).await.unwrap();
    plain.write_all(b"\x16not http\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{buf:?}");

    // A meshed client is served.
    let dst = Controller::destination(&service("web", "127.0.10.1", 80, "web", web.inbound)).await;
    let client = client(&mesh, &dst).await;
    let (status, body) = http1_get(client.outbound, WEB, "/headers").await;
    assert_eq!(status, 200, "{body}");
    let m = web.metrics().await;
    let default = [("srv_kind", "default"), ("srv_name", "all-authenticated")];
    assert_eq!(
        m.sum("inbound_http_authz_deny_total", &default),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("inbound_tcp_authz_deny_total", &default),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("inbound_http_authz_allow_total", &default),
        1.0,
        "{}",
        m.text
    );
}

#[tokio::test]
async fn bad_identity_settings_stop_start_up_with_one_line() {
    let mesh = Mesh::start(&[(NS, "web")], &[]).await;
    let cases = [
        ("LINKERD2_PROXY_IDENTITY_LOCAL_NAME", "not a name"),
        ("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "not pem"),
        ("LINKERD2_PROXY_IDENTITY_SVC_ADDR", "nowhere"),
    ];
    for (name, value) in cases {
        let (status, stderr) = mesh.proxy(NS, "web").env(name, value).run_to_exit().await;
        assert!(!status.success());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
    }
    let (status, stderr) = mesh
        .proxy(NS, "web")
        .without("LINKERD2_PROXY_IDENTITY_TOKEN_FILE")
        .run_to_exit()
        .await;
    assert!(!status.success());
    assert!(
        stderr.contains("LINKERD2_PROXY_IDENTITY_TOKEN_FILE"),
        "{stderr}"
    );
}

#[tokio::test]
async fn named_control_plane_services_are_reached_over_tls() {
    let mesh = Mesh::start(&[("linkerd", "linkerd-identity"), (NS, "web")], &[]).await;
    // The identity service's own proxy certifies itself directly (as its
    // pod does, over localhost) and terminates the others' TLS.
    let id_proxy = mesh
        .proxy("linkerd", "linkerd-identity")
        .inbound_target(mesh.identity.grpc)
        .spawn()
        .await;
    mesh::ready(&id_proxy).await;
    let id_name = identity("linkerd", "linkerd-identity");

    let web = mesh
        .proxy(NS, "web")
        .env("LINKERD2_PROXY_IDENTITY_SVC_ADDR", id_proxy.inbound)
        .env("LINKERD2_PROXY_IDENTITY_SVC_NAME", &id_name)
        .spawn()
        .await;
    mesh::ready(&web).await;
    let m = id_proxy.metrics().await;
    // No client certificate yet when asking for the first one.
    let labels = [("direction", "inbound"), ("tls", "true")];
    assert_eq!(m.sum("request_total", &labels), 1.0, "{}", m.text);

    // A service that does not prove the expected name is not trusted.
    let wrong = mesh
        .proxy(NS, "web")
        .env("LINKERD2_PROXY_IDENTITY_SVC_ADDR", id_proxy.inbound)
        .env(
            "LINKERD2_PROXY_IDENTITY_SVC_NAME",
            identity("linkerd", "impostor"),
        )
        .spawn()
        .await;
    let failed = eventually(Duration::from_secs(5), || async {
        let m = wrong.metrics().await;
        (m.sum("identity_cert_refresh_failure_total", &[]) >= 1.0).then_some(())
    })
    .await;
    assert!(
        failed.is_some(),
        "the impostor's identity service was trusted"
    );
    assert_eq!(wrong.admin("GET", "/ready").await.0, 503);
}

/// A client that asked for a name before its Service existed keeps
/// watching it: once the Service and its endpoints appear, its requests are
/// balanced to them over mTLS, without restarting anything.
#[tokio::test]
async fn a_service_created_after_the_client_asked_is_balanced_over_mtls() {
    let mesh = Mesh::start(&[(NS, "web"), (NS, "vote-bot")], &[]).await;
    let web = pod(&mesh, "web", backends::http().await).await;
    let dst = Controller::destination("services: []\npods: []\n").await;
    let client = client(&mesh, &dst).await;
    let client_id = identity(NS, "vote-bot");

    // No such service: the original destination, where nothing listens.
    let (status, _) = http1_get(client.outbound, WEB, "/headers").await;
    assert_eq!(status, 502);

    dst.set_topology(&service("web", "127.0.10.1", 80, "web", web.wire.addr));
    let created = std::time::Instant::now();
    let balanced = linkerd_tests::eventually(Duration::from_secs(10), || async {
        let (status, body) = http1_get(client.outbound, WEB, "/headers").await;
        (status == 200).then_some(body)
    })
    .await
    .expect("never balanced to the new service");
    let took = created.elapsed();
    assert!(
        balanced.contains(&format!("l5d-client-id: {client_id}")),
        "{balanced}"
    );
    assert!(
        !contains(&web.wire.seen(), b"/headers"),
        "plaintext on the wire"
    );
    assert!(
        took < Duration::from_secs(1),
        "balanced {took:?} after the service appeared"
    );
}

/// A pod being deleted: its proxy stops accepting at SIGTERM, while
/// destination still lists it (the endpoints controller, and every client
/// after it, learn a moment later) and its application still serves.
/// Requests under way finish on the draining connection; those the balancer
/// then offers the terminating pod find it refusing and go to the other pod.
/// No request fails, over HTTP/1 (upgraded between the proxies) or HTTP/2.
#[tokio::test]
async fn a_terminating_pod_fails_no_request() {
    let mesh = Mesh::start(&[(NS, "web"), (NS, "vote-bot")], &[]).await;
    let apps = [backends::http().await, backends::http().await];
    let mut proxies = Vec::new();
    for app in apps {
        let proxy = mesh.proxy(NS, "web").inbound_target(app).spawn().await;
        mesh::ready(&proxy).await;
        proxies.push(proxy);
    }
    let mut yaml = format!(
        "services:\n  - {{name: web, namespace: {NS}, clusterIP: 127.0.10.1, selector: {{app: web}}, ports: [{{port: 80, targetPort: app}}]}}\npods:\n"
    );
    for (i, p) in proxies.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{name: web-{i}, namespace: {NS}, ip: {}, labels: {{app: web}}, ports: {{app: {}}}, owner: {{kind: Deployment, name: web}}, serviceAccount: web, meshed: true}}\n",
            p.inbound.ip(),
            p.inbound.port()
        ));
    }
    let dst = Controller::destination(&yaml).await;
    let client = client(&mesh, &dst).await;

    // Load: three HTTP/1 connections and one HTTP/2 connection, each
    // sending one request after another, bounded in count and time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut load = Vec::new();
    for h2 in [false, false, false, true] {
        let (addr, stop) = (client.outbound, stop.clone());
        load.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut send = Sender::handshake(stream, h2).await;
            let mut seen = Vec::new();
            for _ in 0..5_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || tokio::time::Instant::now() > deadline
                {
                    break;
                }
                let req = Request::get(format!("http://{WEB}/whoami"))
                    .header("host", WEB)
                    .body(Full::<Bytes>::default())
                    .unwrap();
                let rsp = send.send(req).await;
                let status = rsp.status();
                let why = rsp.headers().get("l5d-proxy-error").cloned();
                let body = rsp.into_body().collect().await.unwrap().to_bytes();
                let body = match why {
                    Some(why) => format!("{why:?}"),
                    None => String::from_utf8_lossy(&body).into_owned(),
                };
                seen.push((status.as_u16(), body));
            }
            seen
        }));
    }
    // Both pods serve before one terminates.
    let both = linkerd_tests::eventually(Duration::from_secs(10), || async {
        let scrape = client.metrics().await;
        let served = |i: usize| {
            scrape.sum(
                "response_total",
                &[("direction", "outbound"), ("dst_pod", &format!("web-{i}"))],
            ) > 0.0
        };
        (served(0) && served(1)).then_some(())
    })
    .await;
    assert!(both.is_some(), "the load never reached both pods");
    let terminating = proxies.remove(0);
    terminating.sigterm();
    // Its connections drain: the client's HTTP/2 connection to it closes
    // once its streams end, and the proxy exits.
    let exited = terminating.wait(Duration::from_secs(15)).await;
    assert!(exited.success(), "{exited:?}");
    // Load goes on against the pod that is left, and the one that is gone:
    // fifty more answers from the pod that is left.
    let left = |m: &linkerd_tests::metrics::Scrape| {
        m.sum(
            "response_total",
            &[("direction", "outbound"), ("dst_pod", "web-1")],
        )
    };
    let before = left(&client.metrics().await);
    let more = linkerd_tests::eventually(Duration::from_secs(10), || async {
        (left(&client.metrics().await) >= before + 50.0).then_some(())
    })
    .await;
    assert!(more.is_some(), "the load stopped with the terminated pod");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    // One race is hyper's, not the proxy's: a GOAWAY processed just as the
    // HTTP/2 client takes a request loses that request without handing it
    // back (hyperium/hyper#2500). It needs a request at that instant; at this
    // load it happened in about 1 run of 15 on a busy machine, never at the
    // demo's 10 a second. It is told apart by its `l5d-proxy-error`, and
    // allowed once; any other failure fails the test.
    const HYPER_RACE: &str = "\"the target went away before the request was sent\"";
    let (mut after, mut raced) = (0, 0);
    for task in load {
        let seen = task.await.unwrap();
        let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
        raced += failed.iter().filter(|(_, why)| why == HYPER_RACE).count();
        assert!(
            failed.iter().all(|(_, why)| why == HYPER_RACE),
            "{} of {} requests failed: {:?}",
            failed.len(),
            seen.len(),
            &failed[..failed.len().min(5)]
        );
        after += seen
            .iter()
            .rev()
            .take_while(|(_, who)| *who == apps[1].to_string())
            .count();
    }
    assert!(raced <= 1, "{raced} requests lost to the GOAWAY race");
    println!(
        "requests answered by the remaining pod at the end: {after}; lost to hyper's GOAWAY race: {raced}"
    );
    assert!(after > 0, "no request went to the remaining pod at the end");
}

/// A client connection of either protocol, for the load above.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn handshake(stream: TcpStream, h2: bool) -> Self {
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            Self::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Self::H1(send)
        }
    }

    async fn send(
        &mut self,
        mut req: Request<Full<Bytes>>,
    ) -> http::Response<hyper::body::Incoming> {
        match self {
            Self::H1(s) => {
                *req.uri_mut() = "/whoami".parse().unwrap();
                s.send_request(req).await.unwrap()
            }
            Self::H2(s) => s.send_request(req).await.unwrap(),
        }
    }
}
