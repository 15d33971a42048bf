//! Tap as an aggregated Kubernetes API (`v1alpha1.tap.linkerd.io`), as
//! Linkerd serves it: users tap through the API server, which authenticates
//! them, checks their RBAC for `watch` on the target's `tap` subresource, and
//! proxies the request here over TLS with its front-proxy client certificate
//! and the user in `X-Remote-*` headers. This server believes those headers
//! only from a client certificate that chains to the front-proxy CA and
//! carries an allowed name (both from `kube-system/extension-apiserver-
//! authentication`), and asks the API server again, with a
//! SubjectAccessReview, before every tap: a request that reached the port
//! some other way proves nothing.

use super::TapService;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use linkerd_discovery::Discover;
use linkerd_proxy_api::tap_controller::{
    Resource, TapRequest, api, plural_kind, tap_api_frame::Frame,
    tap_by_resource_server::TapByResource,
};
use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};
use tokio::net::TcpListener;

/// The ConfigMap the API server publishes its front-proxy settings in.
pub const AUTHENTICATION_CONFIG_MAP: (&str, &str) =
    ("kube-system", "extension-apiserver-authentication");
/// A TapRequest is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Why the front-proxy settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{}/{} has no requestheader-client-ca-file: the API server's aggregation layer is not configured (--requestheader-client-ca-file)",
        AUTHENTICATION_CONFIG_MAP.0,
        AUTHENTICATION_CONFIG_MAP.1
    )]
    NoClientCa,
    #[error("{key} in {}/{} is not a JSON list of strings: {error}", AUTHENTICATION_CONFIG_MAP.0, AUTHENTICATION_CONFIG_MAP.1)]
    List {
        key: &'static str,
        error: serde_json::Error,
    },
    #[error("cannot read kube-system/extension-apiserver-authentication: {0}")]
    Read(#[source] kube::Error),
}

/// Who may speak for users, and in which headers (the API server's
/// `--requestheader-*` flags).
#[derive(Clone, Debug)]
pub struct RequestHeader {
    pub client_ca_pem: String,
    /// Names a front-proxy certificate may carry; empty: any the CA signed.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

impl RequestHeader {
    /// From the ConfigMap's data.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let list = |key: &'static str| -> Result<Vec<String>, ConfigError> {
            match data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(Vec::new()),
                Some(v) => {
                    serde_json::from_str(v).map_err(|error| ConfigError::List { key, error })
                }
            }
        };
        let client_ca_pem = data
            .get("requestheader-client-ca-file")
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::NoClientCa)?
            .clone();
        let lower = |v: Vec<String>| v.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        Ok(Self {
            client_ca_pem,
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: lower(list("requestheader-username-headers")?),
            group_headers: lower(list("requestheader-group-headers")?),
            extra_prefixes: lower(list("requestheader-extra-headers-prefix")?),
        })
    }

    pub async fn load(client: &kube::Client) -> Result<Self, ConfigError> {
        let (ns, name) = AUTHENTICATION_CONFIG_MAP;
        let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client.clone(), ns);
        let map = maps.get(name).await.map_err(ConfigError::Read)?;
        Self::from_data(&map.data.unwrap_or_default())
    }

    /// Whether a verified client certificate's subject may front for users.
    fn allows(&self, common_name: Option<&str>) -> bool {
        self.allowed_names.is_empty()
            || common_name.is_some_and(|cn| self.allowed_names.iter().any(|n| n == cn))
    }

    /// The user the front proxy vouches for.
    fn user(&self, headers: &HeaderMap) -> Option<User> {
        let text = |v: &HeaderValue| v.to_str().ok().map(str::to_string);
        let name = self
            .username_headers
            .iter()
            .find_map(|h| headers.get(h.as_str()).and_then(text))
            .filter(|n| !n.is_empty())?;
        let groups = self
            .group_headers
            .iter()
            .flat_map(|h| headers.get_all(h.as_str()).iter().filter_map(text))
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in headers {
            let Some(prefix) = self
                .extra_prefixes
                .iter()
                .find(|p| key.as_str().starts_with(p.as_str()))
            else {
                continue;
            };
            let Some(value) = text(value) else { continue };
            // Extra keys are percent-encoded in header names.
            let key = percent_encoding::percent_decode_str(&key.as_str()[prefix.len()..])
                .decode_utf8_lossy()
                .into_owned();
            extra.entry(key).or_default().push(value);
        }
        Some(User {
            name,
            groups,
            extra,
        })
    }
}

