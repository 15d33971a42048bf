//! Inbound authorization policy: per port, what the server speaks and whom
//! it admits, as the policy controller describes it
//! (`io.linkerd.proxy.inbound.InboundServerPolicies`), or the default policy
//! from the environment until it answers.
//!
//! The controller's messages are compiled once, when they arrive, into the
//! types below: a connection or request then only walks slices and compares
//! strings it already has.

mod authorize;
mod metrics;
mod route;
mod watch;

pub(crate) use self::{
    authorize::{Authorize, Enforce, Verdict},
    metrics::AuthzMetrics,
    watch::{Policies, PortPolicy},
};
use crate::metrics::Tls;
use ipnet::IpNet;
use linkerd_proxy_api::{inbound, meta};
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use std::{collections::HashMap, fmt, net::IpAddr, sync::Arc, time::Duration};

/// A message the proxy cannot enforce; the previous policy stays.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidPolicy {
    #[error("the server has no protocol")]
    NoProtocol,
    #[error("an authorization has no authentication")]
    NoAuthentication,
    #[error("a network is invalid: {0}")]
    Network(String),
    #[error("a route's path or header regex is invalid: {0}")]
    Regex(#[from] regex::Error),
    #[error("a route matches an invalid method or header: {0}")]
    Match(String),
}

/// Whether two optional shared values are the same one: how a connection
/// tells its last route or authorization from a new one without comparing
/// their contents.
pub(crate) fn same<T>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// What a server, route or authorization is, for metrics and logs: the
/// resource it came from, or the name of a default.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Meta {
    group: Box<str>,
    kind: Box<str>,
    name: Box<str>,
}

impl Meta {
    pub(crate) fn default(name: &str) -> Arc<Self> {
        Arc::new(Self {
            group: "".into(),
            kind: "default".into(),
            name: name.into(),
        })
    }

    /// From a message's metadata, or else its labels (as older controllers
    /// send); kinds in lower case, as Linkerd's metrics show them.
    fn from_proto(
        metadata: Option<&meta::Metadata>,
        labels: &HashMap<String, String>,
    ) -> Arc<Self> {
        match metadata.and_then(|m| m.kind.as_ref()) {
            Some(meta::metadata::Kind::Default(name)) => Self::default(name),
            Some(meta::metadata::Kind::Resource(r)) => Arc::new(Self {
                group: r.group.as_str().into(),
                kind: r.kind.to_ascii_lowercase().into(),
                name: r.name.as_str().into(),
            }),
            None => {
                let get = |k: &str| labels.get(k).map_or("", String::as_str);
                Arc::new(Self {
                    group: get("group").into(),
                    kind: get("kind").to_ascii_lowercase().into(),
                    name: get("name").into(),
                })
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[cfg(test)]
    pub(crate) fn kind(&self) -> &str {
        &self.kind
    }

    /// `PREFIX_group`, `PREFIX_kind`, `PREFIX_name`.
    fn encode(&self, prefix: Prefix, set: &mut LabelSetEncoder) -> fmt::Result {
        let [g, k, n] = prefix.names();
        crate::metrics::label(set, g, &*self.group)?;
        crate::metrics::label(set, k, &*self.kind)?;
        crate::metrics::label(set, n, &*self.name)
    }
}

impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[derive(Copy, Clone)]
enum Prefix {
    Srv,
    Route,
    Authz,
}

impl Prefix {
    fn names(self) -> [&'static str; 3] {
        match self {
            Self::Srv => ["srv_group", "srv_kind", "srv_name"],
            Self::Route => ["route_group", "route_kind", "route_name"],
            Self::Authz => ["authz_group", "authz_kind", "authz_name"],
        }
    }
}

/// The server and route a request is on: the `srv_*` and `route_*` labels
/// of its series. Made once per route when a policy arrives.
#[derive(Debug, Hash, PartialEq, Eq)]
pub(crate) struct RouteLabels {
    pub(crate) server: Arc<Meta>,
    pub(crate) route: Arc<Meta>,
}

impl EncodeLabelSet for RouteLabels {
    fn encode(&self, set: &mut LabelSetEncoder) -> fmt::Result {
        self.server.encode(Prefix::Srv, set)?;
        self.route.encode(Prefix::Route, set)
    }
}

/// What the server on a port speaks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Detect {
        timeout: Duration,
    },
    Http1,
    Http2,
    Grpc,
    Opaque,
    /// TLS the proxy does not terminate: opaque bytes to the application.
    Tls,
}

/// The server the proxy enforces on a port.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) meta: Arc<Meta>,
    pub(crate) protocol: Protocol,
    /// Who may connect, for what is not HTTP.
    authorizations: Box<[Authorization]>,
    /// HTTP's routes; a request on none of them is not served.
    routes: Box<[route::Route]>,
}

