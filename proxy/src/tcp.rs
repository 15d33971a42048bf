//! Opaque TCP: bytes copied both ways between the client and the target.

use crate::transport::Metered;
use std::io;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tower::load::pending_requests::Handle;

/// The connection an opaque client connection is forwarded to.
pub(crate) struct Upstream {
    pub(crate) io: Metered<TcpStream>,
    /// For a balanced connection: counts it against its endpoint's load
    /// for as long as it is open.
    _load: Option<Handle>,
}

impl Upstream {
    pub(crate) fn direct(io: Metered<TcpStream>) -> Self {
        Self { io, _load: None }
    }

    pub(crate) fn balanced(io: Metered<TcpStream>, load: Handle) -> Self {
        Self {
            io,
            _load: Some(load),
        }
    }
}

/// Copies until both directions have finished. A half-close from either side
/// is passed on, so request/response protocols that signal "done" with a FIN
/// keep working.
pub(crate) async fn forward<I>(client: &mut I, mut server: Upstream) -> io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(client, &mut server.io).await?;
    Ok(())
}
