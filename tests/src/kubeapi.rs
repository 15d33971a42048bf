//! A fake Kubernetes API server on loopback that speaks the real list/watch
//! HTTP protocol for Services, EndpointSlices and Pods, so the controller's
//! kube-rs client runs unchanged against it.
//!
//! It keeps every object's resourceVersion and an event history, replays
//! history to a watch that resumes from a version, and can forget its history
//! (as etcd compaction does) so a resuming watch gets `410 Gone` and the
//! client must relist.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use linkerd_discovery::{Topology, kubernetes::objects};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{net::TcpListener, sync::mpsc};

type Body = BoxBody<Bytes, Infallible>;

/// The kinds the fake serves, by collection path.
const KINDS: [(&str, &str, &str); 3] = [
    ("/api/v1/services", "ServiceList", "v1"),
    (
        "/apis/discovery.k8s.io/v1/endpointslices",
        "EndpointSliceList",
        "discovery.k8s.io/v1",
    ),
    ("/api/v1/pods", "PodList", "v1"),
];

#[derive(Default)]
struct State {
    version: u64,
    /// Objects by collection path, then (namespace, name).
    objects: BTreeMap<&'static str, BTreeMap<(String, String), Value>>,
    /// (version, collection, watch event) for every change since `floor`.
    history: Vec<(u64, &'static str, Value)>,
    /// Watches resuming from before this version get 410 Gone.
    floor: u64,
    watchers: Vec<(&'static str, mpsc::UnboundedSender<Bytes>)>,
    requests: Vec<String>,
    /// While set, every request gets 503, as during an API outage.
    down: bool,
    /// Tokens a TokenReview authenticates, and the user each is.
    tokens: BTreeMap<String, String>,
    /// The audiences each TokenReview asked for.
    reviewed_audiences: Vec<Vec<String>>,
    /// How long TokenReviews take to answer, as an overloaded API server.
    review_delay: Duration,
    /// Other objects (namespaces, config maps, ...), by their API path:
    /// answered to GETs of that path and lists of their collection.
    others: BTreeMap<String, Value>,
    /// `(verb, resource)` pairs SelfSubjectAccessReviews answer "not allowed".
    denied: Vec<(String, String)>,
    /// The version `/version` reports, as `(major, minor)`.
    server_version: (u32, u32),
    /// `(user, verb, group)`: what RBAC lets a user other than the
    /// kubeconfig's do, for aggregated APIs and SubjectAccessReviews.
    grants: Vec<(String, String, String)>,
    /// Every SubjectAccessReview's spec, in order.
    subject_reviews: Vec<Value>,
    /// Aggregated APIs, by path prefix (`/apis/GROUP/`).
    aggregated: Vec<Arc<Aggregated>>,
    /// Watches on collections of `others`, by collection path (namespaced,
    /// or cluster-wide across namespaces).
    other_watchers: Vec<(String, mpsc::UnboundedSender<Bytes>)>,
    /// (version, object path, watch event) for every change to `others`.
    other_history: Vec<(u64, String, Value)>,
}

/// Whether the object at `object` is in the collection at `collection`:
/// directly (`…/servers/NAME` in `…/servers`), or a namespaced object in
/// its cluster-wide collection (`/apis/G/V/namespaces/NS/servers/NAME` in
/// `/apis/G/V/servers`).
fn in_collection(object: &str, collection: &str) -> bool {
    let direct = object
        .strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'));
    if direct {
        return true;
    }
    let Some((base, resource)) = collection.rsplit_once('/') else {
        return false;
    };
    let parts: Vec<&str> = match object
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix("/namespaces/"))
    {
        Some(rest) => rest.split('/').collect(),
        None => return false,
    };
    matches!(parts.as_slice(), [_, r, _] if *r == resource)
}

impl State {
    /// Records a change to `others` and tells the watches it concerns.
    fn other_change(&mut self, path: String, kind: &str, obj: Value) {
        let event = json!({"type": kind, "object": obj});
        self.other_watchers
            .retain(|(c, tx)| !in_collection(&path, c) || tx.send(line(&event)).is_ok());
        self.other_history.push((self.version, path, event));
    }
}

/// The kubeconfig's user: as `system:masters`, allowed everything.
pub const ADMIN: &str = "admin";

/// An aggregated API (an `APIService`): requests under `prefix` are
/// authorized with the user's RBAC, then proxied to `upstream` over TLS
/// with the front-proxy client certificate and the user in `X-Remote-*`
/// headers, as kube-aggregator does.
pub struct Aggregated {
    pub prefix: String,
    pub upstream: SocketAddr,
    /// The name the upstream's certificate is checked for
    /// (`SERVICE.NAMESPACE.svc`) against `ca_pem` (the APIService's
    /// caBundle).
    pub server_name: String,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Aggregated {
    fn tls(&self) -> tokio_rustls::TlsConnector {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.expect("the caBundle is PEM")).unwrap();
        }
        let chain = CertificateDer::pem_slice_iter(self.client_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the front-proxy certificate is PEM");
        let key = PrivateKeyDer::from_pem_slice(self.client_key_pem.as_bytes())
            .expect("the front-proxy key is PEM");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("the front-proxy certificate and key fit");
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// The API server's view of a resource request's path, for RBAC:
/// `(verb, group, resource, subresource, namespace, name)`.
fn request_info(method: &http::Method, path: &str) -> Option<[String; 6]> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["apis", group, _version, rest @ ..] = parts.as_slice() else {
        return None;
    };
    let (verb, rest) = match rest {
        ["watch", rest @ ..] => ("watch", rest),
        rest if *method == http::Method::POST => ("create", rest),
        rest => ("get", rest),
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (*ns, rest),
        rest => ("", rest),
    };
    let s = |v: &str| v.to_string();
    let (resource, name, sub) = match rest {
        [r] => (*r, "", ""),
        [r, n] => (*r, *n, ""),
        [r, n, sub] => (*r, *n, *sub),
        _ => return None,
    };
    Some([s(verb), s(group), s(resource), s(sub), s(ns), s(name)])
}

/// The API path of an object: `/api/v1/namespaces/NS/configmaps/NAME`.
fn object_path(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    // The kind's resource as discovery names it (`authorizationpolicies`).
    let kind = obj["kind"].as_str().unwrap_or_default();
    let plural = DISCOVERY
        .iter()
        .filter(|(gv, _)| *gv == api_version)
        .flat_map(|(_, resources)| resources.iter())
        .find(|(_, k, _)| *k == kind)
        .map(|(plural, _, _)| plural.to_string())
        .unwrap_or_else(|| format!("{}s", kind.to_lowercase()));
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{base}/namespaces/{ns}/{plural}/{name}"),
        None => format!("{base}/{plural}/{name}"),
    }
}

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// Whether `obj`'s labels satisfy an equality selector (`k=v,k2=v2`, or
/// `k!=v`, or a bare `k` for "has the label"), as `kubectl get -l` sends it.
fn selects(obj: &Value, selector: &str) -> bool {
    let labels = &obj["metadata"]["labels"];
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k].as_str() == Some(v.trim_start_matches('='))
        } else {
            labels.get(term).is_some()
        }
    })
}

