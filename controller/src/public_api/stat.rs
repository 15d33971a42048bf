//! Stat summaries: Linkerd's golden metrics per resource, from the proxies'
//! series as Prometheus labels them (`namespace`, `deployment`, `pod`, ...).
//!
//! A resource's own stats are what its pods' proxies measured inbound. With
//! `--to`, they are what its proxies measured outbound towards the other
//! resource (`dst_*` labels); with `--from`, what the other resource's
//! proxies measured outbound towards it. Services are only ever seen from
//! the caller's side, so their stats are always outbound. The definitions
//! are Linkerd's: success rate from `response_total`'s `classification`,
//! requests a second from the same counts over the window, latency
//! quantiles from `response_latency_ms`, TCP from `tcp_*` with `peer="src"`
//! inbound and `peer="dst"` outbound.

use super::metrics::{Accumulate, Matcher, Query, Sample};
use linkerd_discovery::{ServiceEndpoints, Workload};
use linkerd_proxy_api::{
    public_api::{BasicStats, StatRow, TcpStats},
    tap_controller::Resource,
};
use std::collections::BTreeMap;

/// A kind `stat` knows: its canonical name and the label its resources'
/// names are in on inbound series (`dst_`-prefixed on outbound ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind {
    pub(crate) name: &'static str,
    label: &'static str,
    dst_label: &'static str,
}

pub(crate) const KINDS: &[Kind] = &[
    Kind::new("namespace", "namespace", "dst_namespace"),
    Kind::new("deployment", "deployment", "dst_deployment"),
    Kind::new("statefulset", "statefulset", "dst_statefulset"),
    Kind::new("daemonset", "daemonset", "dst_daemonset"),
    Kind::new("replicaset", "replicaset", "dst_replicaset"),
    // `job` is Prometheus' own label; the scrape configuration moves
    // Kubernetes' to `k8s_job`.
    Kind::new("job", "k8s_job", "dst_job"),
    Kind::new("pod", "pod", "dst_pod"),
    Kind::new("service", "dst_service", "dst_service"),
    Kind::new("authority", "authority", "authority"),
];

impl Kind {
    const fn new(name: &'static str, label: &'static str, dst_label: &'static str) -> Self {
        Self {
            name,
            label,
            dst_label,
        }
    }

    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        let canonical = linkerd_proxy_api::tap_controller::canonical_kind(name)
            .or(match name.to_ascii_lowercase().as_str() {
                "service" | "services" | "svc" => Some("service"),
                "authority" | "authorities" | "au" => Some("authority"),
                _ => None,
            })
            .unwrap_or(name);
        KINDS
            .iter()
            .find(|k| k.name == canonical)
            .copied()
            .ok_or_else(|| {
                let known: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
                format!(
                    "{name:?} is not a resource type stat knows ({})",
                    known.join(", ")
                )
            })
    }

    pub(crate) fn label(&self) -> &'static str {
        self.label
    }

    pub(crate) fn dst_label(&self) -> &'static str {
        self.dst_label
    }

    /// Services are known only by what their callers' proxies saw.
    fn only_outbound(&self) -> bool {
        self.name == "service"
    }

    /// Whether the kind's resources have pods to count (a service's are
    /// its endpoints).
    pub(crate) fn has_pods(&self) -> bool {
        self.name != "authority"
    }

    /// Whether the kind's resources run pods of their own (edges join these).
    pub(crate) fn is_workload(&self) -> bool {
        !matches!(self.name, "service" | "authority")
    }

    fn is_namespace(&self) -> bool {
        self.name == "namespace"
    }
}

/// The labels that name a row: its namespace's and its name's.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    namespace: &'static str,
    name: &'static str,
}

impl Key {
    fn by(&self) -> Vec<String> {
        if self.namespace == self.name {
            vec![self.name.to_string()]
        } else {
            vec![self.namespace.to_string(), self.name.to_string()]
        }
    }

    fn of(&self, s: &Sample) -> (String, String) {
        (
            s.label(self.namespace).to_string(),
            s.label(self.name).to_string(),
        )
    }
}

