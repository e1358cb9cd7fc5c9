//! Sealed gossip: every datagram is encrypted and authenticated under a
//! key of the cluster's gossip keyring, and refused when it is a replay.
//!
//! Sans-IO: [`Sealer::seal`] and [`Sealer::open`] take the wall clock in
//! ms. The keyring comes from the cluster state ([`Sealer::set_keys`]),
//! which members receive over mTLS and managers rotate through Raft.
//!
//! ```text
//! datagram = VERSION:u8 key:u32 session:[u8;16] counter:u64 sent_ms:u64
//!            XChaCha20-Poly1305(plaintext, nonce = session ‖ counter,
//!                               aad = the 37 header bytes) tag:[u8;16]
//! ```
//!
//! - The session is random for each start of the sender and the counter
//!   counts its datagrams, so no nonce repeats under a key, whichever node
//!   sends.
//! - Replays: each sender session has a window over the last
//!   [`WINDOW`] counters (as IPsec and WireGuard do), and a datagram sent
//!   more than [`MAX_AGE`] ago by the sender's clock is stale. Sessions are
//!   remembered only once a datagram of theirs authenticated, and forgotten
//!   after [`MAX_AGE`] of silence, when their replays are stale anyway.
//! - Rotation: receivers accept every key of the keyring; a sender moves to
//!   a new key [`SWITCH_AFTER`] after it learned it, so every member has it
//!   by then (the keyring keeps the key before).

use std::collections::HashMap;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The first byte of a sealed datagram. Plaintext datagrams of older
/// shoal versions start with 1.
pub const VERSION: u8 = 2;
/// Header bytes before the ciphertext.
pub const HEADER: usize = 1 + 4 + 16 + 8 + 8;
/// The authentication tag after the ciphertext.
pub const TAG: usize = 16;
/// What sealing adds to a datagram.
pub const OVERHEAD: usize = HEADER + TAG;
/// How many counters back a datagram may arrive out of order.
pub const WINDOW: u64 = 128;
/// Datagrams sent longer ago than this (by the sender's clock) are stale;
/// node clocks must agree within it, as Kerberos asks.
pub const MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// How long after learning a new key a member starts sending with it.
pub const SWITCH_AFTER: Duration = Duration::from_secs(5);
/// The most sender sessions remembered; past it the stalest is forgotten.
const MAX_SESSIONS: usize = 4096;

/// Why a datagram was refused before it reached the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Too short, or not a sealed datagram (an old or foreign sender).
    Malformed,
    /// This node has no keyring yet (it has not received the state).
    NoKey,
    /// Sealed with a key the keyring does not hold (rotated out, or never
    /// the cluster's).
    UnknownKey,
    /// The authentication tag does not match: forged or corrupted.
    Forged,
    /// A datagram already received.
    Replayed,
    /// Sent longer ago than [`MAX_AGE`].
    Stale,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::NoKey => "no_key",
            Refusal::UnknownKey => "unknown_key",
            Refusal::Forged => "forged",
            Refusal::Replayed => "replayed",
            Refusal::Stale => "stale",
        }
    }
}

struct Key {
    id: u32,
    cipher: XChaCha20Poly1305,
    /// When this node learned it (ms, its own clock).
    learned_ms: u64,
}

/// The replay window of one sender session.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The highest counter received.
    top: u64,
    /// Bit `i` set: counter `top - i` was received.
    seen: u128,
    /// When the session was last heard from (ms, this node's clock).
    last_ms: u64,
}

impl Window {
    fn new(counter: u64, now_ms: u64) -> Self {
        Window {
            top: counter,
            seen: 1,
            last_ms: now_ms,
        }
    }

    /// Records `counter`; false when it was seen or is too old to tell.
    fn admit(&mut self, counter: u64, now_ms: u64) -> bool {
        if counter > self.top {
            let shift = counter - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = counter;
        } else {
            let back = self.top - counter;
            if back >= WINDOW || self.seen & (1 << back) != 0 {
                return false;
            }
            self.seen |= 1 << back;
        }
        self.last_ms = now_ms;
        true
    }
}

