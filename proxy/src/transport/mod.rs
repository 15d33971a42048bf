//! Sockets: finding where a redirected connection was going, and the IO
//! wrappers every accepted or opened connection passes through.

mod conn;
mod metered;
mod orig_dst;
mod prefixed;

pub(crate) use self::{
    conn::Conn,
    metered::{Failed, Metered},
    orig_dst::OrigDst,
    prefixed::Prefixed,
};

impl<T: Failed> Failed for tokio_rustls::server::TlsStream<T> {
    fn failed(&mut self, e: &io::Error) {
        self.get_mut().0.failed(e)
    }
}

use std::{io, net::SocketAddr, time::Duration};
use tokio::net::TcpStream;

/// Opens a connection to `target`, giving up after `timeout`.
pub(crate) async fn connect(target: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The errno label for an IO error: the symbolic name Linkerd uses.
pub(crate) fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ECONNABORTED) => "ECONNABORTED",
        Some(libc::EPIPE) => "EPIPE",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH",
        Some(libc::ENETUNREACH) => "ENETUNREACH",
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
        Some(libc::EMFILE) => "EMFILE",
        // Shutting down a socket the peer already closed: not a failure.
        Some(libc::ENOTCONN) => "",
        Some(_) => "EOTHER",
        None if e.kind() == io::ErrorKind::TimedOut => "ETIMEDOUT",
        None => "",
    }
}
