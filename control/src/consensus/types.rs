//! The types Raft is instantiated with: what a log entry carries
//! ([`Request`]), what applying it returns ([`Response`]), and how a manager
//! is named ([`RaftId`]) and reached ([`Peer`]).

use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::NodeId;
use crate::state::{Command, Outcome};

/// A manager's id inside Raft: derived from its [`NodeId`] by [`raft_id`].
pub type RaftId = u64;

openraft::declare_raft_types!(
    /// shoal's Raft: [`Request`]s in the log, a [`Peer`] per member.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = RaftId,
        Node = Peer,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One log entry's payload: a change to the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Request(pub Command);

/// What applying a [`Request`] gave: the outcome, or the state's refusal
/// (the [`StateError`](crate::state::StateError)'s message; a refused
/// command changed nothing but still took its place in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Response(pub Result<Outcome, String>);

/// A manager as Raft knows it: its node id and its cluster API address,
/// where the other managers send it Raft messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The node's id.
    pub id: NodeId,
    /// Its cluster API address.
    pub addr: SocketAddr,
}

impl Peer {
    /// This peer's id inside Raft.
    pub fn raft_id(&self) -> RaftId {
        raft_id(&self.id)
    }
}

/// openraft requires `Default` of a member's node; it uses it only for
/// members given by id alone, which shoal never does.
impl Default for Peer {
    fn default() -> Peer {
        Peer {
            id: NodeId::new("unknown").expect("`unknown` is a valid node id"),
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        }
    }
}

/// A node's id inside Raft: the first 8 bytes of the SHA-256 of its id,
/// big endian. The same on every build and every machine, so the members
/// recorded in the log keep meaning the same nodes.
pub fn raft_id(node: &NodeId) -> RaftId {
    let digest = Sha256::digest(node.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_id_is_sha256_prefix() {
        // sha256("abc") = ba7816bf8f01cfea 414140de5dae2223 ...
        let id = NodeId::new("abc").unwrap();
        assert_eq!(raft_id(&id), 0xba78_16bf_8f01_cfea);
    }

    #[test]
    fn request_and_response_are_plain_json() {
        let req = Request(Command::RemoveSecret { name: "k".into() });
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"remove_secret":{"name":"k"}}"#);
        let resp = Response(Err("nope".into()));
        let back: Response = serde_json::from_str(&serde_json::to_string(&resp).unwrap()).unwrap();
        assert_eq!(back, resp);
    }
}
