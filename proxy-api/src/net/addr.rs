//! Conversions between the wire's address messages and `std::net`.
//!
//! Every service that speaks the API needs these, and each hand-written copy
//! is a chance to get the IPv6 byte order wrong, so they live with the types.

use super::{IPv6, IpAddress, TcpAddress, ip_address::Ip};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An address message that does not describe a usable socket address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidAddress {
    MissingIp,
    PortOutOfRange(u32),
}

impl std::fmt::Display for InvalidAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingIp => write!(f, "address has no IP"),
            Self::PortOutOfRange(p) => write!(f, "port {p} is out of range"),
        }
    }
}

impl std::error::Error for InvalidAddress {}

impl From<IpAddr> for IpAddress {
    fn from(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V4(v4) => Ip::Ipv4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                Ip::Ipv6(IPv6 {
                    first: (bits >> 64) as u64,
                    last: bits as u64,
                })
            }
        };
        Self { ip: Some(ip) }
    }
}

impl TryFrom<&IpAddress> for IpAddr {
    type Error = InvalidAddress;

    fn try_from(ip: &IpAddress) -> Result<Self, Self::Error> {
        match ip.ip.as_ref().ok_or(InvalidAddress::MissingIp)? {
            Ip::Ipv4(v4) => Ok(IpAddr::V4(Ipv4Addr::from(*v4))),
            Ip::Ipv6(v6) => {
                let bits = (u128::from(v6.first) << 64) | u128::from(v6.last);
                Ok(IpAddr::V6(Ipv6Addr::from(bits)))
            }
        }
    }
}

impl From<SocketAddr> for TcpAddress {
    fn from(addr: SocketAddr) -> Self {
        Self {
            ip: Some(addr.ip().into()),
            port: u32::from(addr.port()),
        }
    }
}

impl TryFrom<&TcpAddress> for SocketAddr {
    type Error = InvalidAddress;

    fn try_from(addr: &TcpAddress) -> Result<Self, Self::Error> {
        let ip = IpAddr::try_from(addr.ip.as_ref().ok_or(InvalidAddress::MissingIp)?)?;
        let port =
            u16::try_from(addr.port).map_err(|_| InvalidAddress::PortOutOfRange(addr.port))?;
        Ok(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for s in ["10.1.2.3:8080", "[2001:db8::1:2]:443", "[::ffff:1.2.3.4]:1"] {
            let addr: SocketAddr = s.parse().unwrap();
            let wire = TcpAddress::from(addr);
            assert_eq!(SocketAddr::try_from(&wire).unwrap(), addr, "{s}");
        }
    }

    #[test]
    fn rejects_missing_ip_and_large_port() {
        let no_ip = TcpAddress { ip: None, port: 1 };
        assert_eq!(SocketAddr::try_from(&no_ip), Err(InvalidAddress::MissingIp));
        let big = TcpAddress {
            ip: Some(IpAddr::from([1, 2, 3, 4]).into()),
            port: 70_000,
        };
        assert_eq!(
            SocketAddr::try_from(&big),
            Err(InvalidAddress::PortOutOfRange(70_000))
        );
    }
}
