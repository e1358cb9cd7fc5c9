//! The VIP conversation: a task's connection to a service VIP, translated on
//! the client's node in both directions, so any node's backends can serve.
//! Sans-IO with an explicit clock (milliseconds on the caller's monotonic
//! clock): keys and flags come in, translations go out.
//!
//! - A client's packet to `VIP:port` enters [`VipFlows::balance`] with the
//!   service's [`BackendSet`]; [`super::select`] picks the backend (Maglev
//!   for a new flow, conntrack for the rest) and the destination translation
//!   to `backend:port` leaves as a [`Balanced`].
//! - A frame about to reach a task enters [`VipFlows::reverse`]: a backend's
//!   reply to a tracked client flow gets its source translated back to
//!   `VIP:port` ([`Reversed`]); anything else passes (`None`).
//!
//! Both tables see both directions, so a flow's TCP state (and with it its
//! timeout and the reuse of its ports) follows the connection.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::conntrack::{Conntrack, ConntrackError, Direction};
use super::nat::Nat;
use super::{BackendSet, Selection, select};
use crate::wire::flow::{FlowKey, Protocol, TcpFlags};

/// A client packet's backend and how to rewrite the packet for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balanced {
    pub backend: Ipv4Addr,
    /// The destination becomes `backend:port`.
    pub nat: Nat,
    /// Whether this packet opened a connection (a new or repicked flow).
    pub opened: bool,
}

/// A backend's reply to a client of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reversed {
    /// The VIP the client sent to.
    pub vip: Ipv4Addr,
    /// The source becomes `vip:port` again.
    pub nat: Nat,
}

/// The VIP flows of one shard.
pub struct VipFlows {
    /// Client flow (client -> VIP) -> backend.
    forward: Conntrack,
    /// Reply flow (backend -> client) -> the VIP it answers for.
    reply: Conntrack,
}

/// The reply flow of a client flow that `backend` serves.
fn reply_key(client: &FlowKey, backend: Ipv4Addr) -> FlowKey {
    FlowKey {
        proto: client.proto,
        src: SocketAddrV4::new(backend, client.dst.port()),
        dst: client.src,
    }
}

impl VipFlows {
    /// Tracks up to `capacity` flows per direction.
    pub fn new(capacity: usize) -> Result<VipFlows, ConntrackError> {
        Ok(VipFlows {
            forward: Conntrack::new(capacity)?,
            reply: Conntrack::new(capacity)?,
        })
    }

    /// A client's packet of flow `key` (to a VIP of `set`'s service) with
    /// TCP `flags` at `now`. `None` when no backend is active.
    pub fn balance(
        &mut self,
        set: &BackendSet,
        key: &FlowKey,
        flags: TcpFlags,
        now: u64,
    ) -> Option<Balanced> {
        let selection = select(&mut self.forward, set, key, flags, now)?;
        let vip = *key.dst.ip();
        match selection {
            Selection::Kept(backend) => {
                self.reply
                    .observe(&reply_key(key, backend), Direction::Original, flags, now);
            }
            Selection::New(backend) => {
                self.reply.insert(reply_key(key, backend), vip, flags, now);
            }
            Selection::Repicked { backend, previous } => {
                self.reply.remove(&reply_key(key, previous));
                self.reply.insert(reply_key(key, backend), vip, flags, now);
            }
        }
        let backend = selection.backend();
        Some(Balanced {
            backend,
            nat: Nat::dst(SocketAddrV4::new(backend, key.dst.port())),
            opened: !matches!(selection, Selection::Kept(_)),
        })
    }

    /// A frame of flow `key` with TCP `flags` about to reach a task at
    /// `now`: the translation back to the VIP if it is a backend's reply to
    /// a tracked client flow.
    pub fn reverse(&mut self, key: &FlowKey, flags: TcpFlags, now: u64) -> Option<Reversed> {
        let vip = self
            .reply
            .observe(key, Direction::Reply, flags, now)?
            .backend;
        let vip_end = SocketAddrV4::new(vip, key.src.port());
        let client = FlowKey {
            proto: key.proto,
            src: key.dst,
            dst: vip_end,
        };
        self.forward.observe(&client, Direction::Reply, flags, now);
        Some(Reversed {
            vip,
            nat: Nat::src(vip_end),
        })
    }

    /// Drops up to `budget` expired flows of each direction.
    pub fn expire(&mut self, now: u64, budget: usize) {
        self.forward.expire(now, budget);
        self.reply.expire(now, budget);
    }

    /// Every live client flow: its protocol, `VIP:port` and backend.
    pub fn tracked(&self, now: u64) -> impl Iterator<Item = (Protocol, SocketAddrV4, Ipv4Addr)> {
        self.forward
            .iter(now)
            .map(|(k, e)| (k.proto, k.dst, e.backend))
    }

    /// Entries of the client and reply tables.
    pub fn len(&self) -> [usize; 2] {
        [self.forward.len(), self.reply.len()]
    }
}

#[cfg(test)]
mod tests;
