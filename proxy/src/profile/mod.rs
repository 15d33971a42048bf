//! Service profiles: what destination's `GetProfile` says of a service's
//! routes, and what the outbound side does with it per request (its route's
//! series, timeout and retries, and the traffic split between services).
//!
//! A service without a profile (or with one naming no route and no split)
//! costs its requests one atomic load: the profile is `None` and nothing
//! below runs.

mod metrics;
mod resolve;
mod retry;

pub(crate) use self::{
    metrics::{RouteMetrics, RtStats},
    resolve::resolve,
    retry::{Profiled, send},
};
use crate::metrics::Direction;
use http::{Method, Request, StatusCode};
use linkerd_proxy_api::destination as api;
use regex::Regex;
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use tower::retry::budget::TpsBudget;

/// A service's profile, as the proxy uses it.
#[derive(Debug)]
pub(crate) struct Profile {
    /// Its routes, in the profile's order: the first that matches a request
    /// is its route.
    routes: Box<[Arc<ProfileRoute>]>,
    /// Where a request no route matches is counted (`rt_route=""`, which
    /// `linkerd routes` shows as `[DEFAULT]`).
    default_route: Arc<ProfileRoute>,
    /// Shared by its retryable routes.
    budget: Arc<TpsBudget>,
    /// The traffic split: (authority, weight); empty when the service
    /// takes its own traffic.
    overrides: Box<[(Box<str>, u32)]>,
    total_weight: u64,
}

/// One route of a profile.
#[derive(Debug)]
pub(crate) struct ProfileRoute {
    condition: Option<RequestMatch>,
    classes: Box<[ResponseClass]>,
    retryable: bool,
    timeout: Option<Duration>,
    /// Its series, held as long as the profile names the route.
    pub(crate) stats: Arc<RtStats>,
}

#[derive(Debug)]
enum RequestMatch {
    All(Box<[RequestMatch]>),
    Any(Box<[RequestMatch]>),
    Not(Box<RequestMatch>),
    Path(Regex),
    /// A path regex without metacharacters: the path itself, compared as
    /// a string (most routes' regexes are literal paths).
    ExactPath(Box<str>),
    Method(Method),
}

#[derive(Debug)]
struct ResponseClass {
    condition: ResponseMatch,
    is_failure: bool,
}

#[derive(Debug)]
enum ResponseMatch {
    All(Box<[ResponseMatch]>),
    Any(Box<[ResponseMatch]>),
    Not(Box<ResponseMatch>),
    Status { min: u16, max: u16 },
}

/// A profile the proxy cannot use; destination validates them, so this is
/// another control plane's or a newer one's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidProfile {
    #[error("route {route:?}: invalid path regex: {source}")]
    Regex {
        route: String,
        #[source]
        source: regex::Error,
    },
    #[error("route {route:?}: {what}")]
    Match { route: String, what: String },
}

/// The profile of a name or address; `None` while none is known or the
/// service has none that changes anything.
pub(crate) type ProfileWatch = watch::Receiver<Option<Arc<Profile>>>;

/// Linkerd's budget when a profile names none: 20% more requests, at least
/// 10 retries a second, over 10 seconds.
const DEFAULT_BUDGET: (f32, u32, Duration) = (0.2, 10, Duration::from_secs(10));

