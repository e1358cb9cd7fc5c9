//! When a worker stops following the manager whose state stream it reads.
//!
//! The stream carries the manager's Raft [`Progress`] with every message
//! and at least every [`HEARTBEAT`](super::service::HEARTBEAT); the
//! worker also asks the other managers for theirs, one at a time. Two
//! things make it leave:
//!
//! - silence: nothing for [`SILENCE`] (the manager lost power, or a
//!   firewall drops its packets: no FIN ever comes);
//! - falling behind: another manager had applied an entry that this one
//!   has still not applied [`BEHIND_GRACE`] later (it is cut off from the
//!   others, or leads a minority without knowing). A manager only behind
//!   for the moment it takes to apply a commit is not left.
//!
//! Pure: the caller passes the time, feeds it what it hears and acts on
//! [`Watchdog::verdict`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::rpc::Progress;

/// Silence after which the stream's manager is given up.
pub(super) const SILENCE: Duration = Duration::from_secs(3);
/// How long the stream's manager may stay behind what another manager
/// had applied.
pub(super) const BEHIND_GRACE: Duration = Duration::from_secs(2);
/// How often another manager is asked for its progress.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What the worker should do about its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Keep following it.
    Stay,
    /// Nothing heard for this long: follow another manager.
    Silent(Duration),
    /// It is behind the manager at `ahead`: follow that one.
    Behind {
        ahead: SocketAddr,
        /// The entry `ahead` had applied and the stream's manager has not.
        applied: u64,
    },
}

/// Another manager seen ahead of the stream's.
#[derive(Debug, Clone, Copy)]
struct Ahead {
    addr: SocketAddr,
    applied: u64,
    since: Instant,
}

/// What a worker knows of the manager it follows and of the others.
#[derive(Debug)]
pub(super) struct Watchdog {
    heard: Instant,
    applied: u64,
    ahead: Option<Ahead>,
}

impl Watchdog {
    /// Starts watching a stream opened at `now`.
    pub(super) fn new(now: Instant) -> Watchdog {
        Watchdog {
            heard: now,
            applied: 0,
            ahead: None,
        }
    }

    /// A message from the stream's manager, at `now`.
    pub(super) fn heard(&mut self, now: Instant, progress: Progress) {
        self.heard = now;
        self.applied = self.applied.max(progress.applied);
        if self.ahead.is_some_and(|a| a.applied <= self.applied) {
            self.ahead = None;
        }
    }

    /// Another manager's answer to a probe, at `now`. The first manager
    /// seen ahead is the one the stream's must catch up with.
    pub(super) fn probed(&mut self, now: Instant, addr: SocketAddr, progress: Progress) {
        if progress.applied > self.applied && self.ahead.is_none() {
            self.ahead = Some(Ahead {
                addr,
                applied: progress.applied,
                since: now,
            });
        }
    }

    /// What to do, at `now`.
    pub(super) fn verdict(&self, now: Instant) -> Verdict {
        let quiet = now.saturating_duration_since(self.heard);
        if quiet >= SILENCE {
            return Verdict::Silent(quiet);
        }
        match self.ahead {
            Some(a) if now.saturating_duration_since(a.since) >= BEHIND_GRACE => Verdict::Behind {
                ahead: a.addr,
                applied: a.applied,
            },
            _ => Verdict::Stay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::service::HEARTBEAT;
    use super::*;

    fn at(applied: u64) -> Progress {
        Progress { term: 3, applied }
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, last], 2377))
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn heartbeats_keep_a_stream_and_silence_ends_it() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(t0);
        for i in 1..=10u32 {
            w.heard(t0 + HEARTBEAT * i, at(7));
            assert_eq!(w.verdict(t0 + HEARTBEAT * i + 500 * MS), Verdict::Stay);
        }
        let last = t0 + HEARTBEAT * 10;
        assert_eq!(w.verdict(last + SILENCE - MS), Verdict::Stay);
        assert_eq!(w.verdict(last + SILENCE), Verdict::Silent(SILENCE));
    }

    #[test]
    fn a_manager_that_catches_up_within_the_grace_is_kept() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(t0);
        w.heard(t0, at(10));
        // The other had applied 11 a moment before ours did.
        w.probed(t0 + 100 * MS, addr(2), at(11));
        w.heard(t0 + 300 * MS, at(11));
        w.heard(t0 + 1300 * MS, at(11));
        assert_eq!(w.verdict(t0 + 100 * MS + BEHIND_GRACE), Verdict::Stay);
        // Equal or behind is no reason to move.
        w.probed(t0 + 1400 * MS, addr(3), at(11));
        w.probed(t0 + 1500 * MS, addr(3), at(4));
        w.heard(t0 + 2300 * MS, at(11));
        w.heard(t0 + 3300 * MS, at(11));
        assert_eq!(w.verdict(t0 + 1500 * MS + BEHIND_GRACE), Verdict::Stay);
    }

    #[test]
    fn a_manager_still_behind_after_the_grace_is_left_for_the_one_ahead() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(t0);
        w.heard(t0, at(10));
        w.probed(t0 + 100 * MS, addr(2), at(12));
        // A later probe of a third manager does not move the target.
        w.probed(t0 + 200 * MS, addr(3), at(15));
        // Heartbeats keep coming, and it even applies one entry: still
        // short of what the other had.
        w.heard(t0 + HEARTBEAT, at(11));
        assert_eq!(w.verdict(t0 + 100 * MS + BEHIND_GRACE - MS), Verdict::Stay);
        w.heard(t0 + HEARTBEAT * 2, at(11));
        assert_eq!(
            w.verdict(t0 + 100 * MS + BEHIND_GRACE),
            Verdict::Behind {
                ahead: addr(2),
                applied: 12
            }
        );
    }

    #[test]
    fn a_stream_that_never_speaks_is_silent() {
        let t0 = Instant::now();
        let w = Watchdog::new(t0);
        assert_eq!(w.verdict(t0 + SILENCE), Verdict::Silent(SILENCE));
    }
}
