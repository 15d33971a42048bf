//! The dashboard's JSON API: what the UI asks, answered from the public API
//! in the shapes the CLI prints (`stat -o json` rows, `tap -o json` events),
//! so the page and `linkerd stat` show the same numbers.

use crate::server::{BoxError, Web, json};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use linkerd_format::{routes as routes_format, stat as stat_format, tap as tap_format};
use linkerd_proxy_api::public_api::{
    EdgesRequest, ListPodsRequest, ListServicesRequest, RoutesRequest, StatRangeRequest,
    StatSummaryRequest, VersionRequest, api_client::ApiClient, stat_summary_request::Outbound,
};
use linkerd_proxy_api::tap_controller::{
    Resource, TapRequest, api as tap_api, canonical_kind,
    tap_by_resource_client::TapByResourceClient,
};
use serde_json::{Value, json as j};
use std::collections::HashMap;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

use crate::server::Body;

/// A unary call to the public API may take this long (stat summaries ask
/// Prometheus several queries).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// A comment line keeps an idle event stream open through proxies.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Where the dashboard's taps go.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TapVia {
    Kubernetes,
    PublicApi,
}

pub(crate) struct PublicApi {
    addr: String,
    channel: Channel,
}

impl PublicApi {
    pub(crate) fn new(addr: &str) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| anyhow::anyhow!("--api-addr {addr:?} is not HOST:PORT"))?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(PublicApi {
            addr: addr.to_string(),
            channel,
        })
    }
}

/// Why a request could not be answered: the caller's mistake, or the
/// public API's.
enum Problem {
    Bad(String),
    Upstream(String),
}

impl Problem {
    fn response(self) -> Response<Body> {
        let (status, error) = match self {
            Problem::Bad(e) => (StatusCode::BAD_REQUEST, e),
            Problem::Upstream(e) => (StatusCode::BAD_GATEWAY, e),
        };
        json(status, &j!({ "error": error }))
    }
}

pub(crate) async fn handle(route: &str, query: &str, web: &Web) -> Response<Body> {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let answer = match route {
        "version" => version(web).await.map_err(Problem::Upstream),
        "config" => Ok(j!({
            "controllerNamespace": web.controller_namespace,
            "grafana": web.grafana.is_some(),
        })),
        "stat" => stat(web, &params).await,
        "stat_range" => stat_range(web, &params).await,
        "routes" => routes(web, &params).await,
        "edges" => edges(web, &params).await,
        "pods" => pods(web, &params).await,
        "services" => services(web, &params).await,
        "tap" => return tap(web, &params),
        "check" => Ok(crate::checks::run(web).await),
        _ => Err(Problem::Bad(format!("no API /api/{route}"))),
    };
    match answer {
        Ok(v) => json(StatusCode::OK, &v),
        Err(p) => p.response(),
    }
}

async fn call<T>(
    web: &Web,
    what: &str,
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Problem> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(rsp)) => Ok(rsp.into_inner()),
        Ok(Err(s))
            if s.code() == tonic::Code::InvalidArgument || s.code() == tonic::Code::NotFound =>
        {
            Err(Problem::Bad(s.message().to_string()))
        }
        Ok(Err(s)) => Err(Problem::Upstream(format!(
            "{what}: the public API at {} answered: {}",
            web.api.addr,
            s.message()
        ))),
        Err(_) => Err(Problem::Upstream(format!(
            "{what}: the public API at {} did not answer within {CALL_TIMEOUT:?}",
            web.api.addr
        ))),
    }
}

fn client(web: &Web) -> ApiClient<Channel> {
    ApiClient::new(web.api.channel.clone())
}

pub(crate) async fn version(web: &Web) -> Result<Value, String> {
    match call(web, "version", client(web).version(VersionRequest {})).await {
        Ok(v) => Ok(j!({"release": v.release, "metricsSource": v.metrics_source})),
        Err(Problem::Bad(e) | Problem::Upstream(e)) => Err(e),
    }
}

