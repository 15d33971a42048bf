//! Wire compatibility with Linkerd2's proxy API.
//!
//! Each message is filled in with a non-default value in every field, encoded
//! with the published `linkerd2-proxy-api` crate, decoded with ours, encoded
//! again and decoded with theirs: any field that ours lacks, numbers
//! differently or types differently makes the two ends disagree. The reverse
//! trip (ours, theirs, ours) catches a field that theirs lacks.

use linkerd_proxy_api as ours;
use linkerd2_proxy_api as theirs;
use prost::Message;
use std::collections::HashMap;
use std::fmt::Debug;

/// Theirs -> ours -> theirs and ours -> theirs -> ours must both be lossless.
fn assert_compatible<T, O>(theirs_msg: T)
where
    T: Message + Default + PartialEq + Debug,
    O: Message + Default + PartialEq + Debug,
{
    let wire = theirs_msg.encode_to_vec();
    assert!(!wire.is_empty(), "test message is empty: {theirs_msg:?}");
    let ours_msg = O::decode(wire.as_slice()).expect("ours decodes theirs");
    let back = T::decode(ours_msg.encode_to_vec().as_slice()).expect("theirs decodes ours");
    assert_eq!(back, theirs_msg, "theirs -> ours -> theirs lost data");

    let again = O::decode(back.encode_to_vec().as_slice()).expect("ours decodes theirs again");
    assert_eq!(again, ours_msg, "ours -> theirs -> ours lost data");
}

fn labels(prefix: &str) -> HashMap<String, String> {
    [("namespace", "emojivoto"), ("service", "web")]
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.to_string()))
        .collect()
}

fn v4() -> theirs::net::IpAddress {
    theirs::net::IpAddress {
        ip: Some(theirs::net::ip_address::Ip::Ipv4(0x0a01_0203)),
    }
}

fn v6() -> theirs::net::IpAddress {
    theirs::net::IpAddress {
        ip: Some(theirs::net::ip_address::Ip::Ipv6(theirs::net::IPv6 {
            first: 0x2001_0db8_0000_0001,
            last: 0x0000_0000_0000_0002,
        })),
    }
}

fn tcp(ip: theirs::net::IpAddress, port: u32) -> theirs::net::TcpAddress {
    theirs::net::TcpAddress { ip: Some(ip), port }
}

fn duration(secs: i64, nanos: i32) -> prost_types::Duration {
    prost_types::Duration {
        seconds: secs,
        nanos,
    }
}

fn resource() -> theirs::meta::Metadata {
    theirs::meta::Metadata {
        kind: Some(theirs::meta::metadata::Kind::Resource(
            theirs::meta::Resource {
                group: "core".into(),
                kind: "Service".into(),
                name: "web".into(),
                namespace: "emojivoto".into(),
                section: "http".into(),
                port: 8080,
            },
        )),
    }
}

fn weighted_addr() -> theirs::destination::WeightedAddr {
    use theirs::destination::{http2_client_params as h2p, protocol_hint, tls_identity};
    theirs::destination::WeightedAddr {
        addr: Some(tcp(v4(), 8080)),
        weight: 10_000,
        metric_labels: labels("pod_"),
        tls_identity: Some(theirs::destination::TlsIdentity {
            strategy: Some(tls_identity::Strategy::DnsLikeIdentity(
                tls_identity::DnsLikeIdentity {
                    name: "default.emojivoto.serviceaccount.identity.linkerd.cluster.local".into(),
                },
            )),
            server_name: Some(tls_identity::DnsLikeIdentity {
                name: "web.emojivoto".into(),
            }),
        }),
        protocol_hint: Some(theirs::destination::ProtocolHint {
            protocol: Some(protocol_hint::Protocol::H2(protocol_hint::H2 {})),
            opaque_transport: Some(protocol_hint::OpaqueTransport { inbound_port: 4143 }),
        }),
        authority_override: Some(theirs::destination::AuthorityOverride {
            authority_override: "web.emojivoto.svc.cluster.local:80".into(),
        }),
        http2: Some(theirs::destination::Http2ClientParams {
            flow_control: Some(h2p::FlowControl {
                initial_connection_window_size: 1 << 20,
                initial_stream_window_size: 1 << 16,
                adaptive_flow_control: true,
            }),
            keep_alive: Some(h2p::KeepAlive {
                interval: Some(duration(10, 0)),
                timeout: Some(duration(3, 5)),
                while_idle: true,
            }),
            internals: Some(h2p::Internals {
                max_concurrent_reset_streams: 7,
                max_frame_size: 16_384,
                max_send_buf_size: 1 << 18,
            }),
        }),
        resource_ref: Some(resource()),
    }
}

