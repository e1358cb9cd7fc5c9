//! One TLS connection to a node, made the same way for the first
//! connection of a channel and for every reconnection, with errors that
//! say what went wrong.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::ApiError;
use super::error::{Target, untrusted_reason};
use super::pin::PinError;

/// Makes TLS connections to one node.
#[derive(Clone)]
pub(super) struct Dialer {
    target: Target,
    name: ServerName<'static>,
    tls: TlsConnector,
    /// The longest TCP connect, TLS handshake and confirmation.
    timeout: Duration,
}

impl Dialer {
    /// Dials `addr`, verifying the server by `server_name`.
    pub(super) fn new(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<Dialer, ApiError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| ApiError::ServerName(server_name.chars().take(80).collect()))?;
        Ok(Dialer {
            target: Target {
                addr,
                server_name: server_name.to_owned(),
            },
            name,
            tls: TlsConnector::from(config),
            timeout,
        })
    }

    /// Whom this dialer calls.
    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    pub(super) async fn dial(&self) -> Result<TlsStream<TcpStream>, ApiError> {
        tokio::time::timeout(self.timeout, self.dial_untimed())
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::Timeout {
                    target: self.target.clone(),
                    after: self.timeout,
                })
            })
    }

    async fn dial_untimed(&self) -> Result<TlsStream<TcpStream>, ApiError> {
        let tcp = TcpStream::connect(self.target.addr)
            .await
            .map_err(|source| ApiError::Unreachable {
                target: self.target.clone(),
                source,
            })?;
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(server = %self.target, "could not set TCP_NODELAY: {e}");
        }
        super::keepalive::tcp(&tcp);
        let mut stream = self
            .tls
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| self.handshake_error(e))?;
        confirm(&mut stream)
            .await
            .map_err(|e| self.handshake_error(e))?;
        Ok(stream)
    }

    /// Finds what rustls said inside tokio-rustls's I/O error.
    fn handshake_error(&self, error: io::Error) -> ApiError {
        let target = self.target.clone();
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
                match other.0.downcast_ref::<PinError>() {
                    Some(pin) => ApiError::Pin(pin.clone()),
                    None => ApiError::UntrustedServer {
                        reason: format!("its certificate was rejected ({other})"),
                        target,
                    },
                }
            }
            Some(rustls::Error::InvalidCertificate(e)) => ApiError::UntrustedServer {
                reason: untrusted_reason(e, &target.server_name),
                target,
            },
            Some(rustls::Error::AlertReceived(alert)) => ApiError::Refused {
                target,
                alert: *alert,
            },
            _ => ApiError::Handshake {
                target,
                source: error,
            },
        }
    }
}

/// Waits for the server's first record after the handshake. A TLS 1.3
/// client finishes its handshake before the server has checked the
/// client's certificate, so without this wait a refusal (an alert) would
/// only surface as a failed first call. tonic's servers speak first (the
/// HTTP/2 SETTINGS frame), so the wait is one round trip; what was read
/// stays in rustls's buffer for the channel.
async fn confirm(stream: &mut TlsStream<TcpStream>) -> io::Result<()> {
    let (tcp, tls) = stream.get_mut();
    loop {
        let state = tls
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if state.plaintext_bytes_to_read() > 0 {
            return Ok(());
        }
        if state.peer_has_closed() {
            return Err(closed());
        }
        tcp.readable().await?;
        match tls.read_tls(&mut TryRead(tcp)) {
            Ok(0) => return Err(closed()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection right after the TLS handshake",
    )
}

/// Lets rustls read from a tokio socket that is ready.
struct TryRead<'a>(&'a TcpStream);

impl io::Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}
