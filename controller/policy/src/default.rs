//! The default inbound policies: what a port admits when no `Server`
//! resource describes it.

use ipnet::IpNet;
use linkerd_proxy_api::{inbound, meta};
use std::{collections::HashMap, fmt, str::FromStr};

/// The annotation, on a pod or its namespace, that picks the default
/// policy; the pod's wins.
pub const DEFAULT_INBOUND_POLICY: &str = "config.linkerd.io/default-inbound-policy";

/// Linkerd's default policies.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DefaultPolicy {
    /// Every client, meshed or not, from anywhere.
    AllUnauthenticated,
    /// Meshed clients (mesh TLS with an identity), from anywhere.
    AllAuthenticated,
    /// Every client from the cluster's networks.
    ClusterUnauthenticated,
    /// Meshed clients from the cluster's networks.
    ClusterAuthenticated,
    /// No client.
    Deny,
    /// Every client, as `all-unauthenticated`, but counted as audited: what a
    /// stricter policy would have denied shows before it is enforced.
    Audit,
}

/// An annotation or value naming no default policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a default inbound policy (all-unauthenticated, all-authenticated, \
     cluster-unauthenticated, cluster-authenticated, deny or audit)"
)]
pub struct UnknownDefaultPolicy(String);

impl DefaultPolicy {
    pub const ALL: [DefaultPolicy; 6] = [
        Self::AllUnauthenticated,
        Self::AllAuthenticated,
        Self::ClusterUnauthenticated,
        Self::ClusterAuthenticated,
        Self::Deny,
        Self::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllUnauthenticated => "all-unauthenticated",
            Self::AllAuthenticated => "all-authenticated",
            Self::ClusterUnauthenticated => "cluster-unauthenticated",
            Self::ClusterAuthenticated => "cluster-authenticated",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }

    /// The authorizations the policy grants: none for `deny`, else one for
    /// the networks it admits (everywhere, or the cluster's), requiring
    /// mesh TLS with an identity for the authenticated ones.
    pub fn authorizations(self, cluster_networks: &[IpNet]) -> Vec<inbound::Authz> {
        let everywhere: [IpNet; 2] = [IpNet::V4(Default::default()), IpNet::V6(Default::default())];
        let (networks, authenticated): (&[IpNet], bool) = match self {
            Self::Deny => return Vec::new(),
            Self::AllUnauthenticated | Self::Audit => (&everywhere, false),
            Self::AllAuthenticated => (&everywhere, true),
            Self::ClusterUnauthenticated => (cluster_networks, false),
            Self::ClusterAuthenticated => (cluster_networks, true),
        };
        use inbound::authn::{Permit, PermitMeshTls, PermitUnauthenticated, permit_mesh_tls};
        let permit = if authenticated {
            // Any identity: one suffix with no parts.
            Permit::MeshTls(PermitMeshTls {
                clients: Some(permit_mesh_tls::Clients::Identities(
                    permit_mesh_tls::PermitClientIdentities {
                        identities: Vec::new(),
                        suffixes: vec![inbound::IdentitySuffix { parts: Vec::new() }],
                    },
                )),
            })
        } else {
            Permit::Unauthenticated(PermitUnauthenticated {})
        };
        vec![inbound::Authz {
            networks: networks
                .iter()
                .map(|net| inbound::Network {
                    net: Some(crate::network(*net)),
                    except: Vec::new(),
                })
                .collect(),
            authentication: Some(inbound::Authn {
                permit: Some(permit),
            }),
            labels: self.labels(),
            metadata: Some(self.metadata()),
        }]
    }

    /// The server a port without a `Server` resource gets: the protocol is
    /// detected, and every HTTP request is on one default route whose
    /// authorizations are the policy's.
    pub fn server(self, cluster_networks: &[IpNet]) -> inbound::Server {
        self.server_with_probes(cluster_networks, &[])
    }