#[test]
fn destination_get_destination() {
    assert_compatible::<_, ours::destination::GetDestination>(
        theirs::destination::GetDestination {
            scheme: "k8s".into(),
            path: "web.emojivoto.svc.cluster.local:80".into(),
            context_token: r#"{"ns":"emojivoto"}"#.into(),
        },
    );
}

#[test]
fn destination_updates() {
    use theirs::destination::{AddrSet, NoEndpoints, Update, WeightedAddrSet, update};
    let updates = [
        update::Update::Add(WeightedAddrSet {
            addrs: vec![weighted_addr(), weighted_addr()],
            metric_labels: labels(""),
        }),
        update::Update::Remove(AddrSet {
            addrs: vec![tcp(v4(), 80), tcp(v6(), 443)],
        }),
        update::Update::NoEndpoints(NoEndpoints { exists: true }),
    ];
    for u in updates {
        assert_compatible::<_, ours::destination::Update>(Update { update: Some(u) });
    }
}

#[test]
fn destination_uri_identity_and_opaque_hint() {
    use theirs::destination::{protocol_hint, tls_identity};
    let mut addr = weighted_addr();
    addr.tls_identity = Some(theirs::destination::TlsIdentity {
        strategy: Some(tls_identity::Strategy::UriLikeIdentity(
            tls_identity::UriLikeIdentity {
                uri: "spiffe://cluster.local/ns/emojivoto/sa/web".into(),
            },
        )),
        server_name: None,
    });
    addr.protocol_hint = Some(theirs::destination::ProtocolHint {
        protocol: Some(protocol_hint::Protocol::Opaque(protocol_hint::Opaque {})),
        opaque_transport: None,
    });
    assert_compatible::<_, ours::destination::WeightedAddr>(addr);
}

#[test]
fn destination_profile() {
    use theirs::destination::*;
    let method = theirs::http_types::HttpMethod {
        r#type: Some(theirs::http_types::http_method::Type::Registered(
            theirs::http_types::http_method::Registered::Post.into(),
        )),
    };
    let request_match = RequestMatch {
        r#match: Some(request_match::Match::All(request_match::Seq {
            matches: vec![
                RequestMatch {
                    r#match: Some(request_match::Match::Path(PathMatch {
                        regex: "/api/.*".into(),
                    })),
                },
                RequestMatch {
                    r#match: Some(request_match::Match::Not(Box::new(RequestMatch {
                        r#match: Some(request_match::Match::Method(method)),
                    }))),
                },
                RequestMatch {
                    r#match: Some(request_match::Match::Any(request_match::Seq {
                        matches: vec![],
                    })),
                },
            ],
        })),
    };
    let response_match = ResponseMatch {
        r#match: Some(response_match::Match::Any(response_match::Seq {
            matches: vec![
                ResponseMatch {
                    r#match: Some(response_match::Match::Status(HttpStatusRange {
                        min: 500,
                        max: 599,
                    })),
                },
                ResponseMatch {
                    r#match: Some(response_match::Match::Not(Box::new(ResponseMatch {
                        r#match: Some(response_match::Match::All(response_match::Seq {
                            matches: vec![],
                        })),
                    }))),
                },
            ],
        })),
    };
    assert_compatible::<_, ours::destination::DestinationProfile>(DestinationProfile {
        fully_qualified_name: "web.emojivoto.svc.cluster.local".into(),
        opaque_protocol: true,
        routes: vec![Route {
            condition: Some(request_match),
            response_classes: vec![ResponseClass {
                condition: Some(response_match),
                is_failure: true,
            }],
            metrics_labels: labels("route_"),
            is_retryable: true,
            timeout: Some(duration(1, 500)),
        }],
        retry_budget: Some(RetryBudget {
            retry_ratio: 0.2,
            min_retries_per_second: 10,
            ttl: Some(duration(10, 0)),
        }),
        dst_overrides: vec![WeightedDst {
            authority: "web-v2.emojivoto.svc.cluster.local:80".into(),
            weight: 500,
            backend_ref: Some(theirs::meta::Metadata {
                kind: Some(theirs::meta::metadata::Kind::Default("default".into())),
            }),
        }],
        endpoint: Some(weighted_addr()),
        parent_ref: Some(resource()),
        profile_ref: Some(resource()),
    });
}

#[test]
fn identity_certify() {
    assert_compatible::<_, ours::identity::CertifyRequest>(theirs::identity::CertifyRequest {
        identity: "default.emojivoto.serviceaccount.identity.linkerd.cluster.local".into(),
        token: b"eyJhbGciOi".to_vec(),
        certificate_signing_request: vec![0x30, 0x82, 0x01, 0x0a],
    });
    assert_compatible::<_, ours::identity::CertifyResponse>(theirs::identity::CertifyResponse {
        leaf_certificate: vec![0x30, 0x82, 1, 2],
        intermediate_certificates: vec![vec![0x30, 1], vec![0x30, 2]],
        valid_until: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 42,
        }),
    });
}