/// The resources the fake's discovery documents list, by group version:
/// (plural, kind, namespaced). What the chart and the tests' workloads use,
/// so that kubectl can map every object `linkerd install` prints.
/// A resource in discovery: plural, kind, namespaced.
type Resource = (&'static str, &'static str, bool);

const DISCOVERY: &[(&str, &[Resource])] = &[
    (
        "v1",
        &[
            ("namespaces", "Namespace", false),
            ("nodes", "Node", false),
            ("pods", "Pod", true),
            ("services", "Service", true),
            ("configmaps", "ConfigMap", true),
            ("secrets", "Secret", true),
            ("serviceaccounts", "ServiceAccount", true),
            ("replicationcontrollers", "ReplicationController", true),
        ],
    ),
    (
        "apps/v1",
        &[
            ("deployments", "Deployment", true),
            ("statefulsets", "StatefulSet", true),
            ("daemonsets", "DaemonSet", true),
            ("replicasets", "ReplicaSet", true),
        ],
    ),
    (
        "batch/v1",
        &[("jobs", "Job", true), ("cronjobs", "CronJob", true)],
    ),
    (
        "rbac.authorization.k8s.io/v1",
        &[
            ("clusterroles", "ClusterRole", false),
            ("clusterrolebindings", "ClusterRoleBinding", false),
            ("roles", "Role", true),
            ("rolebindings", "RoleBinding", true),
        ],
    ),
    (
        "admissionregistration.k8s.io/v1",
        &[(
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
        )],
    ),
    (
        "policy/v1",
        &[("poddisruptionbudgets", "PodDisruptionBudget", true)],
    ),
    (
        "apiextensions.k8s.io/v1",
        &[(
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        )],
    ),
    (
        "discovery.k8s.io/v1",
        &[("endpointslices", "EndpointSlice", true)],
    ),
    (
        "authentication.k8s.io/v1",
        &[("tokenreviews", "TokenReview", false)],
    ),
    (
        "authorization.k8s.io/v1",
        &[
            ("selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
            ("subjectaccessreviews", "SubjectAccessReview", false),
        ],
    ),
    (
        "apiregistration.k8s.io/v1",
        &[("apiservices", "APIService", false)],
    ),
    // The chart's CRDs' kinds. A real API server serves them once their
    // CRD is established; this one always does.
    (
        "policy.linkerd.io/v1beta3",
        &[
            ("servers", "Server", true),
            ("httproutes", "HTTPRoute", true),
        ],
    ),
    (
        "linkerd.io/v1alpha2",
        &[("serviceprofiles", "ServiceProfile", true)],
    ),
    (
        "policy.linkerd.io/v1alpha1",
        &[
            ("authorizationpolicies", "AuthorizationPolicy", true),
            ("meshtlsauthentications", "MeshTLSAuthentication", true),
            ("networkauthentications", "NetworkAuthentication", true),
        ],
    ),
];

/// The legacy (non-aggregated) discovery documents kubectl reads to map
/// kinds to paths: `/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION`.
fn discovery(path: &str) -> Option<Value> {
    if path == "/api" {
        return Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }));
    }
    if path == "/apis" {
        // A group's versions, in the order listed: the first is preferred.
        let mut groups: Vec<(&str, Vec<Value>)> = Vec::new();
        for (group, version) in DISCOVERY.iter().filter_map(|(gv, _)| gv.split_once('/')) {
            let v = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, versions)) => versions.push(v),
                None => groups.push((group, vec![v])),
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(group, versions)| {
                json!({"name": group, "preferredVersion": versions[0], "versions": versions})
            })
            .collect();
        return Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
    }
    let gv = path
        .strip_prefix("/api/")
        .or_else(|| path.strip_prefix("/apis/"))?;
    let (_, resources) = DISCOVERY.iter().find(|(g, _)| *g == gv)?;
    let resources: Vec<Value> = resources
        .iter()
        .map(|(plural, kind, namespaced)| {
            json!({
                "name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Whether `path` names a collection (`/api/v1/configmaps`,
/// `/apis/G/V/namespaces/NS/R`), which lists as empty when nothing is in it.
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["api", _, _]
            | ["apis", _, _, _]
            | ["api", _, "namespaces", _, _]
            | ["apis", _, _, "namespaces", _, _]
    )
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake API");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            server_version: (1, 33),
            ..State::default()
        }));
        let api = Self { addr, state };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let api = api.clone();
                        async move {
                            let aggregated = api
                                .state
                                .lock()
                                .unwrap()
                                .aggregated
                                .iter()
                                .find(|a| req.uri().path().starts_with(a.prefix.as_str()))
                                .cloned();
                            if let Some(a) = aggregated {
                                return Ok::<_, Infallible>(api.proxy_aggregated(a, req).await);
                            }
                            if req.uri().path().ends_with("/portforward") {
                                return Ok::<_, Infallible>(api.portforward(req));
                            }
                            if req.method() == http::Method::POST {
                                let path = req.uri().path().to_string();
                                let body =
                                    req.into_body().collect().await.map(|b| b.to_bytes()).ok();
                                if path == TOKEN_REVIEWS {
                                    let delay = api.state.lock().unwrap().review_delay;
                                    tokio::time::sleep(delay).await;
                                }
                                return Ok::<_, Infallible>(match path.as_str() {
                                    TOKEN_REVIEWS => api.token_review(body),
                                    ACCESS_REVIEWS => api.access_review(body),
                                    SUBJECT_ACCESS_REVIEWS => api.subject_access_review(body),
                                    _ => api.create(&path, body),
                                });
                            }
                            Ok::<_, Infallible>(api.handle(req))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        api
    }

    /// A kubeconfig that points at this server.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\ncurrent-context: fake\n",
            self.addr
        );
        std::fs::write(&path, yaml).expect("write kubeconfig");
        path
    }

    /// Makes the API hold what Kubernetes would for `topology`, sending the
    /// differences to open watches as ADDED, MODIFIED and DELETED events.
    pub fn set_topology(&self, topology: &Topology) {
        let next = BTreeMap::from([
            (KINDS[0].0, to_json(objects::services(topology))),
            (KINDS[1].0, to_json(objects::endpoint_slices(topology))),
            (KINDS[2].0, to_json(objects::pods(topology))),
        ]);
        let (services, slices, pods) = (KINDS[0].0, KINDS[1].0, KINDS[2].0);
        let mut state = self.state.lock().unwrap();
        // In Kubernetes a pod exists before a slice lists it, and leaves the
        // slices before it is gone: additions go pods first, removals last.
        for path in [pods, services, slices] {
            state.apply(path, &next[path]);
        }
        for path in [slices, services, pods] {
            state.remove_missing(path, &next[path]);
        }
    }

    /// Adds (or replaces) an object: a Namespace, a ConfigMap, anything
    /// `linkerd install` renders; GETs of it and lists of its kind answer
    /// with it. A Pod joins the topology's pods (lists, watches,
    /// port-forwards).
    pub fn put(&self, mut obj: Value) {
        let mut state = self.state.lock().unwrap();
        if obj["kind"] == "Pod" {
            let k = key(&obj);
            let exists = state
                .objects
                .get(KINDS[2].0)
                .is_some_and(|m| m.contains_key(&k));
            let event = if exists { "MODIFIED" } else { "ADDED" };
            state.change(KINDS[2].0, event, k, obj);
            return;
        }
        state.version += 1;
        obj["metadata"]["resourceVersion"] = json!(state.version.to_string());
        obj["metadata"]["uid"] = json!(format!("uid-{}", state.version));
        // The aggregation layer's verdict, which a real API server reaches by
        // calling the service: here, available.
        if obj["kind"] == "APIService" && obj["status"].is_null() {
            obj["status"] = json!({"conditions": [{
                "type": "Available", "status": "True", "reason": "Passed",
                "message": "all checks passed",
            }]});
        }
        let path = object_path(&obj);
        let kind = match state.others.insert(path.clone(), obj.clone()) {
            Some(_) => "MODIFIED",
            None => "ADDED",
        };
        state.other_change(path, kind, obj);
    }

    /// What `kubectl apply` of `objects` and the Deployments' controllers
    /// would make: every object, and a running, ready pod per Deployment.
    pub fn apply(&self, objects: &[Value]) -> Vec<Value> {
        for obj in objects {
            self.put(obj.clone());
            if obj["kind"] == "Deployment" {
                self.put(running_pod(obj, 0));
            }
        }
        objects.to_vec()
    }

    /// Adds or replaces one Service, EndpointSlice or Pod, as one write of
    /// a controller would: one watch event (ADDED or MODIFIED), without
    /// comparing the whole topology (the scale benchmark's churn).
    pub fn upsert(&self, obj: Value) {
        let collection = topology_collection(&obj);
        let mut state = self.state.lock().unwrap();
        let k = key(&obj);
        let exists = state
            .objects
            .get(collection)
            .is_some_and(|m| m.contains_key(&k));
        let event = if exists { "MODIFIED" } else { "ADDED" };
        state.change(collection, event, k, obj);
    }

    /// Deletes one Service, EndpointSlice or Pod: one DELETED event.
    pub fn remove(&self, obj: &Value) {
        let collection = topology_collection(obj);
        let mut state = self.state.lock().unwrap();
        let k = key(obj);
        if let Some(old) = state
            .objects
            .get(collection)
            .and_then(|m| m.get(&k))
            .cloned()
        {
            state.change(collection, "DELETED", k, old);
        }
    }

    /// Removes an object `put` added (by its apiVersion, kind and name).
    pub fn delete(&self, obj: &Value) {
        let mut state = self.state.lock().unwrap();
        if obj["kind"] == "Pod" {
            let k = key(obj);
            state.change(KINDS[2].0, "DELETED", k, obj.clone());
            return;
        }
        let path = object_path(obj);
        if let Some(mut gone) = state.others.remove(&path) {
            state.version += 1;
            gone["metadata"]["resourceVersion"] = json!(state.version.to_string());
            state.other_change(path, "DELETED", gone);
        }
    }

    /// Holds the custom resources and namespaces of a topology file's YAML
    /// (`servers`, `httpRoutes`, `authorizationPolicies`,
    /// `meshTLSAuthentications`, `networkAuthentications`, `serviceProfiles`,
    /// `namespaces`) as the API would: what is new added, what changed
    /// modified, what is gone deleted, each seen by watches.
    pub fn set_resources(&self, yaml: &str) {
        let doc: Value = serde_saphyr::from_str(yaml).expect("the topology is YAML");
        let mut wanted: Vec<Value> = Vec::new();
        for key in [
            "servers",
            "httpRoutes",
            "authorizationPolicies",
            "meshTLSAuthentications",
            "networkAuthentications",
            "serviceProfiles",
        ] {
            wanted.extend(doc[key].as_array().cloned().unwrap_or_default());
        }
        for ns in doc["namespaces"].as_array().cloned().unwrap_or_default() {
            wanted.push(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns["name"], "annotations": ns["annotations"]},
            }));
        }
        const KINDS_HELD: [&str; 7] = [
            "ServiceProfile",
            "Server",
            "HTTPRoute",
            "AuthorizationPolicy",
            "MeshTLSAuthentication",
            "NetworkAuthentication",
            "Namespace",
        ];
        let held: Vec<Value> = self
            .state
            .lock()
            .unwrap()
            .others
            .values()
            .filter(|o| KINDS_HELD.iter().any(|k| o["kind"] == *k))
            .cloned()
            .collect();
        for old in &held {
            if !wanted.iter().any(|w| object_path(w) == object_path(old)) {
                self.delete(old);
            }
        }
        for obj in wanted {
            let same = held.iter().any(|h| {
                object_path(h) == object_path(&obj)
                    && h["spec"] == obj["spec"]
                    && h["metadata"]["annotations"] == obj["metadata"]["annotations"]
            });
            if !same {
                self.put(obj);
            }
        }
    }

    /// Creates an object POSTed to its collection, as `kubectl apply` and
    /// `create` do: 201 with the object, 409 when it exists.
    fn create(&self, path: &str, body: Option<Bytes>) -> Response<Body> {
        let Some(mut obj) = body.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", "the body is not a JSON object"),
            );
        };
        {
            let mut state = self.state.lock().unwrap();
            state.requests.push(format!("POST {path}"));
            if state.down {
                return outage();
            }
        }
        if !is_collection(path) || !obj.is_object() {
            return json_response(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", &format!("no collection {path}")),
            );
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if let Some(i) = parts.iter().position(|p| *p == "namespaces")
            && parts.len() == i + 3
        {
            obj["metadata"]["namespace"] = json!(parts[i + 1]);
        }
        let wanted = object_path(&obj);
        if wanted.rsplit_once('/').map(|(c, _)| c) != Some(path) {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(
                    400,
                    "BadRequest",
                    &format!("a {} does not belong in {path}", obj["kind"]),
                ),
            );
        }
        let exists = {
            let state = self.state.lock().unwrap();
            state.others.contains_key(&wanted)
                || (obj["kind"] == "Pod"
                    && state
                        .objects
                        .get(KINDS[2].0)
                        .is_some_and(|m| m.contains_key(&key(&obj))))
        };
        if exists {
            return json_response(
                StatusCode::CONFLICT,
                &status(409, "AlreadyExists", &format!("{wanted} already exists")),
            );
        }
        self.put(obj);
        let state = self.state.lock().unwrap();
        let stored = state.others.get(&wanted).cloned().or_else(|| {
            state
                .objects
                .get(KINDS[2].0)
                .and_then(|m| m.values().find(|o| object_path(o) == wanted).cloned())
        });
        json_response(StatusCode::CREATED, &stored.unwrap_or(Value::Null))
    }

    /// Makes SelfSubjectAccessReviews for `verb` on `resource` (a plural,
    /// `secrets`) answer "not allowed"; everything else is allowed.
    pub fn deny(&self, verb: &str, resource: &str) {
        let mut state = self.state.lock().unwrap();
        state.denied.push((verb.to_string(), resource.to_string()));
    }

    /// Lets `user` do `verb` on every resource of API `group`.
    pub fn grant(&self, user: &str, verb: &str, group: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .grants
            .push((user.to_string(), verb.to_string(), group.to_string()));
    }

    fn allowed(&self, user: &str, verb: &str, group: &str) -> bool {
        user == ADMIN
            || self
                .state
                .lock()
                .unwrap()
                .grants
                .iter()
                .any(|(u, v, g)| u == user && v == verb && g == group)
    }

    /// Serves an aggregated API under `a.prefix`.
    pub fn aggregate(&self, a: Aggregated) {
        self.state.lock().unwrap().aggregated.push(Arc::new(a));
    }

    /// Every SubjectAccessReview's spec so far.
    pub fn subject_reviews(&self) -> Vec<Value> {
        self.state.lock().unwrap().subject_reviews.clone()
    }

    /// Answers a SubjectAccessReview from the grants.
    fn subject_access_review(&self, body: Option<Bytes>) -> Response<Body> {
        let Some(mut review) = body.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", "not a SubjectAccessReview"),
            );
        };
        let spec = review["spec"].clone();
        self.state
            .lock()
            .unwrap()
            .subject_reviews
            .push(spec.clone());
        let attrs = &spec["resourceAttributes"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let allowed = self.allowed(
            &text(&spec["user"]),
            &text(&attrs["verb"]),
            &text(&attrs["group"]),
        );
        // RBAC gives no reason when nothing allows.
        review["status"] = json!({ "allowed": allowed });
        json_response(StatusCode::CREATED, &review)
    }

    /// A request under an aggregated API's prefix: the user's RBAC, then
    /// the upstream's answer, streamed.
    async fn proxy_aggregated(&self, a: Arc<Aggregated>, req: Request<Incoming>) -> Response<Body> {
        let user = req
            .headers()
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(ADMIN)
            .to_string();
        let path = req.uri().path().to_string();
        self.state
            .lock()
            .unwrap()
            .requests
            .push(format!("{} {path} as {user}", req.method()));
        if let Some([verb, group, resource, sub, ns, name]) = request_info(req.method(), &path)
            && !self.allowed(&user, &verb, &group)
        {
            // The API server's own wording.
            let what = match name.as_str() {
                "" => format!("{resource}.{group} is forbidden"),
                n => format!("{resource}.{group} {n:?} is forbidden"),
            };
            let res = match sub.as_str() {
                "" => resource.clone(),
                s => format!("{resource}/{s}"),
            };
            let scope = match ns.as_str() {
                "" => "at the cluster scope".to_string(),
                n => format!("in the namespace {n:?}"),
            };
            let message = format!(
                "{what}: User {user:?} cannot {verb} resource {res:?} in API group {group:?} {scope}"
            );
            return json_response(StatusCode::FORBIDDEN, &status(403, "Forbidden", &message));
        }
        let upstream = async {
            let tcp = tokio::net::TcpStream::connect(a.upstream).await?;
            let name = rustls::pki_types::ServerName::try_from(a.server_name.clone())
                .map_err(std::io::Error::other)?;
            let tls = a.tls().connect(name, tcp).await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut out = Request::builder()
                .method(parts.method)
                .uri(parts.uri.path());
            if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
                out = out.header(http::header::CONTENT_TYPE, ct);
            }
            let out = out
                .header("x-remote-user", user.as_str())
                .header("x-remote-group", "system:authenticated")
                .body(Full::new(body))
                .map_err(std::io::Error::other)?;
            sender
                .send_request(out)
                .await
                .map_err(std::io::Error::other)
        };
        let rsp = match upstream.await {
            Ok(rsp) => rsp,
            Err(e) => {
                let message = format!("error trying to reach service: {e}");
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &status(503, "ServiceUnavailable", &message),
                );
            }
        };
        let (parts, mut body) = rsp.into_parts();
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data()
                    && tx.send(data).is_err()
                {
                    return;
                }
            }
        });
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            |b| Ok::<_, Infallible>(Frame::data(b)),
        );
        let mut out = Response::new(StreamBody::new(stream).boxed());
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        out
    }

    /// Sets the Kubernetes version `/version` reports.
    pub fn set_server_version(&self, major: u32, minor: u32) {
        self.state.lock().unwrap().server_version = (major, minor);
    }

    /// Answers a SelfSubjectAccessReview: allowed unless `deny` said not.
    fn access_review(&self, body: Option<Bytes>) -> Response<Body> {
        let mut state = self.state.lock().unwrap();
        state.requests.push(format!("POST {ACCESS_REVIEWS}"));
        if state.down {
            return outage();
        }
        let Some(mut review) = body.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", "not a SelfSubjectAccessReview"),
            );
        };
        let attrs = &review["spec"]["resourceAttributes"];
        let verb = attrs["verb"].as_str().unwrap_or_default();
        let resource = attrs["resource"].as_str().unwrap_or_default();
        let denied = state.denied.iter().any(|(v, r)| v == verb && r == resource);
        review["status"] = if denied {
            json!({"allowed": false, "reason": format!("RBAC: {verb} {resource} is not allowed")})
        } else {
            json!({"allowed": true})
        };
        json_response(StatusCode::CREATED, &review)
    }

    /// Makes TokenReviews authenticate `token` as `username` (e.g.
    /// `system:serviceaccount:emojivoto:web`) for any audience asked.
    pub fn add_token(&self, token: &str, username: &str) {
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token.to_string(), username.to_string());
    }

    /// Makes every TokenReview take `delay` before it is answered.
    pub fn delay_token_reviews(&self, delay: Duration) {
        self.state.lock().unwrap().review_delay = delay;
    }

    /// The audiences of every TokenReview so far.
    pub fn reviewed_audiences(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().reviewed_audiences.clone()
    }

    /// Answers a TokenReview as the API server does: the review echoed back
    /// with a status saying whether, and as whom, the token authenticated.
    fn token_review(&self, body: Option<Bytes>) -> Response<Body> {
        let mut state = self.state.lock().unwrap();
        state.requests.push(format!("POST {TOKEN_REVIEWS}"));
        if state.down {
            return outage();
        }
        let Some(mut review) = body.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", "not a TokenReview"),
            );
        };
        let token = review["spec"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let audiences: Vec<String> = review["spec"]["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        state.reviewed_audiences.push(audiences.clone());
        review["status"] = match state.tokens.get(&token) {
            Some(user) => json!({
                "authenticated": true,
                "user": {"username": user},
                "audiences": audiences,
            }),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        json_response(StatusCode::CREATED, &review)
    }

    /// Forgets the event history and ends every watch, as an API server
    /// restart after compaction would: clients resuming get 410 Gone.
    pub fn expire_watches(&self) {
        let mut state = self.state.lock().unwrap();
        state.history.clear();
        state.other_history.clear();
        state.other_watchers.clear();
        // The store's revision moves on, so a fresh list resumes past the floor.
        state.version += 1;
        state.floor = state.version;
        state.watchers.clear();
    }

    /// Starts or ends an outage: every request gets 503 and open watches end.
    pub fn set_down(&self, down: bool) {
        let mut state = self.state.lock().unwrap();
        state.down = down;
        if down {
            state.watchers.clear();
            state.other_watchers.clear();
        }
    }

    /// The request lines seen so far (method, path and query).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let mut state = self.state.lock().unwrap();
        state
            .requests
            .push(format!("{} {}", req.method(), req.uri()));
        if state.down {
            return outage();
        }
        let selector = query
            .get("labelSelector")
            .map(|s| percent_decode(s))
            .unwrap_or_default();
        if path == "/version" {
            let (major, minor) = state.server_version;
            return json_response(
                StatusCode::OK,
                &json!({
                    "major": major.to_string(), "minor": minor.to_string(),
                    "gitVersion": format!("v{major}.{minor}.0"), "gitCommit": "0",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
                }),
            );
        }
        if let Some(doc) = discovery(&path) {
            return json_response(StatusCode::OK, &doc);
        }
        if let Some(obj) = state.others.get(&path) {
            return json_response(StatusCode::OK, obj);
        }
        let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let since: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let listed: Vec<&Value> = state
            .others
            .iter()
            .filter(|(p, _)| in_collection(p, &path))
            .map(|(_, o)| o)
            .collect();
        // A watch on a collection of other objects: changes since the
        // version asked, then each as it comes.
        let resource = path.rsplit('/').next().unwrap_or_default();
        let topology_kind = KINDS
            .iter()
            .any(|(p, _, _)| p.ends_with(&format!("/{resource}")));
        if watching && is_collection(&path) && !topology_kind {
            let missed = state
                .other_history
                .iter()
                .filter(|(v, p, _)| *v > since && in_collection(p, &path))
                .map(|(_, _, e)| e);
            let (tx, rsp) = watch_stream(since, state.floor, missed);
            if let Some(tx) = tx {
                state.other_watchers.push((path.clone(), tx));
            }
            return rsp;
        }
        let in_collection = listed;
        if let Some(first) = in_collection.first() {
            let list = json!({
                "kind": format!("{}List", first["kind"].as_str().unwrap_or_default()),
                "apiVersion": first["apiVersion"],
                "metadata": {"resourceVersion": state.version.to_string()},
                "items": in_collection.iter().filter(|o| selects(o, &selector)).collect::<Vec<_>>(),
            });
            return json_response(StatusCode::OK, &list);
        }
        // A namespaced list of pods (`kubectl get pods -n NS -l K=V`).
        if let Some(ns) = path
            .strip_prefix("/api/v1/namespaces/")
            .and_then(|rest| rest.strip_suffix("/pods"))
        {
            let items: Vec<Value> = state
                .objects
                .get("/api/v1/pods")
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|p| p["metadata"]["namespace"] == ns)
                .filter(|p| selects(p, &selector))
                .cloned()
                .collect();
            let list = json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": state.version.to_string()},
                "items": items,
            });
            return json_response(StatusCode::OK, &list);
        }
        let Some((collection, list_kind, api_version)) = KINDS.iter().find(|(p, _, _)| *p == path)
        else {
            if is_collection(&path) {
                let list = json!({
                    "kind": "List",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": state.version.to_string()},
                    "items": [],
                });
                return json_response(StatusCode::OK, &list);
            }
            return json_response(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", &format!("no route {path}")),
            );
        };
        if watching {
            let missed = state
                .history
                .iter()
                .filter(|(v, c, _)| *v > since && c == collection)
                .map(|(_, _, e)| e);
            let (tx, rsp) = watch_stream(since, state.floor, missed);
            if let Some(tx) = tx {
                state.watchers.push((collection, tx));
            }
            return rsp;
        }
        let items: Vec<Value> = state
            .objects
            .get(collection)
            .map(|m| {
                m.values()
                    .filter(|o| selects(o, &selector))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let list = json!({
            "kind": list_kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": state.version.to_string()},
            "items": items,
        });
        json_response(StatusCode::OK, &list)
    }
}

