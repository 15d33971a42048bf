//! Authorization summaries (`linkerd authz`): per server, route and
//! authorization, how many requests a workload's proxies allowed and denied
//! inbound, and how the route's requests fared, from the proxies'
//! `inbound_http_authz_*` counters and their request series' `srv_*` and
//! `route_*` labels.

use super::{
    metrics::{Accumulate, Matcher, Query, Sample},
    stat::{Kind, covered_window, window_seconds},
};
use linkerd_proxy_api::{
    public_api::{AuthzRow, BasicStats},
    tap_controller::Resource,
};
use std::collections::BTreeMap;

const SRV: [&str; 2] = ["srv_kind", "srv_name"];
const ROUTE: [&str; 2] = ["route_kind", "route_name"];
const AUTHZ: [&str; 2] = ["authz_kind", "authz_name"];

pub(crate) struct Plan {
    matchers: Vec<Matcher>,
    window: String,
}

impl Plan {
    pub(crate) fn new(resource: &Resource, window: String) -> Result<Self, String> {
        let kind = Kind::parse(&resource.r#type)?;
        if !kind.is_workload() || resource.name.is_empty() {
            return Err(format!(
                "authz reports on one workload (deploy/web, po/web-0, ...), not {:?}",
                resource.r#type
            ));
        }
        window_seconds(&window)?;
        let mut matchers = vec![Matcher::eq(kind.label(), resource.name.clone())];
        if kind.name != "namespace" && !resource.namespace.is_empty() {
            matchers.push(Matcher::eq("namespace", resource.namespace.clone()));
        }
        Ok(Self { matchers, window })
    }

    /// A source that holds less than the window (a Prometheus that just
    /// started) gives rates over what it holds, as `stat` does.
    pub(crate) fn with_data_since(mut self, since: Option<f64>, now: f64) -> Self {
        self.window = covered_window(&self.window, since, now);
        self
    }

    fn by(groups: &[[&str; 2]]) -> Vec<String> {
        groups.iter().flatten().map(|l| l.to_string()).collect()
    }

    pub(crate) fn queries(&self) -> Vec<Query> {
        let increase = |metric, matchers: Vec<Matcher>, by| Query::Increase {
            metric,
            matchers,
            by,
            window: self.window.clone(),
        };
        let mut inbound = self.matchers.clone();
        inbound.push(Matcher::eq("direction", "inbound"));
        inbound.push(Matcher::Present("route_name".into()));
        let mut by_class = Self::by(&[SRV, ROUTE]);
        by_class.push("classification".into());
        let mut queries = vec![
            increase(
                "inbound_http_authz_allow_total",
                self.matchers.clone(),
                Self::by(&[SRV, ROUTE, AUTHZ]),
            ),
            increase(
                "inbound_http_authz_deny_total",
                self.matchers.clone(),
                Self::by(&[SRV, ROUTE]),
            ),
            increase("response_total", inbound.clone(), by_class),
        ];
        for quantile in [0.5, 0.95, 0.99] {
            queries.push(Query::Quantile {
                quantile,
                histogram: "response_latency_ms",
                matchers: inbound.clone(),
                by: Self::by(&[SRV, ROUTE]),
                window: self.window.clone(),
            });
        }
        queries
    }

    /// Rows by (server, route, authorization), the route's stats on each.
    pub(crate) fn rows(&self, answers: &[Vec<Sample>]) -> Vec<AuthzRow> {
        let secs = window_seconds(&self.window).unwrap_or(60.0);
        let name = |s: &Sample, [kind, name]: [&str; 2]| match s.label(kind) {
            "" => s.label(name).to_string(),
            k => format!("{k}:{}", s.label(name)),
        };
        let route_of = |s: &Sample| (name(s, SRV), name(s, ROUTE));
        let mut rows: BTreeMap<(String, String, String), AuthzRow> = BTreeMap::new();
        let mut stats: BTreeMap<(String, String), BasicStats> = BTreeMap::new();
        let empty = Vec::new();
        let answer = |i: usize| answers.get(i).unwrap_or(&empty);
        for s in answer(0).iter().filter(|s| s.value.is_finite()) {
            let (srv, route) = route_of(s);
            let authz = match s.label(AUTHZ[0]) {
                "" => s.label(AUTHZ[1]).to_string(),
                k => format!("{k}/{}", s.label(AUTHZ[1])),
            };
            rows.entry((srv.clone(), route.clone(), authz.clone()))
                .or_insert_with(|| AuthzRow {
                    server: srv,
                    route,
                    authorization: authz,
                    ..Default::default()
                })
                .allowed_rate += s.value / secs;
        }
        for s in answer(1)
            .iter()
            .filter(|s| s.value.is_finite() && s.value > 0.0)
        {
            let (srv, route) = route_of(s);
            rows.entry((srv.clone(), route.clone(), String::new()))
                .or_insert_with(|| AuthzRow {
                    server: srv,
                    route,
                    ..Default::default()
                })
                .denied_rate += s.value / secs;
        }
        for s in answer(2).iter().filter(|s| s.value.is_finite()) {
            stats.entry(route_of(s)).or_default().count(s);
        }
        for quantile in 0..3 {
            for s in answer(3 + quantile).iter().filter(|s| s.value.is_finite()) {
                if let Some(st) = stats.get_mut(&route_of(s)) {
                    *st.quantile(quantile) = Some(s.value);
                }
            }
        }
        rows.into_values()
            .map(|mut r| {
                if let Some(st) = stats.get(&(r.server.clone(), r.route.clone())) {
                    let mut st = *st;
                    st.rate_over(secs);
                    r.stats = Some(st);
                }
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

    #[test]
    fn rows_by_server_route_and_authorization() {
        let plan = Plan::new(
            &Resource {
                r#type: "deploy".into(),
                namespace: "emojivoto".into(),
                name: "web".into(),
            },
            "1m".into(),
        )
        .unwrap();
        let queries = plan.queries();
        assert_eq!(
            queries[0].promql(),
            "sum(increase(inbound_http_authz_allow_total{deployment=\"web\", namespace=\"emojivoto\"}[1m])) by (srv_kind, srv_name, route_kind, route_name, authz_kind, authz_name)"
        );
        let srv = [("srv_kind", "server"), ("srv_name", "web-http")];
        let route = [("route_kind", "default"), ("route_name", "default")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut l: Vec<(&str, &str)> = srv.to_vec();
            l.extend(route);
            l.extend(extra);
            l
        };
        let answers = vec![
            vec![sample(
                &with(&[
                    ("authz_kind", "authorizationpolicy"),
                    ("authz_name", "web-from-bot"),
                ]),
                600.0,
            )],
            vec![sample(&with(&[]), 120.0)],
            vec![
                sample(&with(&[("classification", "success")]), 540.0),
                sample(&with(&[("classification", "failure")]), 180.0),
            ],
            vec![sample(&with(&[]), 3.0)],
            vec![],
            vec![],
        ];
        let rows = plan.rows(&answers);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let denied = &rows[0];
        assert_eq!(
            (
                denied.server.as_str(),
                denied.route.as_str(),
                denied.authorization.as_str()
            ),
            ("server:web-http", "default:default", "")
        );
        assert_eq!(denied.denied_rate, 2.0);
        let allowed = &rows[1];
        assert_eq!(allowed.authorization, "authorizationpolicy/web-from-bot");
        assert_eq!(allowed.allowed_rate, 10.0);
        let st = allowed.stats.as_ref().unwrap();
        assert_eq!(st.request_rate, 12.0);
        assert_eq!(st.latency_ms_p50, Some(3.0));
        assert!(
            Plan::new(
                &Resource {
                    r#type: "svc".into(),
                    namespace: "x".into(),
                    name: "web".into()
                },
                "1m".into()
            )
            .is_err()
        );
    }
}