/// A user as the API server authenticated them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What the authorizer said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The authorizer's reason, when it gave one.
    pub reason: String,
}

/// Asks whether a user may tap a target: the API server's
/// SubjectAccessReview in a cluster.
pub trait Authorize: Send + Sync + 'static {
    fn authorize(
        &self,
        user: &User,
        target: &Resource,
    ) -> impl Future<Output = Result<Decision, String>> + Send;
}

/// The RBAC attributes of tapping `target`, as Linkerd's tap checks them:
/// `watch` on the target's `tap` subresource in `tap.linkerd.io`.
fn attributes(target: &Resource) -> k8s_openapi::api::authorization::v1::ResourceAttributes {
    let named = !target.name.is_empty();
    let namespace = match target.r#type.as_str() {
        "namespace" => target.name.clone(),
        _ => target.namespace.clone(),
    };
    k8s_openapi::api::authorization::v1::ResourceAttributes {
        namespace: Some(namespace).filter(|n| !n.is_empty()),
        verb: Some("watch".into()),
        group: Some(api::GROUP.into()),
        version: Some(api::VERSION.into()),
        resource: plural_kind(&target.r#type).map(str::to_string),
        subresource: named.then(|| api::SUBRESOURCE.into()),
        name: Some(target.name.clone()).filter(|n| !n.is_empty()),
        ..Default::default()
    }
}

/// SubjectAccessReviews against the API server.
#[derive(Clone)]
pub struct SubjectAccessReviews {
    client: kube::Client,
}

impl SubjectAccessReviews {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

/// A review that takes longer than this fails the tap.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

impl Authorize for SubjectAccessReviews {
    async fn authorize(&self, user: &User, target: &Resource) -> Result<Decision, String> {
        use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec};
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()),
                resource_attributes: Some(attributes(target)),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviews: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let answer = tokio::time::timeout(
            REVIEW_TIMEOUT,
            reviews.create(&kube::api::PostParams::default(), &review),
        )
        .await
        .map_err(|_| format!("no answer within {REVIEW_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
        let status = answer.status.unwrap_or_default();
        Ok(Decision {
            allowed: status.allowed && !status.denied.unwrap_or(false),
            reason: status.reason.unwrap_or_default(),
        })
    }
}

/// The API server's message for a refused request, as `kubectl` shows it.
fn forbidden_message(user: &User, target: &Resource, reason: &str) -> String {
    let plural = plural_kind(&target.r#type).unwrap_or("resources");
    let what = if target.name.is_empty() {
        format!("{plural}.{} is forbidden", api::GROUP)
    } else {
        format!("{plural}.{} {:?} is forbidden", api::GROUP, target.name)
    };
    let resource = if target.name.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}/{}", api::SUBRESOURCE)
    };
    let scope = match attributes(target).namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".into(),
    };
    let mut message = format!(
        "{what}: User {:?} cannot watch resource {resource:?} in API group {:?} {scope}",
        user.name,
        api::GROUP
    );
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

/// A Kubernetes `Status` answer, which kubectl and kube-rs clients show by
/// its message.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json(code, &body)
}

fn json(code: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut rsp = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *rsp.status_mut() = code;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

/// What the API server's discovery asks for: the group, and the version's
/// resources (each kind's `tap` subresource, watchable).
fn discovery(path: &str) -> Option<serde_json::Value> {
    let version = serde_json::json!({
        "groupVersion": format!("{}/{}", api::GROUP, api::VERSION),
        "version": api::VERSION,
    });
    let group = serde_json::json!({
        "name": api::GROUP,
        "versions": [version],
        "preferredVersion": version,
    });
    match path.trim_end_matches('/') {
        "/apis" => Some(serde_json::json!({
            "kind": "APIGroupList", "apiVersion": "v1", "groups": [group],
        })),
        "/apis/tap.linkerd.io" => {
            let mut g = group;
            g["kind"] = "APIGroup".into();
            g["apiVersion"] = "v1".into();
            Some(g)
        }
        api::PREFIX => {
            let resources: Vec<_> = linkerd_proxy_api::tap_controller::KINDS
                .iter()
                .filter_map(|(kind, _)| plural_kind(kind).map(|p| (*kind, p)))
                .flat_map(|(kind, plural)| {
                    let namespaced = kind != "namespace";
                    [
                        serde_json::json!({
                            "name": plural, "singularName": kind, "namespaced": namespaced,
                            "kind": kind, "verbs": ["watch"],
                        }),
                        serde_json::json!({
                            "name": format!("{plural}/{}", api::SUBRESOURCE), "singularName": "",
                            "namespaced": namespaced, "kind": "tap", "verbs": ["watch"],
                        }),
                    ]
                })
                .collect();
            Some(serde_json::json!({
                "kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": format!("{}/{}", api::GROUP, api::VERSION),
                "resources": resources,
            }))
        }
        _ => None,
    }
}

/// Whether this connection's client proved to be the API server's front
/// proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    FrontProxy,
    /// A certificate the CA signed, with a name not allowed.
    NameNotAllowed,
    Anonymous,
}

