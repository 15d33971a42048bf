//! Known HTTP/1 attacks, sent through the real proxy to a backend that
//! records the bytes it was sent: request smuggling (ambiguous message
//! framing), header injection and a client naming its own identity. Each
//! is refused or normalised, and nothing ambiguous reaches the
//! application.
//!
//! How each test was checked against its defence: the framing defences
//! are hyper's (`proto/h1/role.rs`: with both framings, Transfer-Encoding
//! wins and the connection closes after the response; a Transfer-Encoding
//! not ending in `chunked`, or Content-Lengths that differ, are a 400).
//! With those three checks deleted from a copy of hyper 1.12 patched in
//! (`[patch.crates-io]`), the CL.TE, Transfer-Encoding and Content-Length
//! tests failed (the connection stayed open for the smuggled request;
//! the request was forwarded). The identity defence is the proxy's
//! (`http/client_id.rs`): with its `remove` taken out, the backend saw the
//! client's `l5d-client-id` and that test failed. The obs-fold and NUL/CR
//! tests rest on httparse, which has no switch to accept them in requests;
//! they were not checked that way.

use linkerd_tests::proxy::Proxy;
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A backend that keeps every byte its connections brought and answers
/// each request line it sees with `200 hello`: what the proxy forwarded,
/// before any parser of the application's could normalise it.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let all = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let all = all.clone();
                tokio::spawn(async move {
                    let (mut mine, mut answered, mut buf) = (Vec::new(), 0, [0u8; 8192]);
                    while let Ok(n @ 1..) = conn.read(&mut buf).await {
                        mine.extend_from_slice(&buf[..n]);
                        all.lock().unwrap().extend_from_slice(&buf[..n]);
                        let requests = count(&mine, b" HTTP/1.1\r\n");
                        for _ in answered..requests {
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                            if conn.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                        answered = requests;
                    }
                });
            }
        });
        Self { addr, seen }
    }

    /// Everything forwarded so far, lower-cased (header names are
    /// case-insensitive; the proxy writes them lower-case).
    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).to_ascii_lowercase()
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

async fn proxy() -> (Proxy, Recorder) {
    let backend = Recorder::start().await;
    let proxy = Proxy::builder().inbound_target(backend.addr).spawn().await;
    (proxy, backend)
}

/// Sends `request` on its own connection and returns all the proxy sent
/// back before it closed the connection (it must close it).
async fn exchange(proxy: &Proxy, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("the proxy kept the connection open")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// A well-behaved request still goes through, on its own connection.
async fn still_serves(proxy: &Proxy) {
    let (status, body) =
        linkerd_tests::backends::http1_request(proxy.inbound, "GET", "/after").await;
    assert_eq!((status, body.as_str()), (200, "hello"));
}

/// CL.TE smuggling (RUSTSEC-2021-0020's class): a body whose
/// Content-Length covers a second request that Transfer-Encoding ends
/// before. Transfer-Encoding wins, the request is forwarded with one
/// framing only, and the connection closes after the answer, so the
/// bytes after the chunked body are never read as a request.
#[tokio::test]
async fn content_length_with_transfer_encoding_smuggles_nothing() {
    let (proxy, backend) = proxy().await;
    let body = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(&proxy, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(count(answer.as_bytes(), b"HTTP/1.1 "), 1, "{answer}");
    still_serves(&proxy).await;
    let seen = backend.seen();
    assert!(!seen.contains("/smuggled"), "{seen}");
    let upload = seen
        .split("post /upload")
        .nth(1)
        .and_then(|rest| rest.split("\r\n\r\n").next())
        .unwrap_or_else(|| panic!("the upload was not forwarded: {seen}"));
    assert!(
        !(upload.contains("content-length") && upload.contains("transfer-encoding")),
        "forwarded with both framings: {upload}"
    );
}

/// Two Content-Lengths that disagree: which one frames the body is
/// exactly what a smuggler exploits.
#[tokio::test]
async fn differing_content_lengths_get_400() {
    let (proxy, backend) = proxy().await;
    let answer = exchange(
        &proxy,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 17\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    still_serves(&proxy).await;
    assert!(!backend.seen().contains("post /a"), "{}", backend.seen());
}

/// A Transfer-Encoding whose last coding is not `chunked` leaves the
/// body's end to the next parser's guess.
#[tokio::test]
async fn transfer_encoding_not_ending_in_chunked_gets_400() {
    let (proxy, backend) = proxy().await;
    for te in ["chunked, identity", "identity", "chunked\r\nTransfer-Encoding: gzip"] {
        let request = format!(
            "POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n"
        );
        let answer = exchange(&proxy, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{te:?}: {answer}");
    }
    still_serves(&proxy).await;
    assert!(!backend.seen().contains("post /te"), "{}", backend.seen());
}

/// Obsolete line folding (a header value continued on the next line) is
/// read as a new header by some parsers and as part of the value by
/// others.
#[tokio::test]
async fn obsolete_line_folding_gets_400() {
    let (proxy, backend) = proxy().await;
    let answer = exchange(
        &proxy,
        b"GET /fold HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    still_serves(&proxy).await;
    assert!(!backend.seen().contains("/fold"), "{}", backend.seen());
}

/// A NUL or a bare CR in a header value could end the header early for
/// the application and start an injected one.
#[tokio::test]
async fn nul_and_bare_cr_in_header_values_get_400() {
    let (proxy, backend) = proxy().await;
    for value in [&b"a\0b"[..], b"a\rX-Injected: 1"] {
        let mut request = b"GET /inject HTTP/1.1\r\nHost: x\r\nX-Value: ".to_vec();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n\r\n");
        let answer = exchange(&proxy, &request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{:?}: {answer}",
            String::from_utf8_lossy(value)
        );
    }
    still_serves(&proxy).await;
    assert!(!backend.seen().contains("/inject"), "{}", backend.seen());
}

/// A client outside the mesh cannot name itself: its `l5d-client-id`
/// never reaches the application, which may authorize on it.
#[tokio::test]
async fn an_outside_clients_l5d_client_id_is_stripped_inbound() {
    let (proxy, backend) = proxy().await;
    let admin = "admin.linkerd.serviceaccount.identity.linkerd.cluster.local";
    let request = format!(
        "GET /whoami HTTP/1.1\r\nHost: x\r\nl5d-client-id: {admin}\r\nConnection: close\r\n\r\n"
    );
    let answer = exchange(&proxy, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = backend.seen();
    assert!(seen.contains("get /whoami"), "{seen}");
    assert!(!seen.contains("l5d-client-id"), "{seen}");
}
