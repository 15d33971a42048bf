//! Edges: which resources talk to which, and whether mTLS secures it, from
//! the series both ends' proxies keep. The caller's proxy knows the callee
//! (`dst_*` labels) and the identity it verified (`server_id`); the callee's
//! proxy knows the identity its client proved (`client_id`). As Linkerd's
//! `edges`, an edge is listed from the caller's side and completed with the
//! callee's.

use super::metrics::{Accumulate, Matcher, Query, Sample};
use super::stat::{Kind, window_seconds};
use linkerd_proxy_api::{public_api::Edge, tap_controller::Resource};
use std::collections::{BTreeMap, BTreeSet};

/// A resource's namespace and name.
type Name = (String, String);

/// What edges are asked for.
pub(crate) struct Plan {
    kind: Kind,
    namespace: String,
    /// The window of the edges' request stats.
    window: String,
}

impl Plan {
    pub(crate) fn new(selector: &Resource, window: String) -> Result<Self, String> {
        window_seconds(&window)?;
        let kind = Kind::parse(&selector.r#type)?;
        if !kind.is_workload() {
            return Err(format!(
                "edges are between workloads; {:?} is not a workload type",
                selector.r#type
            ));
        }
        Ok(Self {
            kind,
            namespace: selector.namespace.clone(),
            window,
        })
    }

    /// The window cut to the data there is, as `stat::Plan::with_data_since`.
    pub(crate) fn with_data_since(mut self, since: Option<f64>, now: f64) -> Self {
        self.window = super::stat::covered_window(&self.window, since, now);
        self
    }

    fn labels(&self) -> (&'static str, &'static str) {
        (self.kind.label(), self.kind.dst_label())
    }

    /// Outbound HTTP and TCP, then inbound HTTP and TCP (the edges, by
    /// the counters' presence), then the outbound requests' growth over
    /// the window by classification (their stats).
    pub(crate) fn queries(&self) -> Vec<Query> {
        let (label, dst_label) = self.labels();
        let mut out_by = vec!["namespace".to_string(), "dst_namespace".to_string()];
        for l in [label, dst_label] {
            if !out_by.iter().any(|b| b == l) {
                out_by.push(l.to_string());
            }
        }
        let mut requests_by = out_by.clone();
        requests_by.push("classification".into());
        out_by.extend(["tls", "server_id", "no_tls_reason"].map(String::from));
        let mut in_by = vec!["namespace".to_string()];
        if label != "namespace" {
            in_by.push(label.to_string());
        }
        in_by.extend(["tls", "client_id"].map(String::from));
        let outbound = |metric, peer: Option<&str>| {
            let mut matchers = vec![
                Matcher::eq("direction", "outbound"),
                Matcher::Present(label.to_string()),
                Matcher::Present(dst_label.to_string()),
            ];
            if let Some(peer) = peer {
                matchers.push(Matcher::eq("peer", peer.to_string()));
            }
            Query::Sum {
                metric,
                matchers,
                by: out_by.clone(),
            }
        };
        let inbound = |metric, peer: Option<&str>| {
            let mut matchers = vec![
                Matcher::eq("direction", "inbound"),
                Matcher::Present(label.to_string()),
            ];
            if let Some(peer) = peer {
                matchers.push(Matcher::eq("peer", peer.to_string()));
            }
            Query::Sum {
                metric,
                matchers,
                by: in_by.clone(),
            }
        };
        let requests = Query::Increase {
            metric: "response_total",
            matchers: vec![
                Matcher::eq("direction", "outbound"),
                Matcher::Present(label.to_string()),
                Matcher::Present(dst_label.to_string()),
            ],
            by: requests_by,
            window: self.window.clone(),
        };
        vec![
            outbound("response_total", None),
            outbound("tcp_open_total", Some("dst")),
            inbound("response_total", None),
            inbound("tcp_open_total", Some("src")),
            requests,
        ]
    }

    /// The edges, given the answers and the identities of each resource's
    /// pods (`(namespace, name)` to identities).
    pub(crate) fn edges(
        &self,
        answers: &[Vec<Sample>],
        identities: &BTreeMap<Name, BTreeSet<String>>,
    ) -> Vec<Edge> {
        let (label, dst_label) = self.labels();
        let src_of = |s: &Sample| (s.label("namespace").to_string(), s.label(label).to_string());
        let dst_of = |s: &Sample| {
            (
                s.label("dst_namespace").to_string(),
                s.label(dst_label).to_string(),
            )
        };
        // Client identities each resource's proxies saw inbound.
        let mut seen: BTreeMap<Name, BTreeSet<String>> = BTreeMap::new();
        for s in answers.iter().skip(2).flatten() {
            let id = s.label("client_id");
            if s.label("tls") == "true" && !id.is_empty() {
                seen.entry(src_of(s)).or_default().insert(id.to_string());
            }
        }
        let mut edges: BTreeMap<(Name, Name), Edge> = BTreeMap::new();
        for s in answers.iter().take(2).flatten() {
            let (src, dst) = (src_of(s), dst_of(s));
            if src.1.is_empty() || dst.1.is_empty() {
                continue;
            }
            if !self.namespace.is_empty() && src.0 != self.namespace && dst.0 != self.namespace {
                continue;
            }
            let secured = s.label("tls") == "true";
            let edge = edges
                .entry((src.clone(), dst.clone()))
                .or_insert_with(|| Edge {
                    src: Some(self.resource(&src)),
                    dst: Some(self.resource(&dst)),
                    ..Default::default()
                });
            if secured {
                edge.server_id = s.label("server_id").to_string();
                edge.no_tls_reason.clear();
                // The callee saw one of the caller's identities.
                let theirs = seen.get(&dst);
                let client = identities
                    .get(&src)
                    .into_iter()
                    .flatten()
                    .find(|id| theirs.is_some_and(|t| t.contains(*id)));
                if let Some(id) = client {
                    edge.client_id = id.clone();
                }
            } else if edge.server_id.is_empty() {
                edge.no_tls_reason = match s.label("no_tls_reason") {
                    "" => "not secured".to_string(),
                    reason => reason.to_string(),
                };
            }
        }
        // Each edge's requests over the window, as the caller counted them.
        let secs = window_seconds(&self.window).unwrap_or(60.0);
        for s in answers.get(4).into_iter().flatten() {
            if let Some(edge) = edges.get_mut(&(src_of(s), dst_of(s))) {
                edge.stats.get_or_insert_with(Default::default).count(s);
            }
        }
        for stats in edges.values_mut().filter_map(|e| e.stats.as_mut()) {
            stats.rate_over(secs);
        }
        edges.into_values().collect()
    }

    fn resource(&self, (ns, name): &Name) -> Resource {
        Resource {
            r#type: self.kind.name.to_string(),
            namespace: ns.clone(),
            name: name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)]) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: 1.0,
        }
    }

    #[test]
    fn secured_and_plain_edges() {
        let plan = Plan::new(
            &Resource {
                r#type: "deploy".into(),
                namespace: "emojivoto".into(),
                name: String::new(),
            },
            "1m".into(),
        )
        .unwrap();
        let q = plan.queries();
        assert_eq!(
            q[4].promql(),
            r#"sum(increase(response_total{direction="outbound", deployment=~".+", dst_deployment=~".+"}[1m])) by (namespace, dst_namespace, deployment, dst_deployment, classification)"#
        );
        assert_eq!(
            q[0].promql(),
            r#"sum(response_total{direction="outbound", deployment=~".+", dst_deployment=~".+"}) by (namespace, dst_namespace, deployment, dst_deployment, tls, server_id, no_tls_reason)"#
        );
        assert_eq!(
            q[2].promql(),
            r#"sum(response_total{direction="inbound", deployment=~".+"}) by (namespace, deployment, tls, client_id)"#
        );
        let bot = "vote-bot.emojivoto.serviceaccount.identity.linkerd.cluster.local";
        let web = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local";
        let answers = vec![
            vec![
                sample(&[
                    ("namespace", "emojivoto"),
                    ("deployment", "vote-bot"),
                    ("dst_namespace", "emojivoto"),
                    ("dst_deployment", "web"),
                    ("tls", "true"),
                    ("server_id", web),
                ]),
                sample(&[
                    ("namespace", "other"),
                    ("deployment", "a"),
                    ("dst_namespace", "other"),
                    ("dst_deployment", "b"),
                    ("tls", "true"),
                ]),
            ],
            vec![sample(&[
                ("namespace", "emojivoto"),
                ("deployment", "web"),
                ("dst_namespace", "emojivoto"),
                ("dst_deployment", "db"),
                ("tls", "no_identity"),
                ("no_tls_reason", "not_provided_by_service_discovery"),
            ])],
            vec![sample(&[
                ("namespace", "emojivoto"),
                ("deployment", "web"),
                ("tls", "true"),
                ("client_id", bot),
            ])],
            vec![],
            // vote-bot -> web: 45 successes and 15 failures in the minute.
            [("success", 45.0), ("failure", 15.0)]
                .map(|(class, n)| Sample {
                    value: n,
                    ..sample(&[
                        ("namespace", "emojivoto"),
                        ("deployment", "vote-bot"),
                        ("dst_namespace", "emojivoto"),
                        ("dst_deployment", "web"),
                        ("classification", class),
                    ])
                })
                .to_vec(),
        ];
        let identities = BTreeMap::from([(
            ("emojivoto".to_string(), "vote-bot".to_string()),
            BTreeSet::from([bot.to_string()]),
        )]);
        let edges = plan.edges(&answers, &identities);
        assert_eq!(edges.len(), 2, "{edges:?}");
        let to_web = edges
            .iter()
            .find(|e| e.dst.as_ref().unwrap().name == "web")
            .unwrap();
        assert_eq!(to_web.src.as_ref().unwrap().name, "vote-bot");
        assert_eq!(
            (to_web.client_id.as_str(), to_web.server_id.as_str()),
            (bot, web)
        );
        let to_db = edges
            .iter()
            .find(|e| e.dst.as_ref().unwrap().name == "db")
            .unwrap();
        assert_eq!(to_db.no_tls_reason, "not_provided_by_service_discovery");
        assert!(to_db.server_id.is_empty());
        let stats = to_web.stats.as_ref().unwrap();
        assert_eq!((stats.success_count, stats.failure_count), (45.0, 15.0));
        assert_eq!(stats.request_rate, 1.0);
        assert_eq!(to_db.stats, None, "no requests counted on the edge");
    }
}
