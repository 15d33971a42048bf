//! The proxy injector: an HTTPS mutating admission webhook (AdmissionReview
//! v1) that adds the proxy to pods created in namespaces or with pod templates
//! annotated `linkerd.io/inject: enabled`, with the same injection as
//! `linkerd inject --manual`.
//!
//! It never stands in a pod's way: whatever goes wrong (the API unreachable,
//! linkerd-config unreadable, a pod that cannot be injected) is logged and
//! counted, and the pod is admitted as it came. The webhook's failurePolicy
//! is Ignore for the same reason.

pub mod admission;

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
    },
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher::{self, watcher},
    },
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family};
use serde_json::Value;
use tokio::net::TcpListener;

use linkerd_chart::{Chart, Release, values};
use linkerd_inject::Injector;

/// AdmissionReviews are small; a pod spec is a few kilobytes.
const MAX_BODY: usize = 4 << 20;
/// Each API read may take this long; the API server gives the webhook 10s.
const API_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    skip: bool,
    reason: &'static str,
}

#[derive(Clone, Default)]
pub struct Metrics {
    requests: Counter,
    responses: Family<ResponseLabels, Counter>,
}

impl Metrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "proxy_inject_admission_requests",
            "AdmissionReviews received",
            self.requests.clone(),
        );
        registry.register(
            "proxy_inject_admission_responses",
            "AdmissionReviews answered, by whether the pod was injected and why not",
            self.responses.clone(),
        );
    }
}

/// What the webhook reads from the cluster: a namespace's annotations and the
/// installed values. A trait so that the decision can be tested without one.
pub trait Cluster: Send + Sync + 'static {
    fn namespace(&self, name: &str) -> impl Future<Output = Result<Value, ClusterError>> + Send;
    fn installed_values(&self) -> impl Future<Output = Result<Value, ClusterError>> + Send;
}

/// Why the webhook could not read what it needs from the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read {what}: no answer in {API_TIMEOUT:?}")]
    Timeout { what: String },
    #[error("{what} has no values")]
    NoValues { what: String },
    #[error(transparent)]
    Values(#[from] values::ValuesError),
    #[error("namespace {name} cannot be read as JSON: {source}")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The Kubernetes API, followed rather than asked: namespaces and
/// linkerd-config are watched, so an admission reads them from memory (no
/// API request per pod, and pods are still injected while the API is
/// unreachable). A namespace the cache has not seen yet (created a moment
/// ago) and a missing linkerd-config are read from the API, as before.
pub struct Kube {
    client: kube::Client,
    control_namespace: String,
    namespaces: Store<Namespace>,
    configs: Store<ConfigMap>,
    /// linkerd-config's values, parsed once per resourceVersion.
    parsed: std::sync::Mutex<Option<(Option<String>, Value)>>,
}

/// How long start-up waits for the caches' first lists before it serves
/// (reading from the API until they arrive).
const FIRST_LIST: Duration = Duration::from_secs(10);

impl Kube {
    pub async fn start(client: kube::Client, control_namespace: String) -> Self {
        let namespaces = follow(
            kube::Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        );
        // The Role grants linkerd-config alone, by name.
        let configs = follow(
            kube::Api::<ConfigMap>::namespaced(client.clone(), &control_namespace),
            watcher::Config::default().fields("metadata.name=linkerd-config"),
        );
        let ready = async {
            let _ = namespaces.wait_until_ready().await;
            let _ = configs.wait_until_ready().await;
        };
        if tokio::time::timeout(FIRST_LIST, ready).await.is_err() {
            tracing::warn!(
                "no first list of namespaces and linkerd-config yet; reading them from the API until there is"
            );
        }
        Kube {
            client,
            control_namespace,
            namespaces,
            configs,
            parsed: Default::default(),
        }
    }

    fn config_what(&self) -> String {
        format!("linkerd-config in namespace {}", self.control_namespace)
    }

    /// The values of `config`, parsed unless this version already was.
    fn values_of(&self, config: &ConfigMap) -> Result<Value, ClusterError> {
        let version = config.metadata.resource_version.clone();
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, values)) = &*parsed
            && *v == version
            && version.is_some()
        {
            return Ok(values.clone());
        }
        let text = config
            .data
            .as_ref()
            .and_then(|d| d.get("values"))
            .ok_or_else(|| ClusterError::NoValues {
                what: self.config_what(),
            })?;
        let values = values::from_yaml("linkerd-config's values", text)?;
        *parsed = Some((version, values.clone()));
        Ok(values)
    }
}

