//! Address translation on Ethernet/IPv4 frames: the source or destination
//! of a TCP/UDP flow rewritten to another address and port, with the IP and
//! TCP/UDP checksums updated incrementally (RFC 1624), including the partial
//! checksums of frames whose checksum a NIC (or the VTEP) finishes later.
//!
//! A translation enters as a [`Nat`] (decided by `lb::vip` or `lb::mesh`)
//! with the frame's [`Flow`], parsed once; the updated view leaves.

use std::net::SocketAddrV4;

use crate::wire::checksum;
use crate::wire::flow::{ETH_LEN as ETH, Flow, Protocol};

/// Where the IPv4 header checksum sits in the frame.
const IP_CHECKSUM: usize = ETH + 10;
const IP_SRC: usize = ETH + 12;
const IP_DST: usize = ETH + 16;

/// Which end of a flow to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// One rewrite: `side` of the flow becomes `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat {
    pub side: Side,
    pub to: SocketAddrV4,
}

impl Nat {
    pub fn src(to: SocketAddrV4) -> Nat {
        Nat {
            side: Side::Src,
            to,
        }
    }

    pub fn dst(to: SocketAddrV4) -> Nat {
        Nat {
            side: Side::Dst,
            to,
        }
    }

    /// Rewrites `frame`, whose headers `flow` describes, and returns the view
    /// of the result. With `partial_l4`, the TCP/UDP checksum field holds a
    /// partial sum (the pseudo header's, not complemented) that someone
    /// finishes later; it is updated as such. A UDP checksum of zero (none)
    /// stays zero. A flow without TCP/UDP ports is left as it is.
    pub fn apply(self, frame: &mut [u8], flow: &Flow, partial_l4: bool) -> Flow {
        let Some(key) = flow.key else {
            return *flow;
        };
        let (addr_at, port_at, old) = match self.side {
            Side::Src => (IP_SRC, flow.l4, key.src),
            Side::Dst => (IP_DST, flow.l4 + 2, key.dst),
        };
        let checksum_at = flow.l4 + key.proto.checksum_offset();
        if frame.len() < checksum_at + 2 {
            return *flow;
        }
        let (old_ip, new_ip) = (*old.ip(), *self.to.ip());
        if old_ip != new_ip {
            frame[addr_at..addr_at + 4].copy_from_slice(&new_ip.octets());
            let ip_sum = be16(&frame[IP_CHECKSUM..]);
            let ip_sum = checksum::update_ipv4_addr(ip_sum, old_ip, new_ip);
            frame[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&ip_sum.to_be_bytes());
            update_l4_checksum(frame, checksum_at, key.proto, partial_l4, |sum| {
                checksum::update_ipv4_addr(sum, old_ip, new_ip)
            });
        }
        let (old_port, new_port) = (old.port(), self.to.port());
        if old_port != new_port {
            frame[port_at..port_at + 2].copy_from_slice(&new_port.to_be_bytes());
            // A partial sum covers only the pseudo header, which has no ports.
            if !partial_l4 {
                update_l4_checksum(frame, checksum_at, key.proto, false, |sum| {
                    checksum::update_u16(sum, old_port, new_port)
                });
            }
        }
        flow.translated(self.side == Side::Dst, self.to)
    }
}

