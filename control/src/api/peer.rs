//! Who is calling: the node and role named by the client certificate that
//! the TLS handshake verified against the cluster CA.
//!
//! The accept loop reads the certificate once per connection
//! ([`ConnectionInfo`](super::conn::ConnectionInfo)) and tonic hands it to
//! every request of that connection as an extension; handlers ask for it
//! with [`Peer::of`], [`require_node`] or [`require_manager`].

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};
use tracing::debug;

use super::conn::ConnectionInfo;
use crate::pki::NodeCert;
use crate::{NodeId, Role};

/// A node proven by its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The certificate's common name.
    pub node_id: NodeId,
    /// The certificate's organizational unit.
    pub role: Role,
    /// The certificate's serial number (lowercase hex).
    #[serde(default)]
    pub serial: String,
}

impl Peer {
    /// The node calling `request`, or `None` when it presented no node
    /// certificate (a node that is joining) or the request did not come
    /// through [`serve`](super::serve).
    pub fn of<T>(request: &Request<T>) -> Option<Peer> {
        ConnectionInfo::of(request).and_then(|info| info.peer.clone())
    }

    /// The node named by a verified certificate chain (leaf first). A
    /// certificate our CA signed that is not a node certificate names
    /// nobody.
    pub(super) fn from_chain(chain: &[CertificateDer<'_>]) -> Option<Peer> {
        let leaf = chain.first()?;
        match NodeCert::from_der(leaf.to_vec()) {
            Ok(cert) => Some(Peer {
                node_id: cert.node_id().clone(),
                role: cert.role(),
                serial: cert.serial().to_owned(),
            }),
            Err(e) => {
                debug!("client certificate names no node: {e}");
                None
            }
        }
    }
}

/// The calling node, or `unauthenticated` when the caller has no node
/// certificate.
pub fn require_node<T>(request: &Request<T>) -> Result<Peer, Status> {
    Peer::of(request).ok_or_else(|| {
        Status::unauthenticated("this call needs a node certificate; join the swarm first")
    })
}

/// The calling node if it is a manager; `permission_denied` for a worker.
/// `action` completes "only managers may …" in the error.
pub fn require_manager<T>(request: &Request<T>, action: &str) -> Result<Peer, Status> {
    let peer = require_node(request)?;
    match peer.role {
        Role::Manager => Ok(peer),
        Role::Worker => Err(Status::permission_denied(format!(
            "node `{}` is a worker; only managers may {action}; send the request to a manager, \
             or promote this node with `shoal node promote`",
            peer.node_id
        ))),
    }
}