/// One authorization: clients from these networks, authenticated so.
#[derive(Debug)]
pub(crate) struct Authorization {
    pub(crate) meta: Arc<Meta>,
    networks: Box<[Network]>,
    authn: Authentication,
}

#[derive(Debug)]
struct Network {
    net: IpNet,
    except: Box<[IpNet]>,
}

#[derive(Debug)]
enum Authentication {
    /// Any client, meshed or not.
    Unauthenticated,
    /// Mesh TLS, with or without a client identity.
    TlsUnauthenticated,
    /// Mesh TLS with one of these identities, or one ending in one of the
    /// suffixes (each kept with its leading dot; an empty one admits any
    /// identity).
    TlsAuthenticated {
        identities: Box<[Box<str>]>,
        suffixes: Box<[Box<str>]>,
    },
}

/// Who is asking: where from, and what mesh TLS proved.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Client<'a> {
    pub(crate) ip: IpAddr,
    pub(crate) tls: &'a Tls,
}

impl Client<'_> {
    /// `None`: plaintext; `Some(None)`: mesh TLS without a certificate.
    fn mesh_tls(&self) -> Option<Option<&str>> {
        match self.tls {
            Tls::Established { client_id, .. } => Some(client_id.as_deref()),
            _ => None,
        }
    }
}

impl Authorization {
    fn admits(&self, client: &Client<'_>) -> bool {
        let from = self.networks.iter().any(|n| {
            n.net.contains(&client.ip) && !n.except.iter().any(|e| e.contains(&client.ip))
        });
        from && match &self.authn {
            Authentication::Unauthenticated => true,
            Authentication::TlsUnauthenticated => client.mesh_tls().is_some(),
            Authentication::TlsAuthenticated {
                identities,
                suffixes,
            } => client.mesh_tls().flatten().is_some_and(|id| {
                identities.iter().any(|i| **i == *id)
                    || suffixes
                        .iter()
                        .any(|s| s.is_empty() || id.ends_with(&**s) || *id == s[1..])
            }),
        }
    }
}

/// The first of `authorizations` that admits `client`.
fn first_admitting<'a>(
    authorizations: &'a [Authorization],
    client: &Client<'_>,
) -> Option<&'a Authorization> {
    authorizations.iter().find(|a| a.admits(client))
}

impl Server {
    /// The authorization a connection that is not HTTP is admitted by.
    pub(crate) fn authorize_tcp(&self, client: &Client<'_>) -> Option<&Authorization> {
        first_admitting(&self.authorizations, client)
    }

    /// The route `req` is on, if any.
    pub(crate) fn route<B>(&self, req: &http::Request<B>) -> Option<&route::Route> {
        route::find(&self.routes, req)
    }

    /// What a port speaks and admits before the controller says otherwise:
    /// detected within the proxy's own detection timeout.
    pub(crate) fn from_default(
        policy: linkerd_policy::DefaultPolicy,
        cluster_networks: &[IpNet],
        detect_timeout: Duration,
    ) -> Arc<Self> {
        let server = policy.server(cluster_networks);
        let mut server = Self::try_from(&server).expect("the default policies compile");
        server.protocol = Protocol::Detect {
            timeout: detect_timeout,
        };
        Arc::new(server)
    }
}

impl TryFrom<&inbound::Server> for Server {
    type Error = InvalidPolicy;

