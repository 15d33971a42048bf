//! The transparent proxy for real: a "pod" network namespace with
//! `linkerd-proxy-init`'s iptables rules, the proxy running as uid 2102, and clients in
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
    metrics::Scrape,
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

/// The applications each host runs: HTTP (1 and 2) on 8080, gRPC on 8081,
/// WebSocket on 8082, TCP echo on 8083.
async fn serve_apps() {
    backends::http_on(bind(8080).await);
    backends::grpc_echo_on(bind(8081).await);
    backends::websocket_echo_on(bind(8082).await);
    backends::tcp_echo_on(bind(8083).await);
}

/// Every kind of client at the applications on `ip`, none of them aware of a
/// proxy. Returns the client address the HTTP application saw.
async fn every_client(ip: Ipv4Addr) -> String {
    let web = addr(ip, 8080);
    let peer = h1_get(web, "/peer").await;
    assert_eq!(h2_get(web, "/").await, "hello");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", addr(ip, 8081)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = EchoClient::new(channel);
    let msg = Msg {
        text: "x".into(),
        count: 25,
    };
    let mut stream = grpc.server_stream(msg).await.unwrap().into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 25);

    use tokio_tungstenite::tungstenite::Message;
    let ws_stream = TcpStream::connect(addr(ip, 8082)).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://chat.pod/", ws_stream)
        .await
        .unwrap();
    ws.send(Message::text("through the mesh")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("through the mesh")
    );
    ws.close(None).await.unwrap();

    let mut tcp = TcpStream::connect(addr(ip, 8083)).await.unwrap();
    tcp.write_all(&[0u8, 1, 2, 3, 255]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tcp.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, [0u8, 1, 2, 3, 255]);
    peer
}

/// Real curl from `ns` to the HTTP application on `ip`, HTTP/1 and HTTP/2
/// with prior knowledge.
fn curl_both(ns: &Netns, ip: Ipv4Addr) {
    for h2 in [false, true] {
        let url = format!("http://{ip}:8080/headers");
        let mut argv = vec!["curl", "--max-time", "5", "-fsS"];
        if h2 {
            argv.push("--http2-prior-knowledge");
        }
        argv.push(&url);
        let out = ns.exec(&argv).expect("curl through the pod's proxy");
        let body = String::from_utf8_lossy(&out.stdout);
        let version = if h2 { "HTTP/2.0" } else { "HTTP/1.1" };
        assert!(body.starts_with(&format!("version: {version}")), "{body}");
    }
}

/// The proxy's metrics for `every_client` and `curl_both` against `ip`.
fn assert_counted(m: &Scrape, direction: &str, ip: Ipv4Addr) {
    let target = |port| addr(ip, port).to_string();
    let (web, grpc, ws, tcp) = (target(8080), target(8081), target(8082), target(8083));
    let d = ("direction", direction);
    // h1_get, h2_get and the two curls.
    assert_eq!(
        m.sum("request_total", &[d, ("target_addr", &web)]),
        4.0,
        "{}",
        m.text
    );
    let grpc_ok = [d, ("target_addr", &grpc), ("grpc_status", "0")];
    assert_eq!(m.sum("response_total", &grpc_ok), 1.0, "{}", m.text);
    let upgraded = [d, ("target_addr", &ws), ("status_code", "101")];
    assert_eq!(m.sum("response_total", &upgraded), 1.0, "{}", m.text);
    let opaque = [d, ("peer", "src"), ("target_addr", &tcp)];
    assert_eq!(m.sum("tcp_read_bytes_total", &opaque), 5.0, "{}", m.text);
}

#[tokio::test]
async fn iptables_redirects_pod_traffic_through_the_proxy() {
    if let Some(why) = netns::unavailable() {
        linkerd_tests::tools::skip(format!(
            "iptables_redirects_pod_traffic_through_the_proxy: {why}"
        ));
        return;
    }
    let pod = Netns::create("pod").unwrap();
    let client = Netns::create("cli").unwrap();
    netns::connect(&client, CLIENT_IP, &pod, POD_IP).unwrap();
    // SPEC's rules, as the init container writes them.
    let mut init = pod.prefix();
    init.push(proxy::bin("linkerd-proxy-init").display().to_string());
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    netns::run(init[0], &init[1..]).expect("linkerd-proxy-init");
    let pod_rt = pod.runtime().unwrap();
    let client_rt = client.runtime().unwrap();
    // The same applications in the pod and outside it, unaware of the proxy.
    pod_rt.run(serve_apps()).await;
    client_rt.run(serve_apps()).await;

    let wrapper = pod.proxy_user_prefix();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let proxy = Proxy::builder()
        .wrapper(&wrapper)
        .env("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "0.0.0.0:4143")
        .env("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:4140")
        .env("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:4191")
        .spawn()
        .await;

    // Inbound: clients call the pod's address and ports. The application sees
    // the proxy's connection (from the pod's own address), never the
    // client's: it is reached only through the proxy.
    let peer = client_rt.run(every_client(POD_IP)).await;
    assert!(peer.starts_with("198.18.0.2:"), "the app saw {peer}");
    curl_both(&client, POD_IP);
    let inbound = client_rt.run(proxy::scrape(addr(POD_IP, 4191))).await;
    assert_counted(&inbound, "inbound", POD_IP);

    // Outbound: the pod's clients call out; iptables sends them to the
    // outbound listener, and the proxy's own connections (uid 2102) leave the
    // pod without being redirected again.
    pod_rt.run(every_client(CLIENT_IP)).await;
    curl_both(&pod, CLIENT_IP);
    let outbound = pod_rt
        .run(proxy::scrape(addr(Ipv4Addr::LOCALHOST, 4191)))
        .await;
    assert_counted(&outbound, "outbound", CLIENT_IP);

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
