//! An `ObserveRequest`'s match expression, checked once when the tap starts
//! and then evaluated against each request without allocating.

use http::Method;
use linkerd_proxy_api::{
    http_types::{HttpMethod, Scheme, scheme},
    tap::observe_request::{
        Match as Proto,
        r#match::{self as proto, http::string_match},
    },
};
use std::{collections::BTreeMap, net::IpAddr, net::SocketAddr};

/// Why a match expression cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid match: {0}")]
pub(crate) struct InvalidMatch(String);

fn invalid(what: impl Into<String>) -> InvalidMatch {
    InvalidMatch(what.into())
}

/// The request facts a match looks at.
pub(crate) struct Facts<'a> {
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) destination_labels: &'a BTreeMap<String, String>,
    pub(crate) scheme: &'a str,
    pub(crate) method: &'a Method,
    pub(crate) authority: &'a str,
    pub(crate) path: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Matcher {
    All(Vec<Matcher>),
    Any(Vec<Matcher>),
    Not(Box<Matcher>),
    Source(Tcp),
    Destination(Tcp),
    DestinationLabel { key: String, value: String },
    Scheme(String),
    Method(Method),
    Authority(Text),
    Path(Text),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tcp {
    Net(ipnet::IpNet),
    Ports(u16, u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Text {
    Exact(String),
    Prefix(String),
}

impl Text {
    fn matches(&self, s: &str) -> bool {
        match self {
            Self::Exact(e) => s == e,
            Self::Prefix(p) => s.starts_with(p.as_str()),
        }
    }
}

impl Tcp {
    fn matches(&self, addr: SocketAddr) -> bool {
        match self {
            Self::Net(net) => net.contains(&addr.ip()),
            Self::Ports(lo, hi) => (*lo..=*hi).contains(&addr.port()),
        }
    }
}

/// Nesting deeper than this is refused: a match is written by a tool, not
/// grown without bound.
const MAX_DEPTH: usize = 16;

impl Matcher {
    pub(crate) fn new(m: &Proto) -> Result<Self, InvalidMatch> {
        Self::at_depth(m, 0)
    }

    fn at_depth(m: &Proto, depth: usize) -> Result<Self, InvalidMatch> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!("nested deeper than {MAX_DEPTH}")));
        }
        let seq = |s: &proto::Seq| {
            s.matches
                .iter()
                .map(|m| Self::at_depth(m, depth + 1))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match m.r#match.as_ref().ok_or_else(|| invalid("empty"))? {
            proto::Match::All(s) => Self::All(seq(s)?),
            proto::Match::Any(s) => Self::Any(seq(s)?),
            proto::Match::Not(inner) => Self::Not(Box::new(Self::at_depth(inner, depth + 1)?)),
            proto::Match::Source(t) => Self::Source(tcp(t)?),
            proto::Match::Destination(t) => Self::Destination(tcp(t)?),
            proto::Match::DestinationLabel(l) => Self::DestinationLabel {
                key: l.key.clone(),
                value: l.value.clone(),
            },
            proto::Match::RouteLabel(_) => {
                return Err(invalid(
                    "route labels are not supported: routes are not known",
                ));
            }
            proto::Match::Http(h) => {
                use proto::http::Match as H;
                match h
                    .r#match
                    .as_ref()
                    .ok_or_else(|| invalid("empty http match"))?
                {
                    H::Scheme(s) => Self::Scheme(scheme_name(s)?),
                    H::Method(m) => Self::Method(method(m)?),
                    H::Authority(s) => Self::Authority(text(s)?),
                    H::Path(s) => Self::Path(text(s)?),
                }
            }
        })
    }

    pub(crate) fn matches(&self, f: &Facts<'_>) -> bool {
        match self {
            Self::All(ms) => ms.iter().all(|m| m.matches(f)),
            Self::Any(ms) => ms.iter().any(|m| m.matches(f)),
            Self::Not(m) => !m.matches(f),
            Self::Source(t) => t.matches(f.source),
            Self::Destination(t) => t.matches(f.destination),
            Self::DestinationLabel { key, value } => {
                f.destination_labels.get(key).is_some_and(|v| v == value)
            }
            Self::Scheme(s) => f.scheme.eq_ignore_ascii_case(s),
            Self::Method(m) => f.method == m,
            Self::Authority(t) => t.matches(f.authority),
            Self::Path(t) => t.matches(f.path),
        }
    }
}

fn tcp(t: &proto::Tcp) -> Result<Tcp, InvalidMatch> {
    use proto::tcp::Match as T;
    match t
        .r#match
        .as_ref()
        .ok_or_else(|| invalid("empty tcp match"))?
    {
        T::Netmask(n) => {
            let ip =
                n.ip.as_ref()
                    .and_then(|ip| IpAddr::try_from(ip).ok())
                    .ok_or_else(|| invalid("netmask without a valid address"))?;
            let mask = u8::try_from(n.mask).map_err(|_| invalid("netmask too long"))?;
            let net = ipnet::IpNet::new(ip, mask)
                .map_err(|_| invalid(format!("/{mask} is not a prefix length for {ip}")))?;
            Ok(Tcp::Net(net.trunc()))
        }
        T::Ports(p) => {
            let port = |n: u32| u16::try_from(n).map_err(|_| invalid(format!("{n} is not a port")));
            let (lo, hi) = (port(p.min)?, port(p.max.max(p.min))?);
            Ok(Tcp::Ports(lo, hi))
        }
    }
}