    fn try_from(msg: &inbound::Server) -> Result<Self, InvalidPolicy> {
        use inbound::proxy_protocol::Kind;
        let meta = Meta::from_proto(None, &msg.labels);
        let authorizations = authorizations(&msg.authorizations)?;
        let kind = msg
            .protocol
            .as_ref()
            .and_then(|p| p.kind.as_ref())
            .ok_or(InvalidPolicy::NoProtocol)?;
        let http = |routes: &[inbound::HttpRoute]| route::http_routes(&meta, routes);
        let (protocol, routes) = match kind {
            Kind::Detect(d) => {
                let timeout = d
                    .timeout
                    .and_then(|t| Duration::try_from(t).ok())
                    .unwrap_or(Duration::from_secs(10));
                (Protocol::Detect { timeout }, http(&d.http_routes)?)
            }
            Kind::Http1(h) => (Protocol::Http1, http(&h.routes)?),
            Kind::Http2(h) => (Protocol::Http2, http(&h.routes)?),
            Kind::Grpc(g) => (Protocol::Grpc, route::grpc_routes(&meta, &g.routes)?),
            Kind::Opaque(_) => (Protocol::Opaque, Box::default()),
            Kind::Tls(_) => (Protocol::Tls, Box::default()),
        };
        // A controller that sends no HTTP routes means the server's own
        // authorizations for every request, as Linkerd's proxy takes it.
        let routes = if routes.is_empty() {
            route::default_routes(&meta, &msg.authorizations)?
        } else {
            routes
        };
        Ok(Self {
            meta,
            protocol,
            authorizations,
            routes,
        })
    }
}

fn authorizations(msgs: &[inbound::Authz]) -> Result<Box<[Authorization]>, InvalidPolicy> {
    msgs.iter().map(authorization).collect()
}