impl FakeApi {
    /// `pods/NAME/portforward` as the API server serves it: a WebSocket with
    /// the `v4.channel.k8s.io` framing (per port a data and an error channel,
    /// each opened with the port number), relayed to the pod's IP. One port.
    fn portforward(&self, mut req: Request<Incoming>) -> Response<Body> {
        use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role};
        let path = req.uri().path().to_string();
        self.state
            .lock()
            .unwrap()
            .requests
            .push(format!("{} {}", req.method(), req.uri()));
        let pod = path
            .strip_prefix("/api/v1/namespaces/")
            .and_then(|rest| rest.strip_suffix("/portforward"))
            .and_then(|rest| rest.split_once("/pods/"));
        let port: Option<u16> = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("ports="))
                .and_then(|p| p.parse().ok())
        });
        let ip = pod.and_then(|(ns, name)| {
            let state = self.state.lock().unwrap();
            let obj = state
                .objects
                .get("/api/v1/pods")?
                .get(&(ns.to_string(), name.to_string()))?;
            obj["status"]["podIP"]
                .as_str()?
                .parse::<std::net::IpAddr>()
                .ok()
        });
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| derive_accept_key(k.as_bytes()));
        let (Some(ip), Some(port), Some(accept)) = (ip, port, key) else {
            return json_response(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", "no such pod, port or upgrade"),
            );
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            relay_port(ws, SocketAddr::new(ip, port)).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", accept)
            .header("sec-websocket-protocol", "v4.channel.k8s.io")
            .body(BodyExt::boxed(Full::new(Bytes::new())))
            .unwrap()
    }
}