#[test]
fn tap_observe_request() {
    use theirs::tap::observe_request::{self, Match, r#match};
    let leaf = |m: r#match::Match| Match { r#match: Some(m) };
    let string_match = |prefix: bool| r#match::http::StringMatch {
        r#match: Some(if prefix {
            r#match::http::string_match::Match::Prefix("/api".into())
        } else {
            r#match::http::string_match::Match::Exact("web:8080".into())
        }),
    };
    let http =
        |m: r#match::http::Match| leaf(r#match::Match::Http(r#match::Http { r#match: Some(m) }));
    let all = vec![
        leaf(r#match::Match::Source(r#match::Tcp {
            r#match: Some(r#match::tcp::Match::Netmask(r#match::tcp::Netmask {
                ip: Some(v6()),
                mask: 64,
            })),
        })),
        leaf(r#match::Match::Destination(r#match::Tcp {
            r#match: Some(r#match::tcp::Match::Ports(r#match::tcp::PortRange {
                min: 80,
                max: 8080,
            })),
        })),
        http(r#match::http::Match::Scheme(theirs::http_types::Scheme {
            r#type: Some(theirs::http_types::scheme::Type::Unregistered("h2c".into())),
        })),
        http(r#match::http::Match::Method(
            theirs::http_types::HttpMethod {
                r#type: Some(theirs::http_types::http_method::Type::Unregistered(
                    "PURGE".into(),
                )),
            },
        )),
        http(r#match::http::Match::Authority(string_match(false))),
        http(r#match::http::Match::Path(string_match(true))),
        leaf(r#match::Match::DestinationLabel(r#match::Label {
            key: "deployment".into(),
            value: "web".into(),
        })),
        leaf(r#match::Match::RouteLabel(r#match::Label {
            key: "route".into(),
            value: "GET /".into(),
        })),
        leaf(r#match::Match::Not(Box::new(leaf(r#match::Match::Any(
            r#match::Seq { matches: vec![] },
        ))))),
    ];
    assert_compatible::<_, ours::tap::ObserveRequest>(theirs::tap::ObserveRequest {
        limit: 100,
        r#match: Some(leaf(r#match::Match::All(r#match::Seq { matches: all }))),
        extract: Some(observe_request::Extract {
            extract: Some(observe_request::extract::Extract::Http(
                observe_request::extract::Http {
                    extract: Some(observe_request::extract::http::Extract::Headers(
                        observe_request::extract::http::Headers {},
                    )),
                },
            )),
        }),
    });
}

#[test]
fn tap_events() {
    use theirs::tap::tap_event::{self, http};
    let headers = || theirs::http_types::Headers {
        headers: vec![theirs::http_types::headers::Header {
            name: "content-type".into(),
            value: b"application/grpc".to_vec(),
        }],
    };
    let id = || http::StreamId { base: 3, stream: 7 };
    let events = [
        http::Event::RequestInit(http::RequestInit {
            id: Some(id()),
            method: Some(theirs::http_types::HttpMethod {
                r#type: Some(theirs::http_types::http_method::Type::Registered(
                    theirs::http_types::http_method::Registered::Head.into(),
                )),
            }),
            scheme: Some(theirs::http_types::Scheme {
                r#type: Some(theirs::http_types::scheme::Type::Registered(
                    theirs::http_types::scheme::Registered::Https.into(),
                )),
            }),
            authority: "web:8080".into(),
            path: "/emojivoto.v1.EmojiService/ListAll".into(),
            headers: Some(headers()),
        }),
        http::Event::ResponseInit(http::ResponseInit {
            id: Some(id()),
            since_request_init: Some(duration(0, 1_234_000)),
            http_status: 200,
            headers: Some(headers()),
        }),
        http::Event::ResponseEnd(http::ResponseEnd {
            id: Some(id()),
            since_request_init: Some(duration(0, 2_000_000)),
            since_response_init: Some(duration(0, 56_000)),
            response_bytes: 42,
            eos: Some(theirs::tap::Eos {
                end: Some(theirs::tap::eos::End::GrpcStatusCode(2)),
            }),
            trailers: Some(headers()),
        }),
        http::Event::ResponseEnd(http::ResponseEnd {
            id: Some(id()),
            since_request_init: None,
            since_response_init: None,
            response_bytes: 1,
            eos: Some(theirs::tap::Eos {
                end: Some(theirs::tap::eos::End::ResetErrorCode(8)),
            }),
            trailers: None,
        }),
    ];
    for event in events {
        assert_compatible::<_, ours::tap::TapEvent>(theirs::tap::TapEvent {
            source: Some(tcp(v4(), 51_000)),
            source_meta: Some(tap_event::EndpointMeta { labels: labels("") }),
            route_meta: Some(tap_event::RouteMeta {
                labels: labels("route_"),
            }),
            destination: Some(tcp(v6(), 8080)),
            destination_meta: Some(tap_event::EndpointMeta {
                labels: labels("dst_"),
            }),
            proxy_direction: tap_event::ProxyDirection::Outbound.into(),
            event: Some(tap_event::Event::Http(tap_event::Http {
                event: Some(event),
            })),
        });
    }
}

