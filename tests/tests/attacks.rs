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
                            // A tunnel's 2xx has no body (RFC 9110 §9.3.6).
                            // (Connections are pooled: the latest request
                            // head is the one being answered.)
                            let latest = String::from_utf8_lossy(&mine)
                                .trim_end()
                                .rsplit("\r\n\r\n")
                                .next()
                                .unwrap_or_default()
                                .starts_with("CONNECT ");
                            let ok: &[u8] = if latest {
                                b"HTTP/1.1 200 OK\r\n\r\n"
                            } else {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
                            };
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
    for te in [
        "chunked, identity",
        "identity",
        "chunked\r\nTransfer-Encoding: gzip",
    ] {
        let request =
            format!("POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
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

/// Hop-by-hop abuse: `Connection` names the headers a hop must drop, and
/// an attacker names the ones the next hop relies on. What it names goes
/// (here `X-Forwarded-For`), but never `Host`, the request's authority for
/// every recipient: removed, the proxy would have put the pod's address in
/// its place (the `http1_inbound` fuzz target's finding). Checked by taking
/// the `Host` exception out of `strip_hop_by_hop`: the application then saw
/// `host: 127.0.0.1:<port>`.
#[tokio::test]
async fn connection_cannot_take_host_away() {
    let (proxy, backend) = proxy().await;
    let answer = exchange(
        &proxy,
        b"GET /hop HTTP/1.1\r\nHost: web.example\r\nX-Forwarded-For: 198.18.0.9\r\nConnection: Host, X-Forwarded-For, close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = backend.seen();
    assert!(seen.contains("get /hop"), "{seen}");
    assert!(seen.contains("\r\nhost: web.example\r\n"), "{seen}");
    assert!(!seen.contains("x-forwarded-for"), "{seen}");
    still_serves(&proxy).await;
}

/// Sends `request` to `addr` and returns the head of the answer (a
/// tunnel's connection stays open after it).
async fn response_head(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(n @ 1..) => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The proxy is no open proxy: a request naming another host, in an
/// absolute-form URI, a `Host` that differs from it, or the authority form
/// of CONNECT, goes where the connection was going (its original
/// destination) or nowhere, never to the host it names. Outbound, where an
/// application's requests leave the pod, and inbound, where the world's
/// arrive. (No one check to delete here: the proxy routes by the
/// connection's original destination unless the destination service
/// knows the name, and none runs in this test; the test keeps it so. Per
/// RFC 9112 §3.2.2 the absolute URI's authority replaces a differing
/// `Host`, and the request leaves in origin-form.)
#[tokio::test]
async fn a_request_naming_another_host_goes_nowhere_else() {
    let (meant, other) = (Recorder::start().await, Recorder::start().await);
    let proxy = Proxy::builder()
        .inbound_target(meant.addr)
        .outbound_target(meant.addr)
        .spawn()
        .await;
    let elsewhere = other.addr;
    let requests = [
        format!(
            "GET http://{elsewhere}/absolute HTTP/1.1\r\nHost: {elsewhere}\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "GET http://{elsewhere}/mismatch HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n\r\n"
        ),
        format!("GET /host-only HTTP/1.1\r\nHost: {elsewhere}\r\nConnection: close\r\n\r\n"),
        format!("CONNECT {elsewhere} HTTP/1.1\r\nHost: {elsewhere}\r\n\r\n"),
    ];
    for request in &requests {
        let line = request.lines().next().unwrap_or_default();
        for (side, answer) in [
            (
                "inbound",
                response_head(proxy.inbound, request.as_bytes()).await,
            ),
            (
                "outbound",
                response_head(proxy.outbound, request.as_bytes()).await,
            ),
        ] {
            assert!(
                answer.starts_with("HTTP/1.1 "),
                "{side} {line}: {answer:?}; the backend saw {:?}",
                meant.seen()
            );
        }
    }
    assert_eq!(other.seen(), "", "a request reached the host it named");
    let seen = meant.seen();
    for path in ["/absolute", "/mismatch", "/host-only"] {
        assert_eq!(count(seen.as_bytes(), path.as_bytes()), 2, "{path}: {seen}");
    }
    // Absolute-form is rewritten to origin-form for an HTTP/1 server.
    assert!(!seen.contains(&format!("get http://{elsewhere}")), "{seen}");
}

/// HTTP/2 by hand, for what a well-behaved client library will not send.
mod h2raw {
    pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub(super) const HEADERS: u8 = 0x1;
    pub(super) const SETTINGS: u8 = 0x4;
    pub(super) const RST_STREAM: u8 = 0x3;
    pub(super) const GOAWAY: u8 = 0x7;
    pub(super) const CONTINUATION: u8 = 0x9;
    pub(super) const END_STREAM: u8 = 0x1;
    pub(super) const END_HEADERS: u8 = 0x4;

    pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HPACK integer with an `n`-bit prefix, `flags` in the first
    /// byte's high bits (RFC 7541 §5.1).
    fn int(out: &mut Vec<u8>, n: u32, flags: u8, mut v: usize) {
        let max = (1usize << n) - 1;
        if v < max {
            out.push(flags | v as u8);
            return;
        }
        out.push(flags | max as u8);
        v -= max;
        while v >= 128 {
            out.push((v % 128 + 128) as u8);
            v /= 128;
        }
        out.push(v as u8);
    }

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        int(out, 7, 0, s.len());
        out.extend_from_slice(s);
    }

    /// `GET /` to `x` over http: the pseudo-headers, statically indexed.
    pub(super) fn get() -> Vec<u8> {
        // :method GET, :scheme http, :path /, then :authority x.
        let mut b = vec![0x82, 0x86, 0x84];
        int(&mut b, 4, 0x00, 1);
        string(&mut b, b"x");
        b
    }

    /// A literal header, not indexed (RFC 7541 §6.2.2).
    pub(super) fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        out.push(0x00);
        string(out, name);
        string(out, value);
    }

    /// A literal header added to the dynamic table (RFC 7541 §6.2.1).
    pub(super) fn indexed_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        out.push(0x40);
        string(out, name);
        string(out, value);
    }

    /// A reference to the dynamic table's newest entry (index 62).
    pub(super) fn newest(out: &mut Vec<u8>) {
        int(out, 7, 0x80, 62);
    }

    /// Reads frames until the peer sends GOAWAY or closes; returns the
    /// frame types it sent.
    pub(super) async fn read_until_goaway(rd: tokio::net::tcp::OwnedReadHalf) -> Vec<u8> {
        read_until(rd, false).await
    }

    /// Also stops at a refused stream: its RST_STREAM, or a response that
    /// ends it (a 431).
    pub(super) async fn read_until_refused(rd: tokio::net::tcp::OwnedReadHalf) -> Vec<u8> {
        read_until(rd, true).await
    }

    async fn read_until(mut rd: tokio::net::tcp::OwnedReadHalf, stream: bool) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut kinds = Vec::new();
        let mut head = [0u8; 9];
        while rd.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            if rd.read_exact(&mut payload).await.is_err() {
                break;
            }
            kinds.push(head[3]);
            let ends_stream =
                head[3] == RST_STREAM || (head[3] == HEADERS && head[4] & END_STREAM != 0);
            if head[3] == GOAWAY || (stream && ends_stream) {
                break;
            }
        }
        kinds
    }
}

