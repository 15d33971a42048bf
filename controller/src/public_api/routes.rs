//! Route summaries (`linkerd routes`): per route of a service profile, how
//! the requests on it fared, from the proxies' `route_*` series (labelled
//! `dst`, the service's authority, and `rt_route`), as Linkerd's
//! `linkerd viz routes`.
//!
//! Without `to`, a workload's own routes: what its proxies counted inbound.
//! With `to` (a service), the workload's requests to that service, counted
//! outbound: effective (what the callers saw) and actual (what was sent,
//! retries included).

use super::{
    metrics::{Accumulate, Matcher, Query, Sample},
    stat::{Kind, covered_window, window_seconds},
};
use linkerd_proxy_api::{
    public_api::{BasicStats, RouteRow},
    tap_controller::Resource,
};
use std::collections::BTreeMap;

const BY: [&str; 2] = ["dst", "rt_route"];

pub(crate) struct Plan {
    matchers: Vec<Matcher>,
    outbound: bool,
    window: String,
}

/// A service's authority prefix in `dst` labels: its name, any port.
pub(crate) fn service_prefix(namespace: &str, name: &str, cluster_domain: &str) -> String {
    format!("{name}.{namespace}.svc.{cluster_domain}:")
}

impl Plan {
    pub(crate) fn new(
        resource: &Resource,
        to: Option<&Resource>,
        window: String,
        cluster_domain: &str,
    ) -> Result<Self, String> {
        let kind = Kind::parse(&resource.r#type)?;
        if resource.name.is_empty() {
            return Err(format!(
                "routes reports on one resource (deploy/web, svc/web-svc, ...), not every {}",
                kind.name
            ));
        }
        window_seconds(&window)?;
        let namespace = |r: &Resource| match r.namespace.as_str() {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        let mut matchers = Vec::new();
        match kind.name {
            "authority" => {
                return Err("routes takes a workload or a service, not an authority".into());
            }
            "service" => {
                if to.is_some() {
                    return Err(
                        "--to needs a workload as the source (deploy/web), not a service".into(),
                    );
                }
                matchers.push(Matcher::Prefix(
                    "dst",
                    service_prefix(&namespace(resource), &resource.name, cluster_domain),
                ));
            }
            _ => {
                matchers.push(Matcher::eq(kind.label(), resource.name.clone()));
                if kind.name != "namespace" {
                    matchers.push(Matcher::eq("namespace", namespace(resource)));
                }
            }
        }
        let outbound = match to {
            None => false,
            Some(to) => {
                let to_kind = Kind::parse(&to.r#type)?;
                if to_kind.name != "service" || to.name.is_empty() {
                    return Err(format!(
                        "--to takes a service (svc/NAME): profiles are a service's, not a {}'s",
                        to_kind.name
                    ));
                }
                matchers.push(Matcher::Prefix(
                    "dst",
                    service_prefix(&namespace(to), &to.name, cluster_domain),
                ));
                true
            }
        };
        matchers.push(Matcher::eq(
            "direction",
            if outbound { "outbound" } else { "inbound" },
        ));
        Ok(Self {
            matchers,
            outbound,
            window,
        })
    }

    /// A source that holds less than the window (a Prometheus that just
    /// started) gives rates over what it holds, as `stat` does.
    pub(crate) fn with_data_since(mut self, since: Option<f64>, now: f64) -> Self {
        self.window = covered_window(&self.window, since, now);
        self
    }

    pub(crate) fn queries(&self) -> Vec<Query> {
        let by = |extra: &[&str]| {
            BY.iter()
                .chain(extra)
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        };
        let increase = |metric| Query::Increase {
            metric,
            matchers: self.matchers.clone(),
            by: by(&["classification"]),
            window: self.window.clone(),
        };
        let mut queries = vec![increase("route_response_total")];
        for quantile in [0.5, 0.95, 0.99] {
            queries.push(Query::Quantile {
                quantile,
                histogram: "route_response_latency_ms",
                matchers: self.matchers.clone(),
                by: by(&[]),
                window: self.window.clone(),
            });
        }
        if self.outbound {
            queries.push(increase("route_actual_response_total"));
        }
        queries
    }

    /// Rows by (authority, route), with the `known` routes of the
    /// services' profiles ((service name, route), the name without a port)
    /// that had no traffic as rows without stats.
    pub(crate) fn rows(
        &self,
        answers: &[Vec<Sample>],
        known: &[(String, String)],
    ) -> Vec<RouteRow> {
        let secs = window_seconds(&self.window).unwrap_or(60.0);
        let mut rows: BTreeMap<(String, String), RouteRow> = BTreeMap::new();
        let key = |s: &Sample| (s.label("dst").to_string(), s.label("rt_route").to_string());
        let empty = Vec::new();
        let answer = |i: usize| answers.get(i).unwrap_or(&empty);
        for s in answer(0).iter().filter(|s| s.value.is_finite()) {
            let (authority, route) = key(s);
            let row = rows
                .entry((authority.clone(), route.clone()))
                .or_insert_with(|| RouteRow {
                    authority,
                    route,
                    ..Default::default()
                });
            row.stats.get_or_insert_with(BasicStats::default).count(s);
        }
        for quantile in 0..3 {
            for s in answer(1 + quantile).iter().filter(|s| s.value.is_finite()) {
                if let Some(st) = rows.get_mut(&key(s)).and_then(|r| r.stats.as_mut()) {
                    *st.quantile(quantile) = Some(s.value);
                }
            }
        }
        if self.outbound {
            for s in answer(4).iter().filter(|s| s.value.is_finite()) {
                if let Some(row) = rows.get_mut(&key(s)) {
                    if s.is_success() {
                        row.actual_success_count += s.value;
                    } else {
                        row.actual_failure_count += s.value;
                    }
                }
            }
        }
        for (service, route) in known {
            let prefix = format!("{service}:");
            let seen = rows
                .keys()
                .any(|(a, r)| r == route && (a == service || a.starts_with(&prefix)));
            if !seen {
                let row = RouteRow {
                    authority: service.clone(),
                    route: route.clone(),
                    ..Default::default()
                };
                rows.insert((service.clone(), route.clone()), row);
            }
        }
        rows.into_values()
            .map(|mut r| {
                if let Some(st) = r.stats.as_mut() {
                    st.rate_over(secs);
                }
                r.actual_request_rate = (r.actual_success_count + r.actual_failure_count) / secs;
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn resource(kind: &str, name: &str) -> Resource {
        Resource {
            r#type: kind.into(),
            namespace: "emojivoto".into(),
            name: name.into(),
        }
    }

    const WEB: &str = "web-svc.emojivoto.svc.cluster.local:80";

    #[test]
    fn outbound_rows_have_effective_and_actual_stats() {
        let plan = Plan::new(
            &resource("deploy", "vote-bot"),
            Some(&resource("svc", "web-svc")),
            "1m".into(),
            "cluster.local",
        )
        .unwrap();
        let queries = plan.queries();
        assert_eq!(
            queries[0].promql(),
            "sum(increase(route_response_total{deployment=\"vote-bot\", namespace=\"emojivoto\", dst=~\"web-svc\\\\.emojivoto\\\\.svc\\\\.cluster\\\\.local:.*\", direction=\"outbound\"}[1m])) by (dst, rt_route, classification)"
        );
        assert_eq!(queries.len(), 5);
        let vote = [("dst", WEB), ("rt_route", "GET /api/vote")];
        let with = |c: &'static str| {
            let mut l = vote.to_vec();
            l.push(("classification", c));
            l
        };
        let answers = vec![
            vec![
                sample(&with("success"), 54.0),
                sample(&with("failure"), 6.0),
            ],
            vec![sample(&vote, 3.0)],
            vec![],
            vec![],
            vec![
                sample(&with("success"), 54.0),
                sample(&with("failure"), 18.0),
            ],
        ];
        let svc = "web-svc.emojivoto.svc.cluster.local".to_string();
        let known = [
            (svc.clone(), "GET /api/vote".to_string()),
            (svc.clone(), "GET /api/list".to_string()),
        ];
        let rows = plan.rows(&answers, &known);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let vote = &rows[1];
        assert_eq!(rows[0].route, "GET /api/list");
        assert_eq!(rows[0].authority, svc);
        assert!(rows[0].stats.is_none(), "a route without traffic");
        let st = vote.stats.unwrap();
        assert_eq!((st.success_count, st.request_rate), (54.0, 1.0));
        assert_eq!(st.latency_ms_p50, Some(3.0));
        assert_eq!(vote.actual_failure_count, 18.0);
        assert_eq!(vote.actual_request_rate, 1.2);
    }

    #[test]
    fn what_routes_takes() {
        let inbound = Plan::new(
            &resource("deploy", "web"),
            None,
            "1m".into(),
            "cluster.local",
        )
        .unwrap();
        assert_eq!(inbound.queries().len(), 4, "no actual series inbound");
        assert!(
            inbound.queries()[0]
                .promql()
                .contains("direction=\"inbound\"")
        );
        let svc = Plan::new(
            &resource("svc", "web-svc"),
            None,
            "1m".into(),
            "cluster.local",
        )
        .unwrap();
        assert!(svc.queries()[0].promql().contains("dst=~"));
        for (r, to) in [
            (resource("deploy", ""), None),
            (
                resource("deploy", "web"),
                Some(resource("deploy", "voting")),
            ),
            (resource("svc", "web-svc"), Some(resource("svc", "x"))),
        ] {
            assert!(
                Plan::new(&r, to.as_ref(), "1m".into(), "cluster.local").is_err(),
                "{r:?} {to:?}"
            );
        }
    }
}
