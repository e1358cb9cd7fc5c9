//! Segmentation offload in software. A TAP device with `IFF_VNET_HDR` and
//! TSO/USO enabled hands the VTEP super-frames of up to 64 KiB described by
//! a virtio-net header; VXLAN must carry ordinary MTU-sized frames with
//! valid checksums (the far end may be the kernel's own `vxlan` device), so
//! they are cut here, each piece behind a caller-given prefix (the VXLAN
//! header), laid end to end with a fixed stride for UDP GSO.

use std::net::Ipv4Addr;

use crate::wire::checksum;
use crate::wire::virtio_net;

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FLAG_FIN: u8 = 0x01;
const TCP_FLAG_PSH: u8 = 0x08;
const TCP_FLAG_CWR: u8 = 0x80;

/// Why a super-frame could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    #[error("offload frame is truncated or its headers are inconsistent")]
    Malformed,
    #[error("offload type {0:#x} is not supported (only TCP and UDP over IPv4)")]
    Unsupported(u8),
}

/// How [`segment`] laid out its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// Number of segments written.
    pub count: usize,
    /// Length of every segment but the last, prefix included.
    pub stride: usize,
}

/// Whether `hdr` describes a super-frame that needs cutting.
pub fn is_gso(hdr: &virtio_net::Repr) -> bool {
    hdr.gso_type & !virtio_net::GSO_ECN != virtio_net::GSO_NONE
}

