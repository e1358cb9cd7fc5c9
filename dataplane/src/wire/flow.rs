//! One parse of a frame's Ethernet, IPv4 and TCP/UDP headers into a [`Flow`]:
//! what every later stage of the packet path reads (the VTEP's MTU check and
//! route, the load balancer's key and flags, NAT's offsets, the hash that
//! picks an outer source port or a queue). A frame is parsed here once per
//! stage it crosses; nothing after it reads headers by raw offset, and a
//! translation updates the view along with the bytes ([`Flow::translated`]).
//!
//! The types both the tables and the load balancer speak of a flow are
//! defined once: [`FlowKey`] here, [`Protocol`] and [`TcpFlags`] in
//! `shoal_ebpf_common::flow` (the eBPF programs track flows by them too).

use std::net::{Ipv4Addr, SocketAddrV4};

pub use shoal_ebpf_common::flow::{Protocol, TcpFlags};

/// Length of an Ethernet header without VLAN tags.
pub const ETH_LEN: usize = 14;

mod field {
    use core::ops::Range;

    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Offsets inside the IPv4 header.
    pub const IP_TOTAL_LEN: Range<usize> = 2..4;
    pub const IP_FRAG: Range<usize> = 6..8;
    pub const IP_PROTOCOL: usize = 9;
    pub const IP_SRC: Range<usize> = 12..16;
    pub const IP_DST: Range<usize> = 16..20;
    /// Offsets inside the TCP or UDP header.
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const TCP_FLAGS: usize = 13;
}

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const DONT_FRAGMENT: u16 = 0x4000;
const OFFSET: u16 = 0x1fff;

/// A transport flow as one packet states it: protocol, source, destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: Protocol,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

impl FlowKey {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
        }
    }
}

/// What a frame carries, as far as the packet path cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// IPv4 with a complete header.
    Ipv4(Flow),
    /// ARP (its body is parsed by the ARP responder).
    Arp,
    /// Any other ethertype.
    Other,
}

/// A frame too short for the headers it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The headers of an IPv4 frame, parsed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The IP protocol number.
    pub ip_proto: u8,
    /// The IPv4 total length.
    pub total_len: u16,
    pub dont_frag: bool,
    /// Where the transport header starts in the frame.
    pub l4: usize,
    /// Protocol and ports, for TCP or UDP in a first (or only) fragment whose
    /// transport header is there up to its checksum: what the load balancer
    /// tracks and NAT rewrites. `None` for anything else.
    pub key: Option<FlowKey>,
    /// TCP flags (empty for UDP and everything else).
    pub flags: TcpFlags,
}