/// Opens an HTTP/2 connection to the proxy by hand: the preface and an
/// empty SETTINGS. Returns the write half and a task reading the proxy's
/// frames with `read` (until GOAWAY or close, say).
async fn h2_connect<F: Future<Output = Vec<u8>> + Send + 'static>(
    proxy: &Proxy,
    read: fn(tokio::net::tcp::OwnedReadHalf) -> F,
) -> (
    tokio::net::tcp::OwnedWriteHalf,
    tokio::task::JoinHandle<Vec<u8>>,
) {
    let stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    wr.write_all(h2raw::PREFACE).await.unwrap();
    wr.write_all(&h2raw::frame(h2raw::SETTINGS, 0, 0, &[]))
        .await
        .unwrap();
    (wr, tokio::spawn(read(rd)))
}

/// CONTINUATION flood (RUSTSEC-2024-0332): a header block that never
/// ends, split over endless CONTINUATION frames. The proxy gives up on the
/// connection after about its header limit (64 KiB by default), not after
/// whatever the attacker has the patience to send, and serves others.
///
/// Checked against its defences (h2's `codec/framed_read.rs`: at most
/// `max_continuation_frames` for one block, and no more than the header
/// limit buffered once the block is over size): with both deleted from a
/// copy of h2 0.4.20 patched in, the proxy took all 16 MiB and this test
/// failed.
#[tokio::test]
async fn an_http2_continuation_flood_is_cut_off() {
    let (proxy, backend) = proxy().await;
    let (mut wr, reader) = h2_connect(&proxy, h2raw::read_until_goaway).await;
    wr.write_all(&h2raw::frame(
        h2raw::HEADERS,
        h2raw::END_STREAM,
        1,
        &h2raw::get(),
    ))
    .await
    .unwrap();
    let mut block = Vec::new();
    let mut n = 0;
    while block.len() < 16_000 {
        h2raw::literal(&mut block, format!("x-pad-{n}").as_bytes(), &[b'a'; 200]);
        n += 1;
    }
    // Paced (a frame a millisecond, 16 MiB in over a second), so the
    // proxy's answer is seen as it comes, not after the kernel's buffers.
    let limit = 16 << 20;
    let mut sent = 0;
    while sent < limit && !reader.is_finished() {
        let frame = h2raw::frame(h2raw::CONTINUATION, 0, 1, &block);
        if wr.write_all(&frame).await.is_err() {
            break;
        }
        sent += frame.len();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        sent < limit,
        "the proxy read all {} KiB of one header block",
        sent / 1024
    );
    let kinds = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the proxy kept the connection")
        .unwrap();
    println!(
        "the proxy ended the connection after {} KiB of CONTINUATION frames had been sent (frames it sent: {kinds:?})",
        sent / 1024
    );
    assert_eq!(kinds.last(), Some(&h2raw::GOAWAY), "{kinds:?}");
    still_serves(&proxy).await;
    assert!(!backend.seen().contains("x-pad"), "{}", backend.seen());
}

