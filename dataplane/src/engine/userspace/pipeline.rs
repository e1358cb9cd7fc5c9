//! The carrying-out half of the userspace packet path. A [`Verdict`] of
//! `lb::path` comes in with its frame; the translation is applied and
//! counted ([`translate`]), then the frame goes to a task, into VXLAN
//! datagrams for a node ([`encapsulate`]: gathered into a [`Batch`] for one
//! GSO send, or a TSO super-frame cut by GSO), or to the kernel through the
//! mesh device. The workers in `port`, `mesh` and the underlay loop only
//! read and write devices around this.

use std::net::Ipv4Addr;

use super::{Shared, Snapshot};
use crate::engine::stats::Volume;
use crate::lb::nat;
use crate::lb::path::Translation;
use crate::overlay::fdb::Segment;
use crate::overlay::gso;
use crate::overlay::vtep::{self, DropReason};
use crate::wire::flow::Flow;
use crate::wire::{virtio_net, vxlan};

/// Applies `t` to `frame` (behind the offload header `hdr`), counts the
/// frame for its service and backend, and returns the frame's new view.
pub(super) fn translate(
    snapshot: &Snapshot,
    t: &Translation,
    frame: &mut [u8],
    flow: &Flow,
    hdr: &virtio_net::Repr,
) -> Flow {
    if let (Some(hit), Some(key)) = (&t.hit, &flow.key)
        && let Some(cell) = snapshot
            .services
            .vip(hit.segment, hit.vip)
            .and_then(|v| v.cell(key.proto, hit.port, hit.backend))
    {
        if hit.opened {
            cell.connection();
        }
        cell.traffic(hit.dir, Volume::of_offloaded(hdr, frame));
    }
    let partial = hdr.flags & virtio_net::F_NEEDS_CSUM != 0;
    let flow = t.nat.apply(frame, flow, partial);
    if let Some(mac) = t.dst_mac {
        nat::set_dst_mac(frame, mac.0);
    }
    if let Some(mac) = t.src_mac {
        nat::set_src_mac(frame, mac.0);
    }
    flow
}

/// Sends `frame` (behind the offload header `hdr`) to `node` in VXLAN
/// datagrams of `segment` (inside the tunnel if it is encrypted), their
/// outer source port picked by `flow_hash`: a plain frame joins `batch`, a
/// TSO/USO super-frame is cut by GSO now.
#[allow(clippy::too_many_arguments)]
pub(super) fn encapsulate(
    shared: &Shared,
    batch: &mut Batch,
    scratch: &mut Vec<u8>,
    node: Ipv4Addr,
    segment: &Segment,
    flow_hash: u32,
    hdr: &virtio_net::Repr,
    frame: &mut [u8],
) {
    let mut prefix = [0u8; vxlan::HEADER_LEN];
    vtep::encap_header(segment.vni, &mut prefix);
    let sealed = segment.encrypted;
    if !gso::is_gso(hdr) {
        if gso::complete_checksum(hdr, frame).is_err() {
            shared.counters.drop(DropReason::BadOffload);
            return;
        }
        batch.add(shared, (node, sealed), flow_hash, &prefix, frame);
        return;
    }
    batch.flush(shared);
    match gso::segment(hdr, frame, &prefix, scratch) {
        Ok(segs) => shared.transmit(node, flow_hash, scratch, segs.stride, sealed),
        Err(_) => shared.counters.drop(DropReason::BadOffload),
    }
}

/// Frames for one node gathered while a device keeps delivering, to leave
/// in one GSO send: VXLAN datagrams of one size, the last possibly shorter.
#[derive(Default)]
pub(super) struct Batch {
    /// The node, and whether its datagrams go inside the tunnel.
    node: Option<(Ipv4Addr, bool)>,
    flow: u32,
    stride: usize,
    /// A shorter datagram was added: it must stay last.
    closed: bool,
    buf: Vec<u8>,
}

/// Datagrams one send may carry (the kernel's UDP_MAX_SEGMENTS).
const BATCH_SEGMENTS: usize = 64;
const BATCH_BYTES: usize = 60_000;

impl Batch {
    /// Adds `prefix` + `frame` for `node`, sending what was gathered first
    /// if the datagram cannot join it.
    fn add(
        &mut self,
        shared: &Shared,
        node: (Ipv4Addr, bool),
        flow: u32,
        prefix: &[u8],
        frame: &[u8],
    ) {
        let len = prefix.len() + frame.len();
        let joins = self.node == Some(node)
            && shared.same_socket(self.flow, flow)
            && !self.closed
            && len <= self.stride
            && self.buf.len() / self.stride < BATCH_SEGMENTS
            && self.buf.len() + len <= BATCH_BYTES;
        if !joins {
            self.flush(shared);
            self.node = Some(node);
            self.flow = flow;
            self.stride = len;
        }
        self.closed = len < self.stride;
        self.buf.extend_from_slice(prefix);
        self.buf.extend_from_slice(frame);
    }

    /// Sends what was gathered.
    pub(super) fn flush(&mut self, shared: &Shared) {
        if let Some((node, sealed)) = self.node.take() {
            shared.transmit(node, self.flow, &self.buf, self.stride, sealed);
        }
        self.buf.clear();
        self.closed = false;
    }
}