/// A reflector on `api`, its objects cached without `managedFields`.
fn follow<K>(api: kube::Api<K>, config: watcher::Config) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, config)
        .default_backoff()
        .modify(|o| o.meta_mut().managed_fields = None)
        .reflect(writer);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, kind = %K::kind(&()), "Kubernetes watch failed; retrying");
            }
        }
    });
    reader
}

async fn timed<T>(
    what: String,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(API_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(ClusterError::Api { what, source }),
        Err(_) => Err(ClusterError::Timeout { what }),
    }
}

impl Cluster for Kube {
    async fn namespace(&self, name: &str) -> Result<Value, ClusterError> {
        let cached = self.namespaces.get(&ObjectRef::new(name));
        let ns = match cached {
            Some(ns) => ns,
            None => {
                let api: kube::Api<Namespace> = kube::Api::all(self.client.clone());
                Arc::new(timed(format!("namespace {name}"), api.get(name)).await?)
            }
        };
        serde_json::to_value(&*ns).map_err(|source| ClusterError::Json {
            name: name.to_string(),
            source,
        })
    }

    async fn installed_values(&self) -> Result<Value, ClusterError> {
        let cached = self
            .configs
            .get(&ObjectRef::new("linkerd-config").within(&self.control_namespace));
        let config = match cached {
            Some(config) => config,
            None => {
                let api: kube::Api<ConfigMap> =
                    kube::Api::namespaced(self.client.clone(), &self.control_namespace);
                Arc::new(timed(self.config_what(), api.get("linkerd-config")).await?)
            }
        };
        self.values_of(&config)
    }
}

/// Why an AdmissionReview got no review back (a 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {}", one_line(.0))]
    Parse(#[source] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("the answer cannot be written: {0}")]
    Write(#[source] serde_json::Error),
}

/// serde's message quotes the body (an unknown variant, say), which may hold
/// line breaks: escaped, the error stays one line in the log and the
/// answer (the fuzzer found a variant with a newline in it).
fn one_line(e: &serde_json::Error) -> String {
    e.to_string()
        .chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            escaped
                .into_iter()
                .flatten()
                .chain((!c.is_control()).then_some(c))
        })
        .collect()
}

/// The review carrying `response`, as the API server reads it. kube-rs
/// writes the patch's bytes as an array of numbers (kube-rs/kube#1781);
/// the API's documented form, which Linkerd's injector sends, is base64.
fn answer(response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine as _;
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review())?;
    if let Some(patch) = patch {
        review["response"]["patch"] = base64::engine::general_purpose::STANDARD
            .encode(patch)
            .into();
    }
    serde_json::to_vec(&review)
}

pub struct Webhook<C> {
    cluster: C,
    chart: Arc<Chart>,
    release: Release,
    metrics: Metrics,
}

impl<C: Cluster> Webhook<C> {
    pub fn new(cluster: C, chart: Chart, control_namespace: String, metrics: Metrics) -> Self {
        Webhook {
            cluster,
            chart: Arc::new(chart),
            release: Release {
                name: "linkerd".into(),
                namespace: control_namespace,
            },
            metrics,
        }
    }