fn net(ip: theirs::net::IpAddress, prefix_len: u32) -> theirs::net::IpNetwork {
    theirs::net::IpNetwork {
        ip: Some(ip),
        prefix_len,
    }
}

fn headers() -> theirs::http_types::Headers {
    theirs::http_types::Headers {
        headers: vec![theirs::http_types::headers::Header {
            name: "x-canary".into(),
            value: b"1".to_vec(),
        }],
    }
}

/// Every kind of inbound authorization: networks with exceptions, and each
/// way a client may be permitted.
fn authorizations() -> Vec<theirs::inbound::Authz> {
    use theirs::inbound::{authn::permit_mesh_tls::*, authn::*, *};
    let permits = [
        Permit::Unauthenticated(PermitUnauthenticated {}),
        Permit::MeshTls(PermitMeshTls {
            clients: Some(Clients::Unauthenticated(PermitUnauthenticated {})),
        }),
        Permit::MeshTls(PermitMeshTls {
            clients: Some(Clients::Identities(PermitClientIdentities {
                identities: vec![Identity {
                    name: "vote-bot.emojivoto.serviceaccount.identity.linkerd.cluster.local".into(),
                }],
                suffixes: vec![IdentitySuffix {
                    parts: vec!["emojivoto".into(), "serviceaccount".into()],
                }],
            })),
        }),
    ];
    permits
        .into_iter()
        .map(|permit| Authz {
            networks: vec![Network {
                net: Some(net(v4(), 8)),
                except: vec![net(v4(), 32), net(v6(), 128)],
            }],
            authentication: Some(Authn {
                permit: Some(permit),
            }),
            labels: labels("authz_"),
            metadata: Some(resource()),
        })
        .collect()
}

fn http_routes() -> Vec<theirs::inbound::HttpRoute> {
    use theirs::http_route::*;
    use theirs::inbound::http_route::{Filter, Rule, filter};
    let matches = vec![
        HttpRouteMatch {
            path: Some(PathMatch {
                kind: Some(path_match::Kind::Exact("/api/vote".into())),
            }),
            headers: vec![
                HeaderMatch {
                    name: "x-user".into(),
                    value: Some(header_match::Value::Exact(b"bot".to_vec())),
                },
                HeaderMatch {
                    name: "x-trace".into(),
                    value: Some(header_match::Value::Regex("^[0-9a-f]+$".into())),
                },
            ],
            query_params: vec![
                QueryParamMatch {
                    name: "choice".into(),
                    value: Some(query_param_match::Value::Exact(":crab:".into())),
                },
                QueryParamMatch {
                    name: "page".into(),
                    value: Some(query_param_match::Value::Regex("[0-9]+".into())),
                },
            ],
            method: Some(theirs::http_types::HttpMethod {
                r#type: Some(theirs::http_types::http_method::Type::Registered(
                    theirs::http_types::http_method::Registered::Post.into(),
                )),
            }),
        },
        HttpRouteMatch {
            path: Some(PathMatch {
                kind: Some(path_match::Kind::Prefix("/api/".into())),
            }),
            ..Default::default()
        },
        HttpRouteMatch {
            path: Some(PathMatch {
                kind: Some(path_match::Kind::Regex("^/api/v[0-9]+/".into())),
            }),
            ..Default::default()
        },
    ];
    let filters = vec![
        Filter {
            kind: Some(filter::Kind::FailureInjector(HttpFailureInjector {
                status: 503,
                message: "injected".into(),
                ratio: Some(Ratio {
                    numerator: 1,
                    denominator: 10,
                }),
            })),
        },
        Filter {
            kind: Some(filter::Kind::RequestHeaderModifier(RequestHeaderModifier {
                add: Some(headers()),
                set: Some(headers()),
                remove: vec!["x-debug".into()],
            })),
        },
        Filter {
            kind: Some(filter::Kind::Redirect(RequestRedirect {
                scheme: Some(theirs::http_types::Scheme {
                    r#type: Some(theirs::http_types::scheme::Type::Registered(
                        theirs::http_types::scheme::Registered::Https.into(),
                    )),
                }),
                host: "web.example.com".into(),
                path: Some(PathModifier {
                    replace: Some(path_modifier::Replace::Prefix("/v2/".into())),
                }),
                port: 8443,
                status: 301,
            })),
        },
    ];
    vec![theirs::inbound::HttpRoute {
        metadata: Some(resource()),
        hosts: vec![
            HostMatch {
                r#match: Some(host_match::Match::Exact("web.example.com".into())),
            },
            HostMatch {
                r#match: Some(host_match::Match::Suffix(host_match::Suffix {
                    reverse_labels: vec!["com".into(), "example".into()],
                })),
            },
        ],
        authorizations: authorizations(),
        rules: vec![Rule { matches, filters }],
    }]
}