/// Seals this node's datagrams and opens the others'.
pub struct Sealer {
    /// Newest first.
    keys: Vec<Key>,
    session: [u8; 16],
    counter: u64,
    sessions: HashMap<[u8; 16], Window>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.keys.iter().map(|k| k.id).collect::<Vec<_>>())
            .field("counter", &self.counter)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Sealer {
    /// A sealer with no key yet; `session` must be random for each start.
    pub fn new(session: [u8; 16]) -> Self {
        Sealer {
            keys: Vec::new(),
            session,
            counter: 0,
            sessions: HashMap::new(),
        }
    }

    /// Replaces the keyring with `keys` (id and key). A key this node
    /// already had keeps the time it learned it; the first keyring is
    /// used at once, a key added later after [`SWITCH_AFTER`].
    pub fn set_keys(&mut self, keys: impl IntoIterator<Item = (u32, [u8; 32])>, now_ms: u64) {
        let first = self.keys.is_empty();
        let mut next: Vec<Key> = keys
            .into_iter()
            .map(|(id, key)| {
                let learned_ms = match self.keys.iter().find(|k| k.id == id) {
                    Some(known) => known.learned_ms,
                    None if first => 0,
                    None => now_ms,
                };
                Key {
                    id,
                    cipher: XChaCha20Poly1305::new(&key.into()),
                    learned_ms,
                }
            })
            .collect();
        next.sort_by_key(|k| std::cmp::Reverse(k.id));
        self.keys = next;
    }

    /// The ids of the keys held, newest first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// The key datagrams are sealed with now: the newest one known for
    /// [`SWITCH_AFTER`], else the oldest.
    fn sending(&self, now_ms: u64) -> Option<&Key> {
        let settled = millis(SWITCH_AFTER);
        self.keys
            .iter()
            .find(|k| k.learned_ms.saturating_add(settled) <= now_ms)
            .or(self.keys.last())
    }

    /// The id of the key [`Self::seal`] uses at `now_ms`.
    pub fn sending_key(&self, now_ms: u64) -> Option<u32> {
        self.sending(now_ms).map(|k| k.id)
    }

    /// `plain` sealed for the wire; `None` while there is no key.
    pub fn seal(&mut self, plain: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        let key = self.sending(now_ms)?;
        let mut header = [0u8; HEADER];
        header[0] = VERSION;
        header[1..5].copy_from_slice(&key.id.to_be_bytes());
        header[5..21].copy_from_slice(&self.session);
        header[21..29].copy_from_slice(&self.counter.to_be_bytes());
        header[29..37].copy_from_slice(&now_ms.to_be_bytes());
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&header[5..29]),
                Payload {
                    msg: plain,
                    aad: &header,
                },
            )
            // Encryption fails only for plaintexts beyond 256 GiB.
            .ok()?;
        self.counter += 1;
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// The plaintext of a datagram, or why it is refused.
    pub fn open(&mut self, datagram: &[u8], now_ms: u64) -> Result<Vec<u8>, Refusal> {
        if datagram.len() < OVERHEAD || datagram[0] != VERSION {
            return Err(Refusal::Malformed);
        }
        let (header, sealed) = datagram.split_at(HEADER);
        let id = u32::from_be_bytes(header[1..5].try_into().map_err(|_| Refusal::Malformed)?);
        let session: [u8; 16] = header[5..21].try_into().map_err(|_| Refusal::Malformed)?;
        let counter =
            u64::from_be_bytes(header[21..29].try_into().map_err(|_| Refusal::Malformed)?);
        let sent_ms =
            u64::from_be_bytes(header[29..37].try_into().map_err(|_| Refusal::Malformed)?);
        if self.keys.is_empty() {
            return Err(Refusal::NoKey);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(Refusal::UnknownKey)?;
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(&header[5..29]),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| Refusal::Forged)?;
        if sent_ms.saturating_add(millis(MAX_AGE)) < now_ms {
            return Err(Refusal::Stale);
        }
        // A node never hears its own datagrams: one sent back to it is a
        // reflection of what it sent, so a replay.
        if session == self.session {
            return Err(Refusal::Replayed);
        }
        self.forget_silent(now_ms);
        match self.sessions.get_mut(&session) {
            Some(window) => {
                if !window.admit(counter, now_ms) {
                    return Err(Refusal::Replayed);
                }
            }
            None => {
                self.make_room();
                self.sessions.insert(session, Window::new(counter, now_ms));
            }
        }
        Ok(plain)
    }

    /// Forgets sessions silent for [`MAX_AGE`]: their replays are stale.
    fn forget_silent(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(millis(MAX_AGE));
        if self.sessions.values().any(|w| w.last_ms < horizon) {
            self.sessions.retain(|_, w| w.last_ms >= horizon);
        }
    }

    fn make_room(&mut self) {
        if self.sessions.len() < MAX_SESSIONS {
            return;
        }
        if let Some(stalest) = self
            .sessions
            .iter()
            .min_by_key(|(_, w)| w.last_ms)
            .map(|(s, _)| *s)
        {
            self.sessions.remove(&stalest);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn sealer(session: u8, keys: &[(u32, u8)]) -> Sealer {
        let mut s = Sealer::new([session; 16]);
        s.set_keys(keys.iter().map(|&(id, b)| (id, [b; 32])), NOW);
        s
    }

    #[test]
    fn a_sealed_datagram_opens_once_and_hides_its_plaintext() {
        let mut a = sealer(1, &[(1, 7)]);
        let mut b = sealer(2, &[(1, 7)]);
        let wire = a.seal(b"members: n1 n2", NOW).unwrap();
        assert_eq!(wire.len(), 14 + OVERHEAD);
        assert!(!wire.windows(7).any(|w| w == b"members"));
        assert_eq!(b.open(&wire, NOW).unwrap(), b"members: n1 n2");
        assert_eq!(b.open(&wire, NOW + 1), Err(Refusal::Replayed));
    }

    #[test]
    fn a_datagram_reflected_back_to_its_sender_is_a_replay() {
        let mut a = sealer(1, &[(1, 7)]);
        let wire = a.seal(b"ping", NOW).unwrap();
        assert_eq!(a.open(&wire, NOW), Err(Refusal::Replayed));
    }

    #[test]
    fn every_changed_byte_and_every_other_key_is_refused() {
        let mut a = sealer(1, &[(1, 7)]);
        let wire = a.seal(b"hello", NOW).unwrap();
        for i in 0..wire.len() {
            let mut b = sealer(2, &[(1, 7)]);
            let mut bad = wire.clone();
            bad[i] ^= 0x10;
            assert!(b.open(&bad, NOW).is_err(), "byte {i} flipped was accepted");
        }
        let mut other_cluster = sealer(2, &[(1, 8)]);
        assert_eq!(other_cluster.open(&wire, NOW), Err(Refusal::Forged));
        let mut rotated_out = sealer(2, &[(3, 7), (2, 7)]);
        assert_eq!(rotated_out.open(&wire, NOW), Err(Refusal::UnknownKey));
        let mut keyless = Sealer::new([2; 16]);
        assert_eq!(keyless.open(&wire, NOW), Err(Refusal::NoKey));
        assert_eq!(keyless.seal(b"x", NOW), None);
    }

    #[test]
    fn garbage_and_old_plaintext_datagrams_are_malformed() {
        let mut b = sealer(2, &[(1, 7)]);
        assert_eq!(b.open(&[], NOW), Err(Refusal::Malformed));
        assert_eq!(b.open(&[1; 80], NOW), Err(Refusal::Malformed));
        assert_eq!(
            b.open(&[VERSION; OVERHEAD - 1], NOW),
            Err(Refusal::Malformed)
        );
        assert_eq!(b.open(&[VERSION; 200], NOW), Err(Refusal::UnknownKey));
    }

    #[test]
    fn reordering_within_the_window_passes_and_replays_do_not() {
        let mut a = sealer(1, &[(1, 7)]);
        let mut b = sealer(2, &[(1, 7)]);
        let wires: Vec<Vec<u8>> = (0..200).map(|_| a.seal(b"x", NOW).unwrap()).collect();
        // The newest first, then a late one within the window, then one
        // beyond it, then replays.
        assert!(b.open(&wires[199], NOW).is_ok());
        assert!(b.open(&wires[199 - 127], NOW).is_ok());
        assert_eq!(b.open(&wires[199 - 128], NOW), Err(Refusal::Replayed));
        assert_eq!(b.open(&wires[199 - 127], NOW), Err(Refusal::Replayed));
        assert_eq!(b.open(&wires[199], NOW), Err(Refusal::Replayed));
        // Another session (the sender restarted) has its own window.
        let mut restarted = sealer(3, &[(1, 7)]);
        assert!(b.open(&restarted.seal(b"x", NOW).unwrap(), NOW).is_ok());
    }

    #[test]
    fn old_datagrams_are_stale_even_for_a_receiver_that_never_saw_them() {
        let mut a = sealer(1, &[(1, 7)]);
        let wire = a.seal(b"x", NOW).unwrap();
        let later = NOW + millis(MAX_AGE) + 1;
        let mut fresh = sealer(2, &[(1, 7)]);
        assert_eq!(fresh.open(&wire, later), Err(Refusal::Stale));
        // A session silent that long is forgotten.
        let mut b = sealer(2, &[(1, 7)]);
        assert!(b.open(&wire, NOW).is_ok());
        let other = sealer(3, &[(1, 7)]).seal(b"y", later).unwrap();
        assert!(b.open(&other, later).is_ok());
        assert_eq!(b.sessions.len(), 1);
    }

    #[test]
    fn a_new_key_is_accepted_at_once_and_sent_with_after_the_switch_delay() {
        let mut a = sealer(1, &[(1, 7)]);
        let mut b = sealer(2, &[(1, 7)]);
        assert_eq!(a.sending_key(NOW), Some(1));
        // The leader rotated: b learned key 2 first, a a moment later.
        b.set_keys([(2, [9; 32]), (1, [7; 32])], NOW);
        a.set_keys([(2, [9; 32]), (1, [7; 32])], NOW + 1000);
        assert_eq!(b.sending_key(NOW), Some(1));
        assert!(a.open(&b.seal(b"x", NOW).unwrap(), NOW).is_ok());
        let switched = NOW + millis(SWITCH_AFTER);
        assert_eq!(b.sending_key(switched), Some(2));
        assert_eq!(a.sending_key(switched), Some(1));
        assert!(a.open(&b.seal(b"x", switched).unwrap(), switched).is_ok());
        assert!(b.open(&a.seal(b"x", switched).unwrap(), switched).is_ok());
        // The next rotation drops key 1: its datagrams are refused.
        let old = a.seal(b"x", switched).unwrap();
        b.set_keys([(3, [5; 32]), (2, [9; 32])], switched);
        assert_eq!(b.open(&old, switched), Err(Refusal::UnknownKey));
    }

    #[test]
    fn sessions_are_bounded() {
        let mut b = sealer(0, &[(1, 7)]);
        for i in 1..=(MAX_SESSIONS as u64 + 10) {
            let mut s = Sealer::new(u128::from(i).to_be_bytes());
            s.set_keys([(1, [7; 32])], NOW);
            assert!(b.open(&s.seal(b"x", NOW + i).unwrap(), NOW + i).is_ok());
        }
        assert_eq!(b.sessions.len(), MAX_SESSIONS);
    }
}
