//! Tap behind the Kubernetes API server, as Linkerd serves it: the tap
//! controller is an aggregated API (`v1alpha1.tap.linkerd.io`), so a tap is
//! a `watch` the API server authorizes with the user's own RBAC before it
//! proxies the request on. The client POSTs a `TapRequest` to the target's
//! path; the answer is a stream of length-prefixed `TapApiFrame`s.
//!
//! The path is the API server's view of what is tapped (RBAC is checked on
//! it), so it is built and read here, once, for the CLI, the dashboard and
//! the controller.

use super::{Resource, TapApiFrame, TapRequest, canonical_kind, plural_kind, tap_api_frame::Frame};
use crate::tap::TapEvent;
use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const GROUP: &str = "tap.linkerd.io";
pub const VERSION: &str = "v1alpha1";
/// Where the group's version lives on the API server.
pub const PREFIX: &str = "/apis/tap.linkerd.io/v1alpha1";
/// The subresource a named target's path ends with.
pub const SUBRESOURCE: &str = "tap";
/// The media type of the stream.
pub const CONTENT_TYPE: &str = "application/vnd.linkerd.tap-frames";
/// A frame larger than this is refused rather than buffered: an event is a
/// few hundred bytes, or a few KiB with headers.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Why a path names nothing tap can watch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{0:?} is not under {PREFIX}/watch/")]
    NotTap(String),
    #[error("{0:?} is not a resource type tap knows")]
    Kind(String),
    #[error("{0:?} does not name a tap target (…/watch/namespaces/NS/TYPE/NAME/tap)")]
    Shape(String),
}

/// The API path a tap of `target` is POSTed to. A named target's path ends
/// with the `tap` subresource (RBAC: `watch` on `deployments/tap`); every
/// resource of a type is the collection's watch.
pub fn path(target: &Resource) -> Result<String, PathError> {
    let kind =
        canonical_kind(&target.r#type).ok_or_else(|| PathError::Kind(target.r#type.clone()))?;
    let plural = plural_kind(kind).ok_or_else(|| PathError::Kind(kind.into()))?;
    let (ns, name) = (target.namespace.as_str(), target.name.as_str());
    Ok(match (kind, ns.is_empty(), name.is_empty()) {
        ("namespace", _, true) => format!("{PREFIX}/watch/namespaces"),
        ("namespace", _, false) => format!("{PREFIX}/watch/namespaces/{name}/{SUBRESOURCE}"),
        (_, true, true) => format!("{PREFIX}/watch/{plural}"),
        (_, false, true) => format!("{PREFIX}/watch/namespaces/{ns}/{plural}"),
        (_, true, false) => return Err(PathError::Shape(format!("{plural}/{name}"))),
        (_, false, false) => {
            format!("{PREFIX}/watch/namespaces/{ns}/{plural}/{name}/{SUBRESOURCE}")
        }
    })
}

/// The target a path names (the inverse of [`path`]).
pub fn parse_path(path: &str) -> Result<Resource, PathError> {
    let rest = path
        .strip_prefix(PREFIX)
        .and_then(|p| p.strip_prefix("/watch/"))
        .ok_or_else(|| PathError::NotTap(path.into()))?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let resource = |plural: &str, namespace: &str, name: &str| {
        let kind = canonical_kind(plural)
            .filter(|k| plural_kind(k) == Some(plural))
            .ok_or_else(|| PathError::Kind(plural.into()))?;
        Ok(Resource {
            r#type: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        })
    };
    let named = |s: &str| !s.is_empty();
    match parts.as_slice() {
        ["namespaces"] => resource("namespaces", "", ""),
        ["namespaces", ns, SUBRESOURCE] if named(ns) => resource("namespaces", "", ns),
        [plural] if *plural != "namespaces" => resource(plural, "", ""),
        ["namespaces", ns, plural] if named(ns) => resource(plural, ns, ""),
        ["namespaces", ns, plural, name, SUBRESOURCE] if named(ns) && named(name) => {
            resource(plural, ns, name)
        }
        _ => Err(PathError::Shape(path.into())),
    }
}

/// The request that opens a tap: a POST of `req` to its target's path
/// (relative to the API server's address).
pub fn request(req: &TapRequest) -> Result<http::Request<Vec<u8>>, PathError> {
    let target = req
        .target
        .as_ref()
        .ok_or_else(|| PathError::Shape("a TapRequest without a target".into()))?;
    let path = path(target)?;
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .header(http::header::ACCEPT, CONTENT_TYPE)
        .body(prost::Message::encode_to_vec(req))
        .map_err(|e| PathError::Shape(e.to_string()))?;
    Ok(request)
}

/// What a refusal says: the `message` of the API server's (or tap's)
/// `Status`, else the body's text.
pub fn refusal(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// A tap's events as they arrive in an answer's body.
pub struct Events<B> {
    body: B,
    decoder: Decoder,
}

impl<B> Events<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    pub fn new(body: B) -> Self {
        Self {
            body,
            decoder: Decoder::default(),
        }
    }

    /// The next event; `None` when the tap ended; why it failed.
    pub async fn next(&mut self) -> Result<Option<TapEvent>, FrameError> {
        use http_body_util::BodyExt;
        loop {
            if let Some(e) = self.decoder.next_event()? {
                return Ok(Some(e));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.decoder.push(data);
                    }
                }
                Some(Err(e)) => return Err(FrameError::Body(e.to_string())),
                None => return self.decoder.finish().map(|()| None),
            }
        }
    }
}

/// A tap's events from either door: the tap service's gRPC stream (the
/// local mesh, or a relay), or the API server's answer.
pub enum AnyEvents<B> {
    Grpc(tonic::Streaming<TapEvent>),
    Api(Events<B>),
}

impl<B> AnyEvents<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// The next event; `None` when the tap ended; why it failed.
    pub async fn next(&mut self) -> Result<Option<TapEvent>, String> {
        match self {
            AnyEvents::Grpc(events) => events.message().await.map_err(|s| s.message().to_string()),
            AnyEvents::Api(events) => events.next().await.map_err(|e| e.to_string()),
        }
    }
}

