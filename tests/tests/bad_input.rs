//! Misbehaving clients: each is refused or cut off on its own connection
//! while a well-behaved client on another connection is served throughout.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use linkerd_tests::{backends, proxy::Proxy};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A well-behaved request on its own connection must still succeed.
async fn healthy(proxy: &Proxy) {
    let (status, body) = backends::http1_request(proxy.inbound, "GET", "/").await;
    assert_eq!((status, body.as_str()), (200, "hello"));
}

/// Reads until the proxy closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut out))
        .await
        .expect("the proxy did not close the connection")
        .ok();
    out
}

async fn http_proxy(extra: &[(&str, &str)]) -> (Proxy, SocketAddr) {
    let backend = backends::http().await;
    let mut builder = Proxy::builder().inbound_target(backend);
    for (k, v) in extra {
        builder = builder.env(k, v);
    }
    (builder.spawn().await, backend)
}

/// Sends `request` on its own connection and expects the proxy to answer
/// with `status` and close it, while serving others.
async fn refused(proxy: &Proxy, request: &[u8], status: &str) {
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    // The proxy may answer and close before it has read all of it.
    let _ = stream.write_all(request).await;
    let out = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let expected = format!("HTTP/1.1 {status}");
    assert!(
        out.starts_with(expected.as_bytes()),
        "{}",
        String::from_utf8_lossy(&out)
    );
    healthy(proxy).await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (proxy, _) = http_proxy(&[("LINKERD2_PROXY_HTTP_MAX_HEADER_SIZE", "16384")]).await;
    let big = "a".repeat(32 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    refused(&proxy, req.as_bytes(), "431").await;
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let (proxy, _) = http_proxy(&[]).await;
    let mut req = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    refused(&proxy, req.as_bytes(), "431").await;
}

#[tokio::test]
async fn slowloris_is_cut_off_by_the_header_read_timeout() {
    let (proxy, _) = http_proxy(&[("LINKERD2_PROXY_HTTP1_HEADER_READ_TIMEOUT", "500ms")]).await;
    let mut slow = TcpStream::connect(proxy.inbound).await.unwrap();
    // A complete request line (so detection says HTTP/1), then a header
    // dribbled out a byte at a time and never finished.
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let dribble = async {
        for b in b"X-Slow: 1234567890".iter().cycle().take(100) {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            // Slowloris: the attack is one byte every 50ms.
            tokio::time::sleep(Duration::from_millis(50)).await;
            healthy(&proxy).await;
        }
        panic!("the slow client was never cut off");
    };
    tokio::time::timeout(Duration::from_secs(10), dribble)
        .await
        .unwrap();
    healthy(&proxy).await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let (proxy, _) = http_proxy(&[("LINKERD2_PROXY_IDLE_TIMEOUT", "500ms")]).await;
    let stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "x")
        .body(Full::<Bytes>::default())
        .unwrap();
    let rsp = send.send_request(req).await.unwrap();
    rsp.into_body().collect().await.unwrap();
    // The connection then sits unused: the proxy closes it.
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("idle connection left open")
        .unwrap()
        .unwrap();
    // A long request is not idle: it completes past the idle timeout.
    let (status, body) = backends::http1_request(proxy.inbound, "GET", "/slow?ms=1200").await;
    assert_eq!((status, body.as_str()), (200, "slow"));
}

#[tokio::test]
async fn garbage_after_an_h2_preface_closes_only_that_connection() {
    let (proxy, _) = http_proxy(&[]).await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&[0xff; 64]).await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(5)).await;
    healthy(&proxy).await;
    let m = proxy.metrics().await;
    assert_eq!(m.sum("protocol_detect_total", &[("result", "h2")]), 1.0);
}

#[tokio::test]
async fn a_bad_header_line_gets_400_not_a_hang() {
    let (proxy, _) = http_proxy(&[]).await;
    refused(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        "400",
    )
    .await;
}

/// Opens streams and resets each one after `delay`, until the proxy refuses
/// the connection or `limit` streams were sent. Returns how many were sent
/// and whether the connection was cut off.
async fn reset_flood(proxy: &Proxy, limit: u32, delay: Duration) -> (u32, bool) {
    let stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let (client, conn) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    for i in 0..limit {
        let req = Request::get("http://web.test/slow?ms=2000")
            .body(())
            .unwrap();
        let Ok((_rsp, mut send)) = client.send_request(req, false) else {
            return (i, true);
        };
        // Let the connection task write the HEADERS before the reset; a
        // stream reset before it is sent is never sent at all.
        tokio::task::yield_now().await;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        send.send_reset(h2::Reason::CANCEL);
        client = match client.ready().await {
            Ok(c) => c,
            Err(_) => return (i, true),
        };
    }
    (limit, false)
}