fn grpc_routes() -> Vec<theirs::inbound::GrpcRoute> {
    use theirs::grpc_route::*;
    use theirs::inbound::grpc_route::{Filter, Rule, filter};
    vec![theirs::inbound::GrpcRoute {
        metadata: Some(resource()),
        hosts: vec![theirs::http_route::HostMatch {
            r#match: Some(theirs::http_route::host_match::Match::Exact(
                "voting-svc".into(),
            )),
        }],
        authorizations: authorizations(),
        rules: vec![Rule {
            matches: vec![GrpcRouteMatch {
                rpc: Some(GrpcRpcMatch {
                    service: "emojivoto.v1.VotingService".into(),
                    method: "Vote".into(),
                }),
                headers: vec![theirs::http_route::HeaderMatch {
                    name: "x-user".into(),
                    value: Some(theirs::http_route::header_match::Value::Exact(
                        b"bot".to_vec(),
                    )),
                }],
            }],
            filters: vec![
                Filter {
                    kind: Some(filter::Kind::FailureInjector(GrpcFailureInjector {
                        code: 14,
                        message: "injected".into(),
                        ratio: Some(theirs::http_route::Ratio {
                            numerator: 1,
                            denominator: 4,
                        }),
                    })),
                },
                Filter {
                    kind: Some(filter::Kind::RequestHeaderModifier(
                        theirs::http_route::RequestHeaderModifier {
                            add: Some(headers()),
                            set: None,
                            remove: vec!["x-debug".into()],
                        },
                    )),
                },
            ],
        }],
    }]
}

fn rate_limit() -> theirs::inbound::HttpLocalRateLimit {
    use theirs::inbound::http_local_rate_limit::{Limit, Override, r#override};
    theirs::inbound::HttpLocalRateLimit {
        metadata: Some(resource()),
        total: Some(Limit {
            requests_per_second: 1000,
        }),
        identity: Some(Limit {
            requests_per_second: 100,
        }),
        overrides: vec![Override {
            limit: Some(Limit {
                requests_per_second: 10,
            }),
            clients: Some(r#override::ClientIdentities {
                identities: vec![theirs::inbound::Identity {
                    name: "vote-bot.emojivoto.serviceaccount.identity.linkerd.cluster.local".into(),
                }],
            }),
        }],
    }
}

#[test]
fn inbound_port_spec() {
    assert_compatible::<_, ours::inbound::PortSpec>(theirs::inbound::PortSpec {
        workload: "{\"ns\":\"emojivoto\",\"pod\":\"web-0\"}".into(),
        port: 8080,
    });
}

/// A server of each protocol, with every route, filter, match and
/// authorization the API has.
#[test]
fn inbound_servers() {
    use theirs::inbound::proxy_protocol::{self, Kind};
    let protocols = [
        Kind::Detect(proxy_protocol::Detect {
            timeout: Some(duration(10, 0)),
            http_routes: http_routes(),
            http_local_rate_limit: Some(rate_limit()),
        }),
        Kind::Opaque(proxy_protocol::Opaque {}),
        Kind::Tls(proxy_protocol::Tls {}),
        Kind::Http1(proxy_protocol::Http1 {
            routes: http_routes(),
            local_rate_limit: Some(rate_limit()),
        }),
        Kind::Http2(proxy_protocol::Http2 {
            routes: http_routes(),
            local_rate_limit: Some(rate_limit()),
        }),
        Kind::Grpc(proxy_protocol::Grpc {
            routes: grpc_routes(),
        }),
    ];
    for kind in protocols {
        assert_compatible::<_, ours::inbound::Server>(theirs::inbound::Server {
            protocol: Some(theirs::inbound::ProxyProtocol { kind: Some(kind) }),
            server_ips: vec![v4(), v6()],
            authorizations: authorizations(),
            labels: labels("srv_"),
        });
    }
}

fn backoff() -> theirs::outbound::ExponentialBackoff {
    theirs::outbound::ExponentialBackoff {
        min_backoff: Some(duration(0, 25_000_000)),
        max_backoff: Some(duration(10, 0)),
        jitter_ratio: 0.5,
        respect_retry_after_hint: true,
    }
}