fn text(s: &proto::http::StringMatch) -> Result<Text, InvalidMatch> {
    match s
        .r#match
        .as_ref()
        .ok_or_else(|| invalid("empty string match"))?
    {
        string_match::Match::Exact(e) => Ok(Text::Exact(e.clone())),
        string_match::Match::Prefix(p) => Ok(Text::Prefix(p.clone())),
    }
}

fn method(m: &HttpMethod) -> Result<Method, InvalidMatch> {
    Method::try_from(m).map_err(|e| invalid(e.to_string()))
}

fn scheme_name(s: &Scheme) -> Result<String, InvalidMatch> {
    use scheme::{Registered as R, Type};
    match s.r#type.as_ref().ok_or_else(|| invalid("empty scheme"))? {
        Type::Registered(r) => Ok(
            match R::try_from(*r).map_err(|_| invalid("unknown scheme"))? {
                R::Http => "http".into(),
                R::Https => "https".into(),
            },
        ),
        Type::Unregistered(s) => Ok(s.clone()),
    }
}

/// The scheme as the tap API carries it.
pub(crate) fn scheme_proto(s: &str) -> Scheme {
    use scheme::{Registered as R, Type};
    Scheme {
        r#type: Some(match s {
            "http" => Type::Registered(R::Http as i32),
            "https" => Type::Registered(R::Https as i32),
            other => Type::Unregistered(other.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_proxy_api::tap::observe_request::r#match::{Http, Seq, Tcp as PTcp, http, tcp};

    fn http_match(m: http::Match) -> Proto {
        Proto {
            r#match: Some(proto::Match::Http(Http { r#match: Some(m) })),
        }
    }

    fn facts<'a>(labels: &'a BTreeMap<String, String>, path: &'a str) -> Facts<'a> {
        Facts {
            source: "10.1.0.5:40000".parse().unwrap(),
            destination: "10.2.0.7:8080".parse().unwrap(),
            destination_labels: labels,
            scheme: "http",
            method: &Method::GET,
            authority: "web.emojivoto.svc.cluster.local:80",
            path,
        }
    }

    #[test]
    fn combinations() {
        let path = http_match(http::Match::Path(http::StringMatch {
            r#match: Some(string_match::Match::Prefix("/api".into())),
        }));
        let get = http_match(http::Match::Method(HttpMethod::from(&Method::GET)));
        let src = Proto {
            r#match: Some(proto::Match::Source(PTcp {
                r#match: Some(tcp::Match::Netmask(tcp::Netmask {
                    ip: Some("10.1.0.0".parse::<IpAddr>().unwrap().into()),
                    mask: 16,
                })),
            })),
        };
        let all = Proto {
            r#match: Some(proto::Match::All(Seq {
                matches: vec![path.clone(), get, src],
            })),
        };
        let m = Matcher::new(&all).unwrap();
        let labels = BTreeMap::new();
        assert!(m.matches(&facts(&labels, "/api/vote")));
        assert!(!m.matches(&facts(&labels, "/web")));
        let not = Proto {
            r#match: Some(proto::Match::Not(Box::new(path))),
        };
        let m = Matcher::new(&not).unwrap();
        assert!(m.matches(&facts(&labels, "/web")));
        assert!(!m.matches(&facts(&labels, "/api")));

        let label = Proto {
            r#match: Some(proto::Match::DestinationLabel(proto::Label {
                key: "deployment".into(),
                value: "web".into(),
            })),
        };
        let m = Matcher::new(&label).unwrap();
        let web = BTreeMap::from([("deployment".to_string(), "web".to_string())]);
        assert!(m.matches(&facts(&web, "/")));
        assert!(!m.matches(&facts(&labels, "/")));
    }

    #[test]
    fn invalid_matches_are_refused() {
        assert!(Matcher::new(&Proto { r#match: None }).is_err());
        let bad_mask = Proto {
            r#match: Some(proto::Match::Destination(PTcp {
                r#match: Some(tcp::Match::Netmask(tcp::Netmask {
                    ip: Some("10.0.0.0".parse::<IpAddr>().unwrap().into()),
                    mask: 40,
                })),
            })),
        };
        assert!(Matcher::new(&bad_mask).is_err());
        let mut deep = http_match(http::Match::Method(HttpMethod::from(&Method::GET)));
        for _ in 0..20 {
            deep = Proto {
                r#match: Some(proto::Match::Not(Box::new(deep))),
            };
        }
        assert!(Matcher::new(&deep).is_err());
    }
}