/// CVE-2023-44487 ("rapid reset"): streams reset before the proxy accepts
/// them are bounded by h2's pending-accept limit.
///
/// Two defences each end it, checked by removing them: with
/// `LINKERD2_PROXY_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS=1000000` it still
/// passed (the proxy's own abandoned-request limit closed the connection);
/// with that too removed (`ABANDON_LIMIT` = `u64::MAX` in a patched proxy)
/// all 20,000 resets were accepted and this test failed.
#[tokio::test]
async fn http2_rapid_reset_flood_is_cut_off() {
    let (proxy, _) = http_proxy(&[]).await;
    let (sent, cut_off) = tokio::time::timeout(
        Duration::from_secs(20),
        reset_flood(&proxy, 20_000, Duration::ZERO),
    )
    .await
    .unwrap();
    assert!(
        cut_off,
        "{sent} rapid resets were accepted without the connection being closed"
    );
    healthy(&proxy).await;
}

/// Streams the proxy accepted and started forwarding, then abandoned by the
/// client: the connection is closed once most of its requests are abandoned.
///
/// Checked against its defence, the proxy's `ABANDON_LIMIT`
/// (`proxy/src/http/mod.rs`): set to `u64::MAX` in a patched proxy, all
/// 5,000 abandoned requests were accepted and this test failed.
#[tokio::test]
async fn http2_abandoned_requests_flood_is_cut_off() {
    let (proxy, _) = http_proxy(&[]).await;
    let (sent, cut_off) = tokio::time::timeout(
        Duration::from_secs(30),
        reset_flood(&proxy, 5_000, Duration::from_millis(1)),
    )
    .await
    .unwrap();
    assert!(
        cut_off,
        "{sent} abandoned requests were accepted without the connection being closed"
    );
    let m = proxy.metrics().await;
    let served = m.sum("request_total", &[("authority", "web.test")]);
    assert!(
        served >= 1000.0,
        "the cut-off came before the proxy served the requests ({served})"
    );
    healthy(&proxy).await;
}

#[tokio::test]
async fn a_client_reset_mid_response_does_not_disturb_others() {
    let (proxy, _) = http_proxy(&[]).await;
    for _ in 0..20 {
        let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
        stream
            .write_all(b"GET /slow?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // Reset rather than close: SO_LINGER 0.
        stream.set_zero_linger().unwrap();
        drop(stream);
    }
    healthy(&proxy).await;
    let closed = proxy.metrics_when_closed().await;
    assert_eq!(closed.sum("tcp_close_total", &[("peer", "src")]), 21.0);
}

#[tokio::test]
async fn opaque_errors_are_counted_by_errno() {
    // A target that refuses: the client connection is closed and counted.
    let refused = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::builder().inbound_target(refused).spawn().await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    stream.write_all(&[0u8; 16]).await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let m = proxy.metrics_when_closed().await;
    assert_eq!(
        m.sum(
            "tcp_close_total",
            &[("peer", "src"), ("errno", "ECONNREFUSED")]
        ),
        1.0,
        "{}",
        m.text
    );

    // A client that resets mid-stream: its connection closes with ECONNRESET,
    // and the proxy keeps serving others.
    let echo = backends::tcp_echo().await;
    let proxy = Proxy::builder().inbound_target(echo).spawn().await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    stream.write_all(&[1u8; 1024]).await.unwrap();
    let mut buf = [0u8; 1024];
    stream.read_exact(&mut buf).await.unwrap();
    stream.set_zero_linger().unwrap();
    drop(stream);
    let m = proxy.metrics_when_closed().await;
    assert_eq!(
        m.sum(
            "tcp_close_total",
            &[("peer", "src"), ("errno", "ECONNRESET")]
        ),
        1.0,
        "{}",
        m.text
    );
    let mut other = TcpStream::connect(proxy.inbound).await.unwrap();
    other.write_all(b"still here").await.unwrap();
    other.shutdown().await.unwrap();
    let mut echoed = String::new();
    other.read_to_string(&mut echoed).await.unwrap();
    assert_eq!(echoed, "still here");
}
