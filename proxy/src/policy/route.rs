//! Which of a server's HTTP routes a request is on, by the rules of the
//! Gateway API that `HTTPRoute` follows: of every match that takes the
//! request, the most specific wins (an exact path over a prefix, a longer
//! prefix over a shorter, then a method, then more header and query
//! matches), and of equals, the first.

use super::{Authorization, Client, InvalidPolicy, Meta, RouteLabels, authorizations};
use http::{HeaderName, HeaderValue, Method, Request};
use linkerd_proxy_api::{grpc_route, http_route, inbound};
use regex::Regex;
use std::sync::Arc;

/// One route of a server, and who may use it.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) labels: Arc<RouteLabels>,
    hosts: Box<[HostMatch]>,
    /// Every match of every rule: the route takes a request one of them
    /// takes.
    matches: Box<[Match]>,
    authorizations: Box<[Authorization]>,
}

impl Route {
    /// The first of the route's authorizations that admits `client`.
    pub(crate) fn authorize(&self, client: &Client<'_>) -> Option<&Authorization> {
        super::first_admitting(&self.authorizations, client)
    }
}

#[derive(Debug)]
enum HostMatch {
    Exact(Box<str>),
    /// `.example.com`: any name under it.
    Suffix(Box<str>),
}

#[derive(Debug, Default)]
struct Match {
    path: Option<PathMatch>,
    headers: Box<[HeaderMatch]>,
    query: Box<[QueryMatch]>,
    method: Option<Method>,
}

#[derive(Debug)]
enum PathMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Regex),
}

#[derive(Debug)]
struct HeaderMatch {
    name: HeaderName,
    value: Value<HeaderValue>,
}

#[derive(Debug)]
struct QueryMatch {
    name: Box<str>,
    value: Value<Box<str>>,
}

#[derive(Debug)]
enum Value<T> {
    Exact(T),
    Regex(Regex),
}

/// How specific a match that took a request is; the greatest wins.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    /// Exact 3, prefix 2, regex 1, none 0.
    path_kind: u8,
    path_len: usize,
    method: bool,
    headers: usize,
    query: usize,
}

/// The route `req` is on, if any.
pub(super) fn find<'r, B>(routes: &'r [Route], req: &Request<B>) -> Option<&'r Route> {
    let host = host_of(req);
    let mut best: Option<(Specificity, &Route)> = None;
    for route in routes {
        if !route.hosts.is_empty() && !route.hosts.iter().any(|h| h.matches(host)) {
            continue;
        }
        for m in &route.matches {
            if let Some(s) = m.specificity(req)
                && best.as_ref().is_none_or(|(b, _)| s > *b)
            {
                best = Some((s, route));
            }
        }
    }
    best.map(|(_, r)| r)
}