/// Relays channel 0 of a port-forward WebSocket to `target` and back.
async fn relay_port<S>(ws: tokio_tungstenite::WebSocketStream<S>, target: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut sink, mut stream) = ws.split();
    let port = target.port().to_le_bytes();
    for ch in [0u8, 1] {
        let opening = Bytes::from(vec![ch, port[0], port[1]]);
        if sink.send(Message::Binary(opening)).await.is_err() {
            return;
        }
    }
    let Ok(tcp) = tokio::net::TcpStream::connect(target).await else {
        let error = Bytes::from([&[1u8][..], b"connection refused"].concat());
        let _ = sink.send(Message::Binary(error)).await;
        return;
    };
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let upstream = async {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match &msg {
                Message::Binary(b) if b.len() > 1 && b[0] == 0 => &b[1..],
                Message::Close(_) => break,
                _ => continue,
            };
            if to_pod.write_all(data).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_pod.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf[0] = 0;
                    let frame = Bytes::copy_from_slice(&buf[..=n]);
                    if sink.send(Message::Binary(frame)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(upstream, downstream);
}

/// `%2F` and friends in a query value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl State {
    /// Adds and modifies objects to match `wanted`.
    fn apply(&mut self, path: &'static str, wanted: &[Value]) {
        for obj in wanted {
            let k = key(obj);
            let event = match self.objects.get(path).and_then(|m| m.get(&k)) {
                None => "ADDED",
                Some(old) if without_version(old) != without_version(obj) => "MODIFIED",
                Some(_) => continue,
            };
            self.change(path, event, k, obj.clone());
        }
    }

    /// Deletes objects that `wanted` no longer has.
    fn remove_missing(&mut self, path: &'static str, wanted: &[Value]) {
        let keep: std::collections::BTreeSet<(String, String)> = wanted.iter().map(key).collect();
        let gone: Vec<((String, String), Value)> = self
            .objects
            .get(path)
            .into_iter()
            .flatten()
            .filter(|(k, _)| !keep.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, obj) in gone {
            self.change(path, "DELETED", k, obj);
        }
    }

    fn change(
        &mut self,
        collection: &'static str,
        kind: &str,
        key: (String, String),
        mut obj: Value,
    ) {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = Value::String(self.version.to_string());
        let event = json!({"type": kind, "object": obj});
        if kind == "DELETED" {
            self.objects.entry(collection).or_default().remove(&key);
        } else {
            self.objects.entry(collection).or_default().insert(key, obj);
        }
        self.watchers
            .retain(|(c, tx)| *c != collection || tx.send(line(&event)).is_ok());
        self.history.push((self.version, collection, event));
    }
}

