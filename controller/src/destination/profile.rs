//! A ServiceProfile as Linkerd's destination service sends it
//! (`DestinationProfile`): routes with their conditions, response classes,
//! retryability, timeouts and `route` metric label; the retry budget (Linkerd's
//! default when the profile has none); weighted overrides in thousandths.

use linkerd_discovery::profile::{self as sp, ServiceProfile};
use linkerd_proxy_api::{
    destination::{self as api, DestinationProfile, request_match, response_match},
    http_types::HttpMethod,
};
use std::{collections::HashMap, time::Duration};

/// Linkerd's retry budget for a service without a profile, or whose
/// profile sets none: 20% more requests, at least 10 a second, over 10s.
pub(super) fn default_budget() -> api::RetryBudget {
    api::RetryBudget {
        retry_ratio: 0.2,
        min_retries_per_second: 10,
        ttl: Some(proto_duration(Duration::from_secs(10))),
    }
}

fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// The profile of the service `fqdn`: `profile`'s, or an empty one.
/// `profile` was checked when it was read, so what cannot parse here is
/// left out rather than refused.
pub(super) fn translate(fqdn: String, profile: Option<&ServiceProfile>) -> DestinationProfile {
    let Some(profile) = profile else {
        return DestinationProfile {
            fully_qualified_name: fqdn,
            retry_budget: Some(default_budget()),
            ..Default::default()
        };
    };
    let spec = &profile.spec;
    DestinationProfile {
        fully_qualified_name: fqdn,
        routes: spec.routes.iter().map(route).collect(),
        retry_budget: Some(
            spec.retry_budget
                .as_ref()
                .map(|b| api::RetryBudget {
                    retry_ratio: b.retry_ratio,
                    min_retries_per_second: b.min_retries_per_second,
                    ttl: sp::parse_duration(&b.ttl).map(proto_duration),
                })
                .unwrap_or_else(default_budget),
        ),
        dst_overrides: spec
            .dst_overrides
            .iter()
            .filter_map(|d| {
                Some(api::WeightedDst {
                    authority: d.authority.clone(),
                    weight: d.weight.milli()?,
                    backend_ref: None,
                })
            })
            .collect(),
        ..Default::default()
    }
}

fn route(r: &sp::Route) -> api::Route {
    api::Route {
        condition: Some(request_match(&r.condition)),
        response_classes: r
            .response_classes
            .iter()
            .map(|c| api::ResponseClass {
                condition: Some(response_match(&c.condition)),
                is_failure: c.is_failure,
            })
            .collect(),
        metrics_labels: HashMap::from([("route".to_string(), r.name.clone())]),
        is_retryable: r.is_retryable,
        timeout: r
            .timeout
            .as_deref()
            .and_then(sp::parse_duration)
            .map(proto_duration),
    }
}

/// Each field given is one condition; several must all hold.
fn request_match(m: &sp::RequestMatch) -> api::RequestMatch {
    use request_match::{Match, Seq};
    let mut all: Vec<api::RequestMatch> = Vec::new();
    let one = |m| api::RequestMatch { r#match: Some(m) };
    if let Some(re) = &m.path_regex {
        all.push(one(Match::Path(api::PathMatch { regex: re.clone() })));
    }
    if let Some(method) = m
        .method
        .as_deref()
        .and_then(|s| http::Method::from_bytes(s.to_ascii_uppercase().as_bytes()).ok())
    {
        all.push(one(Match::Method(HttpMethod::from(&method))));
    }
    if !m.all.is_empty() {
        all.push(one(Match::All(Seq {
            matches: m.all.iter().map(request_match).collect(),
        })));
    }
    if !m.any.is_empty() {
        all.push(one(Match::Any(Seq {
            matches: m.any.iter().map(request_match).collect(),
        })));
    }
    for not in &m.not {
        all.push(one(Match::Not(Box::new(request_match(not)))));
    }
    match all.len() {
        1 => all.remove(0),
        _ => one(Match::All(Seq { matches: all })),
    }
}

fn response_match(m: &sp::ResponseMatch) -> api::ResponseMatch {
    use response_match::{Match, Seq};
    let mut all: Vec<api::ResponseMatch> = Vec::new();
    let one = |m| api::ResponseMatch { r#match: Some(m) };
    if let Some(status) = m.status {
        let (min, max) = status.bounds();
        all.push(one(Match::Status(api::HttpStatusRange { min, max })));
    }
    if !m.all.is_empty() {
        all.push(one(Match::All(Seq {
            matches: m.all.iter().map(response_match).collect(),
        })));
    }
    if !m.any.is_empty() {
        all.push(one(Match::Any(Seq {
            matches: m.any.iter().map(response_match).collect(),
        })));
    }
    for not in &m.not {
        all.push(one(Match::Not(Box::new(response_match(not)))));
    }
    match all.len() {
        1 => all.remove(0),
        _ => one(Match::All(Seq { matches: all })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_becomes_linkerds_message() {
        let p: ServiceProfile = serde_saphyr::from_str(
            r#"
metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
spec:
  routes:
  - name: GET /api/list
    condition: {method: GET, pathRegex: /api/list}
    isRetryable: true
    timeout: 100ms
    responseClasses:
    - condition: {status: {min: 500, max: 599}}
      isFailure: true
  - name: everything else
    condition: {not: {method: DELETE}}
  retryBudget: {retryRatio: 0.5, minRetriesPerSecond: 3, ttl: 1m}
  dstOverrides:
  - {authority: web-canary.emojivoto.svc.cluster.local:80, weight: 100m}
  - {authority: web-svc.emojivoto.svc.cluster.local:80, weight: 1}
"#,
        )
        .unwrap();
        let out = translate("web-svc.emojivoto.svc.cluster.local".into(), Some(&p));
        assert_eq!(out.routes.len(), 2);
        let list = &out.routes[0];
        assert_eq!(list.metrics_labels["route"], "GET /api/list");
        assert!(list.is_retryable);
        assert_eq!(
            list.timeout,
            Some(proto_duration(Duration::from_millis(100)))
        );
        let Some(request_match::Match::All(all)) = &list.condition.as_ref().unwrap().r#match else {
            panic!("{list:?}")
        };
        assert_eq!(all.matches.len(), 2);
        assert!(matches!(
            &all.matches[0].r#match,
            Some(request_match::Match::Path(p)) if p.regex == "/api/list"
        ));
        assert!(matches!(
            &list.response_classes[0].condition.as_ref().unwrap().r#match,
            Some(response_match::Match::Status(s)) if s.min == 500 && s.max == 599
        ));
        assert!(matches!(
            &out.routes[1].condition.as_ref().unwrap().r#match,
            Some(request_match::Match::Not(_))
        ));
        let budget = out.retry_budget.unwrap();
        assert_eq!(
            (budget.retry_ratio, budget.min_retries_per_second),
            (0.5, 3)
        );
        assert_eq!(budget.ttl, Some(proto_duration(Duration::from_secs(60))));
        let weights: Vec<u32> = out.dst_overrides.iter().map(|d| d.weight).collect();
        assert_eq!(weights, [100, 1000]);

        let none = translate("x.ns.svc.cluster.local".into(), None);
        assert!(none.routes.is_empty());
        assert_eq!(none.retry_budget, Some(default_budget()));
    }
}