    /// Answers one AdmissionReview (the request body) with the review to
    /// send back. Always allows the pod; patches it when it is to be
    /// injected.
    pub async fn review(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        self.metrics.requests.inc();
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_slice(body).map_err(ReviewError::Parse)?;
        let request: AdmissionRequest<DynamicObject> =
            review.try_into().map_err(|_| ReviewError::NoRequest)?;
        let (outcome, warnings) = self.decide(&request).await;
        let mut response = AdmissionResponse::from(&request);
        let (skip, reason) = match outcome.and_then(|decision| match decision {
            admission::Decision::Inject { patch } => response
                .clone()
                .with_patch(patch)
                .map(|patched| (Some(patched), false, "injected"))
                .map_err(|e| format!("the patch cannot be written: {e}")),
            admission::Decision::Skip(reason) => Ok((None, true, reason)),
        }) {
            Ok((patched, skip, reason)) => {
                if let Some(patched) = patched {
                    response = patched;
                }
                (skip, reason)
            }
            Err(e) => {
                tracing::warn!(error = %e, "admitting the pod without its proxy");
                (true, "error")
            }
        };
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        tracing::info!(uid = %request.uid, skip, reason, "admission review");
        self.metrics
            .responses
            .get_or_create(&ResponseLabels { skip, reason })
            .inc();
        answer(response).map_err(ReviewError::Write)
    }

    async fn decide(
        &self,
        request: &AdmissionRequest<DynamicObject>,
    ) -> (Result<admission::Decision, String>, Vec<String>) {
        let pod = match admission::pod_of(request) {
            Ok(pod) => pod,
            Err(skip) => return (Ok(admission::Decision::Skip(skip)), Vec::new()),
        };
        let pod = &pod;
        let ns_name = request.namespace.as_deref().unwrap_or("default");
        let namespace = match self.cluster.namespace(ns_name).await {
            Ok(ns) => ns,
            Err(e) => return (Err(e.to_string()), Vec::new()),
        };
        if let Some(skip) = admission::skip(pod, &namespace) {
            return (Ok(admission::Decision::Skip(skip)), Vec::new());
        }
        let installed = match self.cluster.installed_values().await {
            Ok(v) => v,
            Err(e) => return (Err(e.to_string()), Vec::new()),
        };
        let values = match self.chart.values(installed) {
            Ok(v) => v,
            Err(e) => return (Err(format!("linkerd-config's values: {e}")), Vec::new()),
        };
        let injector = Injector::new(
            self.chart.clone(),
            values,
            self.release.clone(),
            format!("linkerd/proxy-injector {}", env!("CARGO_PKG_VERSION")),
        );
        match admission::inject(&injector, pod, &namespace) {
            Ok((patch, warnings)) => (Ok(admission::Decision::Inject { patch }), warnings),
            Err(e) => {
                let warning = format!("linkerd: the pod was admitted without its proxy: {e}");
                (Err(e), vec![warning])
            }
        }
    }
}

/// Serves the webhook over TLS until `shutdown` resolves.
pub async fn serve<C: Cluster>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    webhook: Arc<Webhook<C>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    linkerd_admin::accept_until(listener, shutdown, move |stream, peer| {
        let acceptor = acceptor.clone();
        let webhook = webhook.clone();
        async move {
            let Some(stream) = crate::tls::handshake(&acceptor, stream, peer).await else {
                return;
            };
            let svc = service_fn(move |req| {
                let webhook = webhook.clone();
                async move { Ok::<_, Infallible>(handle(req, &webhook).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "webhook connection failed");
            }
        }
    })
    .await;
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(body));
    *rsp.status_mut() = status;
    let content_type = if status == StatusCode::OK {
        "application/json"
    } else {
        "text/plain"
    };
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    rsp
}

async fn handle<C: Cluster>(req: Request<Incoming>, webhook: &Webhook<C>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"POST an AdmissionReview\n"),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}\n").into(),
            );
        }
    };
    match webhook.review(&body).await {
        Ok(answer) => reply(StatusCode::OK, answer.into()),
        Err(e) => reply(StatusCode::BAD_REQUEST, format!("{e}\n").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::ReviewError;

    /// Found by the admission_review fuzz target: serde's message quoted a
    /// line break from the body.
    #[test]
    fn a_body_that_does_not_parse_is_a_one_line_error() {
        let body = r#""C\nVs""#;
        let e = serde_json::from_str::<kube::core::admission::Operation>(body).unwrap_err();
        assert!(e.to_string().contains('\n'));
        let message = ReviewError::Parse(e).to_string();
        assert_eq!(
            message,
            "the body is not an AdmissionReview: unknown variant `C\\nVs`, expected one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT` at line 1 column 7"
        );
    }
}