/// The collection a topology object (Service, EndpointSlice, Pod) is in.
fn topology_collection(obj: &Value) -> &'static str {
    let list = format!("{}List", obj["kind"].as_str().unwrap_or_default());
    KINDS
        .iter()
        .find(|(_, kind, _)| *kind == list)
        .map(|(path, _, _)| *path)
        .unwrap_or_else(|| panic!("not a topology object: {obj}"))
}

fn key(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

fn without_version(obj: &Value) -> Value {
    let mut obj = obj.clone();
    obj["metadata"]["resourceVersion"] = Value::Null;
    obj
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

/// A watch's answer, a stream of JSON lines: `410 Gone` when `since` is
/// older than the history kept, else the `missed` events, then whatever
/// the returned sender is given.
fn watch_stream<'a>(
    since: u64,
    floor: u64,
    missed: impl Iterator<Item = &'a Value>,
) -> (Option<mpsc::UnboundedSender<Bytes>>, Response<Body>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = if since < floor {
        let gone =
            json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")});
        let _ = tx.send(line(&gone));
        None
    } else {
        for event in missed {
            let _ = tx.send(line(event));
        }
        Some(tx)
    };
    let frames = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        |b| Ok::<_, Infallible>(Frame::data(b)),
    );
    let rsp = Response::builder()
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap();
    (tx, rsp)
}