/// Which way the stats are measured.
#[derive(Clone, Debug)]
pub(crate) enum Direction {
    Inbound,
    To(Kind, Resource),
    From(Kind, Resource),
}

/// The request, checked.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    kind: Kind,
    selector: Resource,
    window: String,
    direction: Direction,
    matchers: Vec<Matcher>,
    key: Key,
    tcp: bool,
}

/// Matchers selecting `r` of `kind` by the labels on its own proxies' series.
fn source(kind: &Kind, r: &Resource) -> Vec<Matcher> {
    let mut m = Vec::new();
    if kind.is_namespace() {
        let ns = if r.name.is_empty() {
            &r.namespace
        } else {
            &r.name
        };
        if !ns.is_empty() {
            m.push(Matcher::eq("namespace", ns.clone()));
        }
        return m;
    }
    if !r.namespace.is_empty() {
        m.push(Matcher::eq("namespace", r.namespace.clone()));
    }
    m.push(name_matcher(kind.label, &r.name));
    m
}

/// Matchers selecting `r` of `kind` as the destination of outbound series.
fn destination(kind: &Kind, r: &Resource) -> Vec<Matcher> {
    let mut m = Vec::new();
    if kind.is_namespace() {
        let ns = if r.name.is_empty() {
            &r.namespace
        } else {
            &r.name
        };
        m.push(name_matcher("dst_namespace", ns));
        return m;
    }
    if kind.name != "authority" && !r.namespace.is_empty() {
        m.push(Matcher::eq("dst_namespace", r.namespace.clone()));
    }
    m.push(name_matcher(kind.dst_label, &r.name));
    m
}

fn name_matcher(label: &'static str, name: &str) -> Matcher {
    if name.is_empty() {
        Matcher::Present(label.to_string())
    } else {
        Matcher::eq(label, name)
    }
}

/// A window such as `1m`, `30s`, `2h`, in seconds.
/// `window`, or the part of it a source holds data for (a Prometheus that
/// started `now - since` seconds ago), so rates are over what was measured.
pub(crate) fn covered_window(window: &str, since: Option<f64>, now: f64) -> String {
    let secs = window_seconds(window).unwrap_or(60.0);
    match since {
        Some(since) if (now - since).floor().max(1.0) < secs => {
            format!("{}s", (now - since).floor().max(1.0))
        }
        _ => window.to_string(),
    }
}

pub(crate) fn window_seconds(window: &str) -> Result<f64, String> {
    let invalid = || format!("{window:?} is not a time window such as 30s, 1m or 1h");
    let split = window
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (n, unit) = window.split_at(split);
    let n: f64 = n.parse::<u32>().map_err(|_| invalid())?.into();
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(invalid()),
    };
    if secs <= 0.0 {
        return Err(invalid());
    }
    Ok(secs)
}

