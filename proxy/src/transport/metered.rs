//! Counts a connection's bytes and records its close in the TCP metrics.
//!
//! The close is recorded on drop, so every path that ends a connection
//! (clean EOF, error, timeout, shutdown) is counted exactly once.
//!
//! An accepted connection's labels may only be known after its first bytes
//! (whether it is mesh TLS, and whose): such a connection starts unlabelled,
//! keeps its byte counts aside, and is counted once [`Metered::label`] says
//! under which series.

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
        // Whether `stats` has counted this connection; until then, bytes
        // read and written are kept in `pending`.
        labelled: bool,
        pending: (u64, u64),
        opened: Instant,
        errno: &'static str,
    }

    impl<T> PinnedDrop for Metered<T> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.labelled {
                // Closed before its labels were known: counted under the
                // series it was given to fall back on.
                this.stats.opened();
                this.stats.read(this.pending.0 as usize);
                this.stats.wrote(this.pending.1 as usize);
            }
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
            labelled: true,
            pending: (0, 0),
            opened: Instant::now(),
            errno: "",
        }
    }

    /// A connection counted only once [`Metered::label`] is called, or under
    /// `fallback` if it closes first.
    pub(crate) fn unlabelled(io: T, fallback: Arc<TcpStats>) -> Self {
        Self {
            io,
            stats: fallback,
            labelled: false,
            pending: (0, 0),
            opened: Instant::now(),
            errno: "",
        }
    }

    /// Counts the connection, and the bytes it has carried so far, in `stats`.
    pub(crate) fn label(&mut self, stats: Arc<TcpStats>) {
        if self.labelled {
            return;
        }
        stats.opened();
        stats.read(self.pending.0 as usize);
        stats.wrote(self.pending.1 as usize);
        self.stats = stats;
        self.labelled = true;
    }
}

/// A connection whose failure elsewhere (connecting upstream, say) is
/// charged to its close, through whatever wraps it.
pub(crate) trait Failed {
    fn failed(&mut self, e: &io::Error);
}

impl<T> Failed for Metered<T> {
    fn failed(&mut self, e: &io::Error) {
        Metered::failed(self, e)
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

fn wrote(stats: &TcpStats, labelled: bool, pending: &mut (u64, u64), n: usize) {
    if labelled {
        stats.wrote(n);
    } else {
        pending.1 += n as u64;
    }
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
            if *this.labelled {
                this.stats.read(n);
            } else {
                this.pending.0 += n as u64;
            }
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for Metered<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = note(this.errno, this.io.poll_write(cx, b));
        if let Poll::Ready(Ok(n)) = r {
            wrote(this.stats, *this.labelled, this.pending, n);
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
            wrote(this.stats, *this.labelled, this.pending, n);
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
