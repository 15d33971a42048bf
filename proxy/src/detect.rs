//! Protocol detection: reads the first bytes a client sends and decides
//! whether the connection is TLS, HTTP/1, HTTP/2 or opaque TCP.
//!
//! The decision is made as early as the bytes allow: binary garbage is opaque
//! at its first byte, while a request line is read to its end so that an
//! unlucky opaque protocol that starts with `GET` is not mistaken for HTTP.

use crate::metrics::DetectResult;
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much a client may send before detection decides. A request line
/// longer than this is still HTTP/1 and left to the HTTP server to refuse.
pub(crate) const CAPACITY: usize = 8 * 1024;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    H2,
    /// A TLS handshake record: mesh TLS if its ClientHello names this proxy.
    Tls,
    Opaque,
}

/// The longest method detection waits for.
const MAX_METHOD: usize = 32;

/// The first byte of a TLS handshake record; no HTTP request starts with it.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Known(Protocol),
    NeedMore,
}

pub(crate) fn classify(buf: &[u8]) -> Verdict {
    use Verdict::*;
    if buf[0] == TLS_HANDSHAKE {
        return Known(Protocol::Tls);
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if buf.len() >= H2_PREFACE.len() {
            Known(Protocol::H2)
        } else {
            NeedMore
        };
    }
    // method SP request-target SP HTTP/1.x CRLF
    // No method is longer than 32 bytes: past that, opaque, whatever
    // follows (the fuzzer found a 70-byte "method" opaque until its space
    // arrived, then waiting for more).
    let method_len = buf.iter().take_while(|b| is_tchar(**b)).count();
    if method_len > MAX_METHOD {
        return Known(Protocol::Opaque);
    }
    if method_len == buf.len() {
        return NeedMore;
    }
    if method_len == 0 || buf[method_len] != b' ' {
        return Known(Protocol::Opaque);
    }
    let line_end = buf.iter().position(|b| *b == b'\n');
    let line = &buf[..line_end.unwrap_or(buf.len())];
    // Control bytes other than CR cannot be in a request line: opaque as
    // soon as one arrives, whether or not the line's end has, so that the
    // verdict does not depend on how the bytes were segmented (the fuzzer
    // found "GET /\x01 HTTP/1.1" opaque in two reads and HTTP in one).
    if line[method_len..]
        .iter()
        .any(|b| (*b < 0x20 && *b != b'\r') || *b == 0x7f)
    {
        return Known(Protocol::Opaque);
    }
    if line_end.is_none() {
        return if buf.len() >= CAPACITY {
            Known(Protocol::Http1)
        } else {
            NeedMore
        };
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") {
        Known(Protocol::Http1)
    } else {
        Known(Protocol::Opaque)
    }
}

/// RFC 9110 token characters, which make up a method.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads from `io` until the protocol is known, the client stops sending for
/// `timeout`, or it closes. Returns the outcome and every byte read, which
/// must be replayed to whatever handles the connection next.
pub(crate) async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
) -> (DetectResult, Protocol, BytesMut) {
    let mut buf = BytesMut::with_capacity(CAPACITY);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await;
        let result = match read {
            Err(_elapsed) => return (DetectResult::Timeout, Protocol::Opaque, buf),
            Ok(Ok(0)) if buf.is_empty() => return (DetectResult::Eof, Protocol::Opaque, buf),
            // A client that half-closes mid-request line is not speaking HTTP
            // we can serve; pass what it sent on untouched.
            Ok(Ok(0)) => return (DetectResult::Opaque, Protocol::Opaque, buf),
            Ok(Ok(_)) => classify(&buf),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "read failed during protocol detection");
                return (DetectResult::Error, Protocol::Opaque, buf);
            }
        };
        match result {
            Verdict::Known(Protocol::Http1) => return (DetectResult::Http1, Protocol::Http1, buf),
            Verdict::Known(Protocol::H2) => return (DetectResult::H2, Protocol::H2, buf),
            Verdict::Known(Protocol::Tls) => return (DetectResult::Tls, Protocol::Tls, buf),
            Verdict::Known(Protocol::Opaque) => {
                return (DetectResult::Opaque, Protocol::Opaque, buf);
            }
            Verdict::NeedMore if buf.len() >= CAPACITY => {
                return (DetectResult::Opaque, Protocol::Opaque, buf);
            }
            Verdict::NeedMore => {}
        }
    }
}