/// The request's host, without its port.
fn host_of<B>(req: &Request<B>) -> &str {
    let authority = crate::http::authority_of(req);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

impl HostMatch {
    fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        match self {
            Self::Exact(h) => h.eq_ignore_ascii_case(host),
            Self::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

impl Match {
    fn specificity<B>(&self, req: &Request<B>) -> Option<Specificity> {
        let path = req.uri().path();
        let (path_kind, path_len) = match &self.path {
            None => (0, 0),
            Some(PathMatch::Exact(p)) => (path == &**p).then_some((3, p.len()))?,
            Some(PathMatch::Prefix(p)) => prefix_matches(p, path).then_some((2, p.len()))?,
            Some(PathMatch::Regex(r)) => r.is_match(path).then_some((1, 0))?,
        };
        if self.method.as_ref().is_some_and(|m| m != req.method()) {
            return None;
        }
        let headers = req.headers();
        let header_ok = |h: &HeaderMatch| {
            headers.get_all(&h.name).iter().any(|v| match &h.value {
                Value::Exact(want) => v == want,
                Value::Regex(r) => v.to_str().is_ok_and(|v| r.is_match(v)),
            })
        };
        if !self.headers.iter().all(header_ok) {
            return None;
        }
        if !self.query.is_empty() {
            let query = req.uri().query().unwrap_or("");
            let param_ok = |q: &QueryMatch| {
                query.split('&').any(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    *k == *q.name
                        && match &q.value {
                            Value::Exact(want) => v == &**want,
                            Value::Regex(r) => r.is_match(v),
                        }
                })
            };
            if !self.query.iter().all(param_ok) {
                return None;
            }
        }
        Some(Specificity {
            path_kind,
            path_len,
            method: self.method.is_some(),
            headers: self.headers.len(),
            query: self.query.len(),
        })
    }
}

/// A Gateway API path prefix matches whole segments: `/api` takes `/api`
/// and `/api/list`, never `/apis`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn anchored(re: &str) -> Result<Regex, InvalidPolicy> {
    Ok(Regex::new(&format!("^(?:{re})$"))?)
}

fn labels(server: &Arc<Meta>, route: Arc<Meta>) -> Arc<RouteLabels> {
    Arc::new(RouteLabels {
        server: server.clone(),
        route,
    })
}

fn hosts(msgs: &[http_route::HostMatch]) -> Box<[HostMatch]> {
    use http_route::host_match::Match as M;
    msgs.iter()
        .filter_map(|h| match h.r#match.as_ref()? {
            M::Exact(name) => Some(HostMatch::Exact(name.trim_end_matches('.').into())),
            M::Suffix(s) => {
                let labels: Vec<&str> = s.reverse_labels.iter().rev().map(String::as_str).collect();
                Some(HostMatch::Suffix(format!(".{}", labels.join(".")).into()))
            }
        })
        .collect()
}

fn headers(msgs: &[http_route::HeaderMatch]) -> Result<Box<[HeaderMatch]>, InvalidPolicy> {
    use http_route::header_match::Value as V;
    msgs.iter()
        .map(|h| {
            let name = HeaderName::try_from(h.name.as_str())
                .map_err(|e| InvalidPolicy::Match(format!("header {:?}: {e}", h.name)))?;
            let value = match &h.value {
                Some(V::Exact(v)) => Value::Exact(
                    HeaderValue::from_bytes(v)
                        .map_err(|e| InvalidPolicy::Match(format!("header {name}: {e}")))?,
                ),
                Some(V::Regex(r)) => Value::Regex(anchored(r)?),
                None => Value::Regex(anchored(".*")?),
            };
            Ok(HeaderMatch { name, value })
        })
        .collect()
}

fn http_match(m: &http_route::HttpRouteMatch) -> Result<Match, InvalidPolicy> {
    use http_route::{path_match::Kind as P, query_param_match::Value as Q};
    let path = match m.path.as_ref().and_then(|p| p.kind.as_ref()) {
        None => None,
        Some(P::Exact(p)) => Some(PathMatch::Exact(p.as_str().into())),
        Some(P::Prefix(p)) => Some(PathMatch::Prefix(p.as_str().into())),
        Some(P::Regex(r)) => Some(PathMatch::Regex(anchored(r)?)),
    };
    let query = m
        .query_params
        .iter()
        .map(|q| {
            let value = match &q.value {
                Some(Q::Exact(v)) => Value::Exact(v.as_str().into()),
                Some(Q::Regex(r)) => Value::Regex(anchored(r)?),
                None => Value::Regex(anchored(".*")?),
            };
            Ok(QueryMatch {
                name: q.name.as_str().into(),
                value,
            })
        })
        .collect::<Result<_, InvalidPolicy>>()?;
    let method = m
        .method
        .as_ref()
        .map(Method::try_from)
        .transpose()
        .map_err(|e| InvalidPolicy::Match(e.to_string()))?;
    Ok(Match {
        path,
        headers: headers(&m.headers)?,
        query,
        method,
    })
}

