//! Tap events as people read them: SPEC's `req`/`rsp`/`end` lines and
//! Linkerd's `tap -o json` objects. Shared by `linkerd tap`, `linkerd top`
//! and the web dashboard's live calls.

use linkerd_proxy_api::{
    net::{IpAddress, TcpAddress, ip_address},
    tap::{
        TapEvent, eos,
        tap_event::{self, ProxyDirection, http::Event},
    },
};
use std::{collections::BTreeMap, fmt::Write, net::IpAddr};

fn ip(ip: Option<&IpAddress>) -> Option<IpAddr> {
    match ip?.ip? {
        ip_address::Ip::Ipv4(v4) => Some(IpAddr::V4(v4.into())),
        ip_address::Ip::Ipv6(v6) => {
            let bits = (u128::from(v6.first) << 64) | u128::from(v6.last);
            Some(IpAddr::V6(bits.into()))
        }
    }
}

pub fn addr(a: Option<&TcpAddress>) -> String {
    match a.and_then(|a| Some((ip(a.ip.as_ref())?, a.port))) {
        Some((IpAddr::V6(v6), port)) => format!("[{v6}]:{port}"),
        Some((ip, port)) => format!("{ip}:{port}"),
        None => "-".into(),
    }
}

pub fn labels(meta: Option<&tap_event::EndpointMeta>) -> BTreeMap<&str, &str> {
    meta.map(|m| {
        m.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    })
    .unwrap_or_default()
}

/// `deploy/web`, or `po/web-1` for a pod without an owner.
fn resource_of(labels: &BTreeMap<&str, &str>) -> Option<String> {
    for kind in [
        "deployment",
        "statefulset",
        "daemonset",
        "replicaset",
        "job",
    ] {
        if let Some(name) = labels.get(kind) {
            return Some(format!(
                "{}/{name}",
                linkerd_proxy_api::tap_controller::short_kind(kind)
            ));
        }
    }
    labels.get("pod").map(|p| format!("po/{p}"))
}

pub fn micros(d: Option<&prost_types::Duration>) -> u128 {
    d.map_or(0, |d| {
        (d.seconds.max(0) as u128) * 1_000_000 + (d.nanos.max(0) as u128) / 1_000
    })
}

pub fn method_name(r: &tap_event::http::RequestInit) -> String {
    r.method
        .as_ref()
        .and_then(|m| http::Method::try_from(m).ok())
        .map_or_else(|| "?".into(), |m| m.to_string())
}

/// gRPC's name for a status code, as Linkerd prints it.
fn grpc_status_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| code.to_string(), |n| n.to_string())
}

/// One event as SPEC's line: `req id=0:1 proxy=in  src=... dst=... tls=true ...`.
pub fn line(e: &TapEvent, wide: bool) -> Option<String> {
    let inbound = e.proxy_direction == ProxyDirection::Inbound as i32;
    let (src, dst) = (
        labels(e.source_meta.as_ref()),
        labels(e.destination_meta.as_ref()),
    );
    // TLS is what the proxy saw of the peer it talked to.
    let tls = if inbound { &src } else { &dst };
    let tls = tls.get("tls").copied().unwrap_or("no_identity");
    let http = match &e.event {
        Some(tap_event::Event::Http(h)) => h.event.as_ref()?,
        None => return None,
    };
    let (kind, id) = match http {
        Event::RequestInit(r) => ("req", r.id),
        Event::ResponseInit(r) => ("rsp", r.id),
        Event::ResponseEnd(r) => ("end", r.id),
    };
    let id = id.unwrap_or_default();
    let mut out = format!(
        "{kind} id={}:{} proxy={:<3} src={} dst={} tls={tls}",
        id.base,
        id.stream,
        if inbound { "in" } else { "out" },
        addr(e.source.as_ref()),
        addr(e.destination.as_ref()),
    );
    match http {
        Event::RequestInit(r) => {
            let _ = write!(
                out,
                " :method={} :authority={} :path={}",
                method_name(r),
                r.authority,
                r.path
            );
        }
        Event::ResponseInit(r) => {
            let _ = write!(
                out,
                " :status={} latency={}µs",
                r.http_status,
                micros(r.since_request_init.as_ref())
            );
        }
        Event::ResponseEnd(r) => {
            match r.eos.as_ref().and_then(|e| e.end) {
                Some(eos::End::GrpcStatusCode(code)) => {
                    let _ = write!(out, " grpc-status={}", grpc_status_name(code));
                }
                Some(eos::End::ResetErrorCode(code)) => {
                    let _ = write!(out, " reset-error={code}");
                }
                None => {}
            }
            let _ = write!(
                out,
                " duration={}µs response-length={}B",
                micros(r.since_response_init.as_ref()),
                r.response_bytes
            );
        }
    }
    if wide {
        for (side, l) in [("src", &src), ("dst", &dst)] {
            if let Some(res) = resource_of(l) {
                let _ = write!(out, " {side}_res={res}");
            }
            if let Some(ns) = l.get("namespace") {
                let _ = write!(out, " {side}_ns={ns}");
            }
        }
    }
    Some(out)
}

fn endpoint_json(
    a: Option<&TcpAddress>,
    meta: Option<&tap_event::EndpointMeta>,
) -> serde_json::Value {
    let (ip, port) = a
        .and_then(|a| Some((ip(a.ip.as_ref())?.to_string(), a.port)))
        .unwrap_or_default();
    serde_json::json!({ "ip": ip, "port": port, "metadata": labels(meta) })
}

