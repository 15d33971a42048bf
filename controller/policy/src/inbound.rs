//! A pod's port to the `inbound.Server` its proxy enforces: the `Server`
//! resource that selects it with the authorizations that target it, or the
//! workload's default policy.

use crate::{
    DefaultPolicy, default_route, network,
    resources::{
        AuthorizationPolicy, HttpRoute, MeshTlsAuthentication, NetworkAuthentication, Port,
        ProxyProtocol, Ref, Server,
    },
};
use ipnet::IpNet;
use linkerd_pki::Naming;
use linkerd_proxy_api::{inbound, meta};
use std::collections::{BTreeMap, HashMap};

const GROUP: &str = "policy.linkerd.io";

/// Every policy resource the controller knows, across namespaces,
/// borrowed from wherever the backend keeps them.
#[derive(Copy, Clone, Debug, Default)]
pub struct Policies<'a> {
    pub servers: &'a [Server],
    pub authorization_policies: &'a [AuthorizationPolicy],
    pub mesh_tls_authentications: &'a [MeshTlsAuthentication],
    pub network_authentications: &'a [NetworkAuthentication],
    pub http_routes: &'a [HttpRoute],
}

/// What inbound policy needs to know of a pod.
#[derive(Clone, Debug)]
pub struct Pod<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Its containers' named ports.
    pub named_ports: &'a BTreeMap<String, u16>,
    /// From its annotation, its namespace's, or the cluster's.
    pub default_policy: DefaultPolicy,
    /// Its HTTP probes' paths by port.
    pub probes: &'a BTreeMap<u16, Vec<String>>,
}

/// Where the cluster is: its networks, and how identities are named.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub networks: Vec<IpNet>,
    pub naming: Naming,
}

