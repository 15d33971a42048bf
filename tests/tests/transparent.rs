//! The transparent proxy for real: a "pod" network namespace with SPEC's
//! proxy-init iptables rules, the proxy running as uid 2102, and clients in
//! another namespace that know nothing of the proxy.
//!
//! Skips, saying why, where network namespaces cannot be made (not root).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_tests::{
    backends,
    echo::{Msg, echo_client::EchoClient},
    netns::{self, Netns},
    proxy::{self, Proxy},
};
use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PROXY_UID: &str = "2102";

/// SPEC's proxy-init rules (nat table): inbound TCP to every port but the
/// proxy's own goes to 4143; outbound TCP, except the proxy's own and
/// loopback, goes to 4140.
const PROXY_INIT_RULES: &str = "\
*nat
:PROXY_INIT_REDIRECT - [0:0]
:PROXY_INIT_OUTPUT - [0:0]
-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 4190,4191 -m comment --comment proxy-init/ignore-port-4190,4191 -j RETURN
-A PROXY_INIT_REDIRECT -p tcp -m comment --comment proxy-init/redirect-all-incoming-to-proxy-port -j REDIRECT --to-ports 4143
-A PREROUTING -m comment --comment proxy-init/install-proxy-init-prerouting -j PROXY_INIT_REDIRECT
-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -m comment --comment proxy-init/ignore-proxy-user-id -j RETURN
-A PROXY_INIT_OUTPUT -o lo -m comment --comment proxy-init/ignore-loopback -j RETURN
-A PROXY_INIT_OUTPUT -p tcp -m comment --comment proxy-init/redirect-all-outgoing-to-proxy-port -j REDIRECT --to-ports 4140
-A OUTPUT -m comment --comment proxy-init/install-proxy-init-output -j PROXY_INIT_OUTPUT
COMMIT
";

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

async fn bind(port: u16) -> TcpListener {
    TcpListener::bind(addr(Ipv4Addr::UNSPECIFIED, port))
        .await
        .expect("bind in namespace")
}

async fn h1_get(target: SocketAddr, path: &str) -> String {
    let stream = TcpStream::connect(target).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "web.pod:8080")
        .body(Full::<Bytes>::default())
        .unwrap();
    let rsp = send.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

