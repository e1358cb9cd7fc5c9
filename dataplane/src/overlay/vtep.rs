//! The VTEP's forwarding decisions, one frame at a time, sans-IO: a frame
//! from a task interface or a datagram from the underlay comes in, a verdict
//! comes out (deliver locally, encapsulate to a node, answer, or drop with a
//! reason). The engines carry the verdicts out.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Packet};

use super::arp::{self, ArpOutcome};
use super::fdb::{Fdb, Location, PortId, Segment};
use super::icmp;
use crate::wire::vxlan;

/// Why a frame was dropped. Every drop is counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A datagram on the VXLAN port that is no valid VXLAN (short, bad flags).
    MalformedVxlan,
    /// A VXLAN datagram for a VNI this node does not serve.
    UnknownVni,
    /// An inner frame too short or malformed to forward.
    MalformedFrame,
    /// An IPv4 destination on the network that the tables do not know.
    UnknownDestination,
    /// A frame from the underlay for an address that does not live here.
    NotLocal,
    /// A destination outside the overlay network (no route).
    NoRoute,
    /// An ethertype the overlay does not carry (IPv6, LLDP, ...).
    UnsupportedProtocol,
    /// A frame larger than the overlay MTU that may not be fragmented
    /// further (a "fragmentation needed" answer went back for DF packets).
    TooBig,
    /// A TSO/USO super-frame the engine could not segment.
    BadOffload,
    /// Writing to a task interface or the underlay socket failed.
    IoError,
    /// Traffic to a VIP on a port or protocol the service does not publish,
    /// or that is not TCP/UDP.
    NoServicePort,
    /// A service with no active backend.
    NoBackend,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::MalformedVxlan,
        DropReason::UnknownVni,
        DropReason::MalformedFrame,
        DropReason::UnknownDestination,
        DropReason::NotLocal,
        DropReason::NoRoute,
        DropReason::UnsupportedProtocol,
        DropReason::TooBig,
        DropReason::BadOffload,
        DropReason::IoError,
        DropReason::NoServicePort,
        DropReason::NoBackend,
    ];

    /// The reason's label in metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::MalformedVxlan => "malformed_vxlan",
            DropReason::UnknownVni => "unknown_vni",
            DropReason::MalformedFrame => "malformed_frame",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::NotLocal => "not_local",
            DropReason::NoRoute => "no_route",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::TooBig => "too_big",
            DropReason::BadOffload => "bad_offload",
            DropReason::IoError => "io_error",
            DropReason::NoServicePort => "no_service_port",
            DropReason::NoBackend => "no_backend",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What to do with a frame that a task sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromPort {
    /// Send the frame now in `out` back to the task (ARP reply, ICMP error).
    Reply,
    /// Deliver the frame unchanged to another task interface on this node.
    Local(PortId),
    /// Encapsulate with the segment's VNI and send to this node.
    Remote(Ipv4Addr),
    /// Load-balance: the destination is this service VIP of the segment.
    Service(Ipv4Addr),
    /// Nothing to do and nothing wrong (an ARP reply, a gratuitous ARP).
    Ignore,
    Drop(DropReason),
}

/// Decides where a frame sent by a task on `segment` goes. `offloaded` says
/// the frame is a TSO/USO super-frame (the engine segments it later), so the
/// MTU check does not apply to it.
pub fn from_port(segment: &Segment, frame: &[u8], offloaded: bool, out: &mut Vec<u8>) -> FromPort {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return FromPort::Drop(DropReason::MalformedFrame);
    };
    match eth.ethertype() {
        EthernetProtocol::Arp => match arp::answer(eth.payload(), segment, out) {
            Ok(ArpOutcome::Answered) => FromPort::Reply,
            Ok(ArpOutcome::Unknown) => FromPort::Drop(DropReason::UnknownDestination),
            Ok(ArpOutcome::Ignored) => FromPort::Ignore,
            Err(_) => FromPort::Drop(DropReason::MalformedFrame),
        },
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return FromPort::Drop(DropReason::MalformedFrame);
            };
            let dst = ip.dst_addr();
            if !offloaded && ip.total_len() > segment.mtu {
                if !ip.dont_frag() {
                    return FromPort::Drop(DropReason::TooBig);
                }
                let gw_mac = EthernetAddress(segment.gateway_mac.0);
                return match icmp::frag_needed(frame, segment.gateway, gw_mac, segment.mtu, out) {
                    Ok(()) => FromPort::Reply,
                    Err(_) => FromPort::Drop(DropReason::MalformedFrame),
                };
            }
            if !segment.subnet.contains(&dst) {
                return FromPort::Drop(DropReason::NoRoute);
            }
            if segment.vip(dst).is_some() {
                return FromPort::Service(dst);
            }
            to_station(segment, dst)
        }
        _ => FromPort::Drop(DropReason::UnsupportedProtocol),
    }
}

