//! Receive offload in software. Frames decapsulated from one batch of VXLAN
//! datagrams often carry consecutive segments of one TCP flow; merged into a
//! single super-frame behind a virtio-net GSO header, they reach the task's
//! TCP stack in one write instead of dozens, as a NIC's GRO would deliver
//! them. Merging follows Linux's `tcp_gro_receive` rules: same headers
//! (options included), contiguous sequence numbers, plain ACK segments of
//! one size, a shorter or PSH segment last. Every merged segment's checksum
//! is verified first, since the merged frame's is never checked again.

use std::net::Ipv4Addr;

use crate::wire::{checksum, virtio_net};

const ETH: usize = 14;
const IP_HDR: usize = 20;
const TCP_AT: usize = ETH + IP_HDR;
const FLAG_PSH: u8 = 0x08;
const FLAG_ACK: u8 = 0x10;
/// The largest IPv4 packet a merged frame may become.
const MAX_IP_LEN: usize = 65_535;

/// A TCP segment that may take part in merging.
struct Candidate {
    /// Ethernet + IPv4 + TCP header length.
    headers: usize,
    /// Frame length without Ethernet padding.
    len: usize,
    seq: u32,
    payload: usize,
    psh: bool,
}

/// Checks `frame` for merging: IPv4 without options or fragmentation, TCP
/// with only ACK (and PSH), some payload, and a valid checksum.
fn candidate(frame: &[u8]) -> Option<Candidate> {
    if frame.len() < TCP_AT + 20 || frame[12..14] != [0x08, 0x00] || frame[ETH] != 0x45 {
        return None;
    }
    let ip = &frame[ETH..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if fragmented || ip[9] != 6 || total < IP_HDR + 20 || ETH + total > frame.len() {
        return None;
    }
    let tcp = &frame[TCP_AT..ETH + total];
    let doff = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    if doff < 20 || doff > tcp.len() || flags & !FLAG_PSH != FLAG_ACK || tcp.len() == doff {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let pseudo = checksum::pseudo_header_v4(src, dst, 6, tcp.len() as u16);
    if checksum::finish(pseudo + checksum::sum(tcp)) != 0 {
        return None;
    }
    Some(Candidate {
        headers: TCP_AT + doff,
        len: ETH + total,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        payload: tcp.len() - doff,
        psh: flags & FLAG_PSH != 0,
    })
}

/// Whether two frames' headers agree everywhere merging requires: all but
/// the IP length, ID and checksum, and the TCP sequence number, checksum
/// and PSH flag.
fn same_headers(a: &[u8], b: &[u8], headers: usize) -> bool {
    let tcp = TCP_AT;
    a[..ETH + 2] == b[..ETH + 2]
        && a[ETH + 6..ETH + 10] == b[ETH + 6..ETH + 10]
        && a[ETH + 12..tcp] == b[ETH + 12..tcp]
        && a[tcp..tcp + 4] == b[tcp..tcp + 4]
        && a[tcp + 8..tcp + 13] == b[tcp + 8..tcp + 13]
        && a[tcp + 13] & !FLAG_PSH == b[tcp + 13] & !FLAG_PSH
        && a[tcp + 14..tcp + 16] == b[tcp + 14..tcp + 16]
        && a[tcp + 18..headers] == b[tcp + 18..headers]
}

/// The flow of a TCP frame: MAC addresses, IP addresses, ports.
fn same_flow(a: &[u8], b: &[u8]) -> bool {
    a[..12] == b[..12]
        && a[ETH + 12..ETH + 20] == b[ETH + 12..ETH + 20]
        && a[TCP_AT..TCP_AT + 4] == b[TCP_AT..TCP_AT + 4]
}

/// A super-frame being built for one flow.
struct Pending<D> {
    to: D,
    headers: usize,
    mss: usize,
    segments: usize,
    next_seq: u32,
    /// A short or PSH segment was merged: nothing may follow it.
    closed: bool,
    /// virtio-net header, then the frame being built.
    buf: Vec<u8>,
}

impl<D: Copy + PartialEq> Pending<D> {
    fn frame(&self) -> &[u8] {
        &self.buf[virtio_net::HEADER_LEN..]
    }

    fn accepts(&self, to: D, c: &Candidate, frame: &[u8]) -> bool {
        let merged_ip_len = self.frame().len() - ETH + c.payload;
        self.to == to
            && !self.closed
            && c.headers == self.headers
            && c.seq == self.next_seq
            && c.payload <= self.mss
            && merged_ip_len <= MAX_IP_LEN
            && same_headers(self.frame(), frame, self.headers)
    }

    fn merge(&mut self, c: &Candidate, frame: &[u8]) {
        self.buf.extend_from_slice(&frame[c.headers..c.len]);
        self.segments += 1;
        self.next_seq = self.next_seq.wrapping_add(c.payload as u32);
        self.closed = c.payload < self.mss || c.psh;
        if c.psh {
            self.buf[virtio_net::HEADER_LEN + TCP_AT + 13] |= FLAG_PSH;
        }
    }

    /// Finishes the headers (lengths, checksums, virtio-net header).
    fn seal(&mut self) {
        let (hdr, frame) = self.buf.split_at_mut(virtio_net::HEADER_LEN);
        let repr = if self.segments == 1 {
            // Verified on the way in: the task's stack need not check again.
            virtio_net::Repr {
                flags: virtio_net::F_DATA_VALID,
                ..virtio_net::Repr::NONE
            }
        } else {
            let ip_len = frame.len() - ETH;
            let ip = &mut frame[ETH..TCP_AT];
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            ip[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum::finish(checksum::sum(ip));
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            // A partial checksum, finished by the receiving stack as a NIC
            // would: the pseudo header's folded sum in the field.
            let pseudo = checksum::pseudo_header_v4(src, dst, 6, (ip_len - IP_HDR) as u16);
            frame[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
            virtio_net::Repr {
                flags: virtio_net::F_NEEDS_CSUM,
                gso_type: virtio_net::GSO_TCPV4,
                hdr_len: self.headers as u16,
                gso_size: self.mss as u16,
                csum_start: TCP_AT as u16,
                csum_offset: 16,
            }
        };
        repr.emit(&mut virtio_net::Packet::new_unchecked(&mut hdr[..]));
    }
}

/// Flows merged at once; more interleaved flows evict the oldest.
const MAX_FLOWS: usize = 8;

/// The merging state of one receive loop. Frames go in with [`Gro::push`],
/// each with the destination `D` it is bound for (frames merge only with
/// frames for the same one); frames ready for it (behind a virtio-net
/// header) come out through the `emit` callback. [`Gro::flush`] at the end
/// of every batch.
pub struct Gro<D> {
    /// Flows being merged, oldest first.
    flows: Vec<Pending<D>>,
    /// Buffers of flushed flows, for reuse.
    spare: Vec<Vec<u8>>,
}

impl<D> Default for Gro<D> {
    fn default() -> Self {
        Gro {
            flows: Vec::new(),
            spare: Vec::new(),
        }
    }
}

impl<D: Copy + PartialEq> Gro<D> {
    /// Offers `frame`, bound for `to`.
    pub fn push(&mut self, to: D, frame: &[u8], emit: &mut impl FnMut(D, &[u8])) {
        let Some(c) = candidate(frame) else {
            // Not mergeable: it must not overtake what is pending.
            self.flush(emit);
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(&[0; virtio_net::HEADER_LEN]);
            buf.extend_from_slice(frame);
            emit(to, &buf);
            self.spare.push(buf);
            return;
        };
        if let Some(i) = self.flows.iter().position(|p| same_flow(p.frame(), frame)) {
            if self.flows[i].accepts(to, &c, frame) {
                self.flows[i].merge(&c, frame);
                return;
            }
            self.emit_flow(i, emit);
        } else if self.flows.len() == MAX_FLOWS {
            self.emit_flow(0, emit);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(&[0; virtio_net::HEADER_LEN]);
        buf.extend_from_slice(&frame[..c.len]);
        self.flows.push(Pending {
            to,
            headers: c.headers,
            mss: c.payload,
            segments: 1,
            next_seq: c.seq.wrapping_add(c.payload as u32),
            closed: c.psh,
            buf,
        });
    }

    /// Emits every frame being built.
    pub fn flush(&mut self, emit: &mut impl FnMut(D, &[u8])) {
        while !self.flows.is_empty() {
            self.emit_flow(0, emit);
        }
    }

    fn emit_flow(&mut self, i: usize, emit: &mut impl FnMut(D, &[u8])) {
        let mut p = self.flows.remove(i);
        p.seal();
        emit(p.to, &p.buf);
        self.spare.push(p.buf);
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;
    use crate::overlay::gso;

    fn segment(seq: u32, payload: &[u8], psh: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, seq, 1000)
            .ack(99);
        if psh {
            b = b.psh();
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).expect("write");
        out
    }

    fn run(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut gro = Gro::default();
        let mut out = Vec::new();
        for f in frames {
            gro.push(3, f, &mut |port, bytes| {
                assert_eq!(port, 3);
                out.push(bytes.to_vec());
            });
        }
        gro.flush(&mut |_, bytes| out.push(bytes.to_vec()));
        out
    }

    #[test]
    fn contiguous_segments_become_one_gso_frame_that_resegments_to_the_originals() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let frames: Vec<Vec<u8>> = data
            .chunks(1400)
            .enumerate()
            .map(|(i, c)| segment(7 + (i * 1400) as u32, c, i == 3))
            .collect();
        let out = run(&frames);
        assert_eq!(out.len(), 1);
        let repr =
            virtio_net::Repr::parse(&virtio_net::Packet::new_checked(&out[0][..]).expect("hdr"))
                .expect("hdr");
        assert_eq!(repr.gso_type, virtio_net::GSO_TCPV4);
        assert_eq!(repr.gso_size, 1400);
        // Cutting it again, as the kernel would, gives the original stream.
        let mut again = Vec::new();
        let segs = gso::segment(&repr, &out[0][virtio_net::HEADER_LEN..], &[], &mut again)
            .expect("segment");
        assert_eq!(segs.count, 4);
        let mut stream = Vec::new();
        for piece in again.chunks(segs.stride) {
            let p = SlicedPacket::from_ethernet(piece).expect("frame");
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("tcp")
            };
            stream.extend_from_slice(tcp.payload());
        }
        assert_eq!(stream, data);
    }

    #[test]
    fn gaps_flags_bad_checksums_and_other_traffic_are_not_merged() {
        let a = segment(0, &[1; 100], false);
        let gap = segment(500, &[2; 100], false);
        let mut bad = segment(100, &[3; 100], false);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let mut syn = segment(100, &[4; 100], false);
        syn[TCP_AT + 13] |= 0x02;
        let out = run(&[a.clone(), gap, bad, syn]);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|f| f[1] == virtio_net::GSO_NONE));
        assert_eq!(
            out[0][0],
            virtio_net::F_DATA_VALID,
            "verified single segment"
        );
        assert_eq!(
            out[2][0], 0,
            "a bad checksum is left for the stack to refuse"
        );
        assert_eq!(&out[0][virtio_net::HEADER_LEN..], &a[..]);
    }

    #[test]
    fn a_short_segment_ends_the_merge() {
        let out = run(&[
            segment(0, &[1; 100], false),
            segment(100, &[1; 50], false),
            segment(150, &[1; 100], false),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][1], virtio_net::GSO_TCPV4);
    }

    #[test]
    fn interleaved_flows_are_merged_each_on_its_own() {
        let other = |seq: u32, payload: &[u8]| {
            let mut f = segment(seq, payload, false);
            f[TCP_AT..TCP_AT + 2].copy_from_slice(&40001u16.to_be_bytes());
            // Fix the checksum for the changed port.
            let sum = u16::from_be_bytes([f[TCP_AT + 16], f[TCP_AT + 17]]);
            let fixed = checksum::update_u16(sum, 40000, 40001);
            f[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&fixed.to_be_bytes());
            f
        };
        let frames = vec![
            segment(0, &[1; 100], false),
            other(0, &[2; 100]),
            segment(100, &[1; 100], false),
            other(100, &[2; 100]),
        ];
        let out = run(&frames);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|f| f[1] == virtio_net::GSO_TCPV4));
    }
}
