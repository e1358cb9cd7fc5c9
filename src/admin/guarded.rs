//! Listeners that hold under abuse, for every HTTP endpoint the daemon
//! serves (the admin socket, `/metrics`, the visualizer): at most so many
//! connections at once (more wait in the kernel's backlog, costing the
//! daemon no descriptor), and a connection that neither sends nor takes a
//! byte for the idle time is closed (an idle client, a slow sender, an
//! event-stream client that never reads).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How many connections, and how long one may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// Silence in both directions after which a connection is closed.
    pub idle: Duration,
}

/// `inner`, with [`Limits`].
pub struct Guarded<L> {
    inner: L,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl<L> Guarded<L> {
    pub fn new(inner: L, limits: Limits) -> Guarded<L> {
        Guarded {
            inner,
            permits: Arc::new(Semaphore::new(limits.connections)),
            idle: limits.idle,
        }
    }
}

impl<L: Listener> Listener for Guarded<L> {
    type Io = Guard<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match Arc::clone(&self.permits).acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        };
        let (io, addr) = self.inner.accept().await;
        (Guard::new(io, permit, self.idle), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: its place under the cap and its idle timer.
pub struct Guard<T> {
    io: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl<T> Guard<T> {
    fn new(io: T, permit: OwnedSemaphorePermit, idle: Duration) -> Guard<T> {
        Guard {
            io,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _permit: permit,
        }
    }

    fn active(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// `Pending`, unless the connection has been silent too long.
    fn pending_or_idle<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.pending_or_idle(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.active();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.pending_or_idle(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.pending_or_idle(cx),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn guarded(limits: Limits) -> (Guarded<TcpListener>, std::net::SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (Guarded::new(l, limits), addr)
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_a_talking_one_is_not() {
        let idle = Duration::from_millis(300);
        let (mut l, addr) = guarded(Limits {
            connections: 4,
            idle,
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = l.accept().await;
        let mut buf = [0u8; 8];
        let started = std::time::Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= idle);
        drop(io);
        assert_eq!(silent.read(&mut buf).await.unwrap(), 0, "closed");

        let mut talking = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = l.accept().await;
        for _ in 0..4 {
            tokio::time::sleep(idle / 2).await;
            talking.write_all(b"x").await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_one_closes() {
        let (mut l, addr) = guarded(Limits {
            connections: 2,
            idle: Duration::from_secs(30),
        })
        .await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let _c = TcpStream::connect(addr).await.unwrap();
        let (first, _) = l.accept().await;
        let (_second, _) = l.accept().await;
        let third = tokio::time::timeout(Duration::from_millis(200), l.accept()).await;
        assert!(third.is_err(), "a third connection was served past the cap");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(2), l.accept()).await;
        assert!(third.is_ok(), "a closed connection frees its place");
    }
}
