//! HTTP/1 between meshed proxies travels as HTTP/2 (Linkerd's "h2 upgrade").
//!
//! The client proxy multiplexes HTTP/1 requests onto one HTTP/2 connection
//! per meshed endpoint, marking each with `l5d-orig-proto`; the server proxy
//! turns it back into the HTTP/1 request the application expects, and marks
//! the response so the client proxy restores it too. Upgrades and CONNECT
//! are never carried this way: they need the HTTP/1 connection itself.

use http::{HeaderName, HeaderValue, Request, Response, Uri, Version, header::HOST, uri};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

static L5D_ORIG_PROTO: HeaderName = HeaderName::from_static("l5d-orig-proto");

fn orig_value(version: Version) -> HeaderValue {
    HeaderValue::from_static(if version == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    })
}

/// Outbound: makes an origin-form HTTP/1 request into an HTTP/2 one for a
/// meshed peer. Returns the version to give the response back.
pub(crate) fn upgrade_request<B>(req: &mut Request<B>) -> Result<Version, http::Error> {
    let orig = req.version();
    if req.uri().authority().is_none() {
        let authority = match req.headers().get(HOST) {
            Some(host) => uri::Authority::try_from(host.as_bytes())?,
            None => uri::Authority::from_static("localhost"),
        };
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(uri::Scheme::HTTP);
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts)?;
    }
    req.headers_mut().insert(&L5D_ORIG_PROTO, orig_value(orig));
    *req.version_mut() = Version::HTTP_2;
    Ok(orig)
}

/// Outbound: an upgraded request that was never sent, back as it came
/// (`origin_form`: it had no authority in its URI), for an endpoint that
/// may not be meshed.
pub(crate) fn revert_request<B>(req: &mut Request<B>, orig: Version, origin_form: bool) {
    req.headers_mut().remove(&L5D_ORIG_PROTO);
    *req.version_mut() = orig;
    if origin_form && let Some(path) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = Uri::from(path);
    }
}

/// Outbound: the upgraded request's response, as its HTTP/1 client expects.
pub(crate) fn downgrade_response<B>(rsp: &mut Response<B>, orig: Version) {
    rsp.headers_mut().remove(&L5D_ORIG_PROTO);
    *rsp.version_mut() = orig;
}

