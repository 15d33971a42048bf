//! `/grafana/`: Grafana behind the dashboard, as Linkerd serves it, so its
//! links work through `linkerd dashboard`'s one forwarded port. The chart's
//! Grafana serves from the `/grafana/` sub-path, so paths pass unchanged.

use crate::server::{Body, text};
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Grafana {
    addr: String,
}

impl Grafana {
    pub(crate) fn new(addr: String) -> Self {
        Grafana { addr }
    }

    pub(crate) async fn proxy(&self, mut req: Request<Incoming>) -> Response<Body> {
        let connect =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&self.addr));
        let stream = match connect.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return unavailable(&self.addr, &e.to_string()),
            Err(_) => return unavailable(&self.addr, "no connection within 5s"),
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(e) => return unavailable(&self.addr, &e.to_string()),
            };
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "grafana connection failed");
            }
        });
        // Grafana sees the dashboard's own host, as behind any proxy.
        if let Ok(host) = self.addr.parse() {
            req.headers_mut().insert(header::HOST, host);
        }
        match sender.send_request(req).await {
            Ok(rsp) => rsp.map(|b| b.map_err(Into::into).boxed()),
            Err(e) => unavailable(&self.addr, &e.to_string()),
        }
    }
}

fn unavailable(addr: &str, why: &str) -> Response<Body> {
    text(
        StatusCode::BAD_GATEWAY,
        format!("Grafana at {addr} cannot be reached: {why}\n"),
    )
}