impl Profile {
    /// The profile `p` describes for requests to `dst`; `None` if it has
    /// neither routes nor a split.
    pub(crate) fn from_proto(
        p: &api::DestinationProfile,
        direction: Direction,
        dst: &Arc<str>,
        metrics: &RouteMetrics,
    ) -> Result<Option<Self>, InvalidProfile> {
        let mut overrides: Vec<(Box<str>, u32)> = p
            .dst_overrides
            .iter()
            .filter(|o| o.weight > 0 && !o.authority.is_empty())
            .map(|o| (o.authority.as_str().into(), o.weight))
            .collect();
        // A split to the service alone is no split.
        if overrides.len() == 1 && same_authority(&overrides[0].0, dst) {
            overrides.clear();
        }
        if p.routes.is_empty() && overrides.is_empty() {
            return Ok(None);
        }
        let routes = p
            .routes
            .iter()
            .map(|r| ProfileRoute::from_proto(r, direction, dst, metrics).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        // Within what tower's budget accepts (it asserts): a TTL of 1 to 60
        // seconds, a ratio of 0 to 1000.
        let (ratio, min_per_sec, ttl) = p.retry_budget.as_ref().map_or(DEFAULT_BUDGET, |b| {
            let ttl = b
                .ttl
                .as_ref()
                .and_then(|t| Duration::try_from(*t).ok())
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_BUDGET.2)
                .clamp(Duration::from_secs(1), Duration::from_secs(60));
            let ratio = if b.retry_ratio.is_finite() {
                b.retry_ratio.clamp(0.0, 1000.0)
            } else {
                DEFAULT_BUDGET.0
            };
            (
                ratio,
                b.min_retries_per_second.min(i32::MAX as u32 - 1),
                ttl,
            )
        });
        let total_weight = overrides.iter().map(|(_, w)| u64::from(*w)).sum();
        Ok(Some(Self {
            routes: routes.into(),
            default_route: Arc::new(ProfileRoute {
                condition: None,
                classes: Box::default(),
                retryable: false,
                timeout: None,
                stats: metrics.route(direction, dst, None),
            }),
            budget: Arc::new(TpsBudget::new(ttl, min_per_sec, ratio)),
            overrides: overrides.into(),
            total_weight,
        }))
    }

    /// The route a request takes: the first whose condition it meets, or
    /// the default one.
    pub(crate) fn route_for<B>(&self, req: &Request<B>) -> &Arc<ProfileRoute> {
        self.routes
            .iter()
            .find(|r| r.condition.as_ref().is_some_and(|c| c.matches(req)))
            .unwrap_or(&self.default_route)
    }

    /// The service a request goes to under the split, by `roll` (uniform
    /// in `0..u64::MAX`, rolled only when there is a split); `None` when
    /// the service takes it itself.
    pub(crate) fn split(&self, roll: impl FnOnce() -> u64) -> Option<&str> {
        if self.overrides.is_empty() || self.total_weight == 0 {
            return None;
        }
        let mut at = roll() % self.total_weight;
        for (authority, weight) in self.overrides.iter() {
            let w = u64::from(*weight);
            if at < w {
                return Some(authority);
            }
            at -= w;
        }
        None
    }

    pub(crate) fn budget(&self) -> &Arc<TpsBudget> {
        &self.budget
    }
}

/// Whether two authorities name the same service: destination writes
/// overrides fully qualified, with a port, and may add a trailing dot.
fn same_authority(a: &str, b: &str) -> bool {
    let host = |s: &str| -> (String, Option<String>) {
        let (h, p) = match s.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) => (h, Some(p.to_string())),
            _ => (s, None),
        };
        (h.trim_end_matches('.').to_ascii_lowercase(), p)
    };
    let (ha, pa) = host(a);
    let (hb, pb) = host(b);
    ha == hb && (pa.is_none() || pb.is_none() || pa == pb)
}