/// HPACK bomb: one 4 KiB header put in the decoder's table, then
/// referenced by its one-byte index thousands of times: a 16 KiB block
/// that would decode to 64 MiB of headers. The proxy refuses it at its
/// header limit; nothing reaches the application.
///
/// Checked against its defence, h2's header-list limits (`check_size!` in
/// `frame/headers.rs`: past the limit the stream gets a 431, far past it
/// the connection a GOAWAY): with both disabled in a copy of h2 0.4.20
/// patched in, the proxy neither refused the block nor ended the
/// connection within 5s, and this test failed.
#[tokio::test]
async fn an_hpack_bomb_is_refused_at_the_header_limit() {
    let (proxy, backend) = proxy().await;
    let (mut wr, reader) = h2_connect(&proxy, h2raw::read_until_refused).await;
    let mut block = h2raw::get();
    h2raw::indexed_literal(&mut block, b"x-bomb", &[b'b'; 4000]);
    while block.len() < 16_000 {
        h2raw::newest(&mut block);
    }
    wr.write_all(&h2raw::frame(
        h2raw::HEADERS,
        h2raw::END_STREAM | h2raw::END_HEADERS,
        1,
        &block,
    ))
    .await
    .unwrap();
    // The stream is refused (a 431 or a reset) or the connection ended
    // (today: GOAWAY, ENHANCE_YOUR_CALM, as the block is far past the limit).
    let kinds = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the proxy neither refused the block nor ended the connection")
        .unwrap();
    assert!(
        matches!(
            kinds.last(),
            Some(&h2raw::GOAWAY | &h2raw::RST_STREAM | &h2raw::HEADERS)
        ),
        "{kinds:?}"
    );
    still_serves(&proxy).await;
    assert!(!backend.seen().contains("x-bomb"), "{}", backend.seen());
    let m = proxy.metrics().await;
    let rss = m.sum("process_resident_memory_bytes", &[]);
    assert!(
        rss > 0.0 && rss < 64.0 * 1024.0 * 1024.0,
        "the proxy holds {} MiB after the bomb",
        rss / 1024.0 / 1024.0
    );
}