/// Where a frame for `ip`, an address of `segment`, goes.
pub fn to_station(segment: &Segment, ip: Ipv4Addr) -> FromPort {
    match segment.station(ip).map(|s| s.at) {
        Some(Location::Local(port)) => FromPort::Local(port),
        Some(Location::Remote(node)) => FromPort::Remote(node),
        None => FromPort::Drop(DropReason::UnknownDestination),
    }
}

/// What to do with a datagram that arrived on the VXLAN port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromUnderlay {
    /// Deliver the inner frame (`datagram[vxlan::HEADER_LEN..]`) to this port.
    Local(PortId),
    /// A reply for a routing-mesh client outside the overlay, sent back to
    /// the node its flow entered by (this one).
    MeshReply,
    /// Encapsulate the frame now in `out` with `vni` and send it back to the
    /// datagram's sender (an ARP reply to a remote VTEP).
    Reply {
        vni: u32,
    },
    Ignore,
    Drop(DropReason),
}

/// Decides where the inner frame of a VXLAN datagram goes.
pub fn from_underlay(fdb: &Fdb, datagram: &[u8], out: &mut Vec<u8>) -> FromUnderlay {
    let Some((vni, inner)) = decap(datagram) else {
        return FromUnderlay::Drop(DropReason::MalformedVxlan);
    };
    let Some((_, segment)) = fdb.segment_by_vni(vni) else {
        return FromUnderlay::Drop(DropReason::UnknownVni);
    };
    let Ok(eth) = EthernetFrame::new_checked(inner) else {
        return FromUnderlay::Drop(DropReason::MalformedFrame);
    };
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return FromUnderlay::Drop(DropReason::MalformedFrame);
            };
            if !segment.subnet.contains(&ip.dst_addr()) {
                return FromUnderlay::MeshReply;
            }
            match segment.station(ip.dst_addr()).map(|s| s.at) {
                Some(Location::Local(port)) => FromUnderlay::Local(port),
                Some(Location::Remote(_)) => FromUnderlay::Drop(DropReason::NotLocal),
                None => FromUnderlay::Drop(DropReason::UnknownDestination),
            }
        }
        EthernetProtocol::Arp => match arp::answer(eth.payload(), segment, out) {
            Ok(ArpOutcome::Answered) => FromUnderlay::Reply { vni },
            Ok(ArpOutcome::Unknown) => FromUnderlay::Drop(DropReason::UnknownDestination),
            Ok(ArpOutcome::Ignored) => FromUnderlay::Ignore,
            Err(_) => FromUnderlay::Drop(DropReason::MalformedFrame),
        },
        _ => FromUnderlay::Drop(DropReason::UnsupportedProtocol),
    }
}

/// Splits a VXLAN datagram into its VNI and inner frame.
pub fn decap(datagram: &[u8]) -> Option<(u32, &[u8])> {
    let packet = vxlan::Packet::new_checked(datagram).ok()?;
    let repr = vxlan::Repr::parse(&packet).ok()?;
    Some((repr.vni, &datagram[vxlan::HEADER_LEN..]))
}

/// Writes the VXLAN header for `vni` into the first [`vxlan::HEADER_LEN`]
/// bytes of `buf`.
pub fn encap_header(vni: u32, buf: &mut [u8]) {
    let mut packet = vxlan::Packet::new_unchecked(&mut buf[..vxlan::HEADER_LEN]);
    vxlan::Repr { vni }.emit(&mut packet);
}

/// A hash of the inner flow (addresses, protocol, ports) of an IPv4 frame,
/// for choosing the outer UDP source port so the underlay can spread flows.
pub fn flow_hash(frame: &[u8]) -> u32 {
    // FNV-1a over the bytes that identify the flow; stable across builds.
    let mut h: u32 = 0x811c_9dc5;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    if frame.len() >= 14 + 20 && frame[12..14] == [0x08, 0x00] {
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        mix(&frame[14 + 9..14 + 10]);
        mix(&frame[14 + 12..14 + 20]);
        if let Some(ports) = frame.get(14 + ihl..14 + ihl + 4) {
            mix(ports);
        }
    } else {
        mix(&frame[..frame.len().min(12)]);
    }
    h
}

#[cfg(test)]
mod tests;