fn authorization(msg: &inbound::Authz) -> Result<Authorization, InvalidPolicy> {
    use inbound::authn::{Permit, permit_mesh_tls::Clients};
    let authn = match msg
        .authentication
        .as_ref()
        .and_then(|a| a.permit.as_ref())
        .ok_or(InvalidPolicy::NoAuthentication)?
    {
        Permit::Unauthenticated(_) => Authentication::Unauthenticated,
        Permit::MeshTls(tls) => match &tls.clients {
            Some(Clients::Identities(ids)) => Authentication::TlsAuthenticated {
                identities: ids
                    .identities
                    .iter()
                    .map(|i| i.name.as_str().into())
                    .collect(),
                suffixes: ids
                    .suffixes
                    .iter()
                    .map(|s| {
                        if s.parts.is_empty() {
                            "".into()
                        } else {
                            format!(".{}", s.parts.join(".")).into()
                        }
                    })
                    .collect(),
            },
            Some(Clients::Unauthenticated(_)) | None => Authentication::TlsUnauthenticated,
        },
    };
    let networks = msg
        .networks
        .iter()
        .map(|n| {
            Ok(Network {
                net: net(n.net.as_ref())?,
                except: n
                    .except
                    .iter()
                    .map(|e| net(Some(e)))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, InvalidPolicy>>()?;
    Ok(Authorization {
        meta: Meta::from_proto(msg.metadata.as_ref(), &msg.labels),
        networks,
        authn,
    })
}

fn net(msg: Option<&linkerd_proxy_api::net::IpNetwork>) -> Result<IpNet, InvalidPolicy> {
    let msg = msg.ok_or_else(|| InvalidPolicy::Network("missing".into()))?;
    let ip = msg
        .ip
        .as_ref()
        .ok_or_else(|| InvalidPolicy::Network("no address".into()))
        .and_then(|ip| IpAddr::try_from(ip).map_err(|e| InvalidPolicy::Network(e.to_string())))?;
    let len = u8::try_from(msg.prefix_len).unwrap_or(u8::MAX);
    IpNet::new(ip, len).map_err(|e| InvalidPolicy::Network(format!("{ip}/{}: {e}", msg.prefix_len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_policy::DefaultPolicy;

    fn client(ip: &str, tls: &Tls) -> bool {
        let ip = ip.parse().unwrap();
        let server = Server::from_default(
            DefaultPolicy::ClusterAuthenticated,
            &nets(),
            Duration::from_secs(1),
        );
        server.authorize_tcp(&Client { ip, tls }).is_some()
    }

    fn nets() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    #[test]
    fn every_default_compiles_and_admits_what_it_says() {
        let meshed = Tls::inbound(Some(
            "web.emojivoto.serviceaccount.identity.linkerd.cluster.local".into(),
        ));
        let anonymous_tls = Tls::inbound(None);
        let plain = Tls::Disabled;
        assert!(client("10.1.2.3", &meshed));
        assert!(
            !client("10.1.2.3", &anonymous_tls),
            "an identity is required"
        );
        assert!(!client("10.1.2.3", &plain));
        assert!(!client("192.168.0.1", &meshed), "outside the cluster");

        for p in DefaultPolicy::ALL {
            let server = Server::from_default(p, &nets(), Duration::from_secs(1));
            assert_eq!(server.meta.kind(), "default");
            assert_eq!(server.meta.name(), p.as_str());
            assert!(matches!(server.protocol, Protocol::Detect { .. }));
            let anyone = Client {
                ip: "192.168.0.1".parse().unwrap(),
                tls: &plain,
            };
            let admitted = server.authorize_tcp(&anyone).is_some();
            let expected = matches!(p, DefaultPolicy::AllUnauthenticated | DefaultPolicy::Audit);
            assert_eq!(admitted, expected, "{p}");
        }
    }

    #[test]
    fn identities_match_exactly_or_by_suffix_and_networks_by_exception() {
        use inbound::authn::{Permit, PermitMeshTls, permit_mesh_tls};
        let authz = inbound::Authz {
            networks: vec![inbound::Network {
                net: Some(linkerd_proxy_api::net::IpNetwork {
                    ip: Some("198.18.0.0".parse::<IpAddr>().unwrap().into()),
                    prefix_len: 16,
                }),
                except: vec![linkerd_proxy_api::net::IpNetwork {
                    ip: Some("198.18.1.0".parse::<IpAddr>().unwrap().into()),
                    prefix_len: 24,
                }],
            }],
            authentication: Some(inbound::Authn {
                permit: Some(Permit::MeshTls(PermitMeshTls {
                    clients: Some(permit_mesh_tls::Clients::Identities(
                        permit_mesh_tls::PermitClientIdentities {
                            identities: vec![inbound::Identity {
                                name: "bot.emojivoto.sa".into(),
                            }],
                            suffixes: vec![inbound::IdentitySuffix {
                                parts: vec!["monitoring".into(), "sa".into()],
                            }],
                        },
                    )),
                })),
            }),
            labels: HashMap::new(),
            metadata: Some(meta::Metadata {
                kind: Some(meta::metadata::Kind::Resource(meta::Resource {
                    group: "policy.linkerd.io".into(),
                    kind: "AuthorizationPolicy".into(),
                    name: "bot-only".into(),
                    ..Default::default()
                })),
            }),
        };
        let a = authorization(&authz).unwrap();
        assert_eq!(a.meta.to_string(), "authorizationpolicy/bot-only");
        let admits = |ip: &str, id: &str| {
            let tls = Tls::inbound(Some(id.into()));
            a.admits(&Client {
                ip: ip.parse().unwrap(),
                tls: &tls,
            })
        };
        assert!(admits("198.18.0.7", "bot.emojivoto.sa"));
        assert!(admits("198.18.0.7", "prom.monitoring.sa"));
        assert!(!admits("198.18.0.7", "web.emojivoto.sa"));
        assert!(
            !admits("198.18.0.7", "xmonitoring.sa"),
            "a suffix is whole labels"
        );
        assert!(!admits("198.18.1.7", "bot.emojivoto.sa"), "excepted");
        assert!(!admits("198.19.0.7", "bot.emojivoto.sa"), "outside");
    }

    #[test]
    fn a_message_the_proxy_cannot_enforce_is_refused() {
        let server = inbound::Server::default();
        assert!(matches!(
            Server::try_from(&server),
            Err(InvalidPolicy::NoProtocol)
        ));
    }
}