/// The result a port that skips detection is counted under.
pub(crate) fn skipped() -> (DetectResult, Protocol, BytesMut) {
    (DetectResult::Skipped, Protocol::Opaque, BytesMut::new())
}

/// On a port that skips protocol detection: whether the client opens with
/// TLS within `timeout` (a meshed client proxy sends its ClientHello at
/// once). A client that waits for the server to speak first only costs
/// `timeout`; anything else is opaque.
pub(crate) async fn tls_only<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
) -> (DetectResult, Protocol, BytesMut) {
    let mut buf = BytesMut::with_capacity(CAPACITY);
    match tokio::time::timeout(timeout, io.read_buf(&mut buf)).await {
        Ok(Ok(n)) if n > 0 && buf[0] == TLS_HANDSHAKE => (DetectResult::Tls, Protocol::Tls, buf),
        _ => (DetectResult::Skipped, Protocol::Opaque, buf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    #[test]
    fn request_lines() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Known(Protocol::Http1));
        assert_eq!(
            classify(b"POST /a?b=c HTTP/1.0\r\nHost: x\r\n"),
            Known(Protocol::Http1)
        );
        assert_eq!(
            classify(b"CONNECT example.com:443 HTTP/1.1\r\n"),
            Known(Protocol::Http1)
        );
        assert_eq!(classify(b"GET / HTTP/1.1\n"), Known(Protocol::Http1));
        assert_eq!(classify(b"GET / HTTP/2.0\r\n"), Known(Protocol::Opaque));
        assert_eq!(classify(b"GET /\r\n"), Known(Protocol::Opaque));
    }

    #[test]
    fn partial_input_waits() {
        assert_eq!(classify(b"G"), NeedMore);
        assert_eq!(classify(b"GET /index"), NeedMore);
        assert_eq!(classify(b"GET / HTTP/1.1\r"), NeedMore);
        assert_eq!(classify(b"PRI * HT"), NeedMore);
    }

    #[test]
    fn h2_preface() {
        assert_eq!(classify(H2_PREFACE), Known(Protocol::H2));
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(classify(&more), Known(Protocol::H2));
    }

    #[test]
    fn binary_is_opaque_at_once() {
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02]), Known(Protocol::Tls));
        assert_eq!(classify(&[0x16]), Known(Protocol::Tls));
        assert_eq!(classify(b"\x00\x01"), Known(Protocol::Opaque));
        assert_eq!(classify(b"GET /\x00"), Known(Protocol::Opaque));
        assert_eq!(
            classify(b"SSH-2.0-OpenSSH_9.2\r\n"),
            Known(Protocol::Opaque)
        );
        assert_eq!(classify(&[b'A'; 40]), Known(Protocol::Opaque));
    }

    /// Found by fuzz/fuzz_targets/detect.rs: a control byte in the request
    /// line made it opaque when the line's end came in a later read, but
    /// HTTP when the whole line came in one.
    #[test]
    fn a_control_byte_is_opaque_however_the_line_arrives() {
        let line = b"POST /api/vote?choice=:\x01: HTTP/1.1\r\n";
        for end in 24..=line.len() {
            assert_eq!(classify(&line[..end]), Known(Protocol::Opaque), "{end}");
        }
        let mut long = b"GET /".to_vec();
        long.push(0x01);
        long.resize(CAPACITY, b'a');
        assert_eq!(classify(&long), Known(Protocol::Opaque));
        // A method too long to be one stays opaque when its space comes.
        let mut method = vec![b'D'; 40];
        assert_eq!(classify(&method), Known(Protocol::Opaque));
        method.extend_from_slice(b" * HTTP/1.1\r\n");
        assert_eq!(classify(&method), Known(Protocol::Opaque));
    }

    #[tokio::test]
    async fn times_out_to_opaque_keeping_bytes() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /slow")
            .await
            .unwrap();
        let (result, proto, buf) = detect(&mut server, Duration::from_millis(50)).await;
        assert_eq!((result, proto), (DetectResult::Timeout, Protocol::Opaque));
        assert_eq!(&buf[..], b"GET /slow");
    }

    #[tokio::test]
    async fn eof_before_data() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let (result, _, buf) = detect(&mut server, Duration::from_secs(5)).await;
        assert_eq!(result, DetectResult::Eof);
        assert!(buf.is_empty());
    }
}