/// A kind as the UI names it, canonical; services and authorities too.
fn kind(name: &str) -> Result<&'static str, Problem> {
    canonical_kind(name)
        .or(match name {
            "service" | "svc" => Some("service"),
            "authority" | "au" => Some("authority"),
            _ => None,
        })
        .ok_or_else(|| Problem::Bad(format!("{name:?} is not a resource kind")))
}

fn required<'p>(params: &'p HashMap<String, String>, key: &str) -> Result<&'p str, Problem> {
    params
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| Problem::Bad(format!("{key} is required")))
}

/// `KIND/NAME` (or `KIND`) in `namespace`.
fn resource(spec: &str, namespace: &str) -> Result<Resource, Problem> {
    let (k, name) = spec.split_once('/').unwrap_or((spec, ""));
    let k = kind(k)?;
    Ok(Resource {
        r#type: k.to_string(),
        namespace: if k == "namespace" {
            String::new()
        } else {
            namespace.to_string()
        },
        name: name.to_string(),
    })
}

/// A resource's routes (its services' profiles, counted inbound), or with
/// `to` (a service) its calls to it: `linkerd routes -o json`'s rows.
async fn routes(web: &Web, params: &HashMap<String, String>) -> Result<Value, Problem> {
    let namespace = params.get("namespace").map(String::as_str).unwrap_or("");
    let target = resource(required(params, "resource")?, namespace)?;
    let to = params
        .get("to")
        .map(|spec| {
            resource(
                spec,
                params
                    .get("toNamespace")
                    .map(String::as_str)
                    .unwrap_or(namespace),
            )
        })
        .transpose()?;
    let outbound = to.is_some();
    let req = RoutesRequest {
        resource: Some(target),
        to,
        time_window: params.get("window").cloned().unwrap_or_else(|| "1m".into()),
    };
    let mut rows = call(web, "routes", client(web).routes(req)).await?.rows;
    routes_format::sort(&mut rows);
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| routes_format::row_json(r, outbound))
        .collect();
    Ok(j!({ "rows": rows }))
}

/// The stat request the parameters ask for: `kind` (and `name`) in
/// `namespace`, over `window`, with `to` or `from` (each with its own
/// namespace parameter, else `namespace`).
fn stat_request(params: &HashMap<String, String>) -> Result<StatSummaryRequest, Problem> {
    let namespace = params.get("namespace").map(String::as_str).unwrap_or("");
    let mut selector = resource(required(params, "kind")?, namespace)?;
    if let Some(name) = params.get("name") {
        selector.name = name.clone();
    }
    let window = params.get("window").map(String::as_str).unwrap_or("1m");
    let other = |key: &str, ns_key: &str| -> Result<Option<Resource>, Problem> {
        params
            .get(key)
            .map(|spec| {
                resource(
                    spec,
                    params.get(ns_key).map(String::as_str).unwrap_or(namespace),
                )
            })
            .transpose()
    };
    let outbound = match (other("to", "toNamespace")?, other("from", "fromNamespace")?) {
        (Some(to), None) => Some(Outbound::ToResource(to)),
        (None, Some(from)) => Some(Outbound::FromResource(from)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(Problem::Bad("give to or from, not both".into())),
    };
    Ok(StatSummaryRequest {
        selector: Some(selector),
        time_window: window.to_string(),
        outbound,
        skip_tcp_stats: false,
    })
}

async fn stat(web: &Web, params: &HashMap<String, String>) -> Result<Value, Problem> {
    let req = stat_request(params)?;
    let window = req.time_window.clone();
    let rsp = call(web, "stat", client(web).stat_summary(req)).await?;
    let secs = stat_format::window_seconds(&window);
    let rows: Vec<Value> = rsp
        .rows
        .iter()
        .filter_map(|r| stat_format::row_json(r, secs))
        .collect();
    Ok(j!({ "window": window, "rows": rows }))
}

/// The same selection as `stat`, over the last `range` seconds (300) every
/// `step` seconds (10): the charts' lines, each point the stats over
/// `window` ending then.
async fn stat_range(web: &Web, params: &HashMap<String, String>) -> Result<Value, Problem> {
    let number = |key: &str, default: u32| -> Result<u32, Problem> {
        params.get(key).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| Problem::Bad(format!("{key} {v:?} is not a number of seconds")))
        })
    };
    let req = StatRangeRequest {
        request: Some(stat_request(params)?),
        end: 0.0,
        range_seconds: number("range", 300)?,
        step_seconds: number("step", 10)?,
    };
    let rsp = call(web, "stat range", client(web).stat_range(req)).await?;
    let series: Vec<Value> = rsp
        .series
        .iter()
        .filter_map(stat_format::series_json)
        .collect();
    Ok(j!({
        "timestamps": rsp.timestamps,
        "series": series,
        "window": stat_format::window_seconds(
            params.get("window").map(String::as_str).unwrap_or("1m")
        ),
        "dataSince": (rsp.data_since > 0.0).then_some(rsp.data_since),
    }))
}

