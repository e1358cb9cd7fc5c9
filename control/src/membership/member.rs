//! Who a gossip member is: node id, gossip address and generation.
//!
//! foca keys members by [`Identity::addr`], which here is the gossip
//! address: two identities at the same address are the same node in two
//! lives, and the one with the higher generation wins (so joining needs only
//! a peer's address). A node that was declared down renews
//! itself (generation + 1) and rejoins without anyone's help.

use std::fmt;
use std::net::SocketAddr;

use foca::Identity;

use crate::NodeId;

/// A member of the gossip cluster, as it introduces itself to the others.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// The node's id, unique in the cluster.
    pub node: NodeId,
    /// Where the node receives gossip datagrams.
    pub addr: SocketAddr,
    /// Which life of the node this is. Start it from something that grows
    /// across restarts (milliseconds since the epoch at start-up, say), so a
    /// restarted node outranks what the cluster remembers of its last life.
    pub generation: u64,
}

impl Member {
    /// A member description.
    pub fn new(node: NodeId, addr: SocketAddr, generation: u64) -> Self {
        Self {
            node,
            addr,
            generation,
        }
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.node, self.addr, self.generation)
    }
}

impl Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.checked_add(1)?,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // A node reinstalled with a new id at the same address also wins
        // by generation; the id only breaks exact ties.
        (self.generation, &self.node) > (adversary.generation, &adversary.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(generation: u64) -> Member {
        Member::new(
            NodeId::new("n1").unwrap(),
            "10.0.0.1:7946".parse().unwrap(),
            generation,
        )
    }

    #[test]
    fn renewing_moves_to_a_newer_generation_that_wins() {
        let old = member(7);
        let new = old.renew().unwrap();
        assert_eq!(new.generation, 8);
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn the_last_generation_cannot_renew() {
        assert_eq!(member(u64::MAX).renew(), None);
    }
}