/// TLS at a meshed proxy's inbound port, by hand: what a well-behaved
/// client library will not send.
mod tls {
    use super::{Recorder, count};
    use linkerd_tests::{
        mesh::{Mesh, identity, ready},
        proxy::Proxy,
    };
    use rustls::{ClientConnection, pki_types::ServerName};
    use std::{sync::Arc, time::Duration};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    const NS: &str = "emojivoto";

    /// A meshed `web` proxy in front of a recording backend, and TLS
    /// settings for a meshed client (`vote-bot`). `policy` is the default
    /// inbound policy: with `all-unauthenticated` (Linkerd's default), TLS
    /// that is not the mesh's is the application's and passes through;
    /// with `all-authenticated` only mesh TLS is let in.
    async fn web(policy: &str) -> (Mesh, Proxy, Recorder, Arc<rustls::ClientConfig>) {
        let mesh = Mesh::start(&[(NS, "web"), (NS, "vote-bot")], &[]).await;
        let backend = Recorder::start().await;
        let proxy = mesh
            .proxy(NS, "web")
            .inbound_target(backend.addr)
            .env("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT", "1s")
            .env("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY", policy)
            .spawn()
            .await;
        ready(&proxy).await;
        let client = mesh.client_tls(NS, "vote-bot").await;
        (mesh, proxy, backend, client)
    }

    /// The TLS records of a client's first flight: its ClientHello.
    fn client_hello(config: &Arc<rustls::ClientConfig>, sni: &str) -> (ClientConnection, Vec<u8>) {
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = ClientConnection::new(config.clone(), name).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        (conn, hello)
    }

    /// The handshake message in `records` re-framed as records of at most
    /// `size` bytes each, as TLS allows.
    fn fragment(records: &[u8], size: usize) -> Vec<u8> {
        let (version, body) = (&records[1..3], &records[5..]);
        let mut out = Vec::new();
        for chunk in body.chunks(size) {
            out.push(0x16);
            out.extend_from_slice(version);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    /// Drives `conn`'s handshake over `tcp` after its first flight was
    /// sent; whether it completed.
    async fn finish_handshake(conn: &mut ClientConnection, tcp: &mut TcpStream) -> bool {
        let mut buf = vec![0u8; 16 * 1024];
        for _ in 0..20 {
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
            if !out.is_empty() && tcp.write_all(&out).await.is_err() {
                return false;
            }
            if !conn.is_handshaking() {
                return true;
            }
            let n = match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
                Ok(Ok(n @ 1..)) => n,
                _ => return false,
            };
            if conn.read_tls(&mut &buf[..n]).is_err() || conn.process_new_packets().is_err() {
                return false;
            }
        }
        false
    }

    /// Whether the proxy ends the connection within `limit`.
    async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
        let mut sink = Vec::new();
        tokio::time::timeout(limit, tcp.read_to_end(&mut sink))
            .await
            .is_ok()
    }

    /// A well-behaved meshed client still gets through.
    async fn still_serves(proxy: &Proxy, client: &Arc<rustls::ClientConfig>) {
        let mut tcp = TcpStream::connect(proxy.inbound).await.unwrap();
        let (mut conn, hello) = client_hello(client, &identity(NS, "web"));
        tcp.write_all(&hello).await.unwrap();
        assert!(
            finish_handshake(&mut conn, &mut tcp).await,
            "a good client was refused"
        );
    }

