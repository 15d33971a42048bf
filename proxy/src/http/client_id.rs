//! Inbound: `l5d-client-id` tells the application which meshed workload
//! called, from the client certificate mesh TLS verified. A client cannot
//! name itself: whatever it sent is replaced, or removed.

use super::Req;
use crate::metrics::Tls;
use http::{HeaderName, HeaderValue};
use std::task::{Context, Poll};

static L5D_CLIENT_ID: HeaderName = HeaderName::from_static("l5d-client-id");

pub(crate) struct ClientId<S> {
    inner: S,
    /// The connection's verified client identity, as a header value.
    id: Option<HeaderValue>,
}

impl<S> ClientId<S> {
    pub(crate) fn layer(tls: &Tls) -> impl tower::Layer<S, Service = Self> + Clone {
        let id = match tls {
            Tls::Established {
                client_id: Some(id),
                ..
            } => HeaderValue::from_str(id).ok(),
            _ => None,
        };
        tower::layer::layer_fn(move |inner| Self {
            inner,
            id: id.clone(),
        })
    }
}

impl<S, B> tower::Service<Req<B>> for ClientId<S>
where
    S: tower::Service<Req<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req<B>) -> S::Future {
        let headers = req.http.headers_mut();
        match &self.id {
            Some(id) => {
                headers.insert(&L5D_CLIENT_ID, id.clone());
            }
            None => {
                headers.remove(&L5D_CLIENT_ID);
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    async fn seen(tls: Tls, sent: Option<&str>) -> Option<String> {
        let (mock, mut handle) = mock::pair::<Req<()>, Response<()>>();
        let svc = ClientId::layer(&tls).layer(mock);
        let mut req = Request::get("/");
        if let Some(sent) = sent {
            req = req.header("l5d-client-id", sent);
        }
        let req = Req::new(req.body(()).unwrap(), false);
        let call = tokio::spawn(svc.oneshot(req));
        let (got, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(()));
        call.await.unwrap().unwrap();
        got.http
            .headers()
            .get("l5d-client-id")
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn the_verified_identity_replaces_what_the_client_says() {
        let web = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local";
        let tls = Tls::inbound(Some(web.into()));
        assert_eq!(seen(tls.clone(), None).await.as_deref(), Some(web));
        assert_eq!(seen(tls, Some("admin")).await.as_deref(), Some(web));
    }

    #[tokio::test]
    async fn without_one_the_clients_own_is_removed() {
        let anonymous = Tls::inbound(None);
        assert_eq!(seen(anonymous, Some("admin")).await, None);
        assert_eq!(seen(Tls::Disabled, Some("admin")).await, None);
    }
}
