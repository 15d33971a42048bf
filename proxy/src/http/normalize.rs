//! A request's URI in the form its upstream protocol needs: HTTP/2 carries
//! the scheme and authority as pseudo-headers, so it needs an absolute URI;
//! HTTP/1 servers expect origin-form with `Host`.

use super::Outgoing;
use futures_util::future::{Either, Ready, ready};
use http::{Method, Request, Uri, header::HOST, uri};
use std::{
    net::SocketAddr,
    task::{Context, Poll},
};

/// A request whose authority cannot be written as its protocol needs, or
/// is ambiguous.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidAuthority {
    #[error("the request's authority is not usable: {0}")]
    Unusable(#[source] http::Error),
    /// RFC 9112 §3.2: a server must refuse a request with more than one
    /// `Host`; forwarded, the application might route by the other one
    /// (the fuzzer found two passing through).
    #[error("the request has {0} Host headers")]
    Hosts(usize),
    /// Authority-form (`host:port` as the target) is CONNECT's alone
    /// (RFC 9112 §3.2.3); `POST tupload` was passing on as it came, its
    /// Host replaced by "tupload" (the fuzzer found it).
    #[error("{0} is not CONNECT, so it cannot name only an authority")]
    AuthorityForm(http::Method),
}

pub(crate) struct Normalize<S> {
    inner: S,
    /// The connection's original destination: the authority of a request
    /// that names none.
    target: SocketAddr,
}

impl<S> Normalize<S> {
    pub(crate) fn layer(target: SocketAddr) -> impl tower::Layer<S, Service = Self> + Clone {
        tower::layer::layer_fn(move |inner| Self { inner, target })
    }
}

impl<S, B> tower::Service<Outgoing<B>> for Normalize<S>
where
    S: tower::Service<Outgoing<B>>,
    S::Error: From<InvalidAuthority>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut out: Outgoing<B>) -> Self::Future {
        let hosts = out.req.http.headers().get_all(HOST).iter().count();
        // A request's version is its upstream protocol's: an inbound HTTP/1
        // request a client proxy carried over HTTP/2 is HTTP/1 again here.
        let req = &out.req.http;
        let normalized = if hosts > 1 {
            Err(InvalidAuthority::Hosts(hosts))
        } else if req.uri().scheme().is_none()
            && req.uri().authority().is_some()
            && req.method() != Method::CONNECT
        {
            Err(InvalidAuthority::AuthorityForm(req.method().clone()))
        } else {
            match out.req.http.version() {
                http::Version::HTTP_2 => absolute_uri(&mut out.req.http, self.target),
                _ => origin_form(&mut out.req.http, self.target),
            }
            .map_err(InvalidAuthority::Unusable)
        };
        match normalized {
            Ok(()) => Either::Right(self.inner.call(out)),
            Err(e) => {
                tracing::debug!(error = %e, "request has no usable authority");
                Either::Left(ready(Err(e.into())))
            }
        }
    }
}

/// The authority the client named or, failing that, the target's address.
fn absolute_uri<B>(req: &mut Request<B>, target: SocketAddr) -> Result<(), http::Error> {
    if req.uri().authority().is_some() && req.uri().scheme().is_some() {
        return Ok(());
    }
    let authority = match req
        .uri()
        .authority()
        .cloned()
        .or_else(|| host_authority(req))
    {
        Some(a) => a,
        None => uri::Authority::try_from(target.to_string())?,
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(uri::Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts)?;
    Ok(())
}

/// A client that used absolute-form names the authority in the URI, which
/// then replaces its `Host` (RFC 9112 §3.2.2). CONNECT keeps authority-form.
fn origin_form<B>(req: &mut Request<B>, target: SocketAddr) -> Result<(), http::Error> {
    if req.method() == Method::CONNECT {
        return Ok(());
    }
    if let Some(authority) = req.uri().authority() {
        let host = http::HeaderValue::from_str(authority.as_str())?;
        req.headers_mut().insert(HOST, host);
    } else if !req.headers().contains_key(HOST) {
        let host = http::HeaderValue::from_str(&target.to_string())?;
        req.headers_mut().insert(HOST, host);
    }
    if req.uri().scheme().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    Ok(())
}

fn host_authority<B>(req: &Request<B>) -> Option<uri::Authority> {
    uri::Authority::try_from(req.headers().get(HOST)?.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Req;
    use http::{Response, Version};
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    const TARGET: &str = "10.0.0.7:8080";

    /// The request as the inner service sees it, or the layer's error.
    /// (No request hyper parses can fail here: its authority is already a
    /// valid header value, and a `Host` that is not an authority gives way
    /// to the target's.)
    async fn normalized(req: Request<()>) -> Result<Request<()>, String> {
        let (mock, mut handle) = mock::pair::<Outgoing<()>, Response<()>>();
        let svc = Normalize::layer(TARGET.parse().unwrap()).layer(mock);
        let call = tokio::spawn(svc.oneshot(Outgoing {
            req: Req::new(req, false),
            dispatch: None,
            profile: None,
        }));
        tokio::select! {
            r = call => {
                let e = r.unwrap().expect_err("refused without reaching the inner service");
                Err(e.to_string())
            }
            Some((out, send)) = handle.next_request() => {
                send.send_response(Response::new(()));
                Ok(out.req.http)
            }
        }
    }

    #[tokio::test]
    async fn http1_goes_in_origin_form_with_host() {
        let got = normalized(
            Request::get("http://web.ns:80/a?b")
                .header(HOST, "ignored")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(got.uri(), "/a?b");
        assert_eq!(got.headers()[HOST], "web.ns:80");

        let got = normalized(Request::get("/a").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(got.headers()[HOST], TARGET, "no authority: the target's");

        let got = normalized(Request::connect("db:5432").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(got.uri(), "db:5432", "CONNECT keeps authority-form");
    }

    /// Found by fuzz/fuzz_targets/http1_inbound.rs: a POST in
    /// authority-form reached the application as it came.
    #[tokio::test]
    async fn authority_form_is_connects_alone() {
        let req = Request::post("tupload").body(()).unwrap();
        assert_eq!(req.uri().authority().unwrap(), "tupload");
        assert_eq!(
            normalized(req).await.unwrap_err(),
            "POST is not CONNECT, so it cannot name only an authority"
        );
    }

    /// Found by fuzz/fuzz_targets/http1_inbound.rs: two `Host` headers
    /// reached the application.
    #[tokio::test]
    async fn two_hosts_are_refused() {
        for uri in ["/a", "http://web.ns/a"] {
            let req = Request::get(uri)
                .header(HOST, "x")
                .header("l5d-orig-proto", "HTTP/1.1")
                .header(HOST, "y")
                .body(())
                .unwrap();
            let got = normalized(req).await;
            assert_eq!(got.unwrap_err(), "the request has 2 Host headers", "{uri}");
        }
    }

    #[tokio::test]
    async fn http2_goes_with_an_absolute_uri() {
        let h2 = |b: http::request::Builder| b.version(Version::HTTP_2).body(()).unwrap();
        let got = normalized(h2(Request::get("/a").header(HOST, "web.ns:80")))
            .await
            .unwrap();
        assert_eq!(got.uri(), "http://web.ns:80/a");
        let got = normalized(h2(Request::get("/a"))).await.unwrap();
        assert_eq!(got.uri().to_string(), format!("http://{TARGET}/a"));
        let got = normalized(h2(Request::get("https://web.ns/a")))
            .await
            .unwrap();
        assert_eq!(got.uri(), "https://web.ns/a", "already absolute");
    }
}