/// One event as a JSON object, in the shape of Linkerd's `tap -o json`.
pub fn json(e: &TapEvent) -> serde_json::Value {
    let mut v = serde_json::json!({
        "source": endpoint_json(e.source.as_ref(), e.source_meta.as_ref()),
        "destination": endpoint_json(e.destination.as_ref(), e.destination_meta.as_ref()),
        "proxyDirection": if e.proxy_direction == ProxyDirection::Inbound as i32 { "INBOUND" } else { "OUTBOUND" },
    });
    let id = |id: Option<tap_event::http::StreamId>| {
        let id = id.unwrap_or_default();
        serde_json::json!({ "base": id.base, "stream": id.stream })
    };
    let http = match &e.event {
        Some(tap_event::Event::Http(h)) => h.event.as_ref(),
        None => None,
    };
    let (key, body) = match http {
        Some(Event::RequestInit(r)) => (
            "requestInitEvent",
            serde_json::json!({
                "id": id(r.id),
                "method": method_name(r),
                "authority": r.authority,
                "path": r.path,
            }),
        ),
        Some(Event::ResponseInit(r)) => (
            "responseInitEvent",
            serde_json::json!({
                "id": id(r.id),
                "sinceRequestInit": { "micros": micros(r.since_request_init.as_ref()) as u64 },
                "httpStatus": r.http_status,
            }),
        ),
        Some(Event::ResponseEnd(r)) => (
            "responseEndEvent",
            serde_json::json!({
                "id": id(r.id),
                "sinceRequestInit": { "micros": micros(r.since_request_init.as_ref()) as u64 },
                "sinceResponseInit": { "micros": micros(r.since_response_init.as_ref()) as u64 },
                "responseBytes": r.response_bytes,
                "grpcStatusCode": r.eos.as_ref().and_then(|e| e.end).and_then(|e| match e {
                    eos::End::GrpcStatusCode(c) => Some(c),
                    eos::End::ResetErrorCode(_) => None,
                }),
            }),
        ),
        None => return v,
    };
    v[key] = body;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_proxy_api::{
        http_types::{HttpMethod, http_method},
        tap::{Eos, tap_event::http},
    };

    fn event(inbound: bool, e: Event) -> TapEvent {
        let meta = |pairs: &[(&str, &str)]| {
            Some(tap_event::EndpointMeta {
                labels: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
        };
        TapEvent {
            source: Some(
                "10.1.0.5:40000"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            ),
            source_meta: meta(&[
                ("tls", "true"),
                ("pod", "vote-bot-1"),
                ("deployment", "vote-bot"),
                ("namespace", "emojivoto"),
            ]),
            destination: Some(
                "10.1.0.7:8080"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            ),
            destination_meta: meta(&[("pod", "web-0"), ("namespace", "emojivoto")]),
            route_meta: None,
            proxy_direction: if inbound {
                ProxyDirection::Inbound as i32
            } else {
                ProxyDirection::Outbound as i32
            },
            event: Some(tap_event::Event::Http(tap_event::Http { event: Some(e) })),
        }
    }

    fn id() -> Option<http::StreamId> {
        Some(http::StreamId { base: 0, stream: 1 })
    }

    #[test]
    fn lines_follow_linkerd() {
        let req = event(
            true,
            Event::RequestInit(http::RequestInit {
                id: id(),
                method: Some(HttpMethod {
                    r#type: Some(http_method::Type::Registered(
                        http_method::Registered::Get as i32,
                    )),
                }),
                scheme: None,
                authority: "web.emojivoto.svc.cluster.local".into(),
                path: "/api/list".into(),
                headers: None,
            }),
        );
        assert_eq!(
            line(&req, false).unwrap(),
            "req id=0:1 proxy=in  src=10.1.0.5:40000 dst=10.1.0.7:8080 tls=true :method=GET :authority=web.emojivoto.svc.cluster.local :path=/api/list"
        );
        assert!(line(&req, true).unwrap().ends_with(
            " src_res=deploy/vote-bot src_ns=emojivoto dst_res=po/web-0 dst_ns=emojivoto"
        ));
        let duration = |micros: i32| {
            Some(prost_types::Duration {
                seconds: 0,
                nanos: micros * 1000,
            })
        };
        let rsp = event(
            true,
            Event::ResponseInit(http::ResponseInit {
                id: id(),
                since_request_init: duration(1234),
                http_status: 200,
                headers: None,
            }),
        );
        assert!(
            line(&rsp, false)
                .unwrap()
                .ends_with("tls=true :status=200 latency=1234µs")
        );
        let end = event(
            false,
            Event::ResponseEnd(http::ResponseEnd {
                id: id(),
                since_request_init: duration(2000),
                since_response_init: duration(56),
                response_bytes: 42,
                eos: Some(Eos {
                    end: Some(eos::End::GrpcStatusCode(5)),
                }),
                trailers: None,
            }),
        );
        // Outbound: TLS is the server's, which this event's metadata lacks.
        assert_eq!(
            line(&end, false).unwrap(),
            "end id=0:1 proxy=out src=10.1.0.5:40000 dst=10.1.0.7:8080 tls=no_identity grpc-status=NotFound duration=56µs response-length=42B"
        );
        let j = json(&end);
        assert_eq!(j["responseEndEvent"]["grpcStatusCode"], 5);
        assert_eq!(j["proxyDirection"], "OUTBOUND");
        assert_eq!(j["source"]["metadata"]["pod"], "vote-bot-1");
    }
}