/// Balancers fed by destination (each load measure), and a single forwarded
/// address: every kind of backend.
fn backends() -> [theirs::outbound::Backend; 3] {
    use theirs::outbound::backend::{self, balance_p2c, endpoint_discovery};
    use theirs::outbound::{Backend, Queue};
    let queue = Some(Queue {
        capacity: 100,
        failfast_timeout: Some(duration(3, 0)),
    });
    let discovery = || {
        Some(backend::EndpointDiscovery {
            kind: Some(endpoint_discovery::Kind::Dst(
                endpoint_discovery::DestinationGet {
                    path: "web.emojivoto.svc.cluster.local:80".into(),
                },
            )),
        })
    };
    [
        Backend {
            metadata: Some(resource()),
            kind: Some(backend::Kind::Balancer(backend::BalanceP2c {
                discovery: discovery(),
                load: Some(balance_p2c::Load::PeakEwma(balance_p2c::PeakEwma {
                    default_rtt: Some(duration(0, 30_000_000)),
                    decay: Some(duration(10, 0)),
                })),
            })),
            queue,
        },
        Backend {
            metadata: Some(resource()),
            kind: Some(backend::Kind::Balancer(backend::BalanceP2c {
                discovery: discovery(),
                load: Some(balance_p2c::Load::PenaltyPeakEwma(
                    balance_p2c::PenaltyPeakEwma {
                        default_rtt: Some(duration(0, 30_000_000)),
                        decay: Some(duration(10, 0)),
                        penalty: Some(duration(1, 0)),
                        max_retry_after: Some(duration(30, 0)),
                        penalty_decay: Some(duration(5, 0)),
                    },
                )),
            })),
            queue,
        },
        Backend {
            metadata: Some(resource()),
            kind: Some(backend::Kind::Forward(weighted_addr())),
            queue,
        },
    ]
}

/// Outbound routes of one kind: a rule per distribution (empty, first
/// available, random by weight), every filter, retries and timeouts.
macro_rules! outbound_routes {
    ($route:ident, $module:ident, $matches:expr, $filters:expr, $conditions:expr) => {{
        use theirs::outbound::$module::{distribution, *};
        let route_backends = || {
            backends()
                .into_iter()
                .map(|backend| RouteBackend {
                    backend: Some(backend),
                    filters: $filters,
                    request_timeout: Some(duration(1, 0)),
                })
                .collect::<Vec<_>>()
        };
        let distributions = [
            distribution::Kind::Empty(distribution::Empty {}),
            distribution::Kind::FirstAvailable(distribution::FirstAvailable {
                backends: route_backends(),
            }),
            distribution::Kind::RandomAvailable(distribution::RandomAvailable {
                backends: route_backends()
                    .into_iter()
                    .zip([80, 10, 10])
                    .map(|(backend, weight)| WeightedRouteBackend {
                        backend: Some(backend),
                        weight,
                    })
                    .collect(),
            }),
        ];
        vec![theirs::outbound::$route {
            metadata: Some(resource()),
            hosts: vec![theirs::http_route::HostMatch {
                r#match: Some(theirs::http_route::host_match::Match::Exact(
                    "web-svc".into(),
                )),
            }],
            rules: distributions
                .into_iter()
                .map(|kind| Rule {
                    matches: $matches,
                    filters: $filters,
                    backends: Some(Distribution { kind: Some(kind) }),
                    request_timeout: Some(duration(5, 0)),
                    timeouts: Some(theirs::http_route::Timeouts {
                        response: Some(duration(1, 0)),
                        request: Some(duration(5, 0)),
                        idle: Some(duration(60, 0)),
                    }),
                    retry: Some(Retry {
                        max_retries: 3,
                        max_request_bytes: 65_536,
                        conditions: Some($conditions),
                        timeout: Some(duration(0, 500_000_000)),
                        backoff: Some(backoff()),
                    }),
                    allow_l5d_request_headers: true,
                })
                .collect(),
        }]
    }};
}