/// Applies `update` (an RFC 1624 update of a complemented checksum) to the
/// TCP/UDP checksum at `at`. A partial sum (`partial_l4`) is the complement
/// of a checksum, so it is updated through complements. A UDP checksum of
/// zero (none) stays zero.
fn update_l4_checksum(
    frame: &mut [u8],
    at: usize,
    proto: Protocol,
    partial_l4: bool,
    update: impl Fn(u16) -> u16,
) {
    let sum = be16(&frame[at..]);
    let updated = if partial_l4 {
        !update(!sum)
    } else if proto == Protocol::Udp && sum == 0 {
        0
    } else {
        update(sum)
    };
    frame[at..at + 2].copy_from_slice(&updated.to_be_bytes());
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Writes an Ethernet header for IPv4 from `src` to `dst` into the first 14
/// bytes of `frame`.
pub fn set_ethernet(frame: &mut [u8], src: [u8; 6], dst: [u8; 6]) {
    if let Some(h) = frame.get_mut(..ETH) {
        h[..6].copy_from_slice(&dst);
        h[6..12].copy_from_slice(&src);
        h[12..14].copy_from_slice(&[0x08, 0x00]);
    }
}

/// Sets the source MAC address of an Ethernet frame.
pub fn set_src_mac(frame: &mut [u8], mac: [u8; 6]) {
    if let Some(src) = frame.get_mut(6..12) {
        src.copy_from_slice(&mac);
    }
}

/// Sets the destination MAC address of an Ethernet frame.
pub fn set_dst_mac(frame: &mut [u8], mac: [u8; 6]) {
    if let Some(dst) = frame.get_mut(..6) {
        dst.copy_from_slice(&mac);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;

    fn frame(tcp: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [3; 6]).ipv4([10, 0, 0, 5], [10, 0, 0, 100], 64);
        let mut out = Vec::new();
        if tcp {
            b.tcp(40000, 80, 1, 1000)
                .syn()
                .write(&mut out, b"hello")
                .expect("write");
        } else {
            b.udp(5000, 53).write(&mut out, b"query").expect("write");
        }
        out
    }

    fn checksums_valid(f: &[u8]) -> bool {
        let p = SlicedPacket::from_ethernet(f).expect("frame");
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            return false;
        };
        let ip_ok = ip.header().header_checksum() == ip.header().to_header().calc_header_checksum();
        let l4_ok = match &p.transport {
            Some(TransportSlice::Tcp(t)) => {
                t.checksum()
                    == t.to_header()
                        .calc_checksum_ipv4(&ip.header().to_header(), t.payload())
                        .expect("sum")
            }
            Some(TransportSlice::Udp(u)) => {
                u.checksum()
                    == u.to_header()
                        .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
                        .expect("sum")
            }
            _ => false,
        };
        ip_ok && l4_ok
    }

    fn flow(f: &[u8]) -> Flow {
        crate::wire::flow::parse_ipv4(f).expect("an ipv4 frame")
    }

    fn to(s: &str) -> SocketAddrV4 {
        s.parse().expect("addr")
    }

    #[test]
    fn truncated_frames_and_garbage_are_left_alone() {
        let whole = frame(true);
        let view = flow(&whole);
        for len in 0..whole.len() {
            let mut f = whole[..len].to_vec();
            let before = f.clone();
            let after = Nat::dst(to("1.2.3.4:9")).apply(&mut f, &view, false);
            if len < view.l4 + 18 {
                assert_eq!(f, before, "{len}");
                assert_eq!(after, view);
            }
        }
    }

    #[test]
    fn rewriting_keeps_checksums_valid_both_ways() {
        for tcp in [true, false] {
            let mut f = frame(tcp);
            let v = Nat::dst(to("10.0.0.7:80")).apply(&mut f, &flow(&frame(tcp)), false);
            assert!(checksums_valid(&f));
            assert_eq!(v, flow(&f), "the returned view is the frame's");
            let v = Nat::src(to("10.0.0.99:40000")).apply(&mut f, &v, false);
            assert!(checksums_valid(&f));
            assert_eq!(v, flow(&f));
        }
    }

    #[test]
    fn port_rewrites_keep_checksums_valid() {
        for tcp in [true, false] {
            let mut f = frame(tcp);
            let v = Nat::dst(to("10.0.0.7:8080")).apply(&mut f, &flow(&frame(tcp)), false);
            assert!(checksums_valid(&f));
            assert_eq!(v.key.map(|k| k.dst), Some(to("10.0.0.7:8080")));
            assert_eq!(v, flow(&f));
            let v = Nat::src(to("10.0.0.1:30000")).apply(&mut f, &v, false);
            assert!(checksums_valid(&f));
            assert_eq!(v, flow(&f));
        }
    }

    #[test]
    fn a_udp_frame_without_checksum_keeps_none() {
        let mut f = frame(false);
        let field = ETH + 20 + 6;
        f[field..field + 2].copy_from_slice(&[0, 0]);
        let v = flow(&f);
        Nat::dst(to("10.9.9.9:5353")).apply(&mut f, &v, false);
        assert_eq!(&f[field..field + 2], &[0, 0]);
    }

    #[test]
    fn partial_checksums_stay_partial_and_correct() {
        let mut f = frame(true);
        let field = ETH + 20 + 16;
        // Replace the full checksum with the partial one a TSO frame carries.
        let pseudo = |f: &[u8]| {
            let ip = &f[ETH..];
            let a = |i: usize| Ipv4Addr::new(ip[i], ip[i + 1], ip[i + 2], ip[i + 3]);
            checksum::fold(checksum::pseudo_header_v4(
                a(12),
                a(16),
                6,
                (f.len() - ETH - 20) as u16,
            ))
        };
        let p = pseudo(&f);
        f[field..field + 2].copy_from_slice(&p.to_be_bytes());
        let v = flow(&f);
        Nat::dst(to("10.9.9.9:8080")).apply(&mut f, &v, true);
        assert_eq!(u16::from_be_bytes([f[field], f[field + 1]]), pseudo(&f));
    }
}
