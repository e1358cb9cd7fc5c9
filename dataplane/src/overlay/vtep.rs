//! The VTEP's forwarding decisions, one frame at a time, sans-IO: a frame
//! from a task interface or a datagram from the underlay comes in, a verdict
//! comes out (deliver locally, encapsulate to a node, answer, or drop with a
//! reason). The engines carry the verdicts out.

use std::net::Ipv4Addr;

use smoltcp::wire::EthernetAddress;

use super::arp::{self, ArpOutcome};
use super::fdb::{Fdb, Location, PortId, Segment, SegmentId};
use super::icmp;
use crate::wire::flow::{self, ETH_LEN, Frame, Malformed};
use crate::wire::vxlan;

/// Why a frame was dropped: defined once, for both engines, in the map ABI.
pub use shoal_ebpf_common::DropReason;

/// What to do with a frame that a task sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromPort {
    /// Send the frame now in `out` back to the task (ARP reply, ICMP error).
    Reply,
    /// Deliver the frame to another task interface on this node.
    Local(PortId),
    /// Encapsulate with the segment's VNI and send to this node.
    Remote(Ipv4Addr),
    /// Load-balance: the destination is this service VIP of the segment.
    Service(Ipv4Addr),
    /// The destination is outside the overlay network: a reply to a
    /// routing-mesh client if a mesh flow knows it, else no route.
    Outside,
    /// Nothing to do and nothing wrong (an ARP reply, a gratuitous ARP).
    Ignore,
    Drop(DropReason),
}

/// Decides where a frame sent by a task on `segment` goes (parsing it).
/// `offloaded` says the frame is a TSO/USO super-frame (the engine segments
/// it later), so the MTU check does not apply to it.
pub fn from_port(segment: &Segment, frame: &[u8], offloaded: bool, out: &mut Vec<u8>) -> FromPort {
    route_from_port(segment, frame, flow::parse(frame), offloaded, out)
}

/// [`from_port`] for a frame already parsed into `parsed`.
pub fn route_from_port(
    segment: &Segment,
    frame: &[u8],
    parsed: Result<Frame, Malformed>,
    offloaded: bool,
    out: &mut Vec<u8>,
) -> FromPort {
    match parsed {
        Err(Malformed) => FromPort::Drop(DropReason::MalformedFrame),
        Ok(Frame::Arp) => match arp::answer(&frame[ETH_LEN..], segment, out) {
            Ok(ArpOutcome::Answered) => FromPort::Reply,
            Ok(ArpOutcome::Unknown) => FromPort::Drop(DropReason::UnknownDestination),
            Ok(ArpOutcome::Ignored) => FromPort::Ignore,
            Err(_) => FromPort::Drop(DropReason::MalformedFrame),
        },
        Ok(Frame::Ipv4(ip)) => {
            if !offloaded && ip.total_len > segment.mtu {
                if !ip.dont_frag {
                    return FromPort::Drop(DropReason::TooBig);
                }
                let gw_mac = EthernetAddress(segment.gateway_mac.0);
                return match icmp::frag_needed(frame, segment.gateway, gw_mac, segment.mtu, out) {
                    Ok(()) => FromPort::Reply,
                    Err(_) => FromPort::Drop(DropReason::MalformedFrame),
                };
            }
            if !segment.subnet.contains(&ip.dst) {
                return FromPort::Outside;
            }
            if segment.vip(ip.dst).is_some() {
                return FromPort::Service(ip.dst);
            }
            to_station(segment, ip.dst)
        }
        Ok(Frame::Other) => FromPort::Drop(DropReason::UnsupportedProtocol),
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
    /// The inner frame is for an address outside the overlay network: a
    /// reply for a routing-mesh client, sent back to the node its flow
    /// entered by (this one), if a mesh flow knows it.
    Outside,
    /// Encapsulate the frame now in `out` with `vni` and send it back to the
    /// datagram's sender (an ARP reply to a remote VTEP).
    Reply {
        vni: u32,
    },
    Ignore,
    Drop(DropReason),
}

/// Decides where the inner frame of a plain VXLAN datagram (not from the
/// tunnel) that the underlay address `sender` sent goes (parsing it).
pub fn from_underlay(
    fdb: &Fdb,
    sender: Ipv4Addr,
    datagram: &[u8],
    out: &mut Vec<u8>,
) -> FromUnderlay {
    match open(fdb, sender, datagram, false) {
        Ok(seg) => {
            let inner = &datagram[vxlan::HEADER_LEN..];
            route_from_underlay(fdb.segment(seg), inner, flow::parse(inner), out)
        }
        Err(reason) => FromUnderlay::Drop(reason),
    }
}

/// The segment a VXLAN datagram from `sender` is for, or why it is
/// dropped. Only nodes in the tables may put frames on an overlay network:
/// a stranger's datagram is refused before any of it is read, so it never
/// draws an answer (an ARP reply, a mesh reply). An encrypted network's
/// datagrams must have come `sealed`, through the tunnel.
pub fn open(
    fdb: &Fdb,
    sender: Ipv4Addr,
    datagram: &[u8],
    sealed: bool,
) -> Result<SegmentId, DropReason> {
    if !fdb.is_node(sender) {
        return Err(DropReason::UnknownPeer);
    }
    let (vni, _) = decap(datagram).ok_or(DropReason::MalformedVxlan)?;
    let (seg, segment) = fdb.segment_by_vni(vni).ok_or(DropReason::UnknownVni)?;
    if segment.encrypted && !sealed {
        return Err(DropReason::Unsealed);
    }
    Ok(seg)
}

/// [`from_underlay`] for the inner frame `inner` of a datagram for
/// `segment`, already parsed into `parsed`.
pub fn route_from_underlay(
    segment: &Segment,
    inner: &[u8],
    parsed: Result<Frame, Malformed>,
    out: &mut Vec<u8>,
) -> FromUnderlay {
    match parsed {
        Err(Malformed) => FromUnderlay::Drop(DropReason::MalformedFrame),
        Ok(Frame::Ipv4(ip)) => {
            if !segment.subnet.contains(&ip.dst) {
                return FromUnderlay::Outside;
            }
            match segment.station(ip.dst).map(|s| s.at) {
                Some(Location::Local(port)) => FromUnderlay::Local(port),
                Some(Location::Remote(_)) => FromUnderlay::Drop(DropReason::NotLocal),
                None => FromUnderlay::Drop(DropReason::UnknownDestination),
            }
        }
        Ok(Frame::Arp) => match arp::answer(&inner[ETH_LEN..], segment, out) {
            Ok(ArpOutcome::Answered) => FromUnderlay::Reply { vni: segment.vni },
            Ok(ArpOutcome::Unknown) => FromUnderlay::Drop(DropReason::UnknownDestination),
            Ok(ArpOutcome::Ignored) => FromUnderlay::Ignore,
            Err(_) => FromUnderlay::Drop(DropReason::MalformedFrame),
        },
        Ok(Frame::Other) => FromUnderlay::Drop(DropReason::UnsupportedProtocol),
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

#[cfg(test)]
mod tests;
