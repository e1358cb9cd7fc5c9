//! Calling another node: TCP, TLS through one of our rustls client
//! configurations, then tonic's HTTP/2 [`Channel`] over that connection.
//!
//! The first connection is made before [`connect`] returns, so a wrong
//! address, a wrong swarm or a failed pin comes back as a precise
//! [`ApiError`]; when the connection later drops, the channel dials again
//! the same way and calls fail with `unavailable` until it succeeds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use super::ApiError;
use super::dial::Dialer;

/// How to connect: timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The longest TCP connect plus TLS handshake and the server's first
    /// answer.
    pub connect_timeout: Duration,
    /// The longest a call may take, or `None` for no limit (for streams).
    pub request_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    /// 3 s to connect, 10 s per call.
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// Connects with [`ClientOptions::default`]; see [`ClientOptions::connect`].
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> Result<Channel, ApiError> {
    ClientOptions::default()
        .connect(addr, config, server_name)
        .await
}

impl ClientOptions {
    /// A channel to the node at `addr`, whose certificate must carry the
    /// DNS name `server_name`: a node id, or `swarm-manager` to accept any
    /// manager (and only a manager).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<Channel, ApiError> {
        let dialer = Dialer::new(addr, server_name, config, self.connect_timeout)?;
        let first = Arc::new(Mutex::new(Some(dialer.dial().await?)));
        let target = dialer.target().clone();
        let connector = tower::service_fn(move |_: Uri| {
            let dialer = dialer.clone();
            let first = first.lock().unwrap_or_else(PoisonError::into_inner).take();
            async move {
                let stream = match first {
                    Some(stream) => stream,
                    None => dialer.dial().await?,
                };
                Ok::<_, ApiError>(TokioIo::new(stream))
            }
        });
        // The scheme is `http` because TLS is already done by the
        // connector: tonic must not try to add its own.
        let channel_error = |source| ApiError::Channel {
            target: target.clone(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(channel_error)?
            .http2_keep_alive_interval(super::keepalive::PING_INTERVAL)
            .keep_alive_timeout(super::keepalive::PING_TIMEOUT)
            .keep_alive_while_idle(true);
        if let Some(timeout) = self.request_timeout {
            endpoint = endpoint.timeout(timeout);
        }
        endpoint
            .connect_with_connector(connector)
            .await
            .map_err(channel_error)
    }
}
