//! Mesh TLS on the wire: terminating a meshed client's TLS on the inbound
//! side, and originating it to a meshed endpoint on the outbound side.
//!
//! Inbound, a connection that opens with a TLS record is read up to the end
//! of its ClientHello without answering. If the hello names this proxy's
//! identity, the proxy terminates it; any other name (or none) belongs to
//! the application, and the bytes pass through untouched. (tokio-rustls's
//! `LazyConfigAcceptor` would read the hello itself, but it consumes the
//! bytes even when the hello is not ours.)

use crate::identity::{self, Local};
use bytes::BytesMut;
use rustls::server::{Accepted, Acceptor};
use std::{io, sync::Arc, time::Duration};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_rustls::{StartHandshake, server::TlsStream};

/// A ClientHello may not be larger than this, as record limits go.
const MAX_HELLO: usize = 64 * 1024;

/// What the start of a TLS connection says.
pub(crate) enum Hello {
    /// A ClientHello for this proxy: its handshake can be completed.
    Ours(Box<Accepted>),
    /// TLS for someone else (or no SNI): forward it as opaque bytes.
    NotOurs,
    /// Not a valid ClientHello, or the client stopped before finishing it.
    Invalid,
}

/// Reads the ClientHello whose first bytes are in `buf`, adding what it
/// reads to `buf` (which is replayed if the connection is not ours).
pub(crate) async fn read_hello<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    local: &str,
    timeout: Duration,
) -> Hello {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut acceptor = Acceptor::default();
    let mut fed = 0;
    loop {
        while fed < buf.len() {
            match acceptor.read_tls(&mut &buf[fed..]) {
                Ok(0) | Err(_) => return Hello::Invalid,
                Ok(n) => fed += n,
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return match sni {
                    Some(name) if name.eq_ignore_ascii_case(local) => {
                        Hello::Ours(Box::new(accepted))
                    }
                    _ => Hello::NotOurs,
                };
            }
            Ok(None) => {}
            Err(_) => return Hello::Invalid,
        }
        if buf.len() >= MAX_HELLO {
            return Hello::Invalid;
        }
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Hello::Invalid,
        }
    }
}

/// Why a meshed handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("this proxy has no certificate yet")]
    NotCertified,
    #[error("TLS handshake failed: {0}")]
    Io(#[from] io::Error),
}

/// A terminated meshed connection and its client's identity, if the client
/// presented a certificate.
pub(crate) struct Terminated<I> {
    pub(crate) io: TlsStream<I>,
    pub(crate) client_id: Option<Arc<str>>,
}

/// Completes the handshake of a ClientHello that [`read_hello`] found ours.
/// Every byte of the hello was consumed from `io` and fed to `accepted`.
pub(crate) async fn terminate<I>(
    local: &Local,
    accepted: Box<Accepted>,
    io: I,
    timeout: Duration,
) -> Result<Terminated<I>, HandshakeError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    if !local.certified(timeout).await {
        return Err(HandshakeError::NotCertified);
    }
    let start = StartHandshake::from_parts(*accepted, io);
    let handshake = start.into_stream(local.server_config().clone());
    let io = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let client_id = io
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(identity::identity_of);
    Ok(Terminated { io, client_id })
}
