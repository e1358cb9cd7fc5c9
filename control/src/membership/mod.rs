//! Cluster membership and failure detection by SWIM gossip ([foca]).
//!
//! Sans-IO: [`Membership`] takes events (a datagram arrived, a timer fired,
//! join this peer, leave) and returns an [`Output`] saying what to do: the
//! datagrams to send, the timers to arm and the [`Event`]s (member up, down,
//! replaced by a new life, ...). The caller owns the UDP socket and the
//! clock, so tests drive it with a simulated network and time.
//!
//! - [`member`]: who a member is (node id, gossip address, generation);
//! - [`config`]: the one `detection` knob and the foca settings derived
//!   from it (a dead node is down within about 2 s by default);
//! - [`codec`]: the wire format, which refuses garbage without panicking;
//! - [`seal`]: the encryption and authentication of every datagram under
//!   the cluster's gossip keys, and the refusal of replays;
//! - [`screen`]: the checks of who speaks and about whom against the
//!   cluster state's [`Roster`];
//! - [`output`]: the [`Output`] of each call.

pub mod codec;
pub mod config;
pub mod member;
pub mod output;
pub mod screen;
pub mod seal;

#[cfg(test)]
mod tests;

use foca::{Foca, NoCustomBroadcast};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use thiserror::Error;

pub use codec::{WireCodec, WireError};
pub use config::{ConfigError, MembershipConfig};
pub use member::Member;
pub use output::{Event, Output, Timer};
pub use screen::{Roster, Screened};
pub use seal::{Refusal, Sealer};

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Why a membership operation failed.
#[derive(Debug, Error)]
pub enum MembershipError {
    /// foca refused the operation.
    #[error("gossip membership cannot {action}: {source}")]
    Gossip {
        /// What was being done.
        action: &'static str,
        /// foca's reason.
        source: foca::Error,
    },
    /// A join target is this node itself.
    #[error("cannot join through {0:?}, which is this node; give another node's gossip address")]
    JoinSelf(std::net::SocketAddr),
}

/// One node's view of cluster membership.
pub struct Membership {
    foca: Foca<Member, WireCodec, SmallRng, NoCustomBroadcast>,
    rejected: BTreeMap<&'static str, u64>,
    roster: Option<Roster>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", self.foca.identity())
            .field("members", &self.foca.num_members())
            .field("rejected", &self.rejected)
            .finish()
    }
}

impl Membership {
    /// A node that knows no one yet. `seed` drives the random choice of
    /// peers to probe; give each node a different one (from the OS random
    /// source in production, fixed in tests).
    pub fn new(identity: Member, config: MembershipConfig, seed: u64) -> Self {
        Self {
            foca: Foca::new(
                identity,
                config.to_foca(),
                SmallRng::seed_from_u64(seed),
                WireCodec,
            ),
            rejected: BTreeMap::new(),
            roster: None,
        }
    }

    /// Accept from now on only the nodes of `roster`, at its addresses
    /// (the cluster state's nodes, as they change).
    pub fn set_roster(&mut self, roster: Roster) {
        self.roster = Some(roster);
    }

    /// This node's current identity (its generation grows when it rejoins).
    pub fn identity(&self) -> &Member {
        self.foca.identity()
    }

    /// The members currently believed alive (or suspected), not this node.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.foca.iter_members().map(|m| m.id())
    }

    /// How many datagrams were refused since start-up.
    pub fn rejected(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Refused datagrams (and dropped member updates) by reason.
    pub fn rejections(&self) -> &BTreeMap<&'static str, u64> {
        &self.rejected
    }

    fn reject(&mut self, reason: &'static str, n: u64) {
        *self.rejected.entry(reason).or_default() += n;
    }

    /// Starts joining the cluster through the node whose gossip address is
    /// `peer` (any member). Its node id is not needed: members are known by
    /// address, and a node accepts an announce sent to its address.
    pub fn join(&mut self, peer: std::net::SocketAddr) -> Result<Output, MembershipError> {
        if peer == self.identity().addr {
            return Err(MembershipError::JoinSelf(peer));
        }
        // foca wants an identity to announce to; only its address matters
        // to the receiver, which replies with its real identity.
        let placeholder = Member::new(self.identity().node.clone(), peer, 0);
        let mut out = Output::default();
        self.foca
            .announce(placeholder, &mut out)
            .map_err(|source| MembershipError::Gossip {
                action: "announce itself",
                source,
            })?;
        Ok(out)
    }

    /// Handles a datagram (opened already) that came from `from` at
    /// `now_ms`. Anything that is not a valid message, or that
    /// [`screen`](screen::screen) refuses, is counted in
    /// [`Self::rejections`] and otherwise ignored.
    pub fn handle_datagram(&mut self, bytes: &[u8], from: SocketAddr, now_ms: u64) -> Output {
        let mut out = Output::default();
        let kept = match screen::screen(bytes, from, now_ms, self.roster.as_ref()) {
            Ok(kept) => kept,
            Err(why) => {
                self.reject(why.label(), 1);
                return out;
            }
        };
        if kept.dropped > 0 {
            self.reject("unknown_member_update", kept.dropped as u64);
        }
        if self.foca.handle_data(&kept.bytes, &mut out).is_err() {
            self.reject(Screened::Malformed.label(), 1);
        }
        out
    }

    /// Handles a timer from an earlier [`Output`] when its delay has passed.
    pub fn handle_timer(&mut self, timer: Timer) -> Result<Output, MembershipError> {
        let mut out = Output::default();
        self.foca
            .handle_timer(timer.0, &mut out)
            .map_err(|source| MembershipError::Gossip {
                action: "handle a timer",
                source,
            })?;
        Ok(out)
    }

    /// Tells the cluster this node is leaving, so it is down at once rather
    /// than after `detection`. Stop feeding events afterwards.
    pub fn leave(&mut self) -> Result<Output, MembershipError> {
        let mut out = Output::default();
        self.foca
            .leave_cluster(&mut out)
            .map_err(|source| MembershipError::Gossip {
                action: "leave the cluster",
                source,
            })?;
        Ok(out)
    }
}
