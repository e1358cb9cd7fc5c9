//! Screening a datagram before foca sees it: who may speak, and about whom.
//!
//! A datagram that opened under the cluster's key comes from a node that
//! holds the key, which a removed node still does until the next rotation.
//! So the membership also checks what the datagram says against the
//! cluster state's [`Roster`]:
//! - its sender must be a node of the roster at the address the roster
//!   gives, and that address must be where the datagram came from (foca
//!   answers the address a datagram claims, which must not be a third
//!   party's);
//! - a generation (the sender's start time in ms) more than
//!   [`MAX_FUTURE`] ahead is refused: it would win every conflict for good;
//! - members named in a probe request must be in the roster, and member
//!   updates about anyone else are dropped (the rest of the datagram
//!   stands).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut};
use foca::{Codec, Message};

use super::{Member, WireCodec};
use crate::NodeId;

/// The nodes of the cluster state and their gossip addresses.
pub type Roster = BTreeMap<NodeId, SocketAddr>;

/// How far ahead of this node's clock a generation may be.
pub const MAX_FUTURE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a datagram was refused after it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screened {
    /// Not a valid message.
    Malformed,
    /// Its sender's address is not where it came from.
    SpoofedSource,
    /// Its sender, or a member it asks about, is no node of the cluster
    /// (or not at that address).
    UnknownMember,
    /// Its sender's generation is too far in the future.
    FutureGeneration,
}

impl Screened {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Screened::Malformed => "malformed",
            Screened::SpoofedSource => "spoofed_source",
            Screened::UnknownMember => "unknown_member",
            Screened::FutureGeneration => "future_generation",
        }
    }
}

/// What screening kept of a datagram.
#[derive(Debug)]
pub struct Kept<'a> {
    /// The datagram for foca: the original, or a copy without the updates
    /// that were dropped.
    pub bytes: Cow<'a, [u8]>,
    /// How many member updates were dropped.
    pub dropped: usize,
}

/// Screens `bytes`, received from `from` at `now_ms`. Without a roster
/// (tests of the protocol alone) only the source address and generations
/// are checked.
pub fn screen<'a>(
    bytes: &'a [u8],
    from: SocketAddr,
    now_ms: u64,
    roster: Option<&Roster>,
) -> Result<Kept<'a>, Screened> {
    let limit = now_ms.saturating_add(u64::try_from(MAX_FUTURE.as_millis()).unwrap_or(u64::MAX));
    let known = |m: &Member| roster.is_none_or(|r| r.get(&m.node) == Some(&m.addr));
    let mut codec = WireCodec;
    let mut rest = bytes;
    let header = codec
        .decode_header(&mut rest)
        .map_err(|_| Screened::Malformed)?;
    if header.src.addr != from {
        return Err(Screened::SpoofedSource);
    }
    if header.src.generation > limit {
        return Err(Screened::FutureGeneration);
    }
    if !known(&header.src) {
        return Err(Screened::UnknownMember);
    }
    let named = match &header.message {
        Message::PingReq { target: m, .. }
        | Message::IndirectPing { origin: m, .. }
        | Message::IndirectAck { target: m, .. }
        | Message::ForwardedAck { origin: m, .. } => Some(m),
        _ => None,
    };
    if named.is_some_and(|m| !known(m)) {
        return Err(Screened::UnknownMember);
    }
    // foca reads updates after the header unless the message is a custom
    // broadcast; shoal sends none.
    if rest.remaining() < 2 || header.message == Message::Broadcast {
        return Ok(Kept {
            bytes: Cow::Borrowed(bytes),
            dropped: 0,
        });
    }
    let head = bytes.len() - rest.len();
    let count = rest.get_u16();
    let mut kept = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let update = codec
            .decode_member(&mut rest)
            .map_err(|_| Screened::Malformed)?;
        if known(update.id()) && update.id().generation <= limit {
            kept.push(update);
        }
    }
    let dropped = usize::from(count) - kept.len();
    if dropped == 0 {
        return Ok(Kept {
            bytes: Cow::Borrowed(bytes),
            dropped,
        });
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..head]);
    // `kept` is no longer than `count`, a u16.
    out.put_u16(u16::try_from(kept.len()).unwrap_or(u16::MAX));
    for update in &kept {
        codec
            .encode_member(update, &mut out)
            .map_err(|_| Screened::Malformed)?;
    }
    out.extend_from_slice(rest);
    Ok(Kept {
        bytes: Cow::Owned(out),
        dropped,
    })
}