/// One frame: its length, then the message.
pub fn encode(frame: Frame) -> Bytes {
    let msg = TapApiFrame { frame: Some(frame) };
    let len = prost::Message::encoded_len(&msg);
    let mut buf = BytesMut::with_capacity(4 + len);
    buf.put_u32(len as u32);
    prost::Message::encode(&msg, &mut buf).expect("the buffer has the message's length");
    buf.freeze()
}

/// Why a tap stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a tap frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("a tap frame is not a TapApiFrame: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("a tap frame carries nothing")]
    Empty,
    #[error("the tap stream ended inside a frame")]
    Truncated,
    #[error("{0}")]
    Remote(String),
    #[error("the tap stream failed: {0}")]
    Body(String),
}

/// Reassembles frames from the body's chunks, however the chunks fall.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole event, if one has arrived; the sender's error, if it
    /// sent one.
    pub fn next_event(&mut self) -> Result<Option<TapEvent>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        let frame: TapApiFrame = prost::Message::decode(self.buf.split_to(len))?;
        match frame.frame {
            Some(Frame::Event(e)) => Ok(Some(e)),
            Some(Frame::Error(e)) => Err(FrameError::Remote(e)),
            None => Err(FrameError::Empty),
        }
    }

    /// At the body's end: whether it ended between frames.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(kind: &str, ns: &str, name: &str) -> Resource {
        Resource {
            r#type: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn paths_round_trip() {
        for (target, expected) in [
            (
                r("deployment", "emojivoto", "web"),
                "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/deployments/web/tap",
            ),
            (
                r("po", "emojivoto", "web-1"),
                "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/pods/web-1/tap",
            ),
            (
                r("deployment", "emojivoto", ""),
                "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/deployments",
            ),
            (
                r("deployment", "", ""),
                "/apis/tap.linkerd.io/v1alpha1/watch/deployments",
            ),
            (
                r("namespace", "", "emojivoto"),
                "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/tap",
            ),
            (
                r("namespace", "", ""),
                "/apis/tap.linkerd.io/v1alpha1/watch/namespaces",
            ),
        ] {
            let p = path(&target).unwrap();
            assert_eq!(p, expected);
            let back = parse_path(&p).unwrap();
            assert_eq!(back.r#type, canonical_kind(&target.r#type).unwrap());
            assert_eq!(back.name, target.name);
            if back.r#type != "namespace" {
                assert_eq!(back.namespace, target.namespace);
            }
        }
    }

    #[test]
    fn bad_paths_are_named() {
        assert!(matches!(
            path(&r("service", "ns", "web")),
            Err(PathError::Kind(_))
        ));
        assert!(matches!(
            path(&r("deployment", "", "web")),
            Err(PathError::Shape(_))
        ));
        for bad in [
            "/apis/other/v1/watch/pods",
            "/apis/tap.linkerd.io/v1alpha1/pods",
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/ns/services/web/tap",
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/ns/deploy/web/tap",
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/ns/deployments/web",
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/ns/deployments/web/tap/more",
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces//tap",
            "/apis/tap.linkerd.io/v1alpha1/watch/",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn frames_reassemble_from_any_chunking() {
        let mut wire = Vec::new();
        for id in 1..=3 {
            let e = TapEvent {
                proxy_direction: id,
                ..Default::default()
            };
            wire.extend_from_slice(&encode(Frame::Event(e)));
        }
        wire.extend_from_slice(&encode(Frame::Error("the pod went away".into())));
        for chunk in [1, 2, 5, 7, wire.len()] {
            let mut d = Decoder::default();
            let mut seen = Vec::new();
            let mut error = None;
            for piece in wire.chunks(chunk) {
                d.push(piece);
                loop {
                    match d.next_event() {
                        Ok(Some(e)) => seen.push(e.proxy_direction),
                        Ok(None) => break,
                        Err(e) => {
                            error = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            assert_eq!(seen, [1, 2, 3], "chunks of {chunk}");
            assert_eq!(error.as_deref(), Some("the pod went away"));
        }
    }

    #[test]
    fn refusals_say_why() {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"deployments.tap.linkerd.io \"web\" is forbidden","reason":"Forbidden","code":403}"#;
        assert_eq!(
            refusal(status),
            r#"deployments.tap.linkerd.io "web" is forbidden"#
        );
        assert_eq!(refusal(b"service unavailable\n"), "service unavailable");
    }

    #[test]
    fn requests_post_to_the_targets_path() {
        let req = TapRequest {
            target: Some(r("deploy", "emojivoto", "web")),
            max_rps: 10.0,
            ..Default::default()
        };
        let http = request(&req).unwrap();
        assert_eq!(http.method(), http::Method::POST);
        assert_eq!(
            http.uri().path(),
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/deployments/web/tap"
        );
        let back: TapRequest = prost::Message::decode(http.body().as_slice()).unwrap();
        assert_eq!(back, req);
        assert!(request(&TapRequest::default()).is_err());
    }

    #[test]
    fn a_huge_or_cut_frame_is_an_error() {
        let mut d = Decoder::default();
        d.push(&u32::MAX.to_be_bytes());
        assert!(matches!(d.next_event(), Err(FrameError::TooLarge(_))));
        let mut d = Decoder::default();
        d.push(&encode(Frame::Error("x".into()))[..3]);
        assert!(matches!(d.next_event(), Ok(None)));
        assert!(matches!(d.finish(), Err(FrameError::Truncated)));
    }
}
