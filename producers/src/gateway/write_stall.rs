//! A connection whose writes fail once they stall too long: the client that stopped reading.
//!
//! The header-read timeout bounds a client that sends slowly, the request timeout one whose
//! answer is slow to come; neither bounds a client that sends requests and never reads the
//! answers. Once the socket's send buffer is full, the gateway's write waits, and the connection
//! (one of [`GatewayConfig::max_connections`](super::GatewayConfig::max_connections)) would be
//! held for as long as the client likes. [`WriteStall`] turns a write that made no progress for
//! its timeout into an error, and hyper closes the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `io` whose writes (and flushes) fail with [`io::ErrorKind::TimedOut`] after making no
/// progress for `timeout`. Reads are untouched.
#[derive(Debug)]
pub(crate) struct WriteStall<T> {
    io: T,
    timeout: Duration,
    /// Armed by the first write that could not proceed; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteStall<T> {
    pub(crate) fn new(io: T, timeout: Duration) -> Self {
        Self { io, timeout, stalled: None }
    }

    /// Called when the inner write is pending: fails once the stall lasted the timeout.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {timeout:?}: closing the connection"),
        )))
    }

    fn progress<R>(&mut self, result: io::Result<R>) -> Poll<io::Result<R>> {
        self.stalled = None;
        Poll::Ready(result)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.pending(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_timeout_and_progress_resets_it() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = WriteStall::new(server, Duration::from_millis(200));
        // Fits the buffer: no stall.
        server.write_all(&[1; 64]).await.expect("buffered");
        // The client reads it after 100 ms: a stall shorter than the timeout is fine.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0; 64];
            client.read_exact(&mut buf).await.map(|_| client)
        });
        server.write_all(&[2; 64]).await.expect("the client read in time");
        let _client = reader.await.expect("task").expect("read");
        // Now nobody reads.
        let e = server.write_all(&[3; 64]).await.expect_err("stalled");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
