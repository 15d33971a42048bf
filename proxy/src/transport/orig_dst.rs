//! The original destination of a connection that iptables redirected to us.

use std::{io, net::SocketAddr};
use tokio::net::TcpStream;

/// How a listener learns where an accepted connection was headed.
#[derive(Copy, Clone, Debug)]
pub(crate) enum OrigDst {
    /// Ask the kernel's NAT table (`SO_ORIGINAL_DST`), as in a pod.
    Kernel,
    /// Every connection is taken to be for this address (tests, development).
    Fixed(SocketAddr),
}

impl OrigDst {
    /// Where the connection was headed, or `None` when nobody redirected it
    /// to us. Kernels differ on an unredirected connection: without
    /// connection tracking `SO_ORIGINAL_DST` fails (ENOENT), with it (any
    /// host with the nat table loaded: a Kubernetes node, Docker, firewalld)
    /// it answers with the connection's own destination, the listener. Both
    /// mean the same, and a connection headed for the proxy itself must not
    /// be forwarded to it again, so both are `None`.
    pub(crate) fn lookup(&self, stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
        let local = stream.local_addr()?;
        let target = match *self {
            Self::Fixed(addr) => addr,
            Self::Kernel => {
                // The kernel fills a `sockaddr` for a socket whose connection
                // went through a NAT rule, and fails with ENOENT otherwise.
                let sock = socket2::SockRef::from(stream);
                let found = match local {
                    SocketAddr::V4(_) => sock.original_dst_v4(),
                    SocketAddr::V6(_) => sock.original_dst_v6(),
                };
                match found.map(|a| a.as_socket()) {
                    Ok(Some(addr)) => addr,
                    Ok(None) => {
                        return Err(io::Error::other(
                            "the original destination is not an IP address",
                        ));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        };
        Ok((target != local).then_some(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accepted() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// A connection nobody redirected has no original destination, whether
    /// or not the host tracks connections (the kernel fails, or names the
    /// listener itself): the answer must not depend on the host.
    #[tokio::test]
    async fn unredirected_connection_has_none() {
        let (_client, server) = accepted().await;
        assert_eq!(OrigDst::Kernel.lookup(&server).unwrap(), None);
    }

    #[tokio::test]
    async fn fixed_target_is_used_unless_it_is_the_listener() {
        let (_client, server) = accepted().await;
        let fixed: SocketAddr = "127.0.0.9:80".parse().unwrap();
        assert_eq!(OrigDst::Fixed(fixed).lookup(&server).unwrap(), Some(fixed));
        let own = server.local_addr().unwrap();
        assert_eq!(OrigDst::Fixed(own).lookup(&server).unwrap(), None);
    }
}
