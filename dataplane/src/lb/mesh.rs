//! The routing-mesh conversation: a client outside the cluster reaches a
//! published port on any node (the entry node), a backend on any node serves
//! it, and the backend sees the client's own address. Sans-IO with an
//! explicit clock (milliseconds); keys and flags come in, translations and
//! nodes go out. Three moments, on two nodes:
//!
//! - Entry node, [`MeshFlows::enter`]: the client's packet, which the
//!   kernel delivered to `<mesh address>:<published>`, gets a backend
//!   (Maglev + conntrack, as for VIPs) and its destination translated to
//!   `<backend>:<target>`; the source stays the client.
//! - Backend node, [`MeshFlows::note_entry`] and [`MeshFlows::entry_of`]: a
//!   frame from outside the overlay records the node it entered by, and the
//!   backend's reply is routed back to that node.
//! - Entry node again, [`MeshFlows::exit`]: the reply gets
//!   `<mesh address>:<published>` back as its source.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::conntrack::{Conntrack, ConntrackError, Direction};
use super::nat::Nat;
use super::{BackendSet, Selection, select};
use crate::wire::flow::{FlowKey, Protocol, TcpFlags};

/// A client packet's backend on the entry node, and how to rewrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entered {
    pub backend: Ipv4Addr,
    /// The destination becomes `backend:target`.
    pub nat: Nat,
    /// Whether this packet opened a connection (a new or repicked flow).
    pub opened: bool,
}

/// The mesh flows of one shard.
pub struct MeshFlows {
    /// The address published ports are translated to on this node.
    mesh_addr: Ipv4Addr,
    /// Entry node: client flow (client -> mesh address:published) -> backend.
    forward: Conntrack,
    /// Entry node: translated flow (client -> backend:target) -> published
    /// port. Kept as long as its client flow.
    published_of: HashMap<FlowKey, u16>,
    /// Backend node: translated flow -> the node it entered by.
    returns: Conntrack,
}

impl MeshFlows {
    /// Tracks up to `capacity` flows per table; `mesh_addr` is where the
    /// node's published ports lead.
    pub fn new(mesh_addr: Ipv4Addr, capacity: usize) -> Result<MeshFlows, ConntrackError> {
        Ok(MeshFlows {
            mesh_addr,
            forward: Conntrack::new(capacity)?,
            published_of: HashMap::new(),
            returns: Conntrack::new(capacity)?,
        })
    }

    /// Entry node: a client's packet of flow `key` (to the mesh address and
    /// a published port) for a service whose backends are `set` and whose
    /// tasks listen on `target`. `None` when no backend is active.
    pub fn enter(
        &mut self,
        set: &BackendSet,
        key: &FlowKey,
        flags: TcpFlags,
        target: u16,
        now: u64,
    ) -> Option<Entered> {
        let selection = select(&mut self.forward, set, key, flags, now)?;
        let backend = selection.backend();
        let to = SocketAddrV4::new(backend, target);
        if let Selection::Repicked { previous, .. } = selection {
            self.published_of.remove(&FlowKey {
                dst: SocketAddrV4::new(previous, target),
                ..*key
            });
        }
        self.published_of
            .insert(FlowKey { dst: to, ..*key }, key.dst.port());
        Some(Entered {
            backend,
            nat: Nat::dst(to),
            opened: !matches!(selection, Selection::Kept(_)),
        })
    }

    /// Backend node: a frame of flow `key` (from a client outside the
    /// overlay, to a local backend) arrived from node `entry`. The same
    /// client port may come back through another node (ports are reused):
    /// the latest entry node wins.
    pub fn note_entry(&mut self, key: &FlowKey, flags: TcpFlags, entry: Ipv4Addr, now: u64) {
        let known = self
            .returns
            .observe(key, Direction::Original, flags, now)
            .map(|e| e.backend);
        if known != Some(entry) {
            self.returns.insert(*key, entry, flags, now);
        }
    }

    /// Backend node: where a backend's reply of flow `reply` (to a client
    /// outside the overlay) goes: the node the client's flow entered by.
    pub fn entry_of(&mut self, reply: &FlowKey, flags: TcpFlags, now: u64) -> Option<Ipv4Addr> {
        self.returns
            .observe(&reply.reversed(), Direction::Reply, flags, now)
            .map(|e| e.backend)
    }

    /// Entry node: a backend's reply of flow `reply` came back here. The
    /// translation that gives it `<mesh address>:<published>` as its source;
    /// `None` when no mesh flow knows it.
    pub fn exit(&mut self, reply: &FlowKey, flags: TcpFlags, now: u64) -> Option<Nat> {
        let published = *self.published_of.get(&reply.reversed())?;
        let entry_end = SocketAddrV4::new(self.mesh_addr, published);
        let client = FlowKey {
            proto: reply.proto,
            src: reply.dst,
            dst: entry_end,
        };
        self.forward.observe(&client, Direction::Reply, flags, now);
        Some(Nat::src(entry_end))
    }

    /// Drops up to `budget` expired flows of each table, and the published
    /// ports of client flows that are gone.
    pub fn expire(&mut self, now: u64, budget: usize) {
        self.forward.expire(now, budget);
        self.returns.expire(now, budget);
        let (forward, mesh_addr) = (&self.forward, self.mesh_addr);
        self.published_of.retain(|k, &mut published| {
            let client = FlowKey {
                dst: SocketAddrV4::new(mesh_addr, published),
                ..*k
            };
            forward.contains(&client, now)
        });
    }

    /// Every live client flow on this entry node: its protocol, published
    /// port and backend.
    pub fn tracked(&self, now: u64) -> impl Iterator<Item = (Protocol, u16, Ipv4Addr)> {
        self.forward
            .iter(now)
            .map(|(k, e)| (k.proto, k.dst.port(), e.backend))
    }

    /// Entries of the entry and return tables.
    pub fn len(&self) -> [usize; 2] {
        [self.forward.len(), self.returns.len()]
    }
}

#[cfg(test)]
mod tests;
