//! Channels to the control plane (destination, identity).
//!
//! As in Linkerd, a control-plane service that has an identity (its
//! `..._SVC_NAME` is set) is reached over TLS to that identity, terminated by
//! the service's own proxy; its certificate is checked like any meshed
//! peer's. The identity service is called before this proxy has a
//! certificate, so that call presents none.

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::{io, sync::Arc, time::Duration};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// TLS to a control-plane service: our client settings and its identity.
pub(crate) type ControlTls = (Arc<rustls::ClientConfig>, ServerName<'static>);

/// A channel to `addr` (`host:port`) that connects on first use and
/// reconnects by itself.
pub(crate) fn channel(
    addr: &str,
    tls: Option<ControlTls>,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}"))?.connect_timeout(Duration::from_secs(1));
    Ok(match tls {
        None => endpoint.connect_lazy(),
        Some((config, name)) => {
            endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
                connect_tls(uri, config.clone(), name.clone())
            }))
        }
    })
}

async fn connect_tls(
    uri: Uri,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(TokioIo::new(tls))
}