/// Inbound: an upgraded request back as HTTP/1, if it is one; the version
/// it was sent with.
pub(crate) fn downgrade_request<B>(req: &mut Request<B>) -> Option<Version> {
    let orig = req.headers_mut().remove(&L5D_ORIG_PROTO)?;
    let version = if orig.as_bytes() == b"HTTP/1.0" {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    *req.version_mut() = version;
    Some(version)
}

/// Inbound: marks the response to a downgraded request for the client proxy.
pub(crate) fn upgrade_response<B>(rsp: &mut Response<B>, orig: Version) {
    rsp.headers_mut().insert(&L5D_ORIG_PROTO, orig_value(orig));
    *rsp.version_mut() = Version::HTTP_2;
}

/// Inbound, on an HTTP/2 connection: a request a meshed client proxy
/// carried over HTTP/2 goes on as the HTTP/1 it was, and its response is
/// marked for the client proxy to restore.
pub(crate) struct Downgrade<S> {
    inner: S,
    /// Only an HTTP/2 connection carries upgraded requests.
    h2: bool,
}

impl<S> Downgrade<S> {
    pub(crate) fn layer(version: super::Version) -> impl tower::Layer<S, Service = Self> + Clone {
        tower::layer::layer_fn(move |inner| Self {
            inner,
            h2: version == super::Version::H2,
        })
    }
}

impl<S, B, RB> tower::Service<super::Req<B>> for Downgrade<S>
where
    S: tower::Service<super::Req<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Downgraded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: super::Req<B>) -> Self::Future {
        let orig = if self.h2 {
            downgrade_request(&mut req.http)
        } else {
            None
        };
        Downgraded {
            inner: self.inner.call(req),
            orig,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct Downgraded<F> {
        #[pin]
        inner: F,
        orig: Option<Version>,
    }
}

impl<F, RB, E> Future for Downgraded<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut rsp = ready!(this.inner.poll(cx))?;
        if let Some(orig) = *this.orig {
            upgrade_response(&mut rsp, orig);
        }
        Poll::Ready(Ok(rsp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut req = Request::get("/a?b")
            .version(Version::HTTP_10)
            .header(HOST, "web.ns.svc.cluster.local:80")
            .body(())
            .unwrap();
        let orig = upgrade_request(&mut req).unwrap();
        assert_eq!(orig, Version::HTTP_10);
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(
            req.uri().to_string(),
            "http://web.ns.svc.cluster.local:80/a?b"
        );
        assert_eq!(req.headers()[&L5D_ORIG_PROTO], "HTTP/1.0");

        assert_eq!(downgrade_request(&mut req), Some(Version::HTTP_10));
        assert_eq!(req.version(), Version::HTTP_10);
        assert!(!req.headers().contains_key(&L5D_ORIG_PROTO));
        assert_eq!(downgrade_request(&mut req), None, "only once");

        let mut origin = Request::get("/a?b")
            .header(HOST, "web.ns.svc.cluster.local:80")
            .body(())
            .unwrap();
        let orig = upgrade_request(&mut origin).unwrap();
        revert_request(&mut origin, orig, true);
        assert_eq!(origin.version(), Version::HTTP_11);
        assert_eq!(origin.uri(), "/a?b");
        assert!(!origin.headers().contains_key(&L5D_ORIG_PROTO));
        let mut absolute = Request::get("http://web.ns.svc.cluster.local/a")
            .body(())
            .unwrap();
        let orig = upgrade_request(&mut absolute).unwrap();
        revert_request(&mut absolute, orig, false);
        assert_eq!(absolute.uri(), "http://web.ns.svc.cluster.local/a");

        let mut rsp = Response::new(());
        upgrade_response(&mut rsp, Version::HTTP_11);
        assert_eq!(rsp.headers()[&L5D_ORIG_PROTO], "HTTP/1.1");
        downgrade_response(&mut rsp, Version::HTTP_11);
        assert_eq!(rsp.version(), Version::HTTP_11);
        assert!(rsp.headers().is_empty());
    }

    #[tokio::test]
    async fn an_upgraded_request_reaches_the_application_as_it_was_sent() {
        use tower::{Layer, ServiceExt};
        for (version, downgraded) in [
            (super::super::Version::H2, true),
            (super::super::Version::Http1, false),
        ] {
            let (mock, mut handle) =
                tower_test::mock::pair::<super::super::Req<()>, Response<()>>();
            let svc = Downgrade::layer(version).layer(mock);
            let mut http = Request::get("http://web.ns.svc.cluster.local/a")
                .version(Version::HTTP_2)
                .body(())
                .unwrap();
            upgrade_request(&mut http).unwrap();
            let call = tokio::spawn(svc.oneshot(super::super::Req::new(http, false)));
            let (got, send) = handle.next_request().await.unwrap();
            send.send_response(Response::new(()));
            let rsp = call.await.unwrap().unwrap();
            if downgraded {
                assert_eq!(got.http.version(), Version::HTTP_11);
                assert!(!got.http.headers().contains_key(&L5D_ORIG_PROTO));
                assert_eq!(rsp.headers()[&L5D_ORIG_PROTO], "HTTP/1.1");
                assert_eq!(rsp.version(), Version::HTTP_2);
            } else {
                // Only an HTTP/2 connection carries them.
                assert_eq!(got.http.version(), Version::HTTP_2);
                assert!(!rsp.headers().contains_key(&L5D_ORIG_PROTO));
            }
        }
    }
}