fn line(v: &Value) -> Bytes {
    let mut s = serde_json::to_vec(v).unwrap();
    s.push(b'\n');
    Bytes::from(s)
}

/// What every request gets during an API outage.
fn outage() -> Response<Body> {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &status(503, "ServiceUnavailable", "outage"),
    )
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap())).boxed())
        .unwrap()
}

fn to_json<T: serde::Serialize>(objects: Vec<T>) -> Vec<Value> {
    objects
        .iter()
        .map(|o| serde_json::to_value(o).expect("objects serialise"))
        .collect()
}

/// The pod a workload's controller would start from its template, running
/// with every container ready (and its native sidecars started).
pub fn running_pod(workload: &Value, n: usize) -> Value {
    let name = workload["metadata"]["name"].as_str().unwrap();
    let namespace = workload["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let template = &workload["spec"]["template"];
    let statuses = |key: &str, started: bool| -> Vec<Value> {
        template["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let sidecar = c["restartPolicy"] == "Always";
                let ready = !started || sidecar;
                json!({
                    "name": c["name"], "ready": ready, "restartCount": 0,
                    "image": c["image"], "imageID": "",
                    "state": if ready { json!({"running": {}}) } else { json!({"terminated": {"exitCode": 0}}) },
                })
            })
            .collect()
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-5d8f9-{n}"),
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
        },
        "spec": template["spec"],
        "status": {
            "phase": "Running",
            "podIP": format!("127.0.0.{}", 100 + n),
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": statuses("containers", false),
            "initContainerStatuses": statuses("initContainers", true),
        },
    })
}
