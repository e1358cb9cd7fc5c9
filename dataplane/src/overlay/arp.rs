//! The ARP responder: a VTEP answers requests for every address of its
//! networks from the tables, so ARP never floods and nothing is learned.

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

use super::fdb::Segment;
use crate::tables::MacAddr;

/// Length of an Ethernet frame carrying an IPv4 ARP packet (without padding).
pub const FRAME_LEN: usize = 14 + 28;

/// What an ARP packet asks of the VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// A reply was written to the output buffer.
    Answered,
    /// A request for an address the tables do not know, or the sender
    /// probing its own address.
    Unknown,
    /// Not a request (a reply, gratuitous ARP): nothing to do.
    Ignored,
}

/// Answers the ARP packet in `arp_payload` (the Ethernet payload of a frame)
/// on `segment`, writing the reply frame to `out` (cleared first).
pub fn answer(
    arp_payload: &[u8],
    segment: &Segment,
    out: &mut Vec<u8>,
) -> smoltcp::wire::Result<ArpOutcome> {
    let packet = ArpPacket::new_checked(arp_payload)?;
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = ArpRepr::parse(&packet)?
    else {
        return Err(smoltcp::wire::Error);
    };
    if operation != ArpOperation::Request {
        return Ok(ArpOutcome::Ignored);
    }
    if target_protocol_addr == source_protocol_addr {
        return Ok(ArpOutcome::Ignored);
    }
    let Some(mac) = segment.arp_answer(target_protocol_addr) else {
        return Ok(ArpOutcome::Unknown);
    };
    let ours = EthernetAddress(mac.0);
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: ours,
        source_protocol_addr: target_protocol_addr,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    let eth = EthernetRepr {
        src_addr: ours,
        dst_addr: source_hardware_addr,
        ethertype: EthernetProtocol::Arp,
    };
    out.clear();
    out.resize(FRAME_LEN, 0);
    let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
    eth.emit(&mut frame);
    reply.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    Ok(ArpOutcome::Answered)
}

/// Builds an ARP request frame from `mac`/`ip` for `target` (used by tests
/// and by anyone who needs to probe a VTEP).
pub fn request(mac: MacAddr, ip: std::net::Ipv4Addr, target: std::net::Ipv4Addr) -> Vec<u8> {
    let mut out = vec![0; FRAME_LEN];
    let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
    EthernetRepr {
        src_addr: EthernetAddress(mac.0),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac.0),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    out
}
