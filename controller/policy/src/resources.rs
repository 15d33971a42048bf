//! Linkerd's policy resources (`policy.linkerd.io`), as much of their
//! schemas as inbound policy reads, so that a Linkerd user's YAML reads the
//! same here.

use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A resource's name and namespace.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

/// A port of the pods it selects, and the protocol spoken there.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Server {
    pub metadata: Meta,
    pub spec: ServerSpec,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    pub pod_selector: LabelSelector,
    pub port: Port,
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// What traffic no AuthorizationPolicy admits gets (`v1beta3`): by
    /// default nothing (`deny`); `audit` or another default policy admits
    /// it as that policy would.
    #[serde(default)]
    pub access_policy: Option<crate::DefaultPolicy>,
}

/// A container port, by number or by name.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Port {
    Number(u16),
    Name(String),
}

#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum ProxyProtocol {
    #[default]
    #[serde(rename = "unknown")]
    Unknown,
    #[serde(rename = "HTTP/1")]
    Http1,
    #[serde(rename = "HTTP/2")]
    Http2,
    #[serde(rename = "gRPC")]
    Grpc,
    #[serde(rename = "opaque")]
    Opaque,
    #[serde(rename = "TLS")]
    Tls,
}

/// Kubernetes' label selector: every `matchLabels` pair and every
/// expression must hold.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<Expression>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Expression {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Copy, Clone, Debug, Deserialize, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    Operator::In => value.is_some_and(|v| e.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// Who may reach a target: every listed authentication must hold.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    pub metadata: Meta,
    pub spec: AuthorizationPolicySpec,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    pub target_ref: Ref,
    #[serde(default)]
    pub required_authentication_refs: Vec<Ref>,
}

/// A reference to another resource; `namespace` defaults to the referrer's.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Ref {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl Ref {
    pub fn is_kind(&self, kind: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind)
    }
}

/// Clients proven by mesh TLS: identities (`*` for any, `*.suffix`), or
/// service accounts and namespaces.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct MeshTlsAuthentication {
    pub metadata: Meta,
    pub spec: MeshTlsAuthenticationSpec,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MeshTlsAuthenticationSpec {
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub identity_refs: Vec<Ref>,
}

/// Clients from these networks.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct NetworkAuthentication {
    pub metadata: Meta,
    pub spec: NetworkAuthenticationSpec,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct NetworkAuthenticationSpec {
    pub networks: Vec<Network>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Network {
    pub cidr: IpNet,
    #[serde(default)]
    pub except: Vec<IpNet>,
}

/// Routes of a `Server` (its parent), as `policy.linkerd.io/v1beta3`
/// `HTTPRoute` (the Gateway API's schema): once a server has one, a request
/// must be on one of them, and only policies targeting its route admit it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct HttpRoute {
    pub metadata: Meta,
    pub spec: HttpRouteSpec,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// The Gateway API's parent reference; the kind defaults to `Gateway`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ParentRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl ParentRef {
    pub fn is_server(&self, name: &str, namespace: &str, route_ns: &str) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case("Server"))
            && self.name == name
            && self.namespace.as_deref().unwrap_or(route_ns) == namespace
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct HttpRouteRule {
    /// None: every request (a `/` prefix).
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    #[serde(default)]
    pub path: Option<PathMatch>,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    #[serde(default)]
    pub query_params: Vec<ValueMatch>,
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PathMatch {
    #[serde(default, rename = "type")]
    pub kind: PathMatchKind,
    #[serde(default = "root")]
    pub value: String,
}

fn root() -> String {
    "/".into()
}

#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum PathMatchKind {
    Exact,
    #[default]
    PathPrefix,
    RegularExpression,
}

/// A header or query parameter match.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ValueMatch {
    #[serde(default, rename = "type")]
    pub kind: ValueMatchKind,
    pub name: String,
    pub value: String,
}

#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum ValueMatchKind {
    #[default]
    Exact,
    RegularExpression,
}
