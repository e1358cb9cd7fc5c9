//! Errors of node-to-node connections, each saying what to check.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};
use thiserror::Error;

use super::pin::PinError;
use crate::Role;

/// Why a TLS configuration could not be built, a connection could not be
/// made, or the server stopped.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The node's key or certificate cannot go into rustls.
    #[error(
        "this node's key and certificate cannot be used for TLS ({0}); they are damaged or do \
         not belong together: leave the swarm (`shoal swarm leave --force`) and join again"
    )]
    Identity(String),
    /// The CA certificate cannot be a trust anchor.
    #[error(
        "the cluster CA certificate cannot be used to verify other nodes ({0}); restore \
         `ca.pem` from a manager's state directory"
    )]
    Trust(String),
    /// rustls refused our protocol settings.
    #[error("rustls refused shoal's TLS settings ({0}); this is a bug in shoal")]
    Settings(rustls::Error),
    /// The name to verify the server by is not a DNS name.
    #[error("`{0}` cannot name a TLS server: use a node id or `swarm-manager` (any manager)")]
    ServerName(String),
    /// TCP did not connect.
    #[error(
        "cannot reach {target}: {source}; check the address and that shoal's daemon runs there"
    )]
    Unreachable {
        /// Whom we called.
        target: Target,
        /// The OS error.
        source: io::Error,
    },
    /// TCP and TLS did not complete in time.
    #[error(
        "{target} did not complete a connection within {after:?}; check the address, firewalls \
         on the way, and that shoal's daemon runs there"
    )]
    Timeout {
        /// Whom we called.
        target: Target,
        /// The connect timeout.
        after: Duration,
    },
    /// The server's certificate did not verify.
    #[error("{target} cannot be trusted: {reason}")]
    UntrustedServer {
        /// Whom we called.
        target: Target,
        /// What was wrong and what to do.
        reason: String,
    },
    /// The server refused this node's certificate during the handshake.
    #[error(
        "{target} refused this node's certificate (TLS alert {alert:?}); if it expired, run \
         `shoal swarm join` with a token of this swarm (the node keeps its id and tasks); if \
         the node belongs to another swarm, leave that one first"
    )]
    Refused {
        /// Whom we called.
        target: Target,
        /// The alert it sent.
        alert: AlertDescription,
    },
    /// While joining, the server's CA is not the one the token pins.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// The TLS handshake failed otherwise.
    #[error(
        "TLS handshake with {target} failed ({source}); check that the address is a shoal \
         node's cluster port"
    )]
    Handshake {
        /// Whom we called.
        target: Target,
        /// What went wrong.
        source: io::Error,
    },
    /// HTTP/2 could not start over the TLS connection.
    #[error("cannot start gRPC with {target}: {source}")]
    Channel {
        /// Whom we called.
        target: Target,
        /// tonic's reason.
        source: tonic::transport::Error,
    },
    /// The gRPC server failed.
    #[error("the node-to-node gRPC server stopped: {0}")]
    Serve(tonic::transport::Error),
}

/// The server a client called, as messages name it: `manager
/// 198.18.0.1:2377`, or `node `n1` at 198.18.0.1:2377`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// The name its certificate must carry.
    pub server_name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Role::from_org_unit(&self.server_name) {
            Some(role) => write!(f, "{role} {}", self.addr),
            None => write!(f, "node `{}` at {}", self.server_name, self.addr),
        }
    }
}

/// Explains a server certificate that failed verification.
pub(super) fn untrusted_reason(error: &CertificateError, server_name: &str) -> String {
    match error {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            match Role::from_org_unit(server_name) {
                Some(role) => format!(
                    "its certificate does not make it a {role}; give the address of a {role}"
                ),
                None => format!(
                    "its certificate is not for node `{server_name}`; another node answers at \
                     this address"
                ),
            }
        }
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            "its certificate was not issued by this swarm's CA; it belongs to another swarm"
                .to_owned()
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => format!(
            "its certificate is not valid now ({error}); check both nodes' clocks, and that its \
             certificate was renewed"
        ),
        _ => format!("its certificate was rejected ({error})"),
    }
}