async fn edges(web: &Web, params: &HashMap<String, String>) -> Result<Value, Problem> {
    let namespace = params.get("namespace").map(String::as_str).unwrap_or("");
    let selector = resource(required(params, "kind")?, namespace)?;
    let rsp = call(
        web,
        "edges",
        client(web).edges(EdgesRequest {
            selector: Some(selector),
            time_window: params.get("window").cloned().unwrap_or_default(),
        }),
    )
    .await?;
    let end = |r: Option<&Resource>| {
        r.map_or(
            Value::Null,
            |r| j!({"kind": r.r#type, "namespace": r.namespace, "name": r.name}),
        )
    };
    let edges: Vec<Value> = rsp
        .edges
        .iter()
        .map(|e| {
            j!({
                "src": end(e.src.as_ref()),
                "dst": end(e.dst.as_ref()),
                "clientId": e.client_id,
                "serverId": e.server_id,
                "noTlsReason": e.no_tls_reason,
                "secured": !e.client_id.is_empty() || !e.server_id.is_empty(),
                // The caller's requests on the edge over the window.
                "success": e.stats.as_ref().and_then(stat_format::success_of),
                "rps": e.stats.as_ref().map(|s| s.request_rate),
            })
        })
        .collect();
    Ok(j!({ "edges": edges }))
}

async fn pods(web: &Web, params: &HashMap<String, String>) -> Result<Value, Problem> {
    let req = ListPodsRequest {
        namespace: params.get("namespace").cloned().unwrap_or_default(),
        selector: None,
    };
    let rsp = call(web, "pods", client(web).list_pods(req)).await?;
    let pods: Vec<Value> = rsp
        .pods
        .iter()
        .map(|p| {
            j!({
                "name": p.name, "namespace": p.namespace, "ip": p.ip,
                "ownerKind": p.owner_kind, "ownerName": p.owner_name,
                "serviceAccount": p.service_account, "meshed": p.meshed,
                "ready": p.ready, "identity": p.identity,
            })
        })
        .collect();
    Ok(j!({ "pods": pods }))
}

async fn services(web: &Web, params: &HashMap<String, String>) -> Result<Value, Problem> {
    let req = ListServicesRequest {
        namespace: params.get("namespace").cloned().unwrap_or_default(),
    };
    let rsp = call(web, "services", client(web).list_services(req)).await?;
    let services: Vec<Value> = rsp
        .services
        .iter()
        .map(|s| {
            j!({
                "name": s.name, "namespace": s.namespace,
                "endpoints": s.endpoints, "meshedEndpoints": s.meshed_endpoints,
            })
        })
        .collect();
    Ok(j!({ "services": services }))
}

/// Live tap as server-sent events: each event a `data:` line of Linkerd's
/// tap JSON; the stream's end or failure as an `end` or `error` event. It
/// stops, and so does the tap, when the page goes.
fn tap(web: &Web, params: &HashMap<String, String>) -> Response<Body> {
    let req = match tap_request(params) {
        Ok(r) => r,
        Err(p) => return p.response(),
    };
    let (channel, via) = (web.api.channel.clone(), web.tap_via);
    let addr = web.api.addr.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(256);
    tokio::spawn(async move {
        let send = |frame: String| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(Bytes::from(frame)))).await.is_ok() }
        };
        let opened = match via {
            TapVia::PublicApi => TapByResourceClient::new(channel)
                .tap(req)
                .await
                .map(|rsp| tap_api::AnyEvents::Grpc(rsp.into_inner()))
                .map_err(|s| format!("tap through {addr}: {}", s.message())),
            TapVia::Kubernetes => tap_through_kube(&req).await.map(tap_api::AnyEvents::Api),
        };
        let mut events = match opened {
            Ok(events) => events,
            Err(message) => {
                let error = j!({ "error": message });
                send(format!("event: error\ndata: {error}\n\n")).await;
                return;
            }
        };
        // Tells the page the tap is open before the first request comes.
        if !send("event: open\ndata: {}\n\n".into()).await {
            return;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            let frame = tokio::select! {
                e = events.next() => match e {
                    Ok(Some(e)) => format!("data: {}\n\n", tap_format::json(&e)),
                    Ok(None) => {
                        send("event: end\ndata: {}\n\n".into()).await;
                        return;
                    }
                    Err(e) => {
                        let error = j!({"error": format!("tap ended: {e}")});
                        send(format!("event: error\ndata: {error}\n\n")).await;
                        return;
                    }
                },
                _ = keepalive.tick() => ": keepalive\n\n".into(),
                _ = tx.closed() => return,
            };
            if !send(frame).await {
                return;
            }
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
    let mut rsp = Response::new(body);
    let headers = rsp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    rsp
}

/// Opens a tap through the API server as the dashboard's ServiceAccount:
/// its RBAC (the chart binds it to `linkerd-tap-reader`) decides.
async fn tap_through_kube(req: &TapRequest) -> Result<tap_api::Events<kube::client::Body>, String> {
    let request = tap_api::request(req).map_err(|e| e.to_string())?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("no Kubernetes configuration for tap: {e}"))?;
    let rsp = client
        .send(request.map(kube::client::Body::from))
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    if rsp.status().is_success() {
        return Ok(tap_api::Events::new(rsp.into_body()));
    }
    let status = rsp.status();
    let body = rsp.into_body().collect().await.map(|b| b.to_bytes());
    Err(format!(
        "tap through the Kubernetes API ({status}): {}",
        tap_api::refusal(&body.unwrap_or_default())
    ))
}