/// A gRPC call is a POST to `/SERVICE/METHOD`.
fn grpc_match(m: &grpc_route::GrpcRouteMatch) -> Result<Match, InvalidPolicy> {
    let rpc = m.rpc.clone().unwrap_or_default();
    let path = match (rpc.service.as_str(), rpc.method.as_str()) {
        ("", "") => None,
        (svc, "") => Some(PathMatch::Prefix(format!("/{svc}").into())),
        ("", method) => Some(PathMatch::Regex(anchored(&format!(
            "/[^/]+/{}",
            regex::escape(method)
        ))?)),
        (svc, method) => Some(PathMatch::Exact(format!("/{svc}/{method}").into())),
    };
    Ok(Match {
        path,
        headers: headers(&m.headers)?,
        query: Box::default(),
        method: Some(Method::POST),
    })
}

/// A rule with no match takes every request.
fn or_everything(matches: Vec<Match>) -> Box<[Match]> {
    if matches.is_empty() {
        Box::new([Match::default()])
    } else {
        matches.into()
    }
}

pub(super) fn http_routes(
    server: &Arc<Meta>,
    msgs: &[inbound::HttpRoute],
) -> Result<Box<[Route]>, InvalidPolicy> {
    msgs.iter()
        .map(|r| {
            let rules = r
                .rules
                .iter()
                .map(|rule| rule.matches.iter().map(http_match));
            route(
                server,
                r.metadata.as_ref(),
                &r.hosts,
                rules,
                &r.authorizations,
            )
        })
        .collect()
}

pub(super) fn grpc_routes(
    server: &Arc<Meta>,
    msgs: &[inbound::GrpcRoute],
) -> Result<Box<[Route]>, InvalidPolicy> {
    msgs.iter()
        .map(|r| {
            let rules = r
                .rules
                .iter()
                .map(|rule| rule.matches.iter().map(grpc_match));
            route(
                server,
                r.metadata.as_ref(),
                &r.hosts,
                rules,
                &r.authorizations,
            )
        })
        .collect()
}

/// One route of either kind, from its rules' compiled matches.
fn route<R, M>(
    server: &Arc<Meta>,
    metadata: Option<&linkerd_proxy_api::meta::Metadata>,
    host_matches: &[http_route::HostMatch],
    rules: R,
    authz: &[inbound::Authz],
) -> Result<Route, InvalidPolicy>
where
    R: Iterator<Item = M>,
    M: Iterator<Item = Result<Match, InvalidPolicy>>,
{
    let mut matches = Vec::new();
    for rule in rules {
        matches.extend(or_everything(rule.collect::<Result<_, _>>()?));
    }
    Ok(Route {
        labels: labels(server, Meta::from_proto(metadata, &Default::default())),
        hosts: hosts(host_matches),
        matches: or_everything(matches),
        authorizations: authorizations(authz)?,
    })
}