async fn h2_get(target: SocketAddr, path: &str) -> String {
    let stream = TcpStream::connect(target).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://web.pod:8080{path}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let rsp = send.send_request(req).await.unwrap();
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn iptables_redirects_pod_traffic_through_the_proxy() {
    if let Some(why) = netns::unavailable() {
        eprintln!("SKIPPED iptables_redirects_pod_traffic_through_the_proxy: {why}");
        return;
    }
    let pod = Netns::create("pod").unwrap();
    let client = Netns::create("cli").unwrap();
    netns::connect(&client, CLIENT_IP, &pod, POD_IP).unwrap();
    pod.iptables_restore(PROXY_INIT_RULES).unwrap();
    let pod_rt = pod.runtime().unwrap();
    let client_rt = client.runtime().unwrap();

    // The pod's applications, on the pod's address, unaware of the proxy.
    pod_rt
        .run(async {
            backends::http_on(bind(8080).await);
            backends::grpc_echo_on(bind(8081).await);
            backends::websocket_echo_on(bind(8082).await);
            backends::tcp_echo_on(bind(8083).await);
        })
        .await;
    // Something outside the pod for the pod to call.
    client_rt
        .run(async {
            backends::http_on(bind(9090).await);
            backends::tcp_echo_on(bind(9091).await);
        })
        .await;

    let mut wrapper = pod.prefix();
    wrapper.extend(
        [
            "setpriv",
            "--reuid",
            PROXY_UID,
            "--regid",
            PROXY_UID,
            "--clear-groups",
        ]
        .map(String::from),
    );
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let proxy = Proxy::builder()
        .wrapper(&wrapper)
        .env("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "0.0.0.0:4143")
        .env("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:4140")
        .env("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:4191")
        .spawn()
        .await;
    let admin = addr(POD_IP, 4191);

    // Inbound: clients call the pod's address and ports directly.
    let inbound = client_rt
        .run(async move {
            let web = addr(POD_IP, 8080);
            // The application sees the proxy's connection (from the pod's own
            // address), never the client's: it is reached only through the proxy.
            assert_eq!(
                h1_get(web, "/peer").await.split(':').next(),
                Some("198.18.0.2")
            );
            assert_eq!(h2_get(web, "/").await, "hello");

            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", addr(POD_IP, 8081)))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let mut grpc = EchoClient::new(channel);
            let mut stream = grpc
                .server_stream(Msg {
                    text: "x".into(),
                    count: 25,
                })
                .await
                .unwrap()
                .into_inner();
            let mut n = 0;
            while stream.message().await.unwrap().is_some() {
                n += 1;
            }
            assert_eq!(n, 25);

            let ws_stream = TcpStream::connect(addr(POD_IP, 8082)).await.unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async("ws://chat.pod/", ws_stream)
                .await
                .unwrap();
            use tokio_tungstenite::tungstenite::Message;
            ws.send(Message::text("through the mesh")).await.unwrap();
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::text("through the mesh")
            );
            ws.close(None).await.unwrap();

            let mut tcp = TcpStream::connect(addr(POD_IP, 8083)).await.unwrap();
            tcp.write_all(&[0u8, 1, 2, 3, 255]).await.unwrap();
            tcp.shutdown().await.unwrap();
            let mut echoed = Vec::new();
            tcp.read_to_end(&mut echoed).await.unwrap();
            assert_eq!(echoed, [0u8, 1, 2, 3, 255]);

            proxy::scrape(admin).await
        })
        .await;
    let web_target = addr(POD_IP, 8080).to_string();
    let web = [
        ("direction", "inbound"),
        ("target_addr", web_target.as_str()),
    ];
    assert_eq!(inbound.sum("request_total", &web), 2.0, "{}", inbound.text);

    // And real curl, HTTP/1 and HTTP/2 with prior knowledge.
    for h2 in [false, true] {
        let mut argv = vec!["curl", "--max-time", "5", "-fsS"];
        if h2 {
            argv.push("--http2-prior-knowledge");
        }
        argv.push("http://198.18.0.2:8080/headers");
        let out = client.exec(&argv).expect("curl through the pod's proxy");
        let body = String::from_utf8_lossy(&out.stdout);
        let version = if h2 { "HTTP/2.0" } else { "HTTP/1.1" };
        assert!(body.starts_with(&format!("version: {version}")), "{body}");
    }
    let after_curl = client_rt.run(proxy::scrape(admin)).await;
    assert_eq!(
        after_curl.sum("request_total", &web),
        4.0,
        "{}",
        after_curl.text
    );
    let grpc_target = addr(POD_IP, 8081).to_string();
    let grpc = [("target_addr", grpc_target.as_str()), ("grpc_status", "0")];
    assert_eq!(inbound.sum("response_total", &grpc), 1.0);
    assert_eq!(
        inbound.sum("response_total", &[("status_code", "101")]),
        1.0
    );
    let tcp_target = addr(POD_IP, 8083).to_string();
    assert_eq!(
        inbound.sum(
            "tcp_read_bytes_total",
            &[("peer", "src"), ("target_addr", tcp_target.as_str())]
        ),
        5.0
    );

    // Outbound: the pod's application calls out; iptables sends it to the
    // proxy's outbound listener, and the proxy's own connection (uid 2102)
    // leaves the pod without being redirected again.
    let outbound = pod_rt
        .run(async move {
            let peer = h1_get(addr(CLIENT_IP, 9090), "/peer").await;
            assert!(peer.starts_with("198.18.0.2:"), "{peer}");
            let mut tcp = TcpStream::connect(addr(CLIENT_IP, 9091)).await.unwrap();
            tcp.write_all(b"outbound bytes").await.unwrap();
            tcp.shutdown().await.unwrap();
            let mut echoed = Vec::new();
            tcp.read_to_end(&mut echoed).await.unwrap();
            assert_eq!(echoed, b"outbound bytes");
            proxy::scrape(addr(Ipv4Addr::LOCALHOST, 4191)).await
        })
        .await;
    let out_target = addr(CLIENT_IP, 9090).to_string();
    let out = [
        ("direction", "outbound"),
        ("target_addr", out_target.as_str()),
    ];
    assert_eq!(
        outbound.sum("request_total", &out),
        1.0,
        "{}",
        outbound.text
    );
    let echo_target = addr(CLIENT_IP, 9091).to_string();
    let echo = [
        ("direction", "outbound"),
        ("peer", "dst"),
        ("target_addr", echo_target.as_str()),
    ];
    assert_eq!(outbound.sum("tcp_write_bytes_total", &echo), 14.0);

    // Without the proxy the pod is unreachable, not bypassed.
    proxy.sigterm();
    assert!(proxy.wait(Duration::from_secs(10)).await.success());
    let refused = client_rt
        .run(async move {
            tokio::time::timeout(
                Duration::from_secs(2),
                TcpStream::connect(addr(POD_IP, 8080)),
            )
            .await
        })
        .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "the application was reachable without the proxy: {refused:?}"
    );

    drop((pod_rt, client_rt));
}