fn tap_request(params: &HashMap<String, String>) -> Result<TapRequest, Problem> {
    let namespace = params
        .get("namespace")
        .map(String::as_str)
        .unwrap_or("default");
    let target = resource(required(params, "resource")?, namespace)?;
    let to = params
        .get("to")
        .map(|to| {
            resource(
                to,
                params
                    .get("toNamespace")
                    .map(String::as_str)
                    .unwrap_or(namespace),
            )
        })
        .transpose()?;
    let max_rps = match params.get("maxRps") {
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| Problem::Bad(format!("maxRps {v:?} is not a number above 0")))?,
        None => 100.0,
    };
    Ok(TapRequest {
        target: Some(target),
        to,
        method: params.get("method").cloned().unwrap_or_default(),
        path_prefix: params.get("path").cloned().unwrap_or_default(),
        authority: params.get("authority").cloned().unwrap_or_default(),
        max_rps,
        extract_headers: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tap_requests_from_the_pages_filters() {
        let req = tap_request(&params(&[
            ("resource", "deploy/web"),
            ("namespace", "emojivoto"),
            ("to", "deploy/emoji"),
            ("method", "GET"),
            ("maxRps", "10"),
        ]))
        .ok()
        .unwrap();
        let target = req.target.unwrap();
        assert_eq!(
            (target.r#type.as_str(), target.name.as_str()),
            ("deployment", "web")
        );
        assert_eq!(req.to.unwrap().namespace, "emojivoto");
        assert_eq!(req.max_rps, 10.0);
        assert!(tap_request(&params(&[("resource", "deploy/web"), ("maxRps", "-1")])).is_err());
        assert!(tap_request(&params(&[("resource", "nothing/web")])).is_err());
        assert!(tap_request(&params(&[])).is_err());
    }

    #[test]
    fn namespaces_name_themselves() {
        let r = resource("ns/emojivoto", "other").ok().unwrap();
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("", "emojivoto"));
        assert_eq!(resource("svc", "x").ok().unwrap().r#type, "service");
    }
}