impl Plan {
    pub(crate) fn new(
        selector: Resource,
        window: String,
        to: Option<Resource>,
        from: Option<Resource>,
        tcp: bool,
    ) -> Result<Self, String> {
        let kind = Kind::parse(&selector.r#type)?;
        window_seconds(&window)?;
        let other = |r: Resource| -> Result<(Kind, Resource), String> {
            let k = Kind::parse(&r.r#type)?;
            Ok((k, r))
        };
        let direction = match (to, from) {
            (Some(_), Some(_)) => return Err("--to and --from cannot both be given".into()),
            (Some(r), None) => {
                let (k, r) = other(r)?;
                Direction::To(k, r)
            }
            (None, Some(r)) => {
                let (k, r) = other(r)?;
                Direction::From(k, r)
            }
            (None, None) => Direction::Inbound,
        };
        let mut matchers;
        let key;
        match &direction {
            Direction::Inbound if kind.only_outbound() => {
                matchers = vec![Matcher::eq("direction", "outbound")];
                matchers.extend(destination(&kind, &selector));
                key = Key {
                    namespace: "dst_namespace",
                    name: kind.dst_label,
                };
            }
            Direction::Inbound => {
                matchers = vec![Matcher::eq("direction", "inbound")];
                matchers.extend(source(&kind, &selector));
                key = Key {
                    namespace: "namespace",
                    name: kind.label,
                };
            }
            Direction::To(to_kind, to) => {
                if kind.only_outbound() {
                    return Err("services have no outbound traffic: use --from with service".into());
                }
                matchers = vec![Matcher::eq("direction", "outbound")];
                matchers.extend(source(&kind, &selector));
                matchers.extend(destination(to_kind, to));
                key = Key {
                    namespace: "namespace",
                    name: kind.label,
                };
            }
            Direction::From(from_kind, from) => {
                if from_kind.only_outbound() {
                    return Err("a service sends no traffic: --from needs a workload".into());
                }
                matchers = vec![Matcher::eq("direction", "outbound")];
                matchers.extend(source(from_kind, from));
                matchers.extend(destination(&kind, &selector));
                key = Key {
                    namespace: "dst_namespace",
                    name: kind.dst_label,
                };
            }
        }
        Ok(Self {
            kind,
            selector,
            window,
            direction,
            matchers,
            key,
            tcp,
        })
    }

    pub(crate) fn window(&self) -> &str {
        &self.window
    }

    /// The metrics source has data from `since` (seconds since the epoch)
    /// on. A window reaching back further would count the requests of a
    /// shorter time over the whole window, showing a fraction of the real
    /// rate (and `increase` extrapolates past the first sample): the window
    /// is cut to the data there is, and the rows' `time_window` says so.
    pub(crate) fn with_data_since(mut self, since: Option<f64>, now: f64) -> Self {
        self.window = covered_window(&self.window, since, now);
        self
    }

    /// Whether the stats come from the callers' side.
    fn outbound(&self) -> bool {
        !matches!(self.direction, Direction::Inbound) || self.kind.only_outbound()
    }

    /// The queries, in the order [`Plan::rows`] takes their answers.
    pub(crate) fn queries(&self) -> Vec<Query> {
        let by = self.key.by();
        let mut queries = Vec::with_capacity(7);
        let mut with_class = by.clone();
        with_class.push("classification".into());
        queries.push(Query::Increase {
            metric: "response_total",
            matchers: self.matchers.clone(),
            by: with_class,
            window: self.window.clone(),
        });
        for quantile in [0.5, 0.95, 0.99] {
            queries.push(Query::Quantile {
                quantile,
                histogram: "response_latency_ms",
                matchers: self.matchers.clone(),
                by: by.clone(),
                window: self.window.clone(),
            });
        }
        if self.tcp {
            let mut tcp = self.matchers.clone();
            tcp.push(Matcher::eq(
                "peer",
                if self.outbound() { "dst" } else { "src" },
            ));
            queries.push(Query::Sum {
                metric: "tcp_open_connections",
                matchers: tcp.clone(),
                by: by.clone(),
            });
            for metric in ["tcp_read_bytes_total", "tcp_write_bytes_total"] {
                queries.push(Query::Increase {
                    metric,
                    matchers: tcp.clone(),
                    by: by.clone(),
                    window: self.window.clone(),
                });
            }
        }
        if self.own_inbound() {
            queries.push(self.denied_query());
        }
        queries
    }

    /// The rows from the queries' answers and the pods discovery knows.
    pub(crate) fn rows(
        &self,
        answers: &[Vec<Sample>],
        pods: &[Workload],
        services: &[ServiceEndpoints],
    ) -> Vec<StatRow> {
        let secs = window_seconds(&self.window).unwrap_or(60.0);
        let mut rows: BTreeMap<(String, String), StatRow> = BTreeMap::new();
        fn row<'r>(
            plan: &Plan,
            rows: &'r mut BTreeMap<(String, String), StatRow>,
            ns: String,
            name: String,
        ) -> &'r mut StatRow {
            rows.entry((ns.clone(), name.clone()))
                .or_insert_with(|| plan.empty_row(ns, name))
        }
        // Every resource of the kind that has pods is listed, traffic or
        // not, when the stats are its own; with --to or --from, those with
        // traffic (pruned below).
        if self.kind.only_outbound() {
            for svc in services {
                if !self.selector.namespace.is_empty() && self.selector.namespace != svc.namespace
                    || !self.selector.name.is_empty() && self.selector.name != svc.name
                {
                    continue;
                }
                let r = row(self, &mut rows, svc.namespace.clone(), svc.name.clone());
                r.running_pod_count = svc.endpoints.len() as u32;
                r.meshed_pod_count = svc.endpoints.iter().filter(|e| e.meshed).count() as u32;
            }
        } else if self.kind.has_pods() {
            for w in pods {
                if let Some((ns, name)) = self.resource_of(w) {
                    let r = row(self, &mut rows, ns, name);
                    if w.endpoint.meshed {
                        r.meshed_pod_count += 1;
                    }
                    if w.running {
                        r.running_pod_count += 1;
                    }
                    if w.failed {
                        r.failed_pod_count += 1;
                    }
                }
            }
        }
        let mut answers = answers.iter();
        let empty = Vec::new();
        let mut next = || answers.next().unwrap_or(&empty);
        for s in next() {
            let (ns, name) = self.key.of(s);
            if name.is_empty() || !s.value.is_finite() {
                continue;
            }
            let stats = row(self, &mut rows, ns, name)
                .stats
                .get_or_insert_with(BasicStats::default);
            stats.count(s);
        }
        for quantile in 0..3 {
            for s in next() {
                let (ns, name) = self.key.of(s);
                let Some(stats) = rows.get_mut(&(ns, name)).and_then(|r| r.stats.as_mut()) else {
                    continue;
                };
                if !s.value.is_finite() {
                    continue;
                }
                *stats.quantile(quantile) = Some(s.value);
            }
        }
        if self.tcp {
            for field in 0..3 {
                for s in next() {
                    let (ns, name) = self.key.of(s);
                    if name.is_empty() || !s.value.is_finite() {
                        continue;
                    }
                    let tcp = row(self, &mut rows, ns, name)
                        .tcp_stats
                        .get_or_insert_with(TcpStats::default);
                    match field {
                        0 => tcp.open_connections += s.value,
                        1 => tcp.read_bytes_total += s.value,
                        _ => tcp.write_bytes_total += s.value,
                    }
                }
            }
        }
        if self.own_inbound() {
            for s in next() {
                let (ns, name) = self.key.of(s);
                if let Some(stats) = rows.get_mut(&(ns, name)).and_then(|r| r.stats.as_mut())
                    && s.value.is_finite()
                {
                    stats.denied_count += s.value;
                }
            }
        }
        let mut out: Vec<StatRow> = rows.into_values().collect();
        for r in &mut out {
            if let Some(stats) = r.stats.as_mut() {
                stats.rate_over(secs);
            }
        }
        if !matches!(self.direction, Direction::Inbound) {
            out.retain(|r| r.stats.is_some() || r.tcp_stats.is_some());
        }
        out
    }

