//! VIP address translation on Ethernet/IPv4 frames: the flow a frame
//! belongs to, and rewriting its source or destination address with the IP
//! and TCP/UDP checksums updated incrementally (RFC 1624), including the
//! partial checksums of frames whose checksum a NIC (or the VTEP) finishes
//! later.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::lb::conntrack::{FlowKey, TcpFlags};
use crate::tables::Protocol;
use crate::wire::checksum;

const ETH: usize = 14;

/// Which address to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// The transport flow of a frame and its TCP flags (empty for UDP). `None`
/// for anything but a first (or only) fragment of TCP or UDP over IPv4.
pub fn flow_of(frame: &[u8]) -> Option<(FlowKey, TcpFlags)> {
    let ip = frame.get(ETH..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < 20 || u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
        return None;
    }
    let proto = match ip[9] {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    let l4 = ip.get(ihl..)?;
    let flags = match proto {
        Protocol::Tcp => TcpFlags(*l4.get(13)?),
        Protocol::Udp => TcpFlags(0),
    };
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    let port = |at: usize| l4.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let key = FlowKey {
        proto,
        src: SocketAddrV4::new(addr(12), port(0)?),
        dst: SocketAddrV4::new(addr(16), port(2)?),
    };
    Some((key, flags))
}

/// Rewrites the `side` address of the IPv4 frame `frame` to `new`. With
/// `partial_l4`, the TCP/UDP checksum field holds a partial sum (the
/// pseudo header's, not complemented) that someone finishes later; it is
/// updated as such. A UDP checksum of zero (none) stays zero. `proto` is
/// the one [`flow_of`] found: the frame is parsed once per packet, there.
pub fn rewrite(frame: &mut [u8], proto: Protocol, side: Side, new: Ipv4Addr, partial_l4: bool) {
    if l4_header(frame, proto).is_none() {
        return;
    }
    let at = ETH + if side == Side::Src { 12 } else { 16 };
    let old = Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    frame[at..at + 4].copy_from_slice(&new.octets());

    let ip_sum = u16::from_be_bytes([frame[ETH + 10], frame[ETH + 11]]);
    let ip_sum = checksum::update_ipv4_addr(ip_sum, old, new);
    frame[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());

    update_l4_checksum(frame, proto, partial_l4, |sum| {
        checksum::update_ipv4_addr(sum, old, new)
    });
}

/// Rewrites the `side` TCP/UDP port of the frame to `new`, updating the
/// checksum as [`rewrite`] does.
pub fn rewrite_port(frame: &mut [u8], proto: Protocol, side: Side, new: u16, partial_l4: bool) {
    let Some(l4) = l4_header(frame, proto) else {
        return;
    };
    let at = l4 + if side == Side::Src { 0 } else { 2 };
    let old = u16::from_be_bytes([frame[at], frame[at + 1]]);
    frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
    // A partial sum covers only the pseudo header, which has no ports.
    if !partial_l4 {
        update_l4_checksum(frame, proto, false, |sum| {
            checksum::update_u16(sum, old, new)
        });
    }
}

/// Applies `update` (an RFC 1624 update of a complemented checksum) to the
/// frame's TCP/UDP checksum. A partial sum (`partial_l4`) is the complement
/// of a checksum, so it is updated through complements. A UDP checksum of
/// zero (none) stays zero.
fn update_l4_checksum(
    frame: &mut [u8],
    proto: Protocol,
    partial_l4: bool,
    update: impl Fn(u16) -> u16,
) {
    let Some(l4) = l4_header(frame, proto) else {
        return;
    };
    let field = l4 + checksum_offset(proto);
    let bytes = &mut frame[field..field + 2];
    let sum = u16::from_be_bytes([bytes[0], bytes[1]]);
    let updated = if partial_l4 {
        !update(!sum)
    } else if proto == Protocol::Udp && sum == 0 {
        0
    } else {
        update(sum)
    };
    bytes.copy_from_slice(&updated.to_be_bytes());
}

/// Where the TCP/UDP header starts, if the frame holds an IPv4 header and
/// the transport header up to its checksum field.
fn l4_header(frame: &[u8], proto: Protocol) -> Option<usize> {
    let ihl = usize::from(*frame.get(ETH)? & 0x0f) * 4;
    let l4 = ETH + ihl;
    (ihl >= 20 && frame.len() >= l4 + checksum_offset(proto) + 2).then_some(l4)
}

fn checksum_offset(proto: Protocol) -> usize {
    match proto {
        Protocol::Tcp => 16,
        Protocol::Udp => 6,
    }
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

/// Sets the destination MAC address of an Ethernet frame.
pub fn set_dst_mac(frame: &mut [u8], mac: [u8; 6]) {
    if let Some(dst) = frame.get_mut(..6) {
        dst.copy_from_slice(&mac);
    }
}

#[cfg(test)]
mod tests {
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

    fn proto(tcp: bool) -> Protocol {
        if tcp { Protocol::Tcp } else { Protocol::Udp }
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

    #[test]
    fn flows_are_read_from_tcp_and_udp() {
        let (key, flags) = flow_of(&frame(true)).expect("tcp flow");
        assert_eq!(key.proto, Protocol::Tcp);
        assert_eq!(key.src, "10.0.0.5:40000".parse().expect("addr"));
        assert_eq!(key.dst, "10.0.0.100:80".parse().expect("addr"));
        assert_eq!(flags.0 & 0x02, 0x02);
        let (key, _) = flow_of(&frame(false)).expect("udp flow");
        assert_eq!(key.proto, Protocol::Udp);
        for len in 0..60 {
            let mut f = frame(true)[..len].to_vec();
            let _ = flow_of(&f);
            rewrite(
                &mut f,
                Protocol::Tcp,
                Side::Dst,
                Ipv4Addr::new(1, 2, 3, 4),
                false,
            );
            rewrite_port(&mut f, Protocol::Udp, Side::Src, 9, false);
            if len > ETH {
                f[ETH] = 0x41; // an IPv4 header claiming 4 bytes
                rewrite(
                    &mut f,
                    Protocol::Tcp,
                    Side::Src,
                    Ipv4Addr::new(1, 2, 3, 4),
                    true,
                );
            }
        }
    }

    #[test]
    fn rewriting_keeps_checksums_valid_both_ways() {
        for tcp in [true, false] {
            let mut f = frame(tcp);
            rewrite(
                &mut f,
                proto(tcp),
                Side::Dst,
                Ipv4Addr::new(10, 0, 0, 7),
                false,
            );
            assert!(checksums_valid(&f));
            assert_eq!(
                flow_of(&f).expect("flow").0.dst.ip(),
                &Ipv4Addr::new(10, 0, 0, 7)
            );
            rewrite(
                &mut f,
                proto(tcp),
                Side::Src,
                Ipv4Addr::new(10, 0, 0, 99),
                false,
            );
            assert!(checksums_valid(&f));
        }
    }

    #[test]
    fn port_rewrites_keep_checksums_valid() {
        for tcp in [true, false] {
            let mut f = frame(tcp);
            rewrite_port(&mut f, proto(tcp), Side::Dst, 8080, false);
            rewrite(
                &mut f,
                proto(tcp),
                Side::Dst,
                Ipv4Addr::new(10, 0, 0, 7),
                false,
            );
            assert!(checksums_valid(&f));
            assert_eq!(flow_of(&f).expect("flow").0.dst.port(), 8080);
        }
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
        rewrite(
            &mut f,
            Protocol::Tcp,
            Side::Dst,
            Ipv4Addr::new(10, 9, 9, 9),
            true,
        );
        assert_eq!(u16::from_be_bytes([f[field], f[field + 1]]), pseudo(&f));
    }
}
