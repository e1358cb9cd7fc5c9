//! The transport's own messages (Ping, which shows who the server sees
//! calling): plain serde types that
//! [`JsonCodec`](super::codec::JsonCodec) carries as JSON.
//!
//! Unknown fields are ignored, so a newer node can add optional fields
//! without breaking older ones.

use serde::{Deserialize, Serialize};

use super::peer::Peer;

/// Asks a node to answer; carries nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {}

/// A node's answer to [`PingRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResponse {
    /// Who the server saw calling: the node named by the client
    /// certificate, or `None` when the caller presented none.
    pub peer: Option<Peer>,
}
