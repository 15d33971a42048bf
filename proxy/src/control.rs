//! Channels to the control plane (destination, identity).
//!
//! As in Linkerd, a control-plane service that has an identity (its
//! `..._SVC_NAME` is set) is reached over TLS to that identity, terminated by
//! the service's own proxy; its certificate is checked like any meshed
//! peer's. The identity service is called before this proxy has a
//! certificate, so that call presents none; every other service is only
//! connected to once the proxy has its certificate (a connection made
//! before would present none, and a service whose policy admits meshed
//! clients only would refuse every call on it for as long as it stays
//! open).
//!
//! A service named `localhost` is this pod's own (the identity pod's proxy
//! reaches identity at `localhost.:8080`): it is reached in plaintext, as
//! Linkerd's proxy does, since nothing crosses the network and the service
//! serves plaintext there; and `localhost` (with or without its final dot)
//! is 127.0.0.1, not a question for DNS, which may not know it. (A loopback
//! IP with a `..._SVC_NAME` keeps TLS: the local mesh and the tests run
//! whole control planes on loopback addresses.)

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::{io, sync::Arc, time::Duration};
use tokio::{net::TcpStream, sync::watch};
use tonic::transport::{Channel, Endpoint, Uri};

/// TLS to a control-plane service.
#[derive(Clone)]
pub(crate) struct ControlTls {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The service's identity.
    pub(crate) name: ServerName<'static>,
    /// Connect only once this identity is certified (`None`: the identity
    /// service itself).
    pub(crate) certified_first: Option<Arc<crate::identity::Local>>,
}

/// How long a connection to the control plane may take (waiting for this
/// proxy's certificate included): the next call tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A channel to `addr` (`host:port`) that connects on first use and
/// reconnects by itself.
pub(crate) fn channel(
    addr: &str,
    tls: Option<ControlTls>,
) -> Result<Channel, tonic::transport::Error> {
    let (addr, loopback) = loopback(addr);
    let tls = tls.filter(|_| !loopback);
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}"))?.connect_timeout(CONNECT_TIMEOUT);
    Ok(match tls {
        None => endpoint.connect_lazy(),
        Some(tls) => endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
            connect_tls(uri, tls.clone())
        })),
    })
}

/// `addr` with `localhost` resolved, and whether it named this pod.
fn loopback(addr: &str) -> (String, bool) {
    match addr.rsplit_once(':') {
        Some((host, port))
            if host.eq_ignore_ascii_case("localhost")
                || host.eq_ignore_ascii_case("localhost.") =>
        {
            (format!("127.0.0.1:{port}"), true)
        }
        _ => (addr.to_string(), false),
    }
}

async fn connect_tls(
    uri: Uri,
    tls: ControlTls,
) -> io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    if let Some(local) = &tls.certified_first
        && !local.certified(CONNECT_TIMEOUT).await
    {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "this proxy has no certificate yet",
        ));
    }
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(tls.config)
        .connect(tls.name, tcp)
        .await?;
    Ok(TokioIo::new(tls))
}

/// The delay between a follower's failed calls: 100 ms, doubling to 10 s,
/// back to 100 ms once the controller answers.
pub(crate) struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub(crate) fn reset(&mut self) {
        self.0 = Self::MIN;
    }

    /// Waits out the current delay and doubles the next; `false` when
    /// nothing watches `tx` any more (the follower should end).
    pub(crate) async fn wait<T>(&mut self, tx: &watch::Sender<T>) -> bool {
        let delay = self.0;
        self.0 = (delay * 2).min(Self::MAX);
        unless_unwatched(tx, tokio::time::sleep(delay))
            .await
            .is_some()
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self(Self::MIN)
    }
}

/// `fut`'s output, or `None` once nothing watches `tx`: a follower of a
/// control-plane stream stops as soon as its answer has no reader, even
/// in the middle of a call.
pub(crate) async fn unless_unwatched<T, F: Future>(
    tx: &watch::Sender<T>,
    fut: F,
) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        _ = tx.closed() => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{Backoff, loopback};
    use std::time::Duration;
    use tokio::{sync::watch, time::Instant};

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_ten_seconds_and_ends_with_its_reader() {
        let (tx, rx) = watch::channel(());
        let mut backoff = Backoff::default();
        let mut waited = Vec::new();
        for _ in 0..9 {
            let started = Instant::now();
            assert!(backoff.wait(&tx).await);
            waited.push(started.elapsed().as_millis());
        }
        assert_eq!(
            waited,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        backoff.reset();
        let started = Instant::now();
        assert!(backoff.wait(&tx).await);
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        // Nothing reads the answer any more: the wait ends at once.
        drop(rx);
        let started = Instant::now();
        assert!(!backoff.wait(&tx).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn loopback_services_are_local_and_plaintext() {
        assert_eq!(loopback("localhost.:8080"), ("127.0.0.1:8080".into(), true));
        assert_eq!(loopback("LOCALHOST:8080"), ("127.0.0.1:8080".into(), true));
        let remote = "linkerd-identity-headless.linkerd.svc.cluster.local.:8080";
        assert_eq!(loopback(remote), (remote.into(), false));
        assert!(!loopback("127.77.0.1:8080").1);
        assert!(!loopback("localhost.example:8080").1);
    }
}
