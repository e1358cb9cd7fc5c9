//! shoal's wire format for foca's messages.
//!
//! foca hands us a header and members to write, and bytes to read back.
//! Everything is big-endian and length-checked before it is read, so a short
//! or garbage datagram is a [`WireError`], never a panic.
//!
//! ```text
//! header = VERSION:u8 src:member incarnation:u16 dst:member message
//! member = node_len:u8 node:[u8] family:u8 (4|6) ip:[u8;4|16] port:u16 generation:u64
//! update = member incarnation:u16 state:u8 (0 alive, 1 suspect, 2 down)
//! message = tag:u8 fields (probe numbers are u8; targets/origins are members)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut};
use foca::{Header, Message, State};
use thiserror::Error;

use super::Member;
use crate::NodeId;

/// The wire format version; a datagram with another is refused.
pub const VERSION: u8 = 1;

/// Why bytes are not a gossip message, or a message does not fit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The datagram ended early.
    #[error("gossip datagram is truncated; is the peer running the same shoal version?")]
    Truncated,
    /// The first byte is not [`VERSION`].
    #[error("gossip wire version {0} is not {VERSION}; upgrade the older node")]
    Version(u8),
    /// A tag byte has no meaning.
    #[error("gossip datagram has unknown {what} tag {tag}")]
    Tag {
        /// Which field.
        what: &'static str,
        /// The unknown value.
        tag: u8,
    },
    /// The node id is not a valid id.
    #[error("gossip datagram names an invalid node id")]
    NodeId,
    /// The encoded message does not fit the datagram being built.
    #[error("gossip message does not fit the datagram; this is a bug in shoal")]
    NoSpace,
}

/// The [`foca::Codec`] for [`Member`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct WireCodec;

impl foca::Codec<Member> for WireCodec {
    type Error = WireError;