    /// Whether the stats are the resources' own inbound ones, where their
    /// proxies' policy decisions are.
    fn own_inbound(&self) -> bool {
        !self.outbound()
    }

    /// Requests inbound policy denied: counted without a `direction`.
    fn denied_query(&self) -> Query {
        Query::Increase {
            metric: "inbound_http_authz_deny_total",
            matchers: self
                .matchers
                .iter()
                .filter(|m| !matches!(m, Matcher::Eq("direction", _)))
                .cloned()
                .collect(),
            by: self.key.by(),
            window: self.window.clone(),
        }
    }

    fn empty_row(&self, namespace: String, name: String) -> StatRow {
        StatRow {
            resource: Some(Resource {
                r#type: self.kind.name.to_string(),
                namespace,
                name,
            }),
            time_window: self.window.clone(),
            has_pods: self.kind.has_pods(),
            ..Default::default()
        }
    }

    /// The resource of the plan's kind that `w` belongs to, if selected.
    fn resource_of(&self, w: &Workload) -> Option<(String, String)> {
        let ep = &w.endpoint;
        let sel = &self.selector;
        let (ns, name) = match self.kind.name {
            "namespace" => (ep.namespace.clone(), ep.namespace.clone()),
            "pod" => (ep.namespace.clone(), ep.pod.clone()?),
            kind => {
                let (k, n) = ep.owner.as_ref()?;
                if k != kind {
                    return None;
                }
                (ep.namespace.clone(), n.clone())
            }
        };
        let ns_wanted = if self.kind.is_namespace() {
            if sel.name.is_empty() {
                &sel.namespace
            } else {
                &sel.name
            }
        } else {
            &sel.namespace
        };
        if !ns_wanted.is_empty() && *ns_wanted != ns {
            return None;
        }
        if !self.kind.is_namespace() && !sel.name.is_empty() && sel.name != name {
            return None;
        }
        Some((ns, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_discovery::Endpoint;

    fn res(kind: &str, ns: &str, name: &str) -> Resource {
        Resource {
            r#type: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn pod(ns: &str, name: &str, deploy: &str, meshed: bool) -> Workload {
        Workload {
            ip: "127.0.0.1".parse().unwrap(),
            endpoint: Endpoint {
                namespace: ns.into(),
                pod: Some(name.into()),
                owner: Some(("deployment".into(), deploy.into())),
                service_account: None,
                meshed,
            },
            running: true,
            failed: false,
        }
    }

    #[test]
    fn inbound_queries() {
        let plan = Plan::new(
            res("deploy", "emojivoto", ""),
            "1m".into(),
            None,
            None,
            true,
        )
        .unwrap();
        let q: Vec<String> = plan.queries().iter().map(Query::promql).collect();
        assert_eq!(
            q[0],
            r#"sum(increase(response_total{direction="inbound", namespace="emojivoto", deployment=~".+"}[1m])) by (namespace, deployment, classification)"#
        );
        assert_eq!(
            q[1],
            r#"histogram_quantile(0.5, sum(rate(response_latency_ms_bucket{direction="inbound", namespace="emojivoto", deployment=~".+"}[1m])) by (le, namespace, deployment))"#
        );
        assert_eq!(
            q[4],
            r#"sum(tcp_open_connections{direction="inbound", namespace="emojivoto", deployment=~".+", peer="src"}) by (namespace, deployment)"#
        );
        // What inbound policy denied: the same resources, no direction.
        assert_eq!(
            q[7],
            r#"sum(increase(inbound_http_authz_deny_total{namespace="emojivoto", deployment=~".+"}[1m])) by (namespace, deployment)"#
        );
        assert_eq!(q.len(), 8);
    }

    /// A window longer than the data is cut to the data: 20s of requests
    /// at 10 a second read 10rps, not 3.3 over a minute.
    #[test]
    fn window_is_cut_to_the_data_there_is() {
        let plan = |since| {
            Plan::new(
                res("deploy", "emojivoto", ""),
                "1m".into(),
                None,
                None,
                false,
            )
            .unwrap()
            .with_data_since(since, 1000.0)
        };
        let young = plan(Some(979.6));
        assert_eq!(young.window(), "20s");
        assert!(young.queries()[0].promql().contains("[20s]"));
        let answers = vec![vec![sample(
            &[
                ("namespace", "emojivoto"),
                ("deployment", "web"),
                ("classification", "success"),
            ],
            200.0,
        )]];
        let rows = young.rows(&answers, &[pod("emojivoto", "web-1", "web", true)], &[]);
        assert_eq!(rows[0].time_window, "20s");
        assert_eq!(rows[0].stats.as_ref().unwrap().request_rate, 10.0);
        assert_eq!(plan(Some(900.0)).window(), "1m");
        assert_eq!(plan(None).window(), "1m");
    }

    #[test]
    fn to_and_from() {
        let to = Plan::new(
            res("deployment", "emojivoto", ""),
            "30s".into(),
            Some(res("deployment", "emojivoto", "web")),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            to.queries()[0].promql(),
            r#"sum(increase(response_total{direction="outbound", namespace="emojivoto", deployment=~".+", dst_namespace="emojivoto", dst_deployment="web"}[30s])) by (namespace, deployment, classification)"#
        );
        let from = Plan::new(
            res("deployment", "emojivoto", ""),
            "1m".into(),
            None,
            Some(res("deployment", "emojivoto", "vote-bot")),
            false,
        )
        .unwrap();
        assert_eq!(
            from.queries()[0].promql(),
            r#"sum(increase(response_total{direction="outbound", namespace="emojivoto", deployment="vote-bot", dst_namespace="emojivoto", dst_deployment=~".+"}[1m])) by (dst_namespace, dst_deployment, classification)"#
        );
        let svc = Plan::new(
            res("svc", "emojivoto", "web-svc"),
            "1m".into(),
            None,
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            svc.queries()[0].promql(),
            r#"sum(increase(response_total{direction="outbound", dst_namespace="emojivoto", dst_service="web-svc"}[1m])) by (dst_namespace, dst_service, classification)"#
        );
        let ns = Plan::new(res("ns", "", ""), "1m".into(), None, None, false).unwrap();
        assert_eq!(
            ns.queries()[0].promql(),
            r#"sum(increase(response_total{direction="inbound"}[1m])) by (namespace, classification)"#
        );
    }

    #[test]
    fn refusals() {
        let e = Plan::new(res("cronjobz", "", ""), "1m".into(), None, None, false).unwrap_err();
        assert!(e.contains("cronjobz"), "{e}");
        let e = Plan::new(res("deploy", "", ""), "1 minute".into(), None, None, false).unwrap_err();
        assert!(e.contains("time window"), "{e}");
        let e = Plan::new(
            res("deploy", "", ""),
            "1m".into(),
            Some(res("deploy", "", "a")),
            Some(res("deploy", "", "b")),
            false,
        )
        .unwrap_err();
        assert!(e.contains("--to and --from"), "{e}");
    }

    #[test]
    fn rows_from_answers() {
        let plan = Plan::new(
            res("deployment", "emojivoto", ""),
            "1m".into(),
            None,
            None,
            true,
        )
        .unwrap();
        let web = [("namespace", "emojivoto"), ("deployment", "web")];
        let with = |class: &'static str| {
            let mut l = web.to_vec();
            l.push(("classification", class));
            l
        };
        let answers = vec![
            vec![
                sample(&with("success"), 90.0),
                sample(&with("failure"), 30.0),
            ],
            vec![sample(&web, 4.5)],
            vec![sample(&web, 9.0)],
            vec![sample(&web, f64::NAN)],
            vec![sample(&web, 3.0)],
            vec![sample(&web, 100.0)],
            vec![sample(&web, 200.0)],
        ];
        let pods = vec![
            pod("emojivoto", "web-1", "web", true),
            pod("emojivoto", "web-2", "web", false),
            pod("emojivoto", "emoji-1", "emoji", true),
            pod("other", "web-1", "web", true),
        ];
        let rows = plan.rows(&answers, &pods, &[]);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let emoji = &rows[0];
        assert_eq!(emoji.resource.as_ref().unwrap().name, "emoji");
        assert!(emoji.stats.is_none());
        assert_eq!((emoji.meshed_pod_count, emoji.running_pod_count), (1, 1));
        let web = &rows[1];
        assert_eq!((web.meshed_pod_count, web.running_pod_count), (1, 2));
        let stats = web.stats.as_ref().unwrap();
        assert_eq!((stats.success_count, stats.failure_count), (90.0, 30.0));
        assert_eq!(stats.request_rate, 2.0);
        assert_eq!(stats.latency_ms_p50, Some(4.5));
        assert_eq!(stats.latency_ms_p99, None);
        let tcp = web.tcp_stats.as_ref().unwrap();
        assert_eq!(tcp.open_connections, 3.0);
        assert_eq!(tcp.write_bytes_total, 200.0);
    }

    #[test]
    fn windows() {
        assert_eq!(window_seconds("1m"), Ok(60.0));
        assert_eq!(window_seconds("30s"), Ok(30.0));
        assert!(window_seconds("0s").is_err());
        assert!(window_seconds("m").is_err());
        assert!(window_seconds("5").is_err());
    }
}
