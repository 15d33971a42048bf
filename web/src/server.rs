//! The dashboard's HTTP server: the Host check first, then the UI's files,
//! the JSON API and Grafana.

use crate::{api, assets, grafana::Grafana};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family};
use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};
use tokio::net::TcpListener;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = BoxBody<Bytes, BoxError>;

pub(crate) struct Web {
    pub(crate) api: api::PublicApi,
    pub(crate) grafana: Option<Grafana>,
    pub(crate) hosts: regex::Regex,
    pub(crate) controller_namespace: String,
    pub(crate) checks: crate::checks::Checks,
    pub(crate) tap_via: api::TapVia,
    pub(crate) metrics: Metrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Default)]
pub(crate) struct Metrics {
    requests: Family<RouteLabels, Counter>,
}

impl Metrics {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "web_http_requests",
            "Requests the dashboard answered, by what they asked for",
            self.requests.clone(),
        );
    }

    fn count(&self, route: &'static str) {
        self.requests.get_or_create(&RouteLabels { route }).inc();
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    web: Arc<Web>,
    shutdown: impl Future<Output = ()>,
) {
    linkerd_admin::accept_until(listener, shutdown, move |stream, peer| {
        let web = web.clone();
        async move {
            let svc = service_fn(move |req| {
                let web = web.clone();
                async move { Ok::<_, Infallible>(handle(req, &web).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "dashboard connection failed");
            }
        }
    })
    .await;
}

pub(crate) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut rsp = Response::new(full(body.into()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut rsp = Response::new(full(value.to_string()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    rsp
}

/// Whether the request's Host is one the dashboard answers to. A request
/// without one (HTTP/1.0) names no host a rebinding page could have put there.
fn host_allowed(req: &Request<Incoming>, hosts: &regex::Regex) -> Result<(), String> {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("(not text)"))
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        None => Ok(()),
        Some(host) if hosts.is_match(host) => Ok(()),
        Some(host) => Err(host.to_string()),
    }
}

async fn handle(req: Request<Incoming>, web: &Web) -> Response<Body> {
    if let Err(host) = host_allowed(&req, &web.hosts) {
        web.metrics.count("refused-host");
        tracing::info!(host, "refused a request for another host");
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "It appears that you are trying to reach this service with a host of '{host}'.\n\
                 This does not match /{}/ and has been denied for security reasons.\n\
                 Please see https://linkerd.io/dns-rebinding for an explanation of what is happening and how to fix it.\n",
                web.hosts.as_str()
            ),
        );
    }
    let path = req.uri().path().to_string();
    if path == "/grafana" || path.starts_with("/grafana/") {
        web.metrics.count("grafana");
        return match &web.grafana {
            Some(grafana) => grafana.proxy(req).await,
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "This dashboard has no Grafana (linkerd-web runs without --grafana-addr).\n",
            ),
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard only answers GET\n",
        );
    }
    if let Some(route) = path.strip_prefix("/api/") {
        web.metrics.count("api");
        let query = req.uri().query().unwrap_or("").to_string();
        return api::handle(route, &query, web).await;
    }
    web.metrics.count("asset");
    assets::serve(&path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn linkerds_default_host_rule() {
        let hosts = regex::Regex::new(crate::DEFAULT_ENFORCED_HOST).unwrap();
        for ok in [
            "localhost",
            "localhost:50750",
            "127.0.0.1:8084",
            "[::1]:50750",
            "linkerd-web.linkerd.svc.cluster.local:8084",
            "linkerd-web.linkerd.svc",
        ] {
            assert!(hosts.is_match(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8084",
        ] {
            assert!(!hosts.is_match(refused), "{refused}");
        }
    }
}