    fn encode_header(
        &mut self,
        header: &Header<Member>,
        buf: impl BufMut,
    ) -> Result<(), WireError> {
        let mut out = vec![VERSION];
        put_member(&mut out, &header.src);
        out.put_u16(header.src_incarnation);
        put_member(&mut out, &header.dst);
        put_message(&mut out, &header.message);
        put_all(buf, &out)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<Member>, WireError> {
        let version = get_u8(&mut buf)?;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        Ok(Header {
            src: get_member(&mut buf)?,
            src_incarnation: get_u16(&mut buf)?,
            dst: get_member(&mut buf)?,
            message: get_message(&mut buf)?,
        })
    }

    fn encode_member(
        &mut self,
        member: &foca::Member<Member>,
        buf: impl BufMut,
    ) -> Result<(), WireError> {
        let mut out = Vec::new();
        put_member(&mut out, member.id());
        out.put_u16(member.incarnation());
        out.put_u8(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        put_all(buf, &out)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<foca::Member<Member>, WireError> {
        let id = get_member(&mut buf)?;
        let incarnation = get_u16(&mut buf)?;
        let state = match get_u8(&mut buf)? {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            tag => {
                return Err(WireError::Tag {
                    what: "member state",
                    tag,
                });
            }
        };
        Ok(foca::Member::new(id, incarnation, state))
    }
}

/// A whole datagram as a member with identity `src` sends it to `dst`:
/// the header, then the member `updates` (written only when there are
/// some, as an Announce must carry none). For tests and tools that speak
/// the protocol; members build theirs through foca.
pub fn datagram(
    src: &Member,
    dst: &Member,
    message: Message<Member>,
    updates: &[(Member, State)],
) -> Result<Vec<u8>, WireError> {
    use foca::Codec;
    let mut codec = WireCodec;
    let mut out = Vec::new();
    codec.encode_header(
        &Header {
            src: src.clone(),
            src_incarnation: 0,
            dst: dst.clone(),
            message,
        },
        &mut out,
    )?;
    if !updates.is_empty() {
        out.put_u16(u16::try_from(updates.len()).map_err(|_| WireError::NoSpace)?);
        for (m, state) in updates {
            codec.encode_member(&foca::Member::new(m.clone(), 0, *state), &mut out)?;
        }
    }
    Ok(out)
}

fn put_all(mut buf: impl BufMut, bytes: &[u8]) -> Result<(), WireError> {
    if buf.remaining_mut() < bytes.len() {
        return Err(WireError::NoSpace);
    }
    buf.put_slice(bytes);
    Ok(())
}

fn put_member(out: &mut Vec<u8>, m: &Member) {
    let node = m.node.as_str().as_bytes();
    // Node ids are at most 63 bytes (see `crate::ids`).
    out.put_u8(node.len() as u8);
    out.put_slice(node);
    match m.addr.ip() {
        IpAddr::V4(ip) => {
            out.put_u8(4);
            out.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.put_u8(6);
            out.put_slice(&ip.octets());
        }
    }
    out.put_u16(m.addr.port());
    out.put_u64(m.generation);
}

fn put_message(out: &mut Vec<u8>, message: &Message<Member>) {
    match message {
        Message::Ping(n) => out.put_slice(&[0, *n]),
        Message::Ack(n) => out.put_slice(&[1, *n]),
        Message::PingReq {
            target,
            probe_number,
        } => put_probe(out, 2, target, *probe_number),
        Message::IndirectPing {
            origin,
            probe_number,
        } => put_probe(out, 3, origin, *probe_number),
        Message::IndirectAck {
            target,
            probe_number,
        } => put_probe(out, 4, target, *probe_number),
        Message::ForwardedAck {
            origin,
            probe_number,
        } => put_probe(out, 5, origin, *probe_number),
        Message::Announce => out.put_u8(6),
        Message::Feed => out.put_u8(7),
        Message::Gossip => out.put_u8(8),
        Message::Broadcast => out.put_u8(9),
        Message::TurnUndead => out.put_u8(10),
    }
}

fn put_probe(out: &mut Vec<u8>, tag: u8, member: &Member, probe_number: u8) {
    out.put_u8(tag);
    put_member(out, member);
    out.put_u8(probe_number);
}

fn get_message(buf: &mut impl Buf) -> Result<Message<Member>, WireError> {
    Ok(match get_u8(buf)? {
        0 => Message::Ping(get_u8(buf)?),
        1 => Message::Ack(get_u8(buf)?),
        2 => Message::PingReq {
            target: get_member(buf)?,
            probe_number: get_u8(buf)?,
        },
        3 => Message::IndirectPing {
            origin: get_member(buf)?,
            probe_number: get_u8(buf)?,
        },
        4 => Message::IndirectAck {
            target: get_member(buf)?,
            probe_number: get_u8(buf)?,
        },
        5 => Message::ForwardedAck {
            origin: get_member(buf)?,
            probe_number: get_u8(buf)?,
        },
        6 => Message::Announce,
        7 => Message::Feed,
        8 => Message::Gossip,
        9 => Message::Broadcast,
        10 => Message::TurnUndead,
        tag => {
            return Err(WireError::Tag {
                what: "message",
                tag,
            });
        }
    })
}

fn get_member(buf: &mut impl Buf) -> Result<Member, WireError> {
    let len = usize::from(get_u8(buf)?);
    let node = String::from_utf8(get_bytes(buf, len)?).map_err(|_| WireError::NodeId)?;
    let node = NodeId::new(node).map_err(|_| WireError::NodeId)?;
    let ip = match get_u8(buf)? {
        4 => IpAddr::V4(Ipv4Addr::from(get_array::<4>(buf)?)),
        6 => IpAddr::V6(Ipv6Addr::from(get_array::<16>(buf)?)),
        tag => {
            return Err(WireError::Tag {
                what: "address family",
                tag,
            });
        }
    };
    let port = get_u16(buf)?;
    let generation = u64::from_be_bytes(get_array(buf)?);
    Ok(Member::new(node, SocketAddr::new(ip, port), generation))
}

fn get_u8(buf: &mut impl Buf) -> Result<u8, WireError> {
    Ok(get_array::<1>(buf)?[0])
}

fn get_u16(buf: &mut impl Buf) -> Result<u16, WireError> {
    Ok(u16::from_be_bytes(get_array(buf)?))
}

fn get_array<const N: usize>(buf: &mut impl Buf) -> Result<[u8; N], WireError> {
    let mut out = [0; N];
    if buf.remaining() < N {
        return Err(WireError::Truncated);
    }
    buf.copy_to_slice(&mut out);
    Ok(out)
}

fn get_bytes(buf: &mut impl Buf, len: usize) -> Result<Vec<u8>, WireError> {
    if buf.remaining() < len {
        return Err(WireError::Truncated);
    }
    let mut out = vec![0; len];
    buf.copy_to_slice(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use foca::Codec;
    use proptest::prelude::*;

    use super::*;

    fn member(i: u8, v6: bool) -> Member {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i.into()))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
        };
        Member::new(
            NodeId::new(format!("node-{i}")).unwrap(),
            SocketAddr::new(ip, 7946),
            u64::from(i) << 40,
        )
    }

    fn messages() -> Vec<Message<Member>> {
        let m = member(9, true);
        vec![
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: m.clone(),
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: m.clone(),
                probe_number: 4,
            },
            Message::IndirectAck {
                target: m.clone(),
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: m,
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ]
    }

    #[test]
    fn every_message_round_trips_and_every_truncation_is_refused() {
        for message in messages() {
            let header = Header {
                src: member(1, false),
                src_incarnation: 513,
                dst: member(2, true),
                message,
            };
            let mut bytes = Vec::new();
            WireCodec.encode_header(&header, &mut bytes).unwrap();
            assert_eq!(WireCodec.decode_header(&bytes[..]).unwrap(), header);
            for len in 0..bytes.len() {
                assert_eq!(
                    WireCodec.decode_header(&bytes[..len]),
                    Err(WireError::Truncated)
                );
            }
        }
    }

    #[test]
    fn member_updates_round_trip() {
        for state in [State::Alive, State::Suspect, State::Down] {
            let update = foca::Member::new(member(3, false), 7, state);
            let mut bytes = Vec::new();
            WireCodec.encode_member(&update, &mut bytes).unwrap();
            assert_eq!(WireCodec.decode_member(&bytes[..]).unwrap(), update);
        }
    }

    #[test]
    fn encoding_into_a_full_buffer_is_an_error_not_a_panic() {
        let mut small = [0u8; 8];
        let header = Header {
            src: member(1, false),
            src_incarnation: 0,
            dst: member(2, false),
            message: Message::Gossip,
        };
        let buf: &mut [u8] = &mut small;
        assert_eq!(
            WireCodec.encode_header(&header, buf),
            Err(WireError::NoSpace)
        );
    }

    #[test]
    fn a_foreign_version_is_named() {
        assert_eq!(
            WireCodec.decode_header(&[7u8, 0][..]),
            Err(WireError::Version(7))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = WireCodec.decode_header(&bytes[..]);
            let _ = WireCodec.decode_member(&bytes[..]);
            let mut with_version = vec![VERSION];
            with_version.extend_from_slice(&bytes);
            let _ = WireCodec.decode_header(&with_version[..]);
        }
    }
}
