//! Counts a connection's bytes and records its close in the TCP metrics.
//!
//! The close is recorded on drop, so every path that ends a connection
//! (clean EOF, error, timeout, shutdown) is counted exactly once.

use crate::metrics::TcpStats;
use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    #[derive(Debug)]
    pub(crate) struct Metered<T> {
        #[pin]
        io: T,
        stats: Arc<TcpStats>,
        opened: Instant,
        errno: &'static str,
    }

    impl<T> PinnedDrop for Metered<T> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.stats.closed(this.errno, this.opened.elapsed());
        }
    }
}

impl<T> Metered<T> {
    /// Charges a failure seen elsewhere (connecting to the target, say) to
    /// this connection's close, unless its own IO already failed.
    pub(crate) fn failed(&mut self, e: &io::Error) {
        if self.errno.is_empty() {
            self.errno = super::errno_name(e);
        }
    }

    pub(crate) fn new(io: T, stats: Arc<TcpStats>) -> Self {
        stats.opened();
        Self {
            io,
            stats,
            opened: Instant::now(),
            errno: "",
        }
    }
}

/// Keeps the first OS error a connection saw, for the close's errno label.
fn note<T>(errno: &mut &'static str, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
    if let Poll::Ready(Err(e)) = &r
        && errno.is_empty()
    {
        *errno = super::errno_name(e);
    }
    r
}

impl<T: AsyncRead> AsyncRead for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = note(this.errno, this.io.poll_read(cx, buf));
        let n = buf.filled().len() - before;
        if n > 0 {
            this.stats.read(n);
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for Metered<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = note(this.errno, this.io.poll_write(cx, b));
        if let Poll::Ready(Ok(n)) = r {
            this.stats.wrote(n);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = note(this.errno, this.io.poll_write_vectored(cx, bufs));
        if let Poll::Ready(Ok(n)) = r {
            this.stats.wrote(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        note(this.errno, this.io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        note(this.errno, this.io.poll_shutdown(cx))
    }
}