impl Policies<'_> {
    /// The server the pod's proxy enforces on `port`. Of several `Server`s
    /// selecting the port, the first by name wins, so the answer does not
    /// depend on the order resources were seen.
    pub fn inbound_server(&self, pod: &Pod<'_>, port: u16, cluster: &Cluster) -> inbound::Server {
        let server = self
            .servers
            .iter()
            .filter(|s| s.metadata.namespace == pod.namespace)
            .filter(|s| s.spec.pod_selector.matches(pod.labels))
            .filter(|s| match &s.spec.port {
                Port::Number(n) => *n == port,
                Port::Name(name) => pod.named_ports.get(name) == Some(&port),
            })
            .min_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let probes = pod.probes.get(&port).map_or(&[][..], Vec::as_slice);
        match server {
            Some(server) => self.server(server, probes, cluster),
            None => pod
                .default_policy
                .server_with_probes(&cluster.networks, probes),
        }
    }

    fn server(&self, server: &Server, probes: &[String], cluster: &Cluster) -> inbound::Server {
        let ns = server.metadata.namespace.as_str();
        let mut authorizations = self.authorizations(ns, cluster, |t| {
            (t.is_kind("Server") && t.name == server.metadata.name)
                || (t.is_kind("Namespace") && t.name == ns)
        });
        // The Server's access policy admits what no policy does.
        if let Some(access) = server.spec.access_policy {
            authorizations.extend(access.authorizations(&cluster.networks));
        }
        // The server's HTTPRoutes, each with the policies targeting it (by
        // name, so the answer does not depend on the order seen); without
        // any, one route for everything with the server's authorizations.
        let mut routes: Vec<&HttpRoute> = self
            .http_routes
            .iter()
            .filter(|r| {
                let route_ns = r.metadata.namespace.as_str();
                r.spec
                    .parent_refs
                    .iter()
                    .any(|p| p.is_server(&server.metadata.name, ns, route_ns))
            })
            .collect();
        routes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let http_routes: Vec<inbound::HttpRoute> = if routes.is_empty() {
            // As Linkerd: the kubelet's probes pass whatever the server's
            // policies say, unless the server has routes of its own.
            let mut routes = vec![default_route(&authorizations)];
            routes.extend(crate::probe_route(probes));
            routes
        } else {
            routes
                .into_iter()
                .map(|r| {
                    let route_ns = r.metadata.namespace.as_str();
                    let authz = self.authorizations(route_ns, cluster, |t| {
                        t.is_kind("HTTPRoute") && t.name == r.metadata.name
                    });
                    crate::route::inbound(r, authz)
                })
                .collect()
        };
        use inbound::proxy_protocol::{self as pp, Kind};
        let kind = match server.spec.proxy_protocol {
            ProxyProtocol::Unknown => crate::detect(http_routes),
            ProxyProtocol::Http1 => Kind::Http1(pp::Http1 {
                routes: http_routes,
                local_rate_limit: None,
            }),
            ProxyProtocol::Http2 => Kind::Http2(pp::Http2 {
                routes: http_routes,
                local_rate_limit: None,
            }),
            ProxyProtocol::Grpc => Kind::Grpc(pp::Grpc {
                routes: vec![inbound::GrpcRoute {
                    metadata: Some(default_meta("default")),
                    hosts: Vec::new(),
                    authorizations: authorizations.clone(),
                    rules: vec![inbound::grpc_route::Rule {
                        matches: vec![Default::default()],
                        filters: Vec::new(),
                    }],
                }],
            }),
            ProxyProtocol::Opaque => Kind::Opaque(pp::Opaque {}),
            ProxyProtocol::Tls => Kind::Tls(pp::Tls {}),
        };
        inbound::Server {
            protocol: Some(inbound::ProxyProtocol { kind: Some(kind) }),
            server_ips: Vec::new(),
            authorizations,
            labels: labels("server", &server.metadata.name),
        }
    }

    /// The authorizations of the policies in `ns` whose target `targets`
    /// picks.
    fn authorizations(
        &self,
        ns: &str,
        cluster: &Cluster,
        targets: impl Fn(&Ref) -> bool,
    ) -> Vec<inbound::Authz> {
        self.authorization_policies
            .iter()
            .filter(|p| p.metadata.namespace == ns && targets(&p.spec.target_ref))
            .filter_map(|p| self.authz(p, cluster))
            .collect()
    }

    /// One policy's authorization; none when an authentication it requires
    /// does not exist (Linkerd's rule: such a policy grants nothing).
    fn authz(&self, policy: &AuthorizationPolicy, cluster: &Cluster) -> Option<inbound::Authz> {
        let ns = policy.metadata.namespace.as_str();
        let mut networks = Vec::new();
        let mut identities = Vec::new();
        let mut suffixes = Vec::new();
        let mut mesh_tls = false;
        for r in &policy.spec.required_authentication_refs {
            let r_ns = r.namespace.as_deref().unwrap_or(ns);
            if r.is_kind("NetworkAuthentication") {
                let authn = find(self.network_authentications, r, r_ns, |a| &a.metadata)?;
                networks.extend(authn.spec.networks.iter().map(|n| inbound::Network {
                    net: Some(network(n.cidr)),
                    except: n.except.iter().copied().map(network).collect(),
                }));
            } else if r.is_kind("MeshTLSAuthentication") {
                let authn = find(self.mesh_tls_authentications, r, r_ns, |a| &a.metadata)?;
                mesh_tls = true;
                for id in &authn.spec.identities {
                    match id.strip_prefix('*') {
                        Some(rest) => suffixes.push(suffix(rest.trim_start_matches('.'))),
                        None => identities.push(inbound::Identity { name: id.clone() }),
                    }
                }
                for id in &authn.spec.identity_refs {
                    let id_ns = id.namespace.as_deref().unwrap_or(r_ns);
                    if id.is_kind("ServiceAccount") {
                        identities.push(inbound::Identity {
                            name: cluster.naming.identity(&id.name, id_ns),
                        });
                    } else if id.is_kind("Namespace") {
                        // Every service account of the namespace.
                        let any = cluster.naming.identity("*", &id.name);
                        suffixes.push(suffix(any.trim_start_matches("*.")));
                    }
                }
            } else if r.is_kind("ServiceAccount") {
                mesh_tls = true;
                identities.push(inbound::Identity {
                    name: cluster.naming.identity(&r.name, r_ns),
                });
            } else {
                return None;
            }
        }
        if networks.is_empty() {
            networks = ["0.0.0.0/0", "::/0"]
                .iter()
                .map(|n| inbound::Network {
                    net: Some(network(n.parse().expect("a valid network"))),
                    except: Vec::new(),
                })
                .collect();
        }
        use inbound::authn::{Permit, PermitMeshTls, PermitUnauthenticated, permit_mesh_tls};
        let permit = if mesh_tls {
            Permit::MeshTls(PermitMeshTls {
                clients: Some(permit_mesh_tls::Clients::Identities(
                    permit_mesh_tls::PermitClientIdentities {
                        identities,
                        suffixes,
                    },
                )),
            })
        } else {
            Permit::Unauthenticated(PermitUnauthenticated {})
        };
        Some(inbound::Authz {
            networks,
            authentication: Some(inbound::Authn {
                permit: Some(permit),
            }),
            labels: labels("authorizationpolicy", &policy.metadata.name),
            metadata: Some(meta::Metadata {
                kind: Some(meta::metadata::Kind::Resource(meta::Resource {
                    group: GROUP.into(),
                    kind: "AuthorizationPolicy".into(),
                    name: policy.metadata.name.clone(),
                    namespace: ns.into(),
                    ..Default::default()
                })),
            }),
        })
    }
}

