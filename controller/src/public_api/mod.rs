//! The public API (`linkerd-controller public-api`, :8085): what the CLI and
//! the dashboard ask. Pods come from discovery, stats and edges from
//! Prometheus (the queries Linkerd's own use, on the proxies' metric names),
//! and tap and destination are handed on to their services so that one
//! address serves the CLI all it needs.

mod authz;
mod edges;
pub mod metrics;
mod routes;
mod scrape;
mod stat;

pub use self::{metrics::Prometheus, scrape::Scraper};
use futures_util::{StreamExt, future::try_join_all};
use linkerd_discovery::Discover;
use linkerd_pki::Naming;
use linkerd_proxy_api::{
    destination::{
        DestinationProfile, GetDestination, Update,
        destination_client::DestinationClient,
        destination_server::{Destination, DestinationServer},
    },
    public_api::{
        AuthzRequest, AuthzResponse, EdgesRequest, EdgesResponse, ListPodsRequest,
        ListPodsResponse, ListServicesRequest, ListServicesResponse, Pod, RoutesRequest,
        RoutesResponse, Service, StatPoint, StatRangeRequest, StatRangeResponse, StatSeries,
        StatSummaryRequest, StatSummaryResponse, VersionRequest, VersionResponse,
        api_server::{Api, ApiServer},
        stat_summary_request::Outbound,
    },
    tap::TapEvent,
    tap_controller::{
        TapRequest,
        tap_by_resource_client::TapByResourceClient,
        tap_by_resource_server::{TapByResource, TapByResourceServer},
    },
};
use std::{
    collections::{BTreeMap, BTreeSet},
    pin::Pin,
};
use tonic::{Request, Response, Status, transport::Channel};

pub struct PublicApi<D> {
    discovery: D,
    metrics: Metrics,
    naming: Naming,
    cluster_domain: String,
    /// Destination, for the routes of services' profiles (set with the
    /// relays).
    profiles: Option<DestinationClient<Channel>>,
}

/// Where stats come from.
#[derive(Clone)]
pub enum Metrics {
    Prometheus(Box<Prometheus>),
    /// The public API's own scrapes of the proxies, when there is no Prometheus.
    Proxies(Scraper),
}

impl Metrics {
    async fn query(&self, q: &metrics::Query) -> Result<Vec<metrics::Sample>, metrics::Error> {
        match self {
            Self::Prometheus(p) => p.query(q).await,
            Self::Proxies(s) => s.query(q),
        }
    }

    async fn query_range(
        &self,
        q: &metrics::Query,
        range: metrics::Range,
    ) -> Result<Vec<metrics::RangeSeries>, metrics::Error> {
        match self {
            Self::Prometheus(p) => p.query_range(q, range).await,
            Self::Proxies(s) => s.query_range(q, range),
        }
    }

    /// Seconds since the epoch of the oldest data the source holds, if it
    /// can tell: stats over a window older than that cover less.
    async fn data_since(&self) -> Option<f64> {
        match self {
            Self::Prometheus(p) => p.data_since().await,
            Self::Proxies(s) => s.data_since(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Prometheus(p) => p.url(),
            Self::Proxies(_) => "proxies",
        }
    }
}

/// The services the public API hands requests on to, connected lazily: the
/// API works without them, and a relayed call says which one it cannot reach.
pub struct Relays {
    pub tap: Channel,
    pub destination: Channel,
}

impl<D: Discover> PublicApi<D> {
    pub fn new(discovery: D, metrics: Metrics, naming: Naming) -> Self {
        Self {
            discovery,
            metrics,
            naming,
            cluster_domain: "cluster.local".into(),
            profiles: None,
        }
    }

    pub fn with_cluster_domain(mut self, domain: String) -> Self {
        self.cluster_domain = domain;
        self
    }

    /// The API, with tap and destination relayed on the same address, so
    /// a CLI needs one address (or one port-forward) for everything.
    pub fn into_routes(mut self, relays: Relays) -> tonic::service::Routes {
        self.profiles = Some(DestinationClient::new(relays.destination.clone()));
        tonic::service::Routes::new(ApiServer::new(self))
            .add_service(TapByResourceServer::new(TapRelay(
                TapByResourceClient::new(relays.tap),
            )))
            .add_service(DestinationServer::new(DestinationRelay(
                DestinationClient::new(relays.destination),
            )))
    }