    /// A ClientHello naming someone else is the application's own TLS:
    /// its bytes reach the application untouched, and the proxy never
    /// answers it with its own certificate. (Checked by letting the proxy
    /// take any name, in `tls.rs`'s `read_hello`: the backend then saw no
    /// hello and this test failed.)
    #[tokio::test]
    async fn a_hello_for_another_name_passes_through_untouched() {
        let (_mesh, proxy, backend, client) = web("all-unauthenticated").await;
        let (mut conn, hello) = client_hello(&client, &identity(NS, "db"));
        let mut tcp = TcpStream::connect(proxy.inbound).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        // The recorder is no TLS server: the handshake cannot complete.
        assert!(!finish_handshake(&mut conn, &mut tcp).await);
        let seen = backend.seen.lock().unwrap().clone();
        assert!(
            seen.starts_with(&hello),
            "the application did not get the hello as sent ({} bytes)",
            seen.len()
        );
        still_serves(&proxy, &client).await;
    }

    /// A ClientHello split into one-byte records (valid TLS, and a way to
    /// slip past a parser that reads one record) is still recognised and
    /// terminated; one that never ends is given up at the hello limit
    /// (64 KiB) and, where only mesh TLS is let in, its connection ends
    /// with nothing forwarded.
    #[tokio::test]
    async fn a_hello_split_over_many_records_is_read_whole_and_bounded() {
        let (_mesh, proxy, backend, client) = web("all-authenticated").await;
        let (mut conn, hello) = client_hello(&client, &identity(NS, "web"));
        let split = fragment(&hello, 1);
        assert!(count(&split, &[0x16]) >= hello.len() - 5);
        let mut tcp = TcpStream::connect(proxy.inbound).await.unwrap();
        tcp.write_all(&split).await.unwrap();
        assert!(
            finish_handshake(&mut conn, &mut tcp).await,
            "a hello in {} records was not terminated",
            hello.len() - 5
        );

        // Endless one-byte records of a hello that never completes.
        let mut tcp = TcpStream::connect(proxy.inbound).await.unwrap();
        let endless = fragment(&[&hello[..5], &vec![0x01; 200_000][..]].concat(), 1);
        let mut sent = 0;
        for chunk in endless.chunks(4096) {
            if tcp.write_all(chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        assert!(
            closed_within(&mut tcp, Duration::from_secs(5)).await,
            "the proxy kept reading a hello of {} KiB",
            sent / 1024
        );
        assert!(backend.seen().is_empty(), "{}", backend.seen());
        still_serves(&proxy, &client).await;
    }

    /// A ClientHello cut short (the client stops, or half-closes) and a
    /// record longer than TLS allows: where only mesh TLS is let in, each
    /// is the end of its connection after at most the detect timeout, and
    /// nothing reaches the application.
    #[tokio::test]
    async fn truncated_hellos_and_oversized_records_end_their_connection() {
        let (_mesh, proxy, backend, client) = web("all-authenticated").await;
        let (_, hello) = client_hello(&client, &identity(NS, "web"));

        // Stalls half-way.
        let mut stalled = TcpStream::connect(proxy.inbound).await.unwrap();
        stalled.write_all(&hello[..hello.len() / 2]).await.unwrap();
        // Half-closes half-way.
        let mut half = TcpStream::connect(proxy.inbound).await.unwrap();
        half.write_all(&hello[..hello.len() / 2]).await.unwrap();
        half.shutdown().await.unwrap();
        // A record of 65,535 bytes, over TLS's 16 KiB + 256.
        let mut oversized = TcpStream::connect(proxy.inbound).await.unwrap();
        let mut record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        record.extend(std::iter::repeat_n(0x01, 65_535));
        let _ = oversized.write_all(&record).await;

        for (what, tcp) in [
            ("a stalled hello", &mut stalled),
            ("a half-closed hello", &mut half),
            ("an oversized record", &mut oversized),
        ] {
            assert!(
                closed_within(tcp, Duration::from_secs(5)).await,
                "{what}: the connection stayed open"
            );
        }
        assert!(backend.seen().is_empty(), "{}", backend.seen());
        still_serves(&proxy, &client).await;
    }

    /// Where the application may take TLS of its own (the default policy),
    /// a hello cut short is the application's to judge: after the detect
    /// timeout its bytes go through exactly as sent, and the proxy has
    /// held no more than them.
    #[tokio::test]
    async fn a_truncated_hello_is_the_applications_under_the_default_policy() {
        let (_mesh, proxy, backend, client) = web("all-unauthenticated").await;
        let (_, hello) = client_hello(&client, &identity(NS, "web"));
        let half = &hello[..hello.len() / 2];
        let mut stalled = TcpStream::connect(proxy.inbound).await.unwrap();
        stalled.write_all(half).await.unwrap();
        let through = linkerd_tests::eventually(Duration::from_secs(5), || async {
            (backend.seen.lock().unwrap().as_slice() == half).then_some(())
        })
        .await;
        assert!(
            through.is_some(),
            "the application got {} of the {} bytes sent",
            backend.seen.lock().unwrap().len(),
            half.len()
        );
        still_serves(&proxy, &client).await;
    }
}

/// A backend whose every response is an endless body of 64 KiB chunks,
/// counting the bytes it has been asked for: what back-pressure lets
/// through.
async fn firehose() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    use futures_util::StreamExt as _;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let counter = counter.clone();
                    // Bounded: 4 GiB for `/big`, far past any buffer; a
                    // chunk for anything else.
                    let n = if req.uri().path() == "/big" {
                        65_536u32
                    } else {
                        1
                    };
                    let chunks = futures_util::stream::iter(0..n).map(move |_| {
                        counter.fetch_add(64 * 1024, Ordering::Relaxed);
                        Ok::<_, std::convert::Infallible>(Frame::data(bytes::Bytes::from_static(
                            &[b'x'; 64 * 1024],
                        )))
                    });
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(StreamBody::new(
                            chunks,
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (addr, produced)
}

/// A client that asks for a response and never reads it (over HTTP/1 and
/// over HTTP/2) holds the proxy to what flow control and socket buffers
/// allow: the backend is asked for a bounded amount, the proxy's memory
/// stays flat, and other clients are served meanwhile. (No one check to
/// delete: the proxy streams bodies frame by frame, holding a frame until
/// the client's side takes it; a layer that buffered whole bodies would
/// fail this.)
#[tokio::test]
async fn a_client_that_never_reads_holds_bounded_memory() {
    use std::sync::atomic::Ordering;
    let (addr, produced) = firehose().await;
    let proxy = Proxy::builder().inbound_target(addr).spawn().await;
    let rss = |m: linkerd_tests::metrics::Scrape| m.sum("process_resident_memory_bytes", &[]);
    let before = rss(proxy.metrics().await);

    // HTTP/1: the request, then nothing read.
    let mut h1 = TcpStream::connect(proxy.inbound).await.unwrap();
    h1.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // HTTP/2: a stream opened, its body never polled.
    let tcp = TcpStream::connect(proxy.inbound).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://x/big").body(()).unwrap();
    let (rsp, _) = h2.send_request(req, true).unwrap();
    let _held = rsp.await.unwrap();

    // Until the buffers are full (bounded), then two seconds more.
    let mut first = produced.load(Ordering::Relaxed);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = produced.load(Ordering::Relaxed);
        if now == first && now > 0 {
            break;
        }
        first = now;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = produced.load(Ordering::Relaxed);
    let after = rss(proxy.metrics().await);
    println!(
        "the backend was asked for {} MiB, then {} MiB two seconds later; proxy RSS {:.1} MiB before, {:.1} MiB after",
        first >> 20,
        second >> 20,
        before / 1048576.0,
        after / 1048576.0
    );
    assert!(
        second < 64 << 20,
        "{} MiB went into the proxy",
        second >> 20
    );
    assert_eq!(first, second, "the backend is still being read");
    assert!(
        after - before < 32.0 * 1048576.0,
        "the proxy grew by {:.1} MiB",
        (after - before) / 1048576.0
    );
    let (status, _) = linkerd_tests::backends::http1_request(proxy.inbound, "GET", "/").await;
    assert_eq!(status, 200);
}
