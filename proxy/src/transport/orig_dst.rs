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
    pub(crate) fn lookup(&self, stream: &TcpStream) -> io::Result<SocketAddr> {
        match *self {
            Self::Fixed(addr) => Ok(addr),
            Self::Kernel => match stream.local_addr()? {
                SocketAddr::V4(_) => original_dst_v4(stream),
                SocketAddr::V6(_) => original_dst_v6(stream),
            },
        }
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

    /// Without a NAT rule the kernel has no original destination to give.
    #[tokio::test]
    async fn unredirected_connection_has_none() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(OrigDst::Kernel.lookup(&server).is_err());
        let fixed: SocketAddr = "127.0.0.9:80".parse().unwrap();
        assert_eq!(OrigDst::Fixed(fixed).lookup(&server).unwrap(), fixed);
    }
}