fn find<'a, T>(
    items: &'a [T],
    r: &Ref,
    namespace: &str,
    meta: impl Fn(&T) -> &crate::resources::Meta,
) -> Option<&'a T> {
    items
        .iter()
        .find(|i| meta(i).name == r.name && meta(i).namespace == namespace)
}

/// `a.b.c` as the parts an identity must end with.
fn suffix(s: &str) -> inbound::IdentitySuffix {
    inbound::IdentitySuffix {
        parts: s
            .split('.')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect(),
    }
}

fn labels(kind: &str, name: &str) -> HashMap<String, String> {
    [("group", GROUP), ("kind", kind), ("name", name)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn default_meta(name: &str) -> meta::Metadata {
    meta::Metadata {
        kind: Some(meta::metadata::Kind::Default(name.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inbound::authn::{Permit, permit_mesh_tls::Clients};

    const YAML: &str = r#"
servers:
- metadata: {name: web-http, namespace: emojivoto}
  spec:
    podSelector: {matchLabels: {app: web}}
    port: http
    proxyProtocol: HTTP/1
- metadata: {name: voting-grpc, namespace: emojivoto}
  spec:
    podSelector:
      matchExpressions: [{key: app, operator: In, values: [voting]}]
    port: 8080
    proxyProtocol: gRPC
authorizationPolicies:
- metadata: {name: web-from-bot, namespace: emojivoto}
  spec:
    targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
    requiredAuthenticationRefs:
    - {group: policy.linkerd.io, kind: MeshTLSAuthentication, name: bot}
- metadata: {name: web-from-office, namespace: emojivoto}
  spec:
    targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
    requiredAuthenticationRefs:
    - {group: policy.linkerd.io, kind: NetworkAuthentication, name: office}
- metadata: {name: dangling, namespace: emojivoto}
  spec:
    targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
    requiredAuthenticationRefs:
    - {group: policy.linkerd.io, kind: MeshTLSAuthentication, name: missing}
meshTLSAuthentications:
- metadata: {name: bot, namespace: emojivoto}
  spec:
    identityRefs: [{kind: ServiceAccount, name: vote-bot}]
    identities: ["*.monitoring.serviceaccount.identity.linkerd.cluster.local"]
networkAuthentications:
- metadata: {name: office, namespace: emojivoto}
  spec:
    networks: [{cidr: 198.18.0.0/16, except: [198.18.1.0/24]}]
"#;

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct World {
        servers: Vec<Server>,
        authorization_policies: Vec<AuthorizationPolicy>,
        #[serde(rename = "meshTLSAuthentications")]
        mesh_tls_authentications: Vec<MeshTlsAuthentication>,
        network_authentications: Vec<NetworkAuthentication>,
        #[serde(default)]
        http_routes: Vec<HttpRoute>,
    }

    fn world() -> World {
        serde_saphyr::from_str(YAML).unwrap()
    }

    fn policies(w: &World) -> Policies<'_> {
        Policies {
            servers: &w.servers,
            authorization_policies: &w.authorization_policies,
            mesh_tls_authentications: &w.mesh_tls_authentications,
            network_authentications: &w.network_authentications,
            http_routes: &w.http_routes,
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            networks: vec!["10.0.0.0/8".parse().unwrap()],
            naming: Naming::new("linkerd", "cluster.local"),
        }
    }

    static NO_PROBES: BTreeMap<u16, Vec<String>> = BTreeMap::new();

    fn pod<'a>(labels: &'a BTreeMap<String, String>, ports: &'a BTreeMap<String, u16>) -> Pod<'a> {
        Pod {
            namespace: "emojivoto",
            labels,
            named_ports: ports,
            default_policy: DefaultPolicy::Deny,
            probes: &NO_PROBES,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_server_by_port_name_gets_the_policies_that_target_it() {
        let labels = map(&[("app", "web")]);
        let ports = [("http".to_string(), 8080)].into();
        let srv = policies(&world()).inbound_server(&pod(&labels, &ports), 8080, &cluster());
        assert_eq!(srv.labels["name"], "web-http");
        assert_eq!(srv.labels["kind"], "server");
        assert!(matches!(
            srv.protocol.as_ref().unwrap().kind,
            Some(inbound::proxy_protocol::Kind::Http1(_))
        ));
        // The dangling policy grants nothing; the other two do.
        let names: Vec<_> = srv
            .authorizations
            .iter()
            .map(|a| &a.labels["name"])
            .collect();
        assert_eq!(names, ["web-from-bot", "web-from-office"]);

        let bot = &srv.authorizations[0];
        let Some(Permit::MeshTls(tls)) = &bot.authentication.as_ref().unwrap().permit else {
            panic!("{bot:?}");
        };
        let Some(Clients::Identities(ids)) = &tls.clients else {
            panic!("{tls:?}");
        };
        assert_eq!(
            ids.identities[0].name,
            "vote-bot.emojivoto.serviceaccount.identity.linkerd.cluster.local"
        );
        assert_eq!(
            ids.suffixes[0].parts,
            [
                "monitoring",
                "serviceaccount",
                "identity",
                "linkerd",
                "cluster",
                "local"
            ]
        );
        assert_eq!(bot.networks.len(), 2, "everywhere, v4 and v6");

        let office = &srv.authorizations[1];
        assert!(matches!(
            office.authentication.as_ref().unwrap().permit,
            Some(Permit::Unauthenticated(_))
        ));
        assert_eq!(office.networks.len(), 1);
        assert_eq!(office.networks[0].net.as_ref().unwrap().prefix_len, 16);
        assert_eq!(office.networks[0].except[0].prefix_len, 24);
    }

    #[test]
    fn other_ports_and_pods_get_the_default_policy() {
        let web = map(&[("app", "web")]);
        let ports = [("http".to_string(), 8080)].into();
        let other_port = policies(&world()).inbound_server(&pod(&web, &ports), 9090, &cluster());
        assert_eq!(other_port.labels["kind"], "default");
        assert_eq!(other_port.labels["name"], "deny");
        assert!(other_port.authorizations.is_empty());

        let voting = map(&[("app", "voting")]);
        let none = BTreeMap::new();
        let srv = policies(&world()).inbound_server(&pod(&voting, &none), 8080, &cluster());
        assert_eq!(srv.labels["name"], "voting-grpc");
        assert!(srv.authorizations.is_empty(), "no policy targets it: deny");
    }

    #[test]
    fn a_servers_http_routes_replace_its_default_route_with_their_own_policies() {
        let routes = r#"
httpRoutes:
- apiVersion: policy.linkerd.io/v1beta3
  kind: HTTPRoute
  metadata: {name: web-vote, namespace: emojivoto}
  spec:
    parentRefs: [{group: policy.linkerd.io, kind: Server, name: web-http}]
    hostnames: ["*.emojivoto.svc.cluster.local"]
    rules:
    - matches:
      - path: {type: Exact, value: /api/vote}
        method: POST
        headers: [{name: x-team, value: a}]
- metadata: {name: web-list, namespace: emojivoto}
  spec:
    parentRefs: [{kind: Server, name: web-http}]
    rules:
    - matches: [{path: {value: /api/list}}]
- metadata: {name: other-parent, namespace: emojivoto}
  spec:
    parentRefs: [{kind: Service, name: web-http}]
authorizationPolicies:
- metadata: {name: vote-from-bot, namespace: emojivoto}
  spec:
    targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: web-vote}
    requiredAuthenticationRefs:
    - {group: policy.linkerd.io, kind: MeshTLSAuthentication, name: bot}
"#;
        let mut w = world();
        let extra: World = serde_saphyr::from_str(&format!(
            "servers: []\nmeshTLSAuthentications: []\nnetworkAuthentications: []\n{routes}"
        ))
        .unwrap();
        w.http_routes = extra.http_routes;
        w.authorization_policies
            .extend(extra.authorization_policies);
        let labels = map(&[("app", "web")]);
        let ports = [("http".to_string(), 8080)].into();
        let srv = policies(&w).inbound_server(&pod(&labels, &ports), 8080, &cluster());
        let Some(inbound::proxy_protocol::Kind::Http1(http)) = srv.protocol.unwrap().kind else {
            panic!("HTTP/1");
        };
        let names: Vec<_> = http
            .routes
            .iter()
            .map(
                |r| match r.metadata.as_ref().unwrap().kind.as_ref().unwrap() {
                    meta::metadata::Kind::Resource(r) => r.name.clone(),
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(
            names,
            ["web-list", "web-vote"],
            "by name; a Service parent is not ours"
        );
        let (list, vote) = (&http.routes[0], &http.routes[1]);
        assert!(list.authorizations.is_empty(), "no policy targets it");
        let authz: Vec<_> = vote
            .authorizations
            .iter()
            .map(|a| &a.labels["name"])
            .collect();
        assert_eq!(authz, ["vote-from-bot"]);
        let m = &vote.rules[0].matches[0];
        assert_eq!(
            m.path.as_ref().unwrap().kind,
            Some(linkerd_proxy_api::http_route::path_match::Kind::Exact(
                "/api/vote".into()
            ))
        );
        assert!(m.method.is_some());
        assert_eq!(m.headers[0].name, "x-team");
        assert_eq!(
            vote.hosts[0].r#match,
            Some(linkerd_proxy_api::http_route::host_match::Match::Suffix(
                linkerd_proxy_api::http_route::host_match::Suffix {
                    reverse_labels: ["local", "cluster", "svc", "emojivoto"]
                        .map(String::from)
                        .to_vec()
                }
            ))
        );
        // A path without a type is a prefix, as the Gateway API defaults it.
        assert_eq!(
            list.rules[0].matches[0].path.as_ref().unwrap().kind,
            Some(linkerd_proxy_api::http_route::path_match::Kind::Prefix(
                "/api/list".into()
            ))
        );
    }

    #[test]
    fn the_kubelets_probes_pass_a_default_or_route_less_server() {
        let labels = map(&[("app", "web")]);
        let ports = [("http".to_string(), 8080)].into();
        let probes = [(8080, vec!["/ready".to_string(), "/live".to_string()])].into();
        let pod = Pod {
            probes: &probes,
            ..pod(&labels, &ports)
        };
        let route_names = |srv: &inbound::Server| -> Vec<String> {
            let routes = match srv.protocol.clone().unwrap().kind.unwrap() {
                inbound::proxy_protocol::Kind::Http1(h) => h.routes,
                inbound::proxy_protocol::Kind::Detect(d) => d.http_routes,
                other => panic!("{other:?}"),
            };
            routes
                .iter()
                .map(
                    |r| match r.metadata.as_ref().unwrap().kind.as_ref().unwrap() {
                        meta::metadata::Kind::Default(n) => n.clone(),
                        meta::metadata::Kind::Resource(r) => r.name.clone(),
                    },
                )
                .collect()
        };
        let w = world();
        // web-http selects the port and has no HTTPRoute: a probe route.
        let srv = policies(&w).inbound_server(&pod, 8080, &cluster());
        assert_eq!(route_names(&srv), ["default", "probe"]);
        // Another port, by the deny default: no probe there, no probe route.
        let other = policies(&w).inbound_server(&pod, 9090, &cluster());
        assert_eq!(route_names(&other), ["default"]);
        let unselected = map(&[("app", "other")]);
        let deny = Pod {
            labels: &unselected,
            ..pod.clone()
        };
        let srv = policies(&w).inbound_server(&deny, 8080, &cluster());
        assert_eq!(srv.labels["name"], "deny");
        assert_eq!(route_names(&srv), ["default", "probe"]);
    }

    #[test]
    fn a_servers_access_policy_admits_what_no_policy_does() {
        let mut w = world();
        let extra: World = serde_saphyr::from_str(
            "servers:\n- metadata: {name: audited, namespace: emojivoto}\n  spec: {podSelector: {matchLabels: {app: audited}}, port: 9090, accessPolicy: audit}\nauthorizationPolicies: []\nmeshTLSAuthentications: []\nnetworkAuthentications: []\n",
        )
        .unwrap();
        w.servers.extend(extra.servers);
        let labels = map(&[("app", "audited")]);
        let none = BTreeMap::new();
        let srv = policies(&w).inbound_server(&pod(&labels, &none), 9090, &cluster());
        assert_eq!(srv.labels["name"], "audited");
        let names: Vec<_> = srv
            .authorizations
            .iter()
            .map(|a| &a.labels["name"])
            .collect();
        assert_eq!(names, ["audit"]);
        let bad = serde_saphyr::from_str::<World>(
            "servers:\n- metadata: {name: s, namespace: n}\n  spec: {podSelector: {}, port: 1, accessPolicy: allow-all}\nauthorizationPolicies: []\nmeshTLSAuthentications: []\nnetworkAuthentications: []\n",
        );
        let err = bad
            .err()
            .expect("an unknown access policy is refused")
            .to_string();
        assert!(
            err.contains("\"allow-all\" is not a default inbound policy"),
            "{err}"
        );
    }
}
