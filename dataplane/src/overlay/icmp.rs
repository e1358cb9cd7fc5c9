//! ICMP errors the VTEP originates: "fragmentation needed" (RFC 1191) for a
//! don't-fragment packet larger than the overlay MTU.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Ipv4Packet};

use crate::wire::checksum;

const ICMP_HEADER_LEN: usize = 8;
const IPV4_HEADER_LEN: usize = 20;

/// Writes to `out` an Ethernet frame carrying ICMP "destination unreachable,
/// fragmentation needed" with next-hop `mtu`, from `gateway` (MAC `gw_mac`)
/// to the sender of `frame`. `frame` must hold a parsed IPv4 packet.
pub fn frag_needed(
    frame: &[u8],
    gateway: Ipv4Addr,
    gw_mac: EthernetAddress,
    mtu: u16,
    out: &mut Vec<u8>,
) -> smoltcp::wire::Result<()> {
    let eth = EthernetFrame::new_checked(frame)?;
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    let ip_bytes = eth.payload();
    // RFC 792: the offending IP header and the first 8 bytes of its payload.
    let quoted = &ip_bytes[..(ip.header_len() as usize + 8).min(ip_bytes.len())];
    let total = IPV4_HEADER_LEN + ICMP_HEADER_LEN + quoted.len();

    out.clear();
    out.resize(14 + total, 0);
    let mut out_eth = EthernetFrame::new_unchecked(&mut out[..]);
    EthernetRepr {
        src_addr: gw_mac,
        dst_addr: eth.src_addr(),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut out_eth);

    let packet = out_eth.payload_mut();
    let (hdr, icmp) = packet.split_at_mut(IPV4_HEADER_LEN);
    icmp[0] = 3; // destination unreachable
    icmp[1] = 4; // fragmentation needed and DF set
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[ICMP_HEADER_LEN..].copy_from_slice(quoted);
    let sum = checksum::finish(checksum::sum(icmp));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    hdr[0] = 0x45;
    hdr[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    hdr[8] = 64; // TTL
    hdr[9] = 1; // ICMP
    hdr[12..16].copy_from_slice(&gateway.octets());
    hdr[16..20].copy_from_slice(&ip.src_addr().octets());
    let sum = checksum::finish(checksum::sum(hdr));
    hdr[10..12].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}
