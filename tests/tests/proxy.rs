//! The proxy on loopback: real clients and servers for every protocol it
//! carries, with exact metric values checked after a known amount of traffic.
//!
//! Each test starts its own `linkerd-proxy` whose original destination is
//! fixed to the test's backend (`LINKERD2_PROXY_*_ORIG_DST_ADDR`), as
//! linkerd2-proxy's own tests do; the iptables path is in `transparent.rs`.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_tests::{
    backends,
    echo::{Msg, echo_client::EchoClient},
    eventually,
    proxy::Proxy,
};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const SETTLE: Duration = Duration::from_secs(5);

async fn h1_conn(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn h2_conn(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

fn get(uri: &str, host: &str) -> Request<Full<Bytes>> {
    Request::get(uri)
        .header("host", host)
        .body(Full::default())
        .unwrap()
}

async fn body_string(rsp: http::Response<hyper::body::Incoming>) -> String {
    String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn http1_keep_alive_chunked_and_exact_metrics() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let target = backend.to_string();
    let base = [
        ("direction", "inbound"),
        ("authority", "web.test:8080"),
        ("target_addr", target.as_str()),
    ];

    // Three requests on one client connection.
    let mut client = h1_conn(proxy.inbound).await;
    let rsp = client
        .send_request(get("/", "web.test:8080"))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(body_string(rsp).await, "hello");

    // A chunked upload (no content-length) and a streamed, chunked reply.
    let (tx, body) = channel_body();
    let req = Request::post("/echo")
        .header("host", "web.test:8080")
        .body(body)
        .unwrap();
    let stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let (mut chunked, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    // The task hands the connection back so it stays open for the checks below.
    let rsp = tokio::spawn(async move { (chunked.send_request(req).await.unwrap(), chunked) });
    for i in 0..5 {
        tx.send(Ok(http_body::Frame::data(Bytes::from(format!("part{i};")))))
            .await
            .unwrap();
    }
    drop(tx);
    let (rsp, chunked) = rsp.await.unwrap();
    assert_eq!(body_string(rsp).await, "part0;part1;part2;part3;part4;");

    let rsp = client
        .send_request(get("/stream?n=4", "web.test:8080"))
        .await
        .unwrap();
    assert_eq!(
        rsp.headers()
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("chunked")
    );
    assert_eq!(body_string(rsp).await, "chunk0\nchunk1\nchunk2\nchunk3\n");
    let rsp = client
        .send_request(get("/status/503", "web.test:8080"))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503);
    body_string(rsp).await;

    let m = proxy.metrics().await;
    assert_eq!(m.sum("request_total", &base), 4.0, "{}", m.text);
    let ok = [
        base.as_slice(),
        &[("status_code", "200"), ("classification", "success")],
    ]
    .concat();
    let failed = [
        base.as_slice(),
        &[("status_code", "503"), ("classification", "failure")],
    ]
    .concat();
    assert_eq!(m.sum("response_total", &ok), 3.0);
    assert_eq!(m.sum("response_total", &failed), 1.0);
    assert_eq!(m.sum("response_latency_ms_count", &base), 4.0);
    assert_eq!(
        m.sum(
            "response_latency_ms_bucket",
            &[base.as_slice(), &[("le", "+Inf")]].concat()
        ),
        4.0
    );
    assert!(m.has(
        "request_total",
        &[("tls", "no_identity"), ("no_tls_reason", "disabled")]
    ));
    // Two client connections are open; the second's request is done, so its
    // upstream connection went back to the pool and the fourth request
    // reused it or the first: never more than two upstream connections.
    assert_eq!(m.sum("tcp_open_connections", &[("peer", "src")]), 2.0);
    assert!(
        m.sum(
            "tcp_open_total",
            &[("peer", "dst"), ("direction", "inbound")]
        ) <= 2.0
    );
    assert_eq!(
        m.sum(
            "protocol_detect_total",
            &[("direction", "inbound"), ("result", "http/1")]
        ),
        2.0
    );

    drop((client, chunked));
    let m = proxy.metrics_when_closed().await;
    assert_eq!(m.sum("tcp_open_total", &[("peer", "src")]), 2.0);
    let clean = [("peer", "src"), ("errno", "")];
    assert_eq!(m.sum("tcp_close_total", &clean), 2.0);
    assert_eq!(
        m.sum("tcp_connection_duration_ms_count", &[("peer", "src")]),
        2.0
    );
    // Bytes are counted both ways on both ends and are never zero.
    for peer in ["src", "dst"] {
        assert!(m.sum("tcp_read_bytes_total", &[("peer", peer)]) > 0.0);
        assert!(m.sum("tcp_write_bytes_total", &[("peer", peer)]) > 0.0);
    }
}

/// A request body fed from a channel, so it is sent chunked.
type Chunk = Result<http_body::Frame<Bytes>, std::convert::Infallible>;

fn channel_body() -> (
    tokio::sync::mpsc::Sender<Chunk>,
    http_body_util::StreamBody<tokio_stream::wrappers::ReceiverStream<Chunk>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    (
        tx,
        http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
}

#[tokio::test]
async fn http1_upstream_connections_are_reused_across_clients() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    for _ in 0..5 {
        let (status, _) = backends::http1_request(proxy.inbound, "GET", "/").await;
        assert_eq!(status, 200);
        // Let the proxy see the client connection end and pool its upstream.
        proxy.metrics_when_closed().await;
    }
    let m = proxy.metrics().await;
    assert_eq!(m.sum("tcp_open_total", &[("peer", "src")]), 5.0);
    assert_eq!(
        m.sum("tcp_open_total", &[("peer", "dst")]),
        1.0,
        "{}",
        m.text
    );
}

#[tokio::test]
async fn http1_upstream_that_closes_is_replaced() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let mut client = h1_conn(proxy.inbound).await;
    for path in ["/close", "/close", "/"] {
        let rsp = client.send_request(get(path, "web.test")).await.unwrap();
        assert_eq!(rsp.status(), 200);
        // The upstream's `connection: close` is for the upstream hop only.
        assert!(!rsp.headers().contains_key("connection"));
        body_string(rsp).await;
    }
    let m = proxy.metrics().await;
    assert_eq!(m.sum("tcp_open_total", &[("peer", "src")]), 1.0);
    assert_eq!(
        m.sum("tcp_open_total", &[("peer", "dst")]),
        3.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("response_total", &[("classification", "success")]),
        3.0
    );
}

#[tokio::test]
async fn http1_hop_by_hop_headers_are_not_forwarded() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let mut client = h1_conn(proxy.inbound).await;
    let req = Request::get("/headers")
        .header("host", "web.test")
        .header("connection", "keep-alive, x-per-hop")
        .header("x-per-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "gzip")
        .header("x-end-to-end", "kept")
        .body(Full::default())
        .unwrap();
    let seen = body_string(client.send_request(req).await.unwrap()).await;
    assert!(seen.contains("x-end-to-end: kept"), "{seen}");
    assert!(seen.contains("host: web.test"), "{seen}");
    for hop in ["x-per-hop", "keep-alive:", "proxy-connection", "te:"] {
        assert!(!seen.contains(hop), "{hop} was forwarded:\n{seen}");
    }
}

#[tokio::test]
async fn http1_pipelined_requests_answer_in_order() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    stream
        .write_all(
            b"GET /slow?ms=150 HTTP/1.1\r\nHost: a\r\n\r\nGET /status/404 HTTP/1.1\r\nHost: a\r\n\r\nGET /peer HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(SETTLE, stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    // Bodies have no trailing newline, so a status line may follow one directly.
    let statuses: Vec<&str> = out
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &out[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200"], "{out}");
    assert!(out.find("slow").unwrap() < out.find("404").unwrap());
    assert!(
        out.ends_with("127.0.0.1") || out.contains("127.0.0.1:"),
        "{out}"
    );
}

#[tokio::test]
async fn http1_0_without_host_reaches_the_target() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(SETTLE, stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
    assert!(out.ends_with("hello"), "{out}");
    let m = proxy.metrics().await;
    assert_eq!(
        m.sum("request_total", &[("authority", "")]),
        1.0,
        "{}",
        m.text
    );
}

#[tokio::test]
async fn outbound_http1_is_labelled_outbound() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().outbound_target(backend).spawn().await;
    let (status, body) = backends::http1_request(proxy.outbound, "GET", "/").await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    let m = proxy.metrics().await;
    let target = backend.to_string();
    let labels = [
        ("direction", "outbound"),
        ("target_addr", target.as_str()),
        ("status_code", "200"),
    ];
    assert_eq!(m.sum("response_total", &labels), 1.0, "{}", m.text);
    assert_eq!(m.sum("request_total", &[("direction", "inbound")]), 0.0);
}

#[tokio::test]
async fn http2_many_concurrent_streams_share_one_connection() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let client = h2_conn(proxy.inbound).await;
    let requests = (0..100).map(|i| {
        let mut client = client.clone();
        async move {
            let req = Request::get(format!("http://web.test/slow?ms={}", i % 7 * 10))
                .body(Full::default())
                .unwrap();
            let rsp = client.send_request(req).await.unwrap();
            assert_eq!(rsp.version(), http::Version::HTTP_2);
            body_string(rsp).await
        }
    });
    let bodies = futures_util::future::join_all(requests).await;
    assert!(bodies.iter().all(|b| b == "slow"));

    // The server saw HTTP/2 with the client's authority.
    let mut c = client.clone();
    let rsp = c
        .send_request(
            Request::get("http://web.test/headers")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let seen = body_string(rsp).await;
    assert!(seen.starts_with("version: HTTP/2.0"), "{seen}");

    let m = proxy.metrics().await;
    let web = [("direction", "inbound"), ("authority", "web.test")];
    assert_eq!(m.sum("request_total", &web), 101.0, "{}", m.text);
    assert_eq!(
        m.sum(
            "response_total",
            &[web.as_slice(), &[("classification", "success")]].concat()
        ),
        101.0
    );
    assert_eq!(m.sum("tcp_open_total", &[("peer", "src")]), 1.0);
    assert_eq!(
        m.sum("tcp_open_total", &[("peer", "dst")]),
        1.0,
        "one multiplexed upstream connection"
    );
    assert_eq!(m.sum("protocol_detect_total", &[("result", "h2")]), 1.0);
}

#[tokio::test]
async fn http2_trailers_and_resets_are_carried() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let mut client = h2_conn(proxy.inbound).await;
    let rsp = client
        .send_request(
            Request::get("http://web.test/trailers")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let collected = rsp.into_body().collect().await.unwrap();
    assert_eq!(
        collected
            .trailers()
            .and_then(|t| t.get("x-trailer"))
            .map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
    assert_eq!(collected.to_bytes(), "data");

    // The server resets the stream: the client's stream is reset too (with
    // the server's reason), and the connection keeps serving.
    let err = client
        .send_request(
            Request::get("http://web.test/reset")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .expect_err("stream should be reset");
    let reason = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<h2::Error>())
        .and_then(|e| e.reason());
    assert_eq!(reason, Some(h2::Reason::INTERNAL_ERROR), "{err:?}");
    let rsp = client
        .send_request(
            Request::get("http://web.test/")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(body_string(rsp).await, "hello");

    let m = proxy.metrics().await;
    assert_eq!(m.sum("request_total", &[]), 3.0);
    assert_eq!(
        m.sum("response_total", &[("classification", "success")]),
        2.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("response_total", &[("classification", "failure")]),
        1.0,
        "{}",
        m.text
    );
}

/// Bodies far larger than HTTP/2's initial 64 KiB windows move both ways,
/// so flow control works on both of the proxy's connections.
#[tokio::test]
async fn http2_large_bodies_respect_flow_control() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let mut client = h2_conn(proxy.inbound).await;
    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let uploads = (0..3).map(|_| {
        let req = Request::post("http://web.test/echo")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        client.send_request(req)
    });
    for rsp in futures_util::future::join_all(uploads).await {
        let rsp = rsp.unwrap();
        assert_eq!(rsp.status(), 200);
        let echoed = rsp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            echoed == body,
            "echoed body differs ({} bytes)",
            echoed.len()
        );
    }
    let m = proxy.metrics().await;
    assert!(m.sum("tcp_read_bytes_total", &[("peer", "src")]) > 3.0 * 4.0 * 1024.0 * 1024.0);
    assert_eq!(
        m.sum("response_total", &[("classification", "success")]),
        3.0
    );
}

#[tokio::test]
async fn grpc_unary_and_streaming_with_grpc_status() {
    let backend = backends::grpc_echo().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.inbound))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = EchoClient::new(channel);

    let rsp = client
        .unary(Msg {
            text: "hi".into(),
            count: 1,
        })
        .await
        .unwrap();
    assert_eq!(rsp.into_inner().text, "hi");

    let mut stream = client
        .server_stream(Msg {
            text: "s".into(),
            count: 200,
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(msg) = stream.message().await.unwrap() {
        assert_eq!(msg.text, format!("s-{n}"));
        n += 1;
    }
    assert_eq!(n, 200);

    // Both directions stream at once: each message is echoed before the next
    // is sent.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..20 {
        tx.send(Msg {
            text: format!("b{i}"),
            count: i,
        })
        .await
        .unwrap();
        let echoed = replies.message().await.unwrap().unwrap();
        assert_eq!(echoed.count, i);
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());

    let err = client
        .fail(Msg {
            text: String::new(),
            count: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let m = proxy.metrics().await;
    assert_eq!(
        m.sum("request_total", &[("direction", "inbound")]),
        4.0,
        "{}",
        m.text
    );
    let ok = [
        ("status_code", "200"),
        ("grpc_status", "0"),
        ("classification", "success"),
    ];
    assert_eq!(m.sum("response_total", &ok), 3.0, "{}", m.text);
    let not_found = [
        ("status_code", "200"),
        ("grpc_status", "5"),
        ("classification", "failure"),
    ];
    assert_eq!(m.sum("response_total", &not_found), 1.0);
}

#[tokio::test]
async fn websocket_upgrade_becomes_a_byte_stream() {
    let backend = backends::websocket_echo().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let (mut ws, rsp) = tokio_tungstenite::client_async("ws://chat.test/socket", stream)
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::SWITCHING_PROTOCOLS);
    use tokio_tungstenite::tungstenite::Message;
    for i in 0..10 {
        ws.send(Message::text(format!("message {i}")))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("message {i}"))
        );
    }
    let big = vec![7u8; 256 * 1024];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data(), big);
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);

    let m = proxy.metrics_when_closed().await;
    let upgraded = [
        ("authority", "chat.test"),
        ("status_code", "101"),
        ("classification", "success"),
    ];
    assert_eq!(m.sum("response_total", &upgraded), 1.0, "{}", m.text);
    // Every frame went through the proxy's counted connections.
    assert!(m.sum("tcp_read_bytes_total", &[("peer", "src")]) > 256.0 * 1024.0);
    assert!(m.sum("tcp_write_bytes_total", &[("peer", "dst")]) > 256.0 * 1024.0);
}

