//! Serving gRPC to other nodes over TLS.
//!
//! [`TlsIncoming`] accepts TCP connections and runs each TLS handshake in a
//! task of its own, with a deadline, so a slow or failing client never
//! holds up the others; only handshaken connections reach tonic. The TLS
//! configuration ([`ServerTls`]) is read at every accept, so a node whose
//! certificate changes (promotion, demotion, renewal) swaps it in without
//! restarting the server. A connection whose client negotiated
//! [`OPERATOR_ALPN`] goes to the operators' queue instead of tonic (or is
//! closed when nobody takes them), and one that shows an operator
//! certificate on the cluster protocol is closed: each kind of certificate
//! reaches only its own side.

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

use super::conn::{OperatorConnection, TlsConnection};
use super::{ApiError, OPERATOR_ALPN};
use crate::pki::Presented;

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
    /// Starts accepting on `listener`; operator connections go to
    /// `operators`. Must be called within a tokio runtime.
    pub fn new(
        listener: TcpListener,
        tls: ServerTls,
        operators: Option<mpsc::Sender<OperatorConnection>>,
    ) -> TlsIncoming {
        let (tx, connections) = mpsc::channel(QUEUE);
        let lanes = Lanes {
            cluster: tx,
            operators,
        };
        tokio::spawn(accept_loop(listener, tls, lanes));
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
/// until `shutdown` completes, then lets open calls finish. Operator
/// connections are closed.
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
    serve_with_operators(listener, tls, service, shutdown, None).await
}

/// [`serve`], handing operator connections to `operators`.
pub async fn serve_with_operators<S>(
    listener: TcpListener,
    tls: ServerTls,
    service: S,
    shutdown: impl Future<Output = ()>,
    operators: Option<mpsc::Sender<OperatorConnection>>,
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
        .serve_with_incoming_shutdown(
            service,
            TlsIncoming::new(listener, tls, operators),
            shutdown,
        )
        .await
        .map_err(ApiError::Serve)
}

/// Where handshaken connections go.
#[derive(Clone)]
struct Lanes {
    /// The cluster protocol (tonic).
    cluster: mpsc::Sender<TlsConnection>,
    /// The admin API for operators, when this server takes them.
    operators: Option<mpsc::Sender<OperatorConnection>>,
}

async fn accept_loop(listener: TcpListener, tls: ServerTls, lanes: Lanes) {
    loop {
        let accepted = tokio::select! {
            () = lanes.cluster.closed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, addr)) => {
                tokio::spawn(handshake(tcp, addr, tls.current(), lanes.clone()));
            }
            Err(e) => {
                warn!("accepting a node-to-node connection failed ({e}); retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

async fn handshake(tcp: TcpStream, addr: SocketAddr, config: Arc<ServerConfig>, lanes: Lanes) {
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
    let session = stream.get_ref().1;
    let operator_lane = session.alpn_protocol() == Some(OPERATOR_ALPN);
    let presented = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Presented::of(leaf));
    if operator_lane {
        let Some(operators) = lanes.operators else {
            debug!(%addr, "an operator connection, but this server takes none; closed");
            return;
        };
        let conn = OperatorConnection {
            stream,
            remote_addr: addr,
            presented,
        };
        if operators.send(conn).await.is_err() {
            debug!(%addr, "nobody takes operator connections any more; closed");
        }
        return;
    }
    if let Some(Presented::Operator(op)) = &presented {
        debug!(
            %addr,
            "operator certificate {} on the cluster protocol; closed (operators use the admin API)",
            op.id()
        );
        return;
    }
    if lanes
        .cluster
        .send(TlsConnection::new(stream, addr))
        .await
        .is_err()
    {
        debug!(%addr, "server stopped during the TLS handshake; closed");
    }
}
