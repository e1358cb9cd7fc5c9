//! Reading what `tcpdump -w` captured: the UDP datagrams of a pcap file
//! with an Ethernet link type, enough to check what crossed the underlay.

use std::net::Ipv4Addr;

/// One captured UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

/// The UDP datagrams of the IPv4 packets in `pcap`, in capture order;
/// other packets and a truncated last record are skipped.
pub fn udp_datagrams(pcap: &[u8]) -> Vec<Datagram> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap_or_default()) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        let Some(ip) = frame.get(14..) else { continue };
        let ihl = usize::from(ip.first().copied().unwrap_or(0) & 0x0f) * 4;
        if ip.len() < ihl + 8 || ip.get(9) != Some(&17) {
            continue;
        }
        out.push(Datagram {
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            dst_port: u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]),
            payload: ip[ihl + 8..].to_vec(),
        });
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
