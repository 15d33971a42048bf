//! Opaque TCP: bytes copied both ways between the client and the target.

use crate::{
    metrics::{Direction, Metrics, Peer, Tls},
    transport::{self, Metered},
};
use std::{io, net::SocketAddr, time::Duration};
use tokio::io::{AsyncRead, AsyncWrite};

/// Connects to `target` and copies until both directions have finished. A
/// half-close from either side is passed on, so request/response protocols
/// that signal "done" with a FIN keep working.
pub(crate) async fn forward<I>(
    client: &mut I,
    direction: Direction,
    target: SocketAddr,
    connect_timeout: Duration,
    metrics: &Metrics,
) -> io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let stream = transport::connect(target, connect_timeout).await?;
    let stats = metrics.tcp(direction, Peer::Dst, target, &Tls::Disabled);
    let mut server = Metered::new(stream, stats);
    tokio::io::copy_bidirectional(client, &mut server).await?;
    Ok(())
}