pub struct ApiServer<D, A> {
    pub tap: Arc<TapService<D>>,
    pub authorize: A,
    pub request_header: RequestHeader,
}

impl<D: Discover, A: Authorize> ApiServer<D, A> {
    async fn handle(&self, peer: Peer, req: Request<Incoming>) -> Response<Body> {
        match peer {
            Peer::FrontProxy => {}
            Peer::NameNotAllowed => {
                return status(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "the client certificate's name is not in requestheader-allowed-names",
                );
            }
            Peer::Anonymous => {
                return status(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "tap is served through the Kubernetes API server (/apis/tap.linkerd.io); this client presented no front-proxy certificate",
                );
            }
        }
        let path = req.uri().path().to_string();
        if req.method() == Method::GET
            && let Some(body) = discovery(&path)
        {
            return json(StatusCode::OK, &body);
        }
        let target = match api::parse_path(&path) {
            Ok(t) => t,
            Err(e) => return status(StatusCode::NOT_FOUND, "NotFound", &e.to_string()),
        };
        if req.method() != Method::POST {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "POST a TapRequest to tap",
            );
        }
        let Some(user) = self.request_header.user(req.headers()) else {
            return status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "the front proxy named no user",
            );
        };
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("cannot read the TapRequest: {e}"),
                );
            }
        };
        let mut tap: TapRequest = match prost::Message::decode(body) {
            Ok(t) => t,
            Err(e) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("the body is not a TapRequest: {e}"),
                );
            }
        };
        // The path is what the API server authorized: the body may not
        // name something else.
        if let Some(t) = tap.target.as_ref().filter(|t| !t.r#type.is_empty())
            && api::path(t).ok().as_deref() != Some(path.trim_end_matches('/'))
        {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "the TapRequest's target {}/{} is not the path's",
                    t.r#type, t.name
                ),
            );
        }
        match self.authorize.authorize(&user, &target).await {
            Ok(d) if d.allowed => {}
            Ok(d) => {
                tracing::info!(user = %user.name, target = %path, "tap refused");
                return status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &forbidden_message(&user, &target, &d.reason),
                );
            }
            Err(e) => {
                return status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    &format!(
                        "cannot ask the API server whether {} may tap: {e}",
                        user.name
                    ),
                );
            }
        }
        tracing::info!(user = %user.name, target = %path, "tap");
        tap.target = Some(target);
        let events = match self.tap.tap(tonic::Request::new(tap)).await {
            Ok(rsp) => rsp.into_inner(),
            Err(s) => {
                let (code, reason) = match s.code() {
                    tonic::Code::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
                    tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                        (StatusCode::BAD_REQUEST, "BadRequest")
                    }
                    tonic::Code::Unavailable => {
                        (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
                    }
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
                };
                return status(code, reason, s.message());
            }
        };
        // Events until the client goes (the body is dropped, and with it
        // the tap) or the tap fails: its error is the last frame.
        let frames = events.scan(false, |ended, item| {
            if *ended {
                return std::future::ready(None);
            }
            let frame = match item {
                Ok(e) => Frame::Event(e),
                Err(s) => {
                    *ended = true;
                    Frame::Error(s.message().to_string())
                }
            };
            std::future::ready(Some(Ok::<_, Infallible>(http_body::Frame::data(
                api::encode(frame),
            ))))
        });
        let mut rsp = Response::new(StreamBody::new(frames).boxed_unsync());
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(api::CONTENT_TYPE),
        );
        rsp
    }
}