    /// The routes of the profiles of the services `resource` (and `to`)
    /// name: (the service's name, a route; `""` for the default route).
    /// A profile destination cannot give is left out: the traffic's rows
    /// are still shown.
    async fn profile_routes(
        &self,
        resource: &linkerd_proxy_api::tap_controller::Resource,
        to: Option<&linkerd_proxy_api::tap_controller::Resource>,
    ) -> Vec<(String, String)> {
        let Some(client) = &self.profiles else {
            return Vec::new();
        };
        let ns = |r: &linkerd_proxy_api::tap_controller::Resource| match r.namespace.as_str() {
            "" => "default".to_string(),
            n => n.to_string(),
        };
        let fqdn = |ns: &str, name: &str| format!("{name}.{ns}.svc.{}", self.cluster_domain);
        let services: Vec<String> = match (to, stat::Kind::parse(&resource.r#type)) {
            (Some(to), _) => vec![fqdn(&ns(to), &to.name)],
            (None, Ok(kind)) if kind.name == "service" => {
                vec![fqdn(&ns(resource), &resource.name)]
            }
            (None, Ok(kind)) => {
                let namespace = ns(resource);
                self.discovery
                    .services()
                    .into_iter()
                    .filter(|s| s.namespace == namespace)
                    .filter(|s| {
                        s.endpoints.iter().any(|e| match kind.name {
                            "namespace" => true,
                            "pod" => e.pod.as_deref() == Some(resource.name.as_str()),
                            k => e
                                .owner
                                .as_ref()
                                .is_some_and(|(ok, on)| ok == k && *on == resource.name),
                        })
                    })
                    .map(|s| fqdn(&s.namespace, &s.name))
                    .collect()
            }
            (None, Err(_)) => Vec::new(),
        };
        let ask = services.into_iter().map(|svc| {
            let mut client = client.clone();
            async move {
                let req = GetDestination {
                    scheme: "k8s".into(),
                    path: format!("{svc}:80"),
                    context_token: String::new(),
                };
                let first = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                    client
                        .get_profile(req)
                        .await
                        .ok()?
                        .into_inner()
                        .message()
                        .await
                        .ok()?
                })
                .await
                .ok()
                .flatten();
                let mut routes = vec![(svc.clone(), String::new())];
                if let Some(profile) = first {
                    routes.extend(profile.routes.iter().filter_map(|r| {
                        Some((svc.clone(), r.metrics_labels.get("route")?.clone()))
                    }));
                }
                routes
            }
        });
        futures_util::future::join_all(ask)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn run(&self, queries: &[metrics::Query]) -> Result<Vec<Vec<metrics::Sample>>, Status> {
        try_join_all(queries.iter().map(|q| self.metrics.query(q)))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }
}

/// The default window of stats.
const DEFAULT_WINDOW: &str = "1m";

/// The request's window, or the default one when it gives none.
fn window_or_default(window: &str) -> String {
    match window {
        "" => DEFAULT_WINDOW.to_string(),
        w => w.to_string(),
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A stat request's selection, checked into its plan.
fn stat_plan(req: StatSummaryRequest) -> Result<stat::Plan, Status> {
    let selector = req
        .selector
        .ok_or_else(|| Status::invalid_argument("a resource type is required"))?;
    let window = window_or_default(&req.time_window);
    let (to, from) = match req.outbound {
        Some(Outbound::ToResource(r)) => (Some(r), None),
        Some(Outbound::FromResource(r)) => (None, Some(r)),
        None => (None, None),
    };
    stat::Plan::new(selector, window, to, from, !req.skip_tcp_stats)
        .map_err(Status::invalid_argument)
}

#[tonic::async_trait]
impl<D: Discover> Api for PublicApi<D> {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            release: env!("CARGO_PKG_VERSION").to_string(),
            metrics_source: self.metrics.name().to_string(),
        }))
    }

    async fn list_pods(
        &self,
        req: Request<ListPodsRequest>,
    ) -> Result<Response<ListPodsResponse>, Status> {
        let req = req.into_inner();
        let mut pods: Vec<Pod> = self
            .discovery
            .pods()
            .into_iter()
            .filter(|w| req.namespace.is_empty() || w.endpoint.namespace == req.namespace)
            .filter(|w| {
                req.selector
                    .as_ref()
                    .is_none_or(|s| s.r#type.is_empty() || crate::tap::selects(s, w))
            })
            .map(|w| {
                let ep = &w.endpoint;
                let (owner_kind, owner_name) = ep.owner.clone().unwrap_or_default();
                Pod {
                    name: ep.pod.clone().unwrap_or_default(),
                    namespace: ep.namespace.clone(),
                    ip: w.ip.to_string(),
                    owner_kind,
                    owner_name,
                    service_account: ep.service_account.clone().unwrap_or_default(),
                    meshed: ep.meshed,
                    ready: w.running,
                    identity: if ep.meshed {
                        crate::tap::identity(&self.naming, &w)
                    } else {
                        String::new()
                    },
                }
            })
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(Response::new(ListPodsResponse { pods }))
    }

    async fn list_services(
        &self,
        req: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let namespace = req.into_inner().namespace;
        let mut services: Vec<Service> = self
            .discovery
            .services()
            .into_iter()
            .filter(|s| namespace.is_empty() || s.namespace == namespace)
            .map(|s| Service {
                endpoints: s.endpoints.len() as u32,
                meshed_endpoints: s.endpoints.iter().filter(|e| e.meshed).count() as u32,
                name: s.name,
                namespace: s.namespace,
            })
            .collect();
        services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(Response::new(ListServicesResponse { services }))
    }

    async fn stat_summary(
        &self,
        req: Request<StatSummaryRequest>,
    ) -> Result<Response<StatSummaryResponse>, Status> {
        let plan =
            stat_plan(req.into_inner())?.with_data_since(self.metrics.data_since().await, now());
        let answers = self.run(&plan.queries()).await?;
        let rows = plan.rows(&answers, &self.discovery.pods(), &self.discovery.services());
        tracing::debug!(window = plan.window(), rows = rows.len(), "stat summary");
        Ok(Response::new(StatSummaryResponse { rows }))
    }

    /// The stat summary at each step of a range: each point is the row a
    /// `StatSummary` would have answered then (the same plan and queries,
    /// asked as range queries), so a chart's last point is `linkerd stat`.
    async fn stat_range(
        &self,
        req: Request<StatRangeRequest>,
    ) -> Result<Response<StatRangeResponse>, Status> {
        let req = req.into_inner();
        let mut summary = req
            .request
            .ok_or_else(|| Status::invalid_argument("a stat request is required"))?;
        // Charts draw HTTP stats; TCP's gauges would be more queries for nothing.
        summary.skip_tcp_stats = true;
        let plan = stat_plan(summary)?;
        let end = if req.end > 0.0 { req.end } else { now() };
        let range = metrics::Range::ending(end, req.range_seconds, req.step_seconds)
            .map_err(Status::invalid_argument)?;
        let queries = plan.queries();
        let (answers, since) = tokio::join!(
            try_join_all(queries.iter().map(|q| self.metrics.query_range(q, range))),
            self.metrics.data_since()
        );
        let answers = answers.map_err(|e| Status::unavailable(e.to_string()))?;
        let timestamps: Vec<f64> = range.timestamps().collect();
        // The answers by moment: each query's samples at each timestamp.
        let mut at: Vec<Vec<Vec<metrics::Sample>>> =
            vec![vec![Vec::new(); answers.len()]; timestamps.len()];
        for (q, series) in answers.into_iter().enumerate() {
            for s in series {
                for (t, value) in s.points {
                    if let Some(i) = range.index(t).filter(|&i| i < timestamps.len()) {
                        at[i][q].push(metrics::Sample {
                            labels: s.labels.clone(),
                            value,
                        });
                    }
                }
            }
        }
        // A point whose window reaches back before the data began would
        // count a part of the window over all of it (and `increase`
        // extrapolates): it is left out, where `StatSummary` cuts its window.
        let window = stat::window_seconds(plan.window()).unwrap_or(60.0);
        let partial = |t: f64| since.is_some_and(|since| t - window < since);
        let (pods, services) = (self.discovery.pods(), self.discovery.services());
        let mut series: BTreeMap<(String, String), StatSeries> = BTreeMap::new();
        for (i, answers) in at.iter().enumerate() {
            if partial(timestamps[i]) {
                continue;
            }
            for row in plan.rows(answers, &pods, &services) {
                let Some(resource) = row.resource else {
                    continue;
                };
                let key = (resource.namespace.clone(), resource.name.clone());
                let s = series.entry(key).or_insert_with(|| StatSeries {
                    resource: Some(resource),
                    points: vec![StatPoint::default(); timestamps.len()],
                });
                s.points[i].stats = row.stats;
            }
        }
        tracing::debug!(
            points = timestamps.len(),
            series = series.len(),
            "stat range"
        );
        Ok(Response::new(StatRangeResponse {
            timestamps,
            series: series.into_values().collect(),
            data_since: since.unwrap_or(0.0),
        }))
    }

    async fn authz(&self, req: Request<AuthzRequest>) -> Result<Response<AuthzResponse>, Status> {
        let req = req.into_inner();
        let resource = req
            .resource
            .ok_or_else(|| Status::invalid_argument("a workload is required"))?;
        let window = window_or_default(&req.time_window);
        let plan = authz::Plan::new(&resource, window)
            .map_err(Status::invalid_argument)?
            .with_data_since(self.metrics.data_since().await, now());
        let answers = self.run(&plan.queries()).await?;
        Ok(Response::new(AuthzResponse {
            rows: plan.rows(&answers),
        }))
    }

    async fn routes(
        &self,
        req: Request<RoutesRequest>,
    ) -> Result<Response<RoutesResponse>, Status> {
        let req = req.into_inner();
        let resource = req
            .resource
            .ok_or_else(|| Status::invalid_argument("a resource is required"))?;
        let window = window_or_default(&req.time_window);
        let plan = routes::Plan::new(&resource, req.to.as_ref(), window, &self.cluster_domain)
            .map_err(Status::invalid_argument)?
            .with_data_since(self.metrics.data_since().await, now());
        let queries = plan.queries();
        let (answers, known) = tokio::join!(
            self.run(&queries),
            self.profile_routes(&resource, req.to.as_ref())
        );
        Ok(Response::new(RoutesResponse {
            rows: plan.rows(&answers?, &known),
        }))
    }

    async fn edges(&self, req: Request<EdgesRequest>) -> Result<Response<EdgesResponse>, Status> {
        let req = req.into_inner();
        let selector = req
            .selector
            .ok_or_else(|| Status::invalid_argument("a resource type is required"))?;
        let window = window_or_default(&req.time_window);
        let plan = edges::Plan::new(&selector, window)
            .map_err(Status::invalid_argument)?
            .with_data_since(self.metrics.data_since().await, now());
        let answers = self.run(&plan.queries()).await?;
        // Each workload's identities, to match the callee's `client_id`s.
        let kind = stat::Kind::parse(&selector.r#type).map_err(Status::invalid_argument)?;
        let mut identities: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for w in self.discovery.pods().iter().filter(|w| w.endpoint.meshed) {
            let ep = &w.endpoint;
            let name = match kind.name {
                "namespace" => Some(ep.namespace.clone()),
                "pod" => ep.pod.clone(),
                k => ep
                    .owner
                    .as_ref()
                    .filter(|(owner, _)| owner == k)
                    .map(|(_, n)| n.clone()),
            };
            if let Some(name) = name {
                identities
                    .entry((ep.namespace.clone(), name))
                    .or_default()
                    .insert(crate::tap::identity(&self.naming, w));
            }
        }
        Ok(Response::new(EdgesResponse {
            edges: plan.edges(&answers, &identities),
        }))
    }
}

/// A relayed call's error, naming the service when it cannot be reached.
fn relayed(service: &str, e: Status) -> Status {
    if e.code() == tonic::Code::Unavailable {
        Status::unavailable(format!(
            "the {service} service is unavailable: {}",
            e.message()
        ))
    } else {
        e
    }
}

/// Destination, passed through, for `linkerd diagnostics endpoints`.
struct DestinationRelay(DestinationClient<Channel>);

#[tonic::async_trait]
impl Destination for DestinationRelay {
    type GetStream = Pin<Box<dyn futures_util::Stream<Item = Result<Update, Status>> + Send>>;
    type GetProfileStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<DestinationProfile, Status>> + Send>>;

    async fn get(&self, req: Request<GetDestination>) -> Result<Response<Self::GetStream>, Status> {
        let updates = self
            .0
            .clone()
            .get(req.into_inner())
            .await
            .map_err(|e| relayed("destination", e))?;
        Ok(Response::new(updates.into_inner().boxed()))
    }

    async fn get_profile(
        &self,
        req: Request<GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let profiles = self
            .0
            .clone()
            .get_profile(req.into_inner())
            .await
            .map_err(|e| relayed("destination", e))?;
        Ok(Response::new(profiles.into_inner().boxed()))
    }
}

/// Tap, passed through to the tap service.
struct TapRelay(TapByResourceClient<Channel>);

type Events = Pin<Box<dyn futures_util::Stream<Item = Result<TapEvent, Status>> + Send>>;

#[tonic::async_trait]
impl TapByResource for TapRelay {
    type TapStream = Events;

    async fn tap(&self, req: Request<TapRequest>) -> Result<Response<Self::TapStream>, Status> {
        let mut client = self.0.clone();
        let events = client
            .tap(req.into_inner())
            .await
            .map_err(|e| relayed("tap", e))?;
        Ok(Response::new(events.into_inner().boxed()))
    }
}
