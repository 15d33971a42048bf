//! The top of both stacks: hop-by-hop headers never pass, and an HTTP/1
//! upgrade (WebSocket, h2c) or CONNECT becomes a byte stream between client
//! and server once the server agrees.

use super::{Req, Version, headers};
use http::{Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

pub(crate) struct Upgrade<S> {
    inner: S,
    /// Only HTTP/1 has upgrades; HTTP/2's CONNECT is a stream like others.
    h1: bool,
}

impl<S> Upgrade<S> {
    pub(crate) fn layer(version: Version) -> impl tower::Layer<S, Service = Self> + Clone {
        tower::layer::layer_fn(move |inner| Self {
            inner,
            h1: version == Version::Http1,
        })
    }
}

impl<S, B, RB> tower::Service<Request<B>> for Upgrade<S>
where
    S: tower::Service<Req<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = UpgradeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut http: Request<B>) -> Self::Future {
        let is_connect = http.method() == Method::CONNECT;
        let upgrade = self.h1 && (is_connect || headers::wants_upgrade(http.headers()));
        // The client's half, taken before the request goes on.
        let downstream = upgrade.then(|| hyper::upgrade::on(&mut http));
        headers::strip_hop_by_hop(http.headers_mut(), upgrade);
        UpgradeFuture {
            inner: self.inner.call(Req::new(http, upgrade)),
            downstream,
            is_connect,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct UpgradeFuture<F> {
        #[pin]
        inner: F,
        downstream: Option<OnUpgrade>,
        is_connect: bool,
    }
}

impl<F, RB, E> Future for UpgradeFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut rsp = ready!(this.inner.poll(cx))?;
        let upgraded = rsp.status() == StatusCode::SWITCHING_PROTOCOLS
            || (*this.is_connect && rsp.status().is_success());
        let upgrade = this.downstream.is_some();
        if let Some(downstream) = this.downstream.take().filter(|_| upgraded) {
            let upstream = hyper::upgrade::on(&mut rsp);
            tokio::spawn(splice(downstream, upstream));
        }
        headers::strip_hop_by_hop(rsp.headers_mut(), upgrade && upgraded);
        Poll::Ready(Ok(rsp))
    }
}

/// Copies bytes both ways between an upgraded client and server connection.
async fn splice(downstream: OnUpgrade, upstream: OnUpgrade) {
    let (down, up) = match tokio::try_join!(downstream, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(error = %e, "upgraded connection failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    type Mock = mock::Mock<Req<()>, Response<()>>;

    fn stack(version: Version) -> (Upgrade<Mock>, mock::Handle<Req<()>, Response<()>>) {
        let (mock, handle) = mock::pair();
        (Upgrade::layer(version).layer(mock), handle)
    }

    fn response(headers: &[(&str, &str)], status: StatusCode) -> Response<()> {
        let mut rsp = Response::builder().status(status);
        for (k, v) in headers {
            rsp = rsp.header(*k, *v);
        }
        rsp.body(()).unwrap()
    }

    #[tokio::test]
    async fn hop_by_hop_headers_go_no_further_either_way() {
        let (svc, mut handle) = stack(Version::Http1);
        let req = Request::get("/")
            .header("connection", "keep-alive, x-private")
            .header("keep-alive", "timeout=5")
            .header("x-private", "1")
            .header("x-end-to-end", "1")
            .body(())
            .unwrap();
        let call = tokio::spawn(svc.oneshot(req));
        let (got, send) = handle.next_request().await.unwrap();
        assert!(!got.upgrade);
        let names: Vec<_> = got.http.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-end-to-end"]);
        send.send_response(response(
            &[("connection", "close"), ("x-served", "1")],
            StatusCode::OK,
        ));
        let rsp = call.await.unwrap().unwrap();
        let names: Vec<_> = rsp.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-served"]);
    }

    #[tokio::test]
    async fn an_http1_upgrade_keeps_its_handshake_headers() {
        let (svc, mut handle) = stack(Version::Http1);
        let req = Request::get("/chat")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        let call = tokio::spawn(svc.oneshot(req));
        let (got, send) = handle.next_request().await.unwrap();
        assert!(got.upgrade);
        assert_eq!(got.http.headers()["upgrade"], "websocket");
        assert_eq!(got.http.headers()["connection"], "upgrade");
        send.send_response(response(
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            StatusCode::SWITCHING_PROTOCOLS,
        ));
        let rsp = call.await.unwrap().unwrap();
        assert_eq!(rsp.headers()["upgrade"], "websocket");
    }

    #[tokio::test]
    async fn connect_is_an_upgrade_only_on_http1() {
        for (version, upgrade) in [(Version::Http1, true), (Version::H2, false)] {
            let (svc, mut handle) = stack(version);
            let req = Request::connect("db:5432").body(()).unwrap();
            let call = tokio::spawn(svc.oneshot(req));
            let (got, send) = handle.next_request().await.unwrap();
            assert_eq!(got.upgrade, upgrade, "{version:?}");
            send.send_response(response(&[], StatusCode::OK));
            call.await.unwrap().unwrap();
        }
    }
}