#[allow(deprecated)]
fn outbound_http_routes() -> Vec<theirs::outbound::HttpRoute> {
    use theirs::outbound::http_route::filter::Kind as F;
    let filters = || {
        vec![
            theirs::outbound::http_route::Filter {
                kind: Some(F::FailureInjector(
                    theirs::http_route::HttpFailureInjector {
                        status: 500,
                        message: "injected".into(),
                        ratio: Some(theirs::http_route::Ratio {
                            numerator: 1,
                            denominator: 100,
                        }),
                    },
                )),
            },
            theirs::outbound::http_route::Filter {
                kind: Some(F::RequestHeaderModifier(
                    theirs::http_route::RequestHeaderModifier {
                        add: Some(headers()),
                        set: None,
                        remove: vec!["x-debug".into()],
                    },
                )),
            },
            theirs::outbound::http_route::Filter {
                kind: Some(F::ResponseHeaderModifier(
                    theirs::http_route::ResponseHeaderModifier {
                        add: None,
                        set: Some(headers()),
                        remove: vec!["server".into()],
                    },
                )),
            },
            theirs::outbound::http_route::Filter {
                kind: Some(F::Redirect(theirs::http_route::RequestRedirect {
                    host: "web.example.com".into(),
                    status: 302,
                    ..Default::default()
                })),
            },
        ]
    };
    let conditions = theirs::outbound::http_route::retry::Conditions {
        status_ranges: vec![
            theirs::outbound::http_route::retry::conditions::StatusRange {
                start: 500,
                end: 599,
            },
        ],
    };
    let matches = || {
        vec![theirs::http_route::HttpRouteMatch {
            path: Some(theirs::http_route::PathMatch {
                kind: Some(theirs::http_route::path_match::Kind::Prefix("/api/".into())),
            }),
            ..Default::default()
        }]
    };
    outbound_routes!(
        HttpRoute,
        http_route,
        matches(),
        filters(),
        conditions.clone()
    )
}

#[allow(deprecated)]
fn outbound_grpc_routes() -> Vec<theirs::outbound::GrpcRoute> {
    use theirs::outbound::grpc_route::filter::Kind as F;
    let filters = || {
        vec![
            theirs::outbound::grpc_route::Filter {
                kind: Some(F::FailureInjector(
                    theirs::grpc_route::GrpcFailureInjector {
                        code: 14,
                        message: "injected".into(),
                        ratio: None,
                    },
                )),
            },
            theirs::outbound::grpc_route::Filter {
                kind: Some(F::RequestHeaderModifier(
                    theirs::http_route::RequestHeaderModifier {
                        add: Some(headers()),
                        ..Default::default()
                    },
                )),
            },
        ]
    };
    let conditions = theirs::outbound::grpc_route::retry::Conditions {
        cancelled: true,
        deadine_exceeded: true,
        resource_exhausted: true,
        internal: true,
        unavailable: true,
    };
    let matches = || {
        vec![theirs::grpc_route::GrpcRouteMatch {
            rpc: Some(theirs::grpc_route::GrpcRpcMatch {
                service: "emojivoto.v1.EmojiService".into(),
                method: String::new(),
            }),
            headers: vec![],
        }]
    };
    outbound_routes!(GrpcRoute, grpc_route, matches(), filters(), conditions)
}

/// Opaque and TLS routes: distributions and the filters that refuse.
macro_rules! opaque_routes {
    ($route:ident, $module:ident, { $($extra:tt)* }) => {{
        use theirs::outbound::$module::{distribution, filter, *};
        let filters = || {
            vec![
                Filter {
                    kind: Some(filter::Kind::Invalid(theirs::opaque_route::Invalid {
                        message: "no backend".into(),
                    })),
                },
                Filter {
                    kind: Some(filter::Kind::Forbidden(theirs::opaque_route::Forbidden {})),
                },
            ]
        };
        let route_backends = || {
            backends()
                .into_iter()
                .map(|backend| RouteBackend {
                    backend: Some(backend),
                    filters: filters(),
                })
                .collect::<Vec<_>>()
        };
        let distributions = [
            distribution::Kind::Empty(distribution::Empty {}),
            distribution::Kind::FirstAvailable(distribution::FirstAvailable {
                backends: route_backends(),
            }),
            distribution::Kind::RandomAvailable(distribution::RandomAvailable {
                backends: route_backends()
                    .into_iter()
                    .map(|backend| WeightedRouteBackend {
                        backend: Some(backend),
                        weight: 50,
                    })
                    .collect(),
            }),
        ];
        vec![theirs::outbound::$route {
            metadata: Some(resource()),
            rules: distributions
                .into_iter()
                .map(|kind| Rule {
                    backends: Some(Distribution { kind: Some(kind) }),
                    filters: filters(),
                })
                .collect(),
            $($extra)*
        }]
    }};
}

#[test]
fn outbound_traffic_specs() {
    use theirs::outbound::{TrafficSpec, traffic_spec::Target};
    for target in [
        Target::Addr(tcp(v4(), 80)),
        Target::Authority("web-svc.emojivoto.svc.cluster.local:80".into()),
    ] {
        assert_compatible::<_, ours::outbound::TrafficSpec>(TrafficSpec {
            source_workload: "emojivoto:vote-bot-5d8f9c-abcde".into(),
            target: Some(target),
        });
    }
}

