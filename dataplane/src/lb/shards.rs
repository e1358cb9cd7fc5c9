//! A node's conversation state (VIP and mesh flows), split into shards by a
//! hash of the client's end of each flow. The client's address and port are
//! the source of what it sends and the destination of what it gets back, so
//! both directions of a flow, and every table of its conversation, land in
//! one shard. Workers lock only the shard of the flow they carry, so flows
//! of different clients never contend.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::conntrack::ConntrackError;
use super::mesh::MeshFlows;
use super::vip::VipFlows;

/// The conversations of the clients whose ends hash to one shard.
pub struct Shard {
    pub vip: VipFlows,
    pub mesh: MeshFlows,
}

/// Every conversation of a node.
pub struct Shards {
    shards: Box<[Mutex<Shard>]>,
}

/// Shards per node: enough that the workers of a busy node (a few per task
/// interface, two on the underlay, two on the mesh) rarely meet.
pub const SHARDS: usize = 16;

impl Shards {
    /// `capacity` flows per table in all, spread over the shards;
    /// `mesh_addr` is where the node's published ports lead.
    pub fn new(capacity: usize, mesh_addr: Ipv4Addr) -> Result<Shards, ConntrackError> {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = (0..SHARDS)
            .map(|_| {
                Ok(Mutex::new(Shard {
                    vip: VipFlows::new(per_shard)?,
                    mesh: MeshFlows::new(mesh_addr, per_shard)?,
                }))
            })
            .collect::<Result<Vec<_>, ConntrackError>>()?;
        Ok(Shards {
            shards: shards.into_boxed_slice(),
        })
    }

    /// The shard of the flows whose client end is `client`.
    pub fn of(&self, client: SocketAddrV4) -> MutexGuard<'_, Shard> {
        let i = shard_index(client);
        // A worker that panicked mid-update leaves tables that are still
        // consistent (every update is a complete insert or remove).
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `f` on each shard in turn (housekeeping, metrics).
    pub fn each(&self, mut f: impl FnMut(&mut Shard)) {
        for shard in &self.shards {
            f(&mut shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

fn shard_index(client: SocketAddrV4) -> usize {
    // FNV-1a: cheap, and spreads both addresses and ports.
    let mut h: u32 = 0x811c_9dc5;
    for b in client
        .ip()
        .octets()
        .into_iter()
        .chain(client.port().to_be_bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_spread_over_every_shard() {
        let mut seen = [0usize; SHARDS];
        for port in 0..4096u16 {
            seen[shard_index(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 30_000 + port))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 4096 / SHARDS / 2), "{seen:?}");
    }
}
