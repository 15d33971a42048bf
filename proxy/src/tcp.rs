//! Opaque TCP: bytes copied both ways between the client and the target.

use crate::transport::Conn;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::load::pending_requests::Handle;

/// The connection an opaque client connection is forwarded to.
pub(crate) struct Upstream {
    pub(crate) io: Conn,
    /// For a balanced connection: counts it against its endpoint's load
    /// for as long as it is open.
    _load: Option<Handle>,
}

impl Upstream {
    pub(crate) fn direct(io: Conn) -> Self {
        Self { io, _load: None }
    }

    pub(crate) fn balanced(io: Conn, load: Handle) -> Self {
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
