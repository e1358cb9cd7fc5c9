//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624),
//! defined once for both engines in `shoal_ebpf_common::checksum`; see
//! there for how partial sums are built and finished.
//!
//! ```
//! use shoal_dataplane::wire::checksum;
//! let (header, payload) = ([0x45u8, 0x00, 0x00, 0x1c], [0xab, 0xcd, 0xef]);
//! let split = checksum::finish(checksum::sum(&header) + checksum::sum(&payload));
//! assert_eq!(split, checksum::finish(checksum::sum(&[0x45, 0, 0, 0x1c, 0xab, 0xcd, 0xef])));
//! ```

pub use shoal_ebpf_common::checksum::*;

/// The arithmetic against another implementation's (smoltcp keeps its
/// checksum module private; its packets' own `fill_checksum` is where its
/// arithmetic can be compared).
#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use proptest::prelude::*;
    use smoltcp::wire::{IpAddress, Ipv4Packet, UdpPacket};

    proptest! {
        #[test]
        fn ipv4_header_checksum_agrees_with_smoltcp(words in 5..16usize, fill in proptest::collection::vec(any::<u8>(), 60)) {
            let mut header = fill[..words * 4].to_vec();
            header[0] = 0x40 | words as u8;
            header[10..12].fill(0);
            let ours = finish(sum(&header));
            let mut packet = Ipv4Packet::new_unchecked(&mut header[..]);
            packet.fill_checksum();
            prop_assert_eq!(packet.checksum(), ours);
        }

        #[test]
        fn udp_checksum_agrees_with_smoltcp(src in any::<u32>(), dst in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let len = 8 + payload.len() as u16;
            let mut datagram = vec![0x30, 0x39, 0x12, 0xb5, (len >> 8) as u8, len as u8, 0, 0];
            datagram.extend_from_slice(&payload);
            let ours = match finish(pseudo_header_v4(src, dst, 17, len) + sum(&datagram)) {
                0 => 0xffff,
                c => c,
            };
            let mut packet = UdpPacket::new_unchecked(&mut datagram[..]);
            packet.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
            prop_assert_eq!(packet.checksum(), ours);
        }
    }
}
