//! One accepted node-to-node connection: the TLS stream, and what its
//! handshake proved about the client, which tonic copies into every
//! request of the connection as a [`ConnectionInfo`] extension.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tonic::Request;
use tonic::transport::server::Connected;

use super::peer::Peer;
use crate::pki::Presented;

/// The TLS stream of an operator's connection.
pub type OperatorStream = TlsStream<TcpStream>;

/// A connection that negotiated [`OPERATOR_ALPN`](super::OPERATOR_ALPN):
/// an operator's CLI (or someone posing as one), for the admin API.
pub struct OperatorConnection {
    /// The handshaken stream.
    pub stream: OperatorStream,
    /// The client's address as this socket sees it.
    pub remote_addr: SocketAddr,
    /// What the client's certificate is, verified against the cluster's
    /// CAs; `None` without one.
    pub presented: Option<Presented>,
}

/// What the server knows about the other end of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The client's address as this socket sees it.
    pub remote_addr: SocketAddr,
    /// The node named by the client certificate; `None` without one.
    pub peer: Option<Peer>,
}

impl ConnectionInfo {
    /// The connection `request` came in on, when it came through
    /// [`serve`](super::serve).
    pub fn of<T>(request: &Request<T>) -> Option<&ConnectionInfo> {
        request.extensions().get::<ConnectionInfo>()
    }
}

/// A TLS connection whose handshake is complete.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    info: ConnectionInfo,
}

impl TlsConnection {
    /// Wraps a handshaken stream, reading the client certificate once.
    pub(super) fn new(stream: TlsStream<TcpStream>, remote_addr: SocketAddr) -> TlsConnection {
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(Peer::from_chain);
        TlsConnection {
            stream,
            info: ConnectionInfo { remote_addr, peer },
        }
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
