//! What [`super::Membership`] asks its caller to do, as data.
//!
//! foca reports through a [`foca::Runtime`]; [`Output`] is that runtime,
//! collecting datagrams to send, timers to arm and membership events for the
//! caller, which owns the socket and the clock.

use std::net::SocketAddr;
use std::time::Duration;

use foca::{Notification, Runtime};

use super::Member;

/// A timer foca asked for; hand it back to
/// [`super::Membership::handle_timer`] when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer(pub(super) foca::Timer<Member>);

/// A change in cluster membership, as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member is alive (new, or back after being down).
    Up(Member),
    /// A member was declared down.
    Down(Member),
    /// A node came back in a new life: `new` replaces `old` (same node id,
    /// higher generation). An [`Event::Up`] follows if `old` was down.
    Replaced {
        /// The identity the cluster knew.
        old: Member,
        /// The identity that replaces it.
        new: Member,
    },
    /// This node is known to at least one live member: it has joined.
    Joined,
    /// Every member this node knew is gone; it keeps announcing itself.
    Isolated,
    /// This node was declared down and rejoined on its own with this
    /// renewed identity (its generation + 1).
    Rejoined(Member),
    /// This node was declared down and cannot renew its identity (its
    /// generation is exhausted); restart it with a new generation.
    Defunct,
}

/// Datagrams to send, timers to arm and events to report.
#[derive(Debug, Default)]
pub struct Output {
    /// `(destination, payload)` pairs to send over UDP.
    pub send: Vec<(SocketAddr, Vec<u8>)>,
    /// `(delay, timer)` pairs: hand `timer` back after `delay`.
    pub timers: Vec<(Duration, Timer)>,
    /// Membership changes, in the order they happened.
    pub events: Vec<Event>,
}

impl Output {
    /// Adds `other` after what is already here.
    pub fn extend(&mut self, other: Output) {
        self.send.extend(other.send);
        self.timers.extend(other.timers);
        self.events.extend(other.events);
    }
}

impl Runtime<Member> for Output {
    fn notify(&mut self, notification: Notification<'_, Member>) {
        self.events.push(match notification {
            Notification::MemberUp(m) => Event::Up(m.clone()),
            Notification::MemberDown(m) => Event::Down(m.clone()),
            Notification::Rename(old, new) => Event::Replaced {
                old: old.clone(),
                new: new.clone(),
            },
            Notification::Active => Event::Joined,
            Notification::Idle => Event::Isolated,
            Notification::Defunct => Event::Defunct,
            Notification::Rejoin(m) => Event::Rejoined(m.clone()),
        });
    }

    fn send_to(&mut self, to: Member, data: &[u8]) {
        self.send.push((to.addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: foca::Timer<Member>, after: Duration) {
        self.timers.push((after, Timer(event)));
    }
}