/// Fills in a checksum the sender left partial (`F_NEEDS_CSUM` without GSO):
/// the ones-complement sum from `csum_start` to the end, stored at
/// `csum_start + csum_offset`, as a NIC would.
pub fn complete_checksum(hdr: &virtio_net::Repr, frame: &mut [u8]) -> Result<(), GsoError> {
    if hdr.flags & virtio_net::F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > frame.len() {
        return Err(GsoError::Malformed);
    }
    let sum = checksum::finish(checksum::sum(&frame[start..]));
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Cuts the super-frame `frame` described by `hdr` into segments of at most
/// `hdr.gso_size` payload bytes, each written to `out` (cleared first) as
/// `prefix` followed by a complete Ethernet/IPv4/TCP-or-UDP frame with
/// correct lengths, IDs, sequence numbers and checksums.
pub fn segment(
    hdr: &virtio_net::Repr,
    frame: &[u8],
    prefix: &[u8],
    out: &mut Vec<u8>,
) -> Result<Segments, GsoError> {
    let gso_type = hdr.gso_type & !virtio_net::GSO_ECN;
    let want_proto = match gso_type {
        virtio_net::GSO_TCPV4 => PROTO_TCP,
        virtio_net::GSO_UDP_L4 => PROTO_UDP,
        other => return Err(GsoError::Unsupported(other)),
    };
    let mss = usize::from(hdr.gso_size);
    if mss == 0 || frame.len() < ETH_LEN + 20 || frame[12..14] != ETHERTYPE_IPV4 {
        return Err(GsoError::Malformed);
    }
    let ip_start = ETH_LEN;
    let ihl = usize::from(frame[ip_start] & 0x0f) * 4;
    if frame[ip_start] >> 4 != 4 || ihl < 20 || frame[ip_start + 9] != want_proto {
        return Err(GsoError::Malformed);
    }
    let l4_start = ip_start + ihl;
    let l4_len = match want_proto {
        PROTO_TCP => {
            let doff = frame.get(l4_start + 12).ok_or(GsoError::Malformed)?;
            usize::from(doff >> 4) * 4
        }
        _ => 8,
    };
    let headers = l4_start + l4_len;
    // A TCP header is at least 20 bytes (flags and checksum are in there);
    // a task's super-frame claiming fewer is refused, not indexed past.
    let min_l4 = if want_proto == PROTO_TCP { 20 } else { 8 };
    if l4_len < min_l4 || frame.len() < headers {
        return Err(GsoError::Malformed);
    }
    let payload = &frame[headers..];
    // A super-frame carries payload; one with headers only cuts into nothing.
    if payload.is_empty() {
        return Err(GsoError::Malformed);
    }
    let addr = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    let (src, dst) = (addr(ip_start + 12), addr(ip_start + 16));
    let ip_id = u16::from_be_bytes([frame[ip_start + 4], frame[ip_start + 5]]);
    let seq = u32::from_be_bytes(
        frame
            .get(l4_start + 4..l4_start + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or(GsoError::Malformed)?,
    );

    let count = payload.len().div_ceil(mss);
    let stride = prefix.len() + headers + mss.min(payload.len());
    out.clear();
    out.reserve(prefix.len() * count + headers * count + payload.len());
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let seg_start = out.len();
        out.extend_from_slice(prefix);
        let f = out.len();
        out.extend_from_slice(&frame[..headers]);
        out.extend_from_slice(chunk);
        let seg = &mut out[f..];
        let l4_total = l4_len + chunk.len();
        let ip_total = (ihl + l4_total) as u16;

        let ip = &mut seg[ip_start..l4_start];
        ip[2..4].copy_from_slice(&ip_total.to_be_bytes());
        ip[4..6].copy_from_slice(&ip_id.wrapping_add(i as u16).to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::finish(checksum::sum(ip));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());

        let l4 = &mut seg[l4_start..];
        let checksum_at = if want_proto == PROTO_TCP {
            let seg_seq = seq.wrapping_add((i * mss) as u32);
            l4[4..8].copy_from_slice(&seg_seq.to_be_bytes());
            let last = i + 1 == count;
            if !last {
                l4[13] &= !(TCP_FLAG_FIN | TCP_FLAG_PSH);
            }
            if i != 0 {
                l4[13] &= !TCP_FLAG_CWR;
            }
            16
        } else {
            l4[4..6].copy_from_slice(&(l4_total as u16).to_be_bytes());
            6
        };
        l4[checksum_at..checksum_at + 2].copy_from_slice(&[0, 0]);
        let pseudo = checksum::pseudo_header_v4(src, dst, want_proto, l4_total as u16);
        let mut sum = checksum::finish(pseudo + checksum::sum(l4));
        if want_proto == PROTO_UDP && sum == 0 {
            sum = 0xffff;
        }
        l4[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
        debug_assert!(i + 1 == count || out.len() - seg_start == stride);
    }
    Ok(Segments { count, stride })
}

#[cfg(test)]
mod tests {
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;

    fn tcp_super_frame(payload_len: usize, flags_psh_fin: bool) -> Vec<u8> {
        let mut builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1_000_000, 512)
            .ack(7)
            .cwr();
        if flags_psh_fin {
            builder = builder.psh().fin();
        }
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        builder.write(&mut out, &payload).expect("write");
        out
    }

    fn tso(mss: u16) -> virtio_net::Repr {
        virtio_net::Repr {
            flags: virtio_net::F_NEEDS_CSUM,
            gso_type: virtio_net::GSO_TCPV4,
            hdr_len: 54,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
        }
    }

    #[test]
    fn a_tcp_header_shorter_than_twenty_bytes_is_refused() {
        // Found by the gso fuzz target: data offset 2 (8 bytes) with no
        // payload used to index the checksum past the frame.
        let mut frame = tcp_super_frame(0, false);
        frame[ETH_LEN + 20 + 12] = 2 << 4;
        let mut out = Vec::new();
        assert_eq!(
            segment(&tso(1400), &frame, &[0; 8], &mut out),
            Err(GsoError::Malformed)
        );
    }

    #[test]
    fn tcp_segments_are_valid_and_carry_the_whole_stream() {
        let frame = tcp_super_frame(10_000, true);
        let prefix = [0xee; 8];
        let mut out = Vec::new();
        let segs = segment(&tso(1400), &frame, &prefix, &mut out).expect("segment");
        assert_eq!(segs.count, 8);
        assert_eq!(segs.stride, 8 + 54 + 1400);
        let mut stream = Vec::new();
        for (i, piece) in out.chunks(segs.stride).enumerate() {
            assert_eq!(&piece[..8], &prefix);
            let p = SlicedPacket::from_ethernet(&piece[8..]).expect("valid frame");
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                panic!("ipv4")
            };
            assert_eq!(
                ip.header().header_checksum(),
                ip.header().to_header().calc_header_checksum()
            );
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("tcp")
            };
            assert_eq!(tcp.sequence_number(), 1_000_000 + (i as u32) * 1400);
            let last = i + 1 == segs.count;
            assert_eq!(tcp.fin(), last);
            assert_eq!(tcp.psh(), last);
            assert_eq!(tcp.cwr(), i == 0);
            let expected = tcp
                .to_header()
                .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
                .expect("checksum");
            assert_eq!(tcp.checksum(), expected, "segment {i}");
            stream.extend_from_slice(tcp.payload());
        }
        assert_eq!(stream, frame[54..]);
    }

    #[test]
    fn udp_segments_get_their_own_lengths_and_checksums() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let builder = PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 6000);
        let mut frame = Vec::new();
        builder.write(&mut frame, &payload).expect("write");
        let hdr = virtio_net::Repr {
            gso_type: virtio_net::GSO_UDP_L4,
            gso_size: 1000,
            ..tso(1000)
        };
        let mut out = Vec::new();
        let segs = segment(&hdr, &frame, &[], &mut out).expect("segment");
        assert_eq!(segs.count, 3);
        for piece in out.chunks(segs.stride) {
            let p = SlicedPacket::from_ethernet(piece).expect("valid frame");
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                panic!("ipv4")
            };
            let Some(TransportSlice::Udp(udp)) = &p.transport else {
                panic!("udp")
            };
            assert_eq!(udp.length(), 1008);
            let expected = udp
                .to_header()
                .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
                .expect("checksum");
            assert_eq!(udp.checksum(), expected);
        }
    }

    #[test]
    fn partial_checksums_are_completed() {
        let good = tcp_super_frame(300, false);
        let mut frame = good.clone();
        // What a kernel hands over with NEEDS_CSUM: the pseudo-header sum only.
        let pseudo = checksum::pseudo_header_v4(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            PROTO_TCP,
            (frame.len() - 34) as u16,
        );
        let folded = !checksum::finish(pseudo);
        frame[50..52].copy_from_slice(&folded.to_be_bytes());
        let hdr = virtio_net::Repr {
            gso_type: virtio_net::GSO_NONE,
            ..tso(0)
        };
        complete_checksum(&hdr, &mut frame).expect("complete");
        assert_eq!(frame, good);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let mut out = Vec::new();
        for len in 0..80 {
            let frame = vec![0x45; len];
            assert!(segment(&tso(100), &frame, &[], &mut out).is_err());
        }
        let mut hdr = tso(0);
        assert_eq!(
            segment(&hdr, &tcp_super_frame(100, false), &[], &mut out),
            Err(GsoError::Malformed)
        );
        hdr.gso_type = virtio_net::GSO_TCPV6;
        assert_eq!(
            segment(&hdr, &tcp_super_frame(100, false), &[], &mut out),
            Err(GsoError::Unsupported(virtio_net::GSO_TCPV6))
        );
        let mut short = vec![0u8; 8];
        let partial = virtio_net::Repr {
            csum_start: 6,
            csum_offset: 4,
            ..tso(0)
        };
        assert_eq!(
            complete_checksum(&partial, &mut short),
            Err(GsoError::Malformed)
        );
    }
}