/// Every request on one route, `default`, with the server's authorizations.
pub(super) fn default_routes(
    server: &Arc<Meta>,
    authz: &[inbound::Authz],
) -> Result<Box<[Route]>, InvalidPolicy> {
    Ok(Box::new([Route {
        labels: labels(server, Meta::default("default")),
        hosts: Box::default(),
        matches: or_everything(Vec::new()),
        authorizations: authorizations(authz)?,
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_route::{HttpRouteMatch, PathMatch as P, path_match::Kind};

    fn route(name: &str, matches: Vec<HttpRouteMatch>) -> inbound::HttpRoute {
        inbound::HttpRoute {
            metadata: Some(linkerd_proxy_api::meta::Metadata {
                kind: Some(linkerd_proxy_api::meta::metadata::Kind::Default(
                    name.into(),
                )),
            }),
            hosts: Vec::new(),
            authorizations: Vec::new(),
            rules: vec![inbound::http_route::Rule {
                matches,
                filters: Vec::new(),
            }],
        }
    }

    fn path(kind: Kind) -> Option<P> {
        Some(P { kind: Some(kind) })
    }

    fn on(routes: &[Route], method: &str, uri: &str) -> Option<String> {
        let req = Request::builder().method(method).uri(uri).body(()).unwrap();
        find(routes, &req).map(|r| r.labels.route.name().to_string())
    }

    #[test]
    fn the_most_specific_match_wins() {
        let server = Meta::default("srv");
        let get = Some(linkerd_proxy_api::http_types::HttpMethod::from(
            &Method::GET,
        ));
        let routes = http_routes(
            &server,
            &[
                route(
                    "everything",
                    vec![HttpRouteMatch {
                        path: path(Kind::Prefix("/".into())),
                        ..Default::default()
                    }],
                ),
                route(
                    "api",
                    vec![HttpRouteMatch {
                        path: path(Kind::Prefix("/api".into())),
                        ..Default::default()
                    }],
                ),
                route(
                    "list",
                    vec![HttpRouteMatch {
                        path: path(Kind::Exact("/api/list".into())),
                        method: get,
                        ..Default::default()
                    }],
                ),
                route(
                    "votes",
                    vec![HttpRouteMatch {
                        path: path(Kind::Regex("/api/vote[A-Z][a-z]+".into())),
                        ..Default::default()
                    }],
                ),
            ],
        )
        .unwrap();
        assert_eq!(on(&routes, "GET", "/api/list").as_deref(), Some("list"));
        assert_eq!(on(&routes, "POST", "/api/list").as_deref(), Some("api"));
        assert_eq!(on(&routes, "GET", "/apis").as_deref(), Some("everything"));
        // A prefix beats a regex, as the Gateway API orders them.
        assert_eq!(
            on(&routes, "POST", "/api/voteDoughnut").as_deref(),
            Some("api")
        );
        assert_eq!(on(&routes, "GET", "/").as_deref(), Some("everything"));

        let only_api = http_routes(
            &server,
            &[route(
                "api",
                vec![HttpRouteMatch {
                    path: path(Kind::Prefix("/api/".into())),
                    ..Default::default()
                }],
            )],
        )
        .unwrap();
        assert_eq!(on(&only_api, "GET", "/api").as_deref(), Some("api"));
        assert_eq!(on(&only_api, "GET", "/web").as_deref(), None);
    }

    #[test]
    fn grpc_methods_headers_and_hosts() {
        let server = Meta::default("srv");
        let routes = grpc_routes(
            &server,
            &[inbound::GrpcRoute {
                metadata: None,
                hosts: vec![http_route::HostMatch {
                    r#match: Some(http_route::host_match::Match::Suffix(
                        http_route::host_match::Suffix {
                            reverse_labels: vec!["local".into(), "cluster".into()],
                        },
                    )),
                }],
                authorizations: Vec::new(),
                rules: vec![inbound::grpc_route::Rule {
                    matches: vec![grpc_route::GrpcRouteMatch {
                        rpc: Some(grpc_route::GrpcRpcMatch {
                            service: "emojivoto.v1.VotingService".into(),
                            method: String::new(),
                        }),
                        headers: vec![http_route::HeaderMatch {
                            name: "x-team".into(),
                            value: Some(http_route::header_match::Value::Exact(b"a".to_vec())),
                        }],
                    }],
                    filters: Vec::new(),
                }],
            }],
        )
        .unwrap();
        let call = |host: &str, path: &str, team: &str| {
            let req = Request::builder()
                .method("POST")
                .uri(format!("http://{host}{path}"))
                .header("x-team", team)
                .body(())
                .unwrap();
            find(&routes, &req).is_some()
        };
        let svc = "voting.emojivoto.svc.cluster.local:8080";
        assert!(call(svc, "/emojivoto.v1.VotingService/VoteDoughnut", "a"));
        assert!(!call(svc, "/emojivoto.v1.VotingService/VoteDoughnut", "b"));
        assert!(!call(svc, "/emojivoto.v1.EmojiService/ListAll", "a"));
        assert!(!call(
            "example.com",
            "/emojivoto.v1.VotingService/VoteDoughnut",
            "a"
        ));
    }

    #[test]
    fn a_bad_regex_is_refused() {
        let err = http_routes(
            &Meta::default("srv"),
            &[route(
                "bad",
                vec![HttpRouteMatch {
                    path: path(Kind::Regex("(".into())),
                    ..Default::default()
                }],
            )],
        )
        .unwrap_err();
        assert!(matches!(err, InvalidPolicy::Regex(_)), "{err}");
    }
}
