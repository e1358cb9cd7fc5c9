//! Listeners that hold under abuse, for every HTTP endpoint the daemon
//! serves (the admin socket, `/metrics`, the visualizer): at most so many
//! connections at once (more wait in the kernel's backlog, costing the
//! daemon no descriptor), a connection that neither sends nor takes a
//! byte for the idle time is closed (an idle client, a slow sender, an
//! event-stream client that never reads), and so is one whose request
//! head (up to the blank line that ends an HTTP/1 head) takes longer than
//! the header time, however it trickles in (slowloris). A head's clock
//! starts when the connection is accepted, and again at the first byte
//! read after a response.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How many connections, and how long one may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// Silence in both directions after which a connection is closed.
    pub idle: Duration,
    /// The longest a request head may take to arrive.
    pub header: Duration,
}

/// How many connections the kernel queues for a listener before it drops
/// SYNs (capped by `net.core.somaxconn`). tokio's default of 128 filled
/// with a few hundred idle clients, so that nobody else could connect at
/// all; with this the idle ones wait their turn to be timed out.
const BACKLOG: u32 = 4096;

/// A TCP listener on `addr` with [`BACKLOG`], for [`Guarded`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// What ends an HTTP/1 request head.
const END_OF_HEAD: &[u8; 4] = b"\r\n\r\n";

/// `inner`, with [`Limits`].
pub struct Guarded<L> {
    inner: L,
    permits: Arc<Semaphore>,
    limits: Limits,
}

impl<L> Guarded<L> {
    pub fn new(inner: L, limits: Limits) -> Guarded<L> {
        Guarded {
            inner,
            permits: Arc::new(Semaphore::new(limits.connections)),
            limits,
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
        (Guard::new(io, permit, self.limits), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: its place under the cap, its idle timer and
/// its request head's deadline.
pub struct Guard<T> {
    io: T,
    limits: Limits,
    /// When the connection is closed: the earlier of the idle time after
    /// its last byte and the deadline of the head being read.
    deadline: Pin<Box<Sleep>>,
    idle_until: Instant,
    /// While a request head is being read: when it must be complete.
    head_until: Option<Instant>,
    /// How many bytes of [`END_OF_HEAD`] the head read so far ends with.
    head_matched: usize,
    /// Whether a response was written since the last head completed (the
    /// next byte read starts a new head).
    responded: bool,
    _permit: OwnedSemaphorePermit,
}

impl<T> Guard<T> {
    fn new(io: T, permit: OwnedSemaphorePermit, limits: Limits) -> Guard<T> {
        let now = Instant::now();
        let (idle_until, head_until) = (now + limits.idle, now + limits.header);
        Guard {
            io,
            limits,
            deadline: Box::pin(tokio::time::sleep_until(idle_until.min(head_until))),
            idle_until,
            head_until: Some(head_until),
            head_matched: 0,
            responded: false,
            _permit: permit,
        }
    }

    fn rearm(&mut self) {
        let at = match self.head_until {
            Some(head) => self.idle_until.min(head),
            None => self.idle_until,
        };
        self.deadline.as_mut().reset(at);
    }

    fn active(&mut self) {
        self.idle_until = Instant::now() + self.limits.idle;
        self.rearm();
    }

    /// Follows the request head through `bytes`, just read.
    fn read_head(&mut self, bytes: &[u8]) {
        if self.head_until.is_none() {
            if !self.responded {
                // A body, or a pipelined request: the idle time governs.
                return;
            }
            self.head_until = Some(Instant::now() + self.limits.header);
            self.head_matched = 0;
            self.responded = false;
        }
        for &b in bytes {
            self.head_matched = if b == END_OF_HEAD[self.head_matched] {
                self.head_matched + 1
            } else {
                usize::from(b == END_OF_HEAD[0])
            };
            if self.head_matched == END_OF_HEAD.len() {
                self.head_until = None;
                return;
            }
        }
    }

    /// `Pending`, unless the connection has been silent too long or its
    /// request head is late.
    fn pending_or_idle<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let why = match self.head_until {
                    Some(head) if head <= Instant::now() => "request head not received in time",
                    _ => "connection idle for too long",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
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
                    let this = &mut *self;
                    this.read_head(&buf.filled()[before..]);
                    this.active();
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
                    if self.head_until.is_none() {
                        self.responded = true;
                    }
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
    use tokio::net::TcpStream;

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
            header: Duration::from_secs(30),
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
    async fn a_head_that_trickles_in_is_cut_off_and_the_next_one_gets_its_own_time() {
        let header = Duration::from_millis(500);
        let (mut l, addr) = guarded(Limits {
            connections: 4,
            idle: Duration::from_secs(30),
            header,
        })
        .await;
        // Slowloris: a byte at a time, never the blank line.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = l.accept().await;
        let trickle = tokio::spawn(async move {
            for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ".iter().cycle() {
                if slow.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut buf = [0u8; 64];
        let err = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = io.read(&mut buf).await {
                    return e;
                }
            }
        })
        .await
        .expect("a head that never ends was read for 10 s");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("request head"), "{err}");
        trickle.abort();

        // A whole head, a long think, a response, and a second head in
        // time: nothing is cut off.
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = l.accept().await;
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        client.write_all(head).await.unwrap();
        let mut got = vec![0u8; head.len()];
        io.read_exact(&mut got).await.unwrap();
        tokio::time::sleep(header * 2).await;
        io.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        client.write_all(head).await.unwrap();
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, head);
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_one_closes() {
        let (mut l, addr) = guarded(Limits {
            connections: 2,
            idle: Duration::from_secs(30),
            header: Duration::from_secs(30),
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