/// Parses the Ethernet header and, for IPv4, the IP and transport headers.
/// Never panics: a frame shorter than its headers is [`Malformed`].
pub fn parse(frame: &[u8]) -> Result<Frame, Malformed> {
    let ethertype = frame.get(field::ETHERTYPE).ok_or(Malformed)?;
    if ethertype == ETHERTYPE_ARP {
        return Ok(Frame::Arp);
    }
    if ethertype != ETHERTYPE_IPV4 {
        return Ok(Frame::Other);
    }
    let ip = &frame[ETH_LEN..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Err(Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total_len = be16(&ip[field::IP_TOTAL_LEN]);
    // As smoltcp's `Ipv4Packet::check_len`: the header fits, and the frame
    // holds the whole packet (it may be longer: Ethernet padding).
    if ihl < 20 || usize::from(total_len) < ihl || ip.len() < usize::from(total_len) {
        return Err(Malformed);
    }
    let frag = be16(&ip[field::IP_FRAG]);
    let ip_proto = ip[field::IP_PROTOCOL];
    let src = addr(&ip[field::IP_SRC]);
    let dst = addr(&ip[field::IP_DST]);
    let l4 = ETH_LEN + ihl;
    let transport = &ip[ihl..usize::from(total_len)];
    let proto = match ip_proto {
        6 => Some(Protocol::Tcp),
        17 => Some(Protocol::Udp),
        _ => None,
    }
    .filter(|p| frag & OFFSET == 0 && transport.len() >= p.checksum_offset() + 2);
    let key = proto.map(|proto| FlowKey {
        proto,
        src: SocketAddrV4::new(src, be16(&transport[field::SRC_PORT])),
        dst: SocketAddrV4::new(dst, be16(&transport[field::DST_PORT])),
    });
    let flags = match proto {
        Some(Protocol::Tcp) => TcpFlags(transport[field::TCP_FLAGS]),
        _ => TcpFlags::NONE,
    };
    Ok(Frame::Ipv4(Flow {
        src,
        dst,
        ip_proto,
        total_len,
        dont_frag: frag & DONT_FRAGMENT != 0,
        l4,
        key,
        flags,
    }))
}

/// Parses a frame that must be IPv4: anything else is `None`.
pub fn parse_ipv4(frame: &[u8]) -> Option<Flow> {
    ipv4(parse(frame))
}

/// The IPv4 view of a parse, if that is what it found.
pub fn ipv4(parsed: Result<Frame, Malformed>) -> Option<Flow> {
    match parsed {
        Ok(Frame::Ipv4(flow)) => Some(flow),
        _ => None,
    }
}

impl Flow {
    /// A hash of the flow (protocol, addresses, ports), stable across builds
    /// and the same for every packet of a flow: it picks the outer UDP
    /// source port (so the underlay can spread flows) and the queue a frame
    /// is written to (so each flow stays with one reader).
    pub fn hash(&self) -> u32 {
        // FNV-1a over the bytes that identify the flow.
        let mut h: u32 = 0x811c_9dc5;
        let mut mix = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
        };
        mix(&[self.ip_proto]);
        mix(&self.src.octets());
        mix(&self.dst.octets());
        if let Some(key) = &self.key {
            mix(&key.src.port().to_be_bytes());
            mix(&key.dst.port().to_be_bytes());
        }
        h
    }

    /// The view after the frame's source or destination was rewritten to
    /// `to` (see `lb::nat`).
    pub fn translated(mut self, dst_side: bool, to: SocketAddrV4) -> Flow {
        if dst_side {
            self.dst = *to.ip();
        } else {
            self.src = *to.ip();
        }
        if let Some(key) = &mut self.key {
            if dst_side {
                key.dst = to;
            } else {
                key.src = to;
            }
        }
        self
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    use super::*;

    fn tcp(flags_syn: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [3; 6]).ipv4([10, 0, 0, 5], [10, 0, 0, 100], 64);
        let mut out = Vec::new();
        let b = b.tcp(40000, 80, 1, 1000);
        let b = if flags_syn { b.syn() } else { b.ack(7) };
        b.write(&mut out, b"hello").expect("write");
        out
    }

    #[test]
    fn tcp_and_udp_frames_give_their_key_flags_and_offsets() {
        let Ok(Frame::Ipv4(flow)) = parse(&tcp(true)) else {
            panic!("not ipv4");
        };
        let key = flow.key.expect("a tcp key");
        assert_eq!(key.proto, Protocol::Tcp);
        assert_eq!(key.src, "10.0.0.5:40000".parse().expect("addr"));
        assert_eq!(key.dst, "10.0.0.100:80".parse().expect("addr"));
        assert!(flow.flags.is_opening());
        assert_eq!(flow.l4, ETH_LEN + 20);
        assert_eq!(usize::from(flow.total_len), tcp(true).len() - ETH_LEN);
        assert!(!parse_ipv4(&tcp(false)).expect("ipv4").flags.is_opening());

        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([10, 0, 0, 5], [10, 0, 0, 100], 64)
            .udp(5000, 53)
            .write(&mut udp, b"query")
            .expect("write");
        let flow = parse_ipv4(&udp).expect("ipv4");
        assert_eq!(flow.key.map(|k| k.proto), Some(Protocol::Udp));
        assert_eq!(flow.flags, TcpFlags::NONE);
    }

    #[test]
    fn later_fragments_and_other_protocols_have_no_key() {
        let mut f = tcp(true);
        f[ETH_LEN + 7] = 8; // fragment offset 64 bytes
        let flow = parse_ipv4(&f).expect("ipv4");
        assert_eq!(flow.key, None);
        let mut icmp = tcp(true);
        icmp[ETH_LEN + 9] = 1;
        let flow = parse_ipv4(&icmp).expect("ipv4");
        assert_eq!(flow.key, None);
        assert_eq!(flow.ip_proto, 1);
    }

    #[test]
    fn arp_other_and_short_frames() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ETHERTYPE_ARP);
        assert_eq!(parse(&arp), Ok(Frame::Arp));
        let mut v6 = vec![0u8; 60];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse(&v6), Ok(Frame::Other));
        let f = tcp(true);
        for len in 0..ETH_LEN + 20 {
            assert!(parse_ipv4(&f[..len]).is_none(), "{len}");
        }
        // An IP header or packet that claims more than the frame holds.
        let mut bad = f.clone();
        bad[ETH_LEN] = 0x4f;
        bad.truncate(ETH_LEN + 40);
        assert_eq!(parse(&bad), Err(Malformed));
        assert_eq!(parse(&f[..f.len() - 1]), Err(Malformed));
        let mut padded = f.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse(&padded), parse(&f));
    }

    #[test]
    fn the_hash_follows_the_flow_not_the_payload() {
        let a = parse_ipv4(&tcp(true)).expect("a");
        let b = parse_ipv4(&tcp(false)).expect("b");
        assert_eq!(a.hash(), b.hash());
        let moved = a.translated(true, "10.0.0.7:80".parse().expect("addr"));
        assert_ne!(a.hash(), moved.hash());
        assert_eq!(moved.dst, Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(moved.key.map(|k| k.dst.ip().octets()), Some([10, 0, 0, 7]));
        assert_eq!(
            a.key.map(|k| k.reversed().reversed()),
            a.key,
            "reversing twice is the identity"
        );
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(Frame::Ipv4(flow)) = parse(&bytes) {
                prop_assert!(flow.l4 <= ETH_LEN + usize::from(flow.total_len));
                prop_assert!(ETH_LEN + usize::from(flow.total_len) <= bytes.len());
                if let Some(key) = flow.key {
                    prop_assert!(flow.l4 + key.proto.checksum_offset() + 2 <= bytes.len());
                }
            }
        }
    }
}