#[tokio::test]
async fn http1_connect_tunnels_bytes() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    stream
        .write_all(b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Skip the rest of the response head.
    let mut window = Vec::new();
    while !window.ends_with(b"\r\n\r\n") {
        window.push(stream.read_u8().await.unwrap());
    }
    stream.write_all(b"tunnelled bytes").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut echoed = String::new();
    tokio::time::timeout(SETTLE, stream.read_to_string(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, "tunnelled bytes");
}

#[tokio::test]
async fn opaque_tcp_echo_with_half_close_and_byte_counts() {
    let backend = backends::tcp_echo().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    // Binary from the first byte: opaque at once, without waiting.
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = stream.split();
    let write = async {
        wr.write_all(&payload).await.unwrap();
        wr.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let read = rd.read_to_end(&mut echoed);
    let (_, n) = tokio::join!(write, read);
    assert_eq!(n.unwrap(), payload.len());
    assert!(echoed == payload, "echo differs");
    drop(stream);

    let m = proxy.metrics_when_closed().await;
    let n = payload.len() as f64;
    assert_eq!(
        m.sum("tcp_read_bytes_total", &[("peer", "src")]),
        n,
        "{}",
        m.text
    );
    assert_eq!(m.sum("tcp_write_bytes_total", &[("peer", "src")]), n);
    assert_eq!(m.sum("tcp_write_bytes_total", &[("peer", "dst")]), n);
    assert_eq!(m.sum("tcp_read_bytes_total", &[("peer", "dst")]), n);
    assert_eq!(m.sum("tcp_open_total", &[]), 2.0);
    assert_eq!(m.sum("tcp_close_total", &[("errno", "")]), 2.0);
    assert_eq!(m.sum("protocol_detect_total", &[("result", "opaque")]), 1.0);
    assert_eq!(m.sum("request_total", &[]), 0.0);
}

#[tokio::test]
async fn server_speaks_first_on_a_skip_detection_port() {
    let backend = backends::server_first().await;
    let proxy = Proxy::builder()
        .inbound_target(backend)
        .env(
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            backend.port(),
        )
        .spawn()
        .await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let mut banner = vec![0u8; backends::BANNER.len()];
    // The client says nothing: the banner must arrive without detection's wait.
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(banner, backends::BANNER);
    stream.write_all(b"HELO client\r\n").await.unwrap();
    let mut reply = [0u8; 13];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"HELO client\r\n");
    let m = proxy.metrics().await;
    assert_eq!(
        m.sum("protocol_detect_total", &[("result", "skipped")]),
        1.0
    );
}

#[tokio::test]
async fn silent_client_falls_back_to_opaque_after_the_detect_timeout() {
    let backend = backends::server_first().await;
    let proxy = Proxy::builder()
        .inbound_target(backend)
        .env("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT", "300ms")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let mut banner = vec![0u8; backends::BANNER.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(banner, backends::BANNER);
    let m = proxy.metrics().await;
    assert_eq!(
        m.sum("protocol_detect_total", &[("result", "timeout")]),
        1.0
    );
}

#[tokio::test]
async fn unreachable_target_gets_502_with_the_reason() {
    // A port nothing listens on.
    let unused = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::builder().inbound_target(unused).spawn().await;
    let mut client = h1_conn(proxy.inbound).await;
    let rsp = client.send_request(get("/", "gone.test")).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    assert!(rsp.headers().contains_key("l5d-proxy-error"));
    let m = proxy.metrics().await;
    let failed = [
        ("authority", "gone.test"),
        ("status_code", "502"),
        ("classification", "failure"),
    ];
    assert_eq!(m.sum("response_total", &failed), 1.0, "{}", m.text);
}

#[tokio::test]
async fn admin_probes_and_methods() {
    let proxy = Proxy::builder()
        .inbound_target("127.0.0.1:1".parse().unwrap())
        .spawn()
        .await;
    assert_eq!(proxy.admin("GET", "/ready").await, (200, "ready\n".into()));
    assert_eq!(proxy.admin("GET", "/live").await, (200, "live\n".into()));
    assert_eq!(proxy.admin("GET", "/shutdown").await.0, 405);
    assert_eq!(proxy.admin("GET", "/nope").await.0, 404);
    let m = proxy.metrics().await;
    for name in [
        "process_start_time_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(m.has(name, &[]), "{name} missing:\n{}", m.text);
    }
    assert!(m.has(
        "proxy_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    ));
    assert!(m.sum("process_resident_memory_bytes", &[]) > 0.0);
}

#[tokio::test]
async fn post_shutdown_drains_and_exits_zero() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    assert_eq!(proxy.admin("POST", "/shutdown").await.0, 200);
    let status = proxy.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let backend = backends::http().await;
    let proxy = Proxy::builder().inbound_target(backend).spawn().await;
    let inbound = proxy.inbound;
    let mut client = h1_conn(inbound).await;
    let slow = tokio::spawn(async move {
        let rsp = client
            .send_request(get("/slow?ms=1000", "web.test"))
            .await
            .unwrap();
        (rsp.status(), body_string(rsp).await)
    });
    // SIGTERM once the request is in flight: the proxy has counted it.
    let in_flight = eventually(Duration::from_secs(5), || async {
        let m = proxy.metrics().await;
        (m.sum("request_total", &[("direction", "inbound")]) >= 1.0).then_some(())
    })
    .await;
    assert!(
        in_flight.is_some(),
        "the slow request never reached the proxy"
    );
    proxy.sigterm();
    // New connections are refused once the listener is closed.
    let refused = eventually(Duration::from_secs(2), || async {
        TcpStream::connect(inbound).await.err()
    })
    .await;
    assert!(refused.is_some(), "the proxy kept accepting after SIGTERM");
    let (status, body) = slow.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "slow"));
    let exit = proxy.wait(Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn bad_configuration_is_one_line_and_exit_one() {
    let builder = Proxy::builder().env("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT", "soon");
    let (status, stderr) = builder.run_to_exit().await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT"),
        "{stderr}"
    );

    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let builder = Proxy::builder().env(
        "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
        taken.local_addr().unwrap(),
    );
    let (status, stderr) = builder.run_to_exit().await;
    assert_eq!(status.code(), Some(1));
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("cannot listen on") && last.contains("admin"),
        "{stderr}"
    );
}
