//! Hop-by-hop headers: they describe one connection, so a proxy must not pass
//! them on (RFC 9110 §7.6.1), and HTTP/2 forbids them outright.

use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE},
};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether `Connection` lists `upgrade`: the request asks to switch protocols.
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether a header is hop-by-hop whatever `Connection` says.
fn always_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == TE
        || name == UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Removes the hop-by-hop headers. With `upgrade`, `Upgrade` survives and
/// `Connection: upgrade` is set, because the handshake must reach the peer.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none: one pass over their few names (standard
    // ones compare as small integers) instead of a hashed lookup per name.
    if !upgrade && !headers.keys().any(always_hop_by_hop) {
        return;
    }
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| !(upgrade && n == UPGRADE))
            // `Host` is the request's authority, for every recipient (RFC
            // 9110 §7.2): a Connection option cannot make it hop-by-hop.
            // Removed, it would be replaced by the target's address, and
            // the application would see a request the client did not send.
            .filter(|n| n != HOST)
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    // `TE: trailers` is the one form HTTP/2 allows, and gRPC needs it:
    // anything else goes, from every `TE` line (looking at the first alone
    // let `TE: trailers` then `TE: gzip` through, which an HTTP/2 peer
    // refuses).
    if headers
        .get_all(TE)
        .iter()
        .any(|te| te.as_bytes() != b"trailers")
    {
        let trailers = headers.get_all(TE).iter().any(|te| {
            te.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
        headers.remove(TE);
        if trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `http1_inbound` fuzz target: `Connection: Host` took
    /// the client's `Host` away, and the proxy put the target's address in
    /// its place.
    #[test]
    fn connection_cannot_name_host() {
        let mut h = map(&[("host", "y"), ("connection", "Host, x1.0"), ("x1.0", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.get("host").unwrap(), "y");
        assert!(!h.contains_key("x1.0"));
        assert!(!h.contains_key("connection"));
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn strips_listed_and_standard_hop_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("proxy-connection", "close"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("x-end", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-end"], "kept");
    }

    #[test]
    fn a_message_without_hop_headers_is_left_alone() {
        let mut h = map(&[("content-length", "5"), ("x-custom", "1"), ("host", "web")]);
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        // A standard hop header alone, with no `Connection`, still goes.
        let mut h = map(&[("keep-alive", "timeout=5"), ("x-custom", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn keeps_te_trailers() {
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
        // Every TE line is looked at, not only the first.
        for lines in [
            &[("te", "trailers"), ("te", "gzip")][..],
            &[("te", "gzip"), ("te", "trailers")],
            &[("te", "gzip, trailers")],
        ] {
            let mut h = map(lines);
            strip_hop_by_hop(&mut h, false);
            let te: Vec<_> = h.get_all(TE).iter().collect();
            assert_eq!(te, ["trailers"], "{lines:?}");
        }
        let mut h = map(&[("te", "gzip"), ("te", "deflate")]);
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key(TE));
    }

    #[test]
    fn upgrade_survives() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "k");
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
    }
}