/// The verified client certificate's common name.
fn common_name(cert: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Serves the aggregated API over TLS until `shutdown` resolves.
pub async fn serve<D: Discover, A: Authorize>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<ApiServer<D, A>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    linkerd_admin::accept_until(listener, shutdown, move |stream, addr| {
        let acceptor = acceptor.clone();
        let server = server.clone();
        async move {
            let Some(stream) = crate::tls::handshake(&acceptor, stream, addr).await else {
                return;
            };
            // rustls verified any certificate given against the front-proxy CA.
            let peer = match stream.get_ref().1.peer_certificates() {
                Some([leaf, ..]) => {
                    let cn = common_name(leaf);
                    if server.request_header.allows(cn.as_deref()) {
                        Peer::FrontProxy
                    } else {
                        Peer::NameNotAllowed
                    }
                }
                _ => Peer::Anonymous,
            };
            let svc = service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(peer, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "tap API connection failed");
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RequestHeader {
        RequestHeader::from_data(&BTreeMap::from([
            ("requestheader-client-ca-file".into(), "PEM".into()),
            (
                "requestheader-allowed-names".into(),
                r#"["front-proxy-client"]"#.into(),
            ),
            (
                "requestheader-username-headers".into(),
                r#"["X-Remote-User"]"#.into(),
            ),
            (
                "requestheader-group-headers".into(),
                r#"["X-Remote-Group"]"#.into(),
            ),
            (
                "requestheader-extra-headers-prefix".into(),
                r#"["X-Remote-Extra-"]"#.into(),
            ),
        ]))
        .unwrap()
    }

    #[test]
    fn users_come_from_the_configured_headers() {
        let rh = config();
        let mut h = HeaderMap::new();
        assert_eq!(rh.user(&h), None);
        h.insert("x-remote-user", HeaderValue::from_static("alice"));
        h.append("x-remote-group", HeaderValue::from_static("dev"));
        h.append(
            "x-remote-group",
            HeaderValue::from_static("system:authenticated"),
        );
        h.insert(
            "x-remote-extra-scopes%2Fa",
            HeaderValue::from_static("read"),
        );
        h.insert("x-other", HeaderValue::from_static("ignored"));
        let user = rh.user(&h).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["dev", "system:authenticated"]);
        assert_eq!(
            user.extra,
            BTreeMap::from([("scopes/a".to_string(), vec!["read".to_string()])])
        );
    }

    #[test]
    fn only_allowed_names_front_for_users() {
        let rh = config();
        assert!(rh.allows(Some("front-proxy-client")));
        assert!(!rh.allows(Some("someone-else")));
        assert!(!rh.allows(None));
        let any = RequestHeader {
            allowed_names: vec![],
            ..rh
        };
        assert!(any.allows(None));
    }

    #[test]
    fn a_cluster_without_aggregation_is_named() {
        let e = RequestHeader::from_data(&BTreeMap::new()).unwrap_err();
        assert!(
            e.to_string().contains("requestheader-client-ca-file"),
            "{e}"
        );
        let e = RequestHeader::from_data(&BTreeMap::from([
            ("requestheader-client-ca-file".into(), "PEM".into()),
            ("requestheader-allowed-names".into(), "front-proxy".into()),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("requestheader-allowed-names"), "{e}");
    }

    #[test]
    fn rbac_attributes_and_refusals_read_as_the_api_servers() {
        let web = Resource {
            r#type: "deployment".into(),
            namespace: "emojivoto".into(),
            name: "web".into(),
        };
        let a = attributes(&web);
        assert_eq!(a.verb.as_deref(), Some("watch"));
        assert_eq!(a.group.as_deref(), Some("tap.linkerd.io"));
        assert_eq!(a.resource.as_deref(), Some("deployments"));
        assert_eq!(a.subresource.as_deref(), Some("tap"));
        assert_eq!(a.namespace.as_deref(), Some("emojivoto"));
        let alice = User {
            name: "alice".into(),
            groups: vec![],
            extra: BTreeMap::new(),
        };
        assert_eq!(
            forbidden_message(&alice, &web, ""),
            r#"deployments.tap.linkerd.io "web" is forbidden: User "alice" cannot watch resource "deployments/tap" in API group "tap.linkerd.io" in the namespace "emojivoto""#
        );
        let ns = Resource {
            r#type: "namespace".into(),
            namespace: String::new(),
            name: "emojivoto".into(),
        };
        assert_eq!(attributes(&ns).namespace.as_deref(), Some("emojivoto"));
        assert_eq!(attributes(&ns).resource.as_deref(), Some("namespaces"));
    }

    #[test]
    fn discovery_lists_each_kinds_tap() {
        let list = discovery("/apis/tap.linkerd.io/v1alpha1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"deployments/tap"), "{names:?}");
        assert!(names.contains(&"namespaces/tap"), "{names:?}");
        assert_eq!(
            discovery("/apis/tap.linkerd.io").unwrap()["kind"],
            "APIGroup"
        );
        assert!(discovery("/apis/other").is_none());
    }
}
