//! The original destination of a connection that iptables redirected to us.

use std::{
    io, mem,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd,
};
use tokio::net::TcpStream;

/// How a listener learns where an accepted connection was headed.
#[derive(Copy, Clone, Debug)]
pub(crate) enum OrigDst {
    /// Ask the kernel's NAT table (`SO_ORIGINAL_DST`), as in a pod.
    Kernel,
    /// Every connection is taken to be for this address (tests, development).
    Fixed(SocketAddr),
}

/// From `<linux/netfilter_ipv4.h>` and `<linux/netfilter_ipv6/ip6_tables.h>`.
const SO_ORIGINAL_DST: libc::c_int = 80;
const IP6T_SO_ORIGINAL_DST: libc::c_int = 80;

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
                let found = match local {
                    SocketAddr::V4(_) => original_dst_v4(stream),
                    SocketAddr::V6(_) => original_dst_v6(stream),
                };
                match found {
                    Ok(addr) => addr,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        };
        Ok((target != local).then_some(target))
    }
}

fn original_dst_v4(stream: &TcpStream) -> io::Result<SocketAddr> {
    // SAFETY: `sockaddr_in` is plain old data, so all-zeroes is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { mem::zeroed() };
    getsockopt(stream, libc::SOL_IP, SO_ORIGINAL_DST, &mut addr)?;
    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok(SocketAddrV4::new(ip, u16::from_be(addr.sin_port)).into())
}

fn original_dst_v6(stream: &TcpStream) -> io::Result<SocketAddr> {
    // SAFETY: `sockaddr_in6` is plain old data, so all-zeroes is a valid value.
    let mut addr: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    getsockopt(stream, libc::SOL_IPV6, IP6T_SO_ORIGINAL_DST, &mut addr)?;
    let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
    Ok(SocketAddrV6::new(
        ip,
        u16::from_be(addr.sin6_port),
        addr.sin6_flowinfo,
        addr.sin6_scope_id,
    )
    .into())
}

/// `SO_ORIGINAL_DST` has no safe wrapper in std or tokio: the kernel fills a
/// `sockaddr` for a socket whose connection went through a NAT rule, and
/// fails with ENOENT for one that did not.
fn getsockopt<T>(
    stream: &TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    out: &mut T,
) -> io::Result<()> {
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the fd is open for the life of `stream`; `out` points to a
    // writable `T` and `len` is its exact size, so the kernel writes at most
    // `size_of::<T>()` bytes into memory we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (out as *mut T).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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
