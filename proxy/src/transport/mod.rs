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

use std::{
    io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};
use tokio::net::{TcpSocket, TcpStream};

/// How this side of the proxy opens connections.
#[derive(Copy, Clone, Debug)]
pub(crate) struct ConnectConfig {
    pub(crate) timeout: Duration,
    /// Leave from this address (the local mesh's pods); else the kernel's
    /// choice.
    pub(crate) source_ip: Option<IpAddr>,
}

/// Opens a connection to `target`, giving up after the configured timeout.
pub(crate) async fn connect(target: SocketAddr, cfg: ConnectConfig) -> io::Result<TcpStream> {
    let connect = async {
        match cfg.source_ip {
            None => TcpStream::connect(target).await,
            Some(ip) => {
                let socket = match ip {
                    IpAddr::V4(_) => TcpSocket::new_v4()?,
                    IpAddr::V6(_) => TcpSocket::new_v6()?,
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(target).await
            }
        }
    };
    let stream = tokio::time::timeout(cfg.timeout, connect)
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
