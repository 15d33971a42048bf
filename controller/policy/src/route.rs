//! An `HTTPRoute` as the inbound API's route: its matches in the proxy
//! API's terms, and the authorizations of the policies targeting it.

use crate::resources::{self, HttpRoute, PathMatchKind, ValueMatchKind};
use linkerd_proxy_api::{http_route as api, http_types::HttpMethod, inbound, meta};

pub(crate) fn inbound(
    route: &HttpRoute,
    authorizations: Vec<inbound::Authz>,
) -> inbound::HttpRoute {
    let rules = route
        .spec
        .rules
        .iter()
        .map(|rule| inbound::http_route::Rule {
            matches: rule.matches.iter().map(route_match).collect(),
            filters: Vec::new(),
        })
        .collect::<Vec<_>>();
    inbound::HttpRoute {
        metadata: Some(meta::Metadata {
            kind: Some(meta::metadata::Kind::Resource(meta::Resource {
                group: "policy.linkerd.io".into(),
                kind: "HTTPRoute".into(),
                name: route.metadata.name.clone(),
                namespace: route.metadata.namespace.clone(),
                ..Default::default()
            })),
        }),
        hosts: route.spec.hostnames.iter().map(|h| host(h)).collect(),
        authorizations,
        // No rule: the Gateway API's default, every request.
        rules: if rules.is_empty() {
            vec![inbound::http_route::Rule::default()]
        } else {
            rules
        },
    }
}

/// `example.com`, or `*.example.com` for the names under it.
fn host(name: &str) -> api::HostMatch {
    use api::host_match::{Match, Suffix};
    let m = match name.strip_prefix("*.") {
        Some(suffix) => Match::Suffix(Suffix {
            reverse_labels: suffix.rsplit('.').map(String::from).collect(),
        }),
        None => Match::Exact(name.to_string()),
    };
    api::HostMatch { r#match: Some(m) }
}

fn route_match(m: &resources::HttpRouteMatch) -> api::HttpRouteMatch {
    use api::{header_match, path_match::Kind, query_param_match};
    let path = m.path.as_ref().map(|p| api::PathMatch {
        kind: Some(match p.kind {
            PathMatchKind::Exact => Kind::Exact(p.value.clone()),
            PathMatchKind::PathPrefix => Kind::Prefix(p.value.clone()),
            PathMatchKind::RegularExpression => Kind::Regex(p.value.clone()),
        }),
    });
    api::HttpRouteMatch {
        path,
        headers: m
            .headers
            .iter()
            .map(|h| api::HeaderMatch {
                name: h.name.clone(),
                value: Some(match h.kind {
                    ValueMatchKind::Exact => header_match::Value::Exact(h.value.clone().into()),
                    ValueMatchKind::RegularExpression => {
                        header_match::Value::Regex(h.value.clone())
                    }
                }),
            })
            .collect(),
        query_params: m
            .query_params
            .iter()
            .map(|q| api::QueryParamMatch {
                name: q.name.clone(),
                value: Some(match q.kind {
                    ValueMatchKind::Exact => query_param_match::Value::Exact(q.value.clone()),
                    ValueMatchKind::RegularExpression => {
                        query_param_match::Value::Regex(q.value.clone())
                    }
                }),
            })
            .collect(),
        method: m
            .method
            .as_deref()
            .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
            .map(|m| HttpMethod::from(&m)),
    }
}