    /// As `server`, with a route admitting anyone to the pod's HTTP probe
    /// paths on the port (`GET` only), as Linkerd lets the kubelet through.
    pub fn server_with_probes(
        self,
        cluster_networks: &[IpNet],
        probes: &[String],
    ) -> inbound::Server {
        let authorizations = self.authorizations(cluster_networks);
        let mut routes = vec![crate::default_route(&authorizations)];
        routes.extend(crate::probe_route(probes));
        inbound::Server {
            protocol: Some(inbound::ProxyProtocol {
                kind: Some(crate::detect(routes)),
            }),
            server_ips: Vec::new(),
            authorizations,
            labels: self.labels(),
        }
    }

    /// What the proxy's `srv_*` and `authz_*` metric labels say of it.
    fn labels(self) -> HashMap<String, String> {
        [("group", ""), ("kind", "default"), ("name", self.as_str())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn metadata(self) -> meta::Metadata {
        meta::Metadata {
            kind: Some(meta::metadata::Kind::Default(self.as_str().into())),
        }
    }
}

impl FromStr for DefaultPolicy {
    type Err = UnknownDefaultPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownDefaultPolicy(s.to_string()))
    }
}

#[cfg(feature = "resources")]
impl<'de> serde::Deserialize<'de> for DefaultPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inbound::authn::{Permit, permit_mesh_tls::Clients};

    fn cluster() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    fn nets(authz: &inbound::Authz) -> Vec<String> {
        authz
            .networks
            .iter()
            .map(|n| {
                let net = n.net.as_ref().unwrap();
                let ip: std::net::IpAddr = net.ip.as_ref().unwrap().try_into().unwrap();
                format!("{ip}/{}", net.prefix_len)
            })
            .collect()
    }

    #[test]
    fn names_round_trip_and_a_typo_is_named() {
        for p in DefaultPolicy::ALL {
            assert_eq!(p.as_str().parse::<DefaultPolicy>(), Ok(p));
        }
        let err = "all-authenticatd".parse::<DefaultPolicy>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("\"all-authenticatd\" is not a default inbound policy"),
            "{err}"
        );
    }

    #[test]
    fn each_policy_admits_what_it_says() {
        assert!(DefaultPolicy::Deny.authorizations(&cluster()).is_empty());

        let all = DefaultPolicy::AllUnauthenticated.authorizations(&cluster());
        assert_eq!(nets(&all[0]), ["0.0.0.0/0", "::/0"]);
        assert!(matches!(
            all[0].authentication.as_ref().unwrap().permit,
            Some(Permit::Unauthenticated(_))
        ));

        let authn = DefaultPolicy::ClusterAuthenticated.authorizations(&cluster());
        assert_eq!(nets(&authn[0]), ["10.0.0.0/8", "fd00::/8"]);
        let Some(Permit::MeshTls(tls)) = &authn[0].authentication.as_ref().unwrap().permit else {
            panic!("cluster-authenticated must require mesh TLS: {authn:?}");
        };
        let Some(Clients::Identities(ids)) = &tls.clients else {
            panic!("an identity is required: {tls:?}");
        };
        assert_eq!(ids.suffixes, [inbound::IdentitySuffix { parts: vec![] }]);

        let audit = DefaultPolicy::Audit.authorizations(&cluster());
        assert_eq!(nets(&audit[0]), ["0.0.0.0/0", "::/0"]);
        assert_eq!(audit[0].labels["name"], "audit");
    }

    #[test]
    fn a_port_without_a_server_detects_and_routes_everything_by_the_policy() {
        let server = DefaultPolicy::ClusterUnauthenticated.server(&cluster());
        assert_eq!(server.labels["kind"], "default");
        assert_eq!(server.labels["name"], "cluster-unauthenticated");
        let Some(inbound::proxy_protocol::Kind::Detect(detect)) =
            server.protocol.and_then(|p| p.kind)
        else {
            panic!("the protocol is detected");
        };
        assert_eq!(detect.timeout.unwrap().seconds, 10);
        assert_eq!(detect.http_routes.len(), 1);
        assert_eq!(detect.http_routes[0].authorizations, server.authorizations);
    }
}