/// A policy of each protocol, with every route kind, backend, filter,
/// retry condition and failure accrual the API has.
#[test]
fn outbound_policies() {
    use theirs::outbound::failure_accrual::{self, ConsecutiveFailures, Unified};
    use theirs::outbound::proxy_protocol::{self, Kind};
    use theirs::outbound::{EjectionConfig, FailureAccrual, OutboundPolicy, ProxyProtocol};
    let accruals = [
        failure_accrual::Kind::ConsecutiveFailures(ConsecutiveFailures {
            max_failures: 7,
            backoff: Some(backoff()),
        }),
        failure_accrual::Kind::Unified(Unified {
            success_rate_threshold: 0.8,
            decay: Some(duration(10, 0)),
            min_requests: 20,
            max_consecutive_failures: 5,
            backoff: Some(backoff()),
        }),
    ];
    let accrual = |kind: failure_accrual::Kind| {
        Some(FailureAccrual {
            kind: Some(kind),
            ejection: Some(EjectionConfig {
                min_ready_endpoints: 1,
            }),
        })
    };
    let opaque = || proxy_protocol::Opaque {
        routes: opaque_routes!(OpaqueRoute, opaque_route, {}),
    };
    let mut kinds = Vec::new();
    for kind in accruals {
        let http1 = proxy_protocol::Http1 {
            routes: outbound_http_routes(),
            failure_accrual: accrual(kind),
        };
        let http2 = proxy_protocol::Http2 {
            routes: outbound_http_routes(),
            failure_accrual: accrual(kind),
        };
        kinds.extend([
            Kind::Detect(proxy_protocol::Detect {
                timeout: Some(duration(10, 0)),
                opaque: Some(opaque()),
                http1: Some(http1.clone()),
                http2: Some(http2.clone()),
            }),
            Kind::Http1(http1),
            Kind::Http2(http2),
            Kind::Grpc(proxy_protocol::Grpc {
                routes: outbound_grpc_routes(),
                failure_accrual: accrual(kind),
            }),
        ]);
    }
    kinds.push(Kind::Opaque(opaque()));
    kinds.push(Kind::Tls(proxy_protocol::Tls {
        routes: opaque_routes!(TlsRoute, tls_route, {
            snis: vec![
                theirs::tls_route::SniMatch {
                    r#match: Some(theirs::tls_route::sni_match::Match::Exact(
                        "web.example.com".into(),
                    )),
                },
                theirs::tls_route::SniMatch {
                    r#match: Some(theirs::tls_route::sni_match::Match::Suffix(
                        theirs::tls_route::sni_match::Suffix {
                            reverse_labels: vec!["com".into(), "example".into()],
                        },
                    )),
                },
            ],
        }),
    }));
    for kind in kinds {
        assert_compatible::<_, ours::outbound::OutboundPolicy>(OutboundPolicy {
            protocol: Some(ProxyProtocol { kind: Some(kind) }),
            metadata: Some(resource()),
        });
    }
}

/// gRPC routes requests by `/package.Service/Method`: the names must match too.
#[test]
fn service_and_method_names() {
    assert_eq!(
        ours::destination::destination_server::SERVICE_NAME,
        theirs::destination::destination_server::SERVICE_NAME
    );
    assert_eq!(
        ours::identity::identity_server::SERVICE_NAME,
        theirs::identity::identity_server::SERVICE_NAME
    );
    assert_eq!(
        ours::tap::tap_server::SERVICE_NAME,
        theirs::tap::tap_server::SERVICE_NAME
    );
    assert_eq!(
        ours::inbound::inbound_server_policies_server::SERVICE_NAME,
        theirs::inbound::inbound_server_policies_server::SERVICE_NAME
    );
    assert_eq!(
        ours::outbound::outbound_policies_server::SERVICE_NAME,
        theirs::outbound::outbound_policies_server::SERVICE_NAME
    );
    let generated = [
        include_str!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.destination.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.identity.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.tap.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.inbound.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.outbound.rs")),
    ]
    .concat();
    for path in [
        "/io.linkerd.proxy.destination.Destination/Get",
        "/io.linkerd.proxy.destination.Destination/GetProfile",
        "/io.linkerd.proxy.identity.Identity/Certify",
        "/io.linkerd.proxy.tap.Tap/Observe",
        "/io.linkerd.proxy.inbound.InboundServerPolicies/GetPort",
        "/io.linkerd.proxy.inbound.InboundServerPolicies/WatchPort",
        "/io.linkerd.proxy.outbound.OutboundPolicies/Get",
        "/io.linkerd.proxy.outbound.OutboundPolicies/Watch",
    ] {
        assert!(
            generated.contains(&format!("\"{path}\"")),
            "no method {path}"
        );
    }
}