impl ProfileRoute {
    fn from_proto(
        r: &api::Route,
        direction: Direction,
        dst: &Arc<str>,
        metrics: &RouteMetrics,
    ) -> Result<Self, InvalidProfile> {
        let name = r.metrics_labels.get("route").cloned().unwrap_or_default();
        let condition = r
            .condition
            .as_ref()
            .map(|c| RequestMatch::from_proto(c, &name))
            .transpose()?;
        let classes = r
            .response_classes
            .iter()
            .filter_map(|c| {
                let condition = ResponseMatch::from_proto(c.condition.as_ref()?, &name);
                Some(condition.map(|condition| ResponseClass {
                    condition,
                    is_failure: c.is_failure,
                }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = r
            .timeout
            .as_ref()
            .and_then(|t| Duration::try_from(*t).ok())
            .filter(|t| !t.is_zero());
        Ok(Self {
            condition,
            classes: classes.into(),
            retryable: r.is_retryable,
            timeout,
            stats: metrics.route(direction, dst, Some(name.as_str().into())),
        })
    }

    pub(crate) fn retryable(&self) -> bool {
        self.retryable
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether a response is a failure: by the first of the route's
    /// classes that matches its status, else Linkerd's default (a 5xx, or a
    /// gRPC status other than OK).
    pub(crate) fn is_failure(&self, status: Option<StatusCode>, grpc_status: Option<u32>) -> bool {
        let Some(status) = status else {
            return true;
        };
        if let Some(class) = self.classes.iter().find(|c| c.condition.matches(status)) {
            return class.is_failure;
        }
        status.is_server_error() || grpc_status.is_some_and(|s| s != 0)
    }

    /// Whether anything but counting happens on this route.
    pub(crate) fn acts(&self) -> bool {
        self.retryable || self.timeout.is_some()
    }
}

impl RequestMatch {
    fn from_proto(m: &api::RequestMatch, route: &str) -> Result<Self, InvalidProfile> {
        use api::request_match::Match;
        let invalid = |what: &str| InvalidProfile::Match {
            route: route.to_string(),
            what: what.to_string(),
        };
        let seq = |s: &api::request_match::Seq| {
            s.matches
                .iter()
                .map(|m| Self::from_proto(m, route))
                .collect::<Result<Vec<_>, _>>()
                .map(Vec::into_boxed_slice)
        };
        Ok(
            match m
                .r#match
                .as_ref()
                .ok_or_else(|| invalid("empty condition"))?
            {
                Match::All(s) => Self::All(seq(s)?),
                Match::Any(s) => Self::Any(seq(s)?),
                Match::Not(m) => Self::Not(Box::new(Self::from_proto(m, route)?)),
                Match::Path(p) if regex::escape(&p.regex) == p.regex => {
                    Self::ExactPath(p.regex.as_str().into())
                }
                Match::Path(p) => {
                    // Anchored, as Linkerd's: the regex is the whole path.
                    let regex = Regex::new(&format!("^(?:{})$", p.regex)).map_err(|source| {
                        InvalidProfile::Regex {
                            route: route.to_string(),
                            source,
                        }
                    })?;
                    Self::Path(regex)
                }
                Match::Method(m) => {
                    Self::Method(Method::try_from(m).map_err(|e| invalid(&e.to_string()))?)
                }
            },
        )
    }

    fn matches<B>(&self, req: &Request<B>) -> bool {
        match self {
            Self::All(ms) => ms.iter().all(|m| m.matches(req)),
            Self::Any(ms) => ms.iter().any(|m| m.matches(req)),
            Self::Not(m) => !m.matches(req),
            Self::Path(re) => re.is_match(req.uri().path()),
            Self::ExactPath(p) => req.uri().path() == &**p,
            Self::Method(m) => req.method() == m,
        }
    }
}

impl ResponseMatch {
    fn from_proto(m: &api::ResponseMatch, route: &str) -> Result<Self, InvalidProfile> {
        use api::response_match::Match;
        let invalid = |what: &str| InvalidProfile::Match {
            route: route.to_string(),
            what: what.to_string(),
        };
        let seq = |s: &api::response_match::Seq| {
            s.matches
                .iter()
                .map(|m| Self::from_proto(m, route))
                .collect::<Result<Vec<_>, _>>()
                .map(Vec::into_boxed_slice)
        };
        Ok(
            match m
                .r#match
                .as_ref()
                .ok_or_else(|| invalid("empty response condition"))?
            {
                Match::All(s) => Self::All(seq(s)?),
                Match::Any(s) => Self::Any(seq(s)?),
                Match::Not(m) => Self::Not(Box::new(Self::from_proto(m, route)?)),
                Match::Status(r) => {
                    let bound = |n: u32, default: u16| {
                        if n == 0 {
                            Ok(default)
                        } else {
                            u16::try_from(n)
                                .ok()
                                .filter(|n| (100..=599).contains(n))
                                .ok_or_else(|| {
                                    invalid(&format!("status {n} is not an HTTP status"))
                                })
                        }
                    };
                    let (min, max) = (bound(r.min, 100)?, bound(r.max, 599)?);
                    if min > max {
                        return Err(invalid(&format!("status range {min}-{max} is empty")));
                    }
                    Self::Status { min, max }
                }
            },
        )
    }

    fn matches(&self, status: StatusCode) -> bool {
        match self {
            Self::All(ms) => ms.iter().all(|m| m.matches(status)),
            Self::Any(ms) => ms.iter().any(|m| m.matches(status)),
            Self::Not(m) => !m.matches(status),
            Self::Status { min, max } => (*min..=*max).contains(&status.as_u16()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_proxy_api::http_types::{HttpMethod, http_method};
    use std::collections::HashMap;

    fn route(name: &str, condition: api::request_match::Match) -> api::Route {
        api::Route {
            condition: Some(api::RequestMatch {
                r#match: Some(condition),
            }),
            metrics_labels: HashMap::from([("route".to_string(), name.to_string())]),
            ..Default::default()
        }
    }

    fn path(re: &str) -> api::request_match::Match {
        api::request_match::Match::Path(api::PathMatch { regex: re.into() })
    }

    fn get() -> api::request_match::Match {
        api::request_match::Match::Method(HttpMethod {
            r#type: Some(http_method::Type::Registered(
                http_method::Registered::Get as i32,
            )),
        })
    }

    fn profile(p: api::DestinationProfile) -> Option<Profile> {
        let metrics = RouteMetrics::new(Duration::from_secs(60));
        Profile::from_proto(
            &p,
            Direction::Outbound,
            &Arc::from("web.ns.svc.cluster.local:80"),
            &metrics,
        )
        .unwrap()
    }

    fn req(method: &str, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    fn name(r: &ProfileRoute) -> String {
        r.stats.route_name().unwrap_or("[DEFAULT]").to_string()
    }

    #[test]
    fn a_request_takes_the_first_route_it_matches() {
        let all = api::request_match::Match::All(api::request_match::Seq {
            matches: vec![
                api::RequestMatch {
                    r#match: Some(get()),
                },
                api::RequestMatch {
                    r#match: Some(path("/api/vote")),
                },
            ],
        });
        let p = profile(api::DestinationProfile {
            routes: vec![
                route("GET /api/vote", all),
                route("/api/.*", path("/api/.*")),
            ],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            name(p.route_for(&req("GET", "/api/vote?choice=x"))),
            "GET /api/vote"
        );
        assert_eq!(name(p.route_for(&req("POST", "/api/vote"))), "/api/.*");
        // Anchored: a path merely containing the pattern does not match.
        assert_eq!(name(p.route_for(&req("GET", "/x/api/vote"))), "[DEFAULT]");
        // A literal path is compared whole, not as a prefix.
        assert_eq!(name(p.route_for(&req("GET", "/api/voter"))), "/api/.*");
    }

    #[test]
    fn response_classes_decide_failures_before_the_default() {
        let mut r = route("r", path("/"));
        r.response_classes = vec![api::ResponseClass {
            condition: Some(api::ResponseMatch {
                r#match: Some(api::response_match::Match::Status(api::HttpStatusRange {
                    min: 404,
                    max: 404,
                })),
            }),
            is_failure: true,
        }];
        let p = profile(api::DestinationProfile {
            routes: vec![r],
            ..Default::default()
        })
        .unwrap();
        let route = p.route_for(&req("GET", "/"));
        assert!(route.is_failure(Some(StatusCode::NOT_FOUND), None));
        assert!(
            route.is_failure(Some(StatusCode::BAD_GATEWAY), None),
            "default: 5xx"
        );
        assert!(
            route.is_failure(Some(StatusCode::OK), Some(14)),
            "default: gRPC error"
        );
        assert!(!route.is_failure(Some(StatusCode::OK), Some(0)));
        assert!(route.is_failure(None, None), "no response at all");
    }

    #[test]
    fn a_profile_that_changes_nothing_is_none() {
        assert!(profile(api::DestinationProfile::default()).is_none());
        let to_self = api::DestinationProfile {
            dst_overrides: vec![api::WeightedDst {
                authority: "web.ns.svc.cluster.local.:80".into(),
                weight: 10_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(profile(to_self).is_none(), "a split to itself alone");
    }

    #[test]
    fn the_split_follows_the_weights() {
        let p = profile(api::DestinationProfile {
            dst_overrides: vec![
                api::WeightedDst {
                    authority: "web.ns.svc.cluster.local:80".into(),
                    weight: 900,
                    ..Default::default()
                },
                api::WeightedDst {
                    authority: "web-canary.ns.svc.cluster.local:80".into(),
                    weight: 100,
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .unwrap();
        let mut canary = 0;
        for roll in 0..1000u64 {
            if p.split(|| roll) == Some("web-canary.ns.svc.cluster.local:80") {
                canary += 1;
            }
        }
        assert_eq!(canary, 100);
    }

    #[test]
    fn an_invalid_regex_is_named() {
        let metrics = RouteMetrics::new(Duration::from_secs(60));
        let p = api::DestinationProfile {
            routes: vec![route("bad", path("(unclosed"))],
            ..Default::default()
        };
        let e = Profile::from_proto(&p, Direction::Outbound, &Arc::from("web:80"), &metrics)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("route \"bad\": invalid path regex"),
            "{e}"
        );
    }
}
