//! Serving gRPC to other nodes over TLS.
//!
//! [`TlsIncoming`] accepts TCP connections and runs each TLS handshake in a
//! task of its own, with a deadline, so a slow or failing client never
//! holds up the others; only handshaken connections reach tonic. The TLS
//! configuration ([`ServerTls`]) is read at every accept, so a node whose
//! certificate changes (promotion, demotion, renewal) swaps it in without
//! restarting the server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::transport::Server;
use tracing::{debug, warn};

use super::ApiError;
use super::conn::TlsConnection;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept (e.g. out of file descriptors), so the
/// loop does not spin while the cause lasts.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Handshaken connections waiting for tonic to take them.
const QUEUE: usize = 64;

/// The server's TLS configuration, shared with the accept loop and
/// replaceable while it runs; connections already open keep theirs.
#[derive(Clone)]
pub struct ServerTls(Arc<RwLock<Arc<ServerConfig>>>);

impl ServerTls {
    /// Starts with `config` (see [`server_config`](super::server_config)).
    pub fn new(config: Arc<ServerConfig>) -> ServerTls {
        ServerTls(Arc::new(RwLock::new(config)))
    }

    /// Uses `config` for every connection accepted from now on.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        // The lock only guards an assignment, which cannot panic, so a
        // poisoned lock still holds a whole value.
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = config;
    }

    fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The stream of handshaken connections that tonic serves; its accept loop
/// stops, closing the listener, when the stream is dropped.
pub struct TlsIncoming {
    connections: mpsc::Receiver<TlsConnection>,
}

impl TlsIncoming {
    /// Starts accepting on `listener`. Must be called within a tokio
    /// runtime.
    pub fn new(listener: TcpListener, tls: ServerTls) -> TlsIncoming {
        let (tx, connections) = mpsc::channel(QUEUE);
        tokio::spawn(accept_loop(listener, tls, tx));
        TlsIncoming { connections }
    }
}

impl Stream for TlsIncoming {
    type Item = Result<TlsConnection, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// Serves `service` (a generated `…Server`) on `listener` through `tls`
/// until `shutdown` completes, then lets open calls finish.
pub async fn serve<S>(
    listener: TcpListener,
    tls: ServerTls,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    Server::builder()
        .http2_keepalive_interval(Some(super::keepalive::PING_INTERVAL))
        .http2_keepalive_timeout(Some(super::keepalive::PING_TIMEOUT))
        .serve_with_incoming_shutdown(service, TlsIncoming::new(listener, tls), shutdown)
        .await
        .map_err(ApiError::Serve)
}

async fn accept_loop(listener: TcpListener, tls: ServerTls, tx: mpsc::Sender<TlsConnection>) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, addr)) => {
                tokio::spawn(handshake(tcp, addr, tls.current(), tx.clone()));
            }
            Err(e) => {
                warn!("accepting a node-to-node connection failed ({e}); retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

async fn handshake(
    tcp: TcpStream,
    addr: SocketAddr,
    config: Arc<ServerConfig>,
    tx: mpsc::Sender<TlsConnection>,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(%addr, "could not set TCP_NODELAY: {e}");
    }
    super::keepalive::tcp(&tcp);
    let accept = TlsAcceptor::from(config).accept(tcp);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            debug!(%addr, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            debug!(%addr, "TLS handshake took longer than {HANDSHAKE_TIMEOUT:?}; closed");
            return;
        }
    };
    if tx.send(TlsConnection::new(stream, addr)).await.is_err() {
        debug!(%addr, "server stopped during the TLS handshake; closed");
    }
}
