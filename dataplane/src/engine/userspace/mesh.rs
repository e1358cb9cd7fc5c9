//! The routing mesh's device in the userspace engine: a port published in
//! ingress mode answers on every node and reaches a backend on any node,
//! and the backend sees the client's own address. The conversation (which
//! backend, which entry node, which translation) is `lb::mesh`, decided by
//! `lb::path`; this file moves packets between the kernel and the pipeline.
//!
//! - Entry node: the kernel DNATs `<node>:<published>` to the mesh address
//!   and routes the packet into the mesh TUN ([`sys::mesh`]); [`run`] reads
//!   it, gives it an Ethernet header, and has it decided and carried out.
//! - The backend's reply comes back to the entry node (see `lb::mesh`) and
//!   leaves through [`Mesh::write_tun`] with `<mesh address>:<published>` as
//!   its source; the kernel's conntrack turns that into
//!   `<node>:<published>` and routes it to the client.

use std::io::{self, IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicBool, Ordering};

use tun_rs::SyncDevice;

use super::pipeline::{self, Batch};
use super::{Shared, port};
use crate::lb::nat;
use crate::lb::path::{self, Verdict};
use crate::overlay::fdb::Location;
use crate::overlay::vtep::DropReason;
use crate::sys;
use crate::wire::flow::{self, ETH_LEN as ETH};
use crate::wire::virtio_net;

/// The mesh's device.
pub struct Mesh {
    /// One descriptor per queue of the multi-queue TUN.
    queues: Vec<SyncDevice>,
}

impl Mesh {
    /// Creates the mesh TUN in the calling thread's namespace.
    pub fn new() -> io::Result<Mesh> {
        Ok(Mesh {
            queues: sys::mesh::create_tun(QUEUES)?,
        })
    }

    /// Hands a translated reply, `[virtio-net header][Ethernet frame]`, to
    /// the kernel through the TUN, which takes IP packets: the header's
    /// offsets move back by the Ethernet header's length. `flow_hash` picks
    /// the queue, so the kernel steers the flow's next packets there.
    pub fn write_tun(&self, with_header: &[u8], flow_hash: u32, shared: &Shared) {
        let Some(mut hdr) = virtio_net::Packet::new_checked(with_header)
            .ok()
            .and_then(|p| virtio_net::Repr::parse(&p).ok())
        else {
            shared.counters.drop(DropReason::MalformedFrame);
            return;
        };
        hdr.csum_start = hdr.csum_start.saturating_sub(ETH as u16);
        hdr.hdr_len = hdr.hdr_len.saturating_sub(ETH as u16);
        let mut head = [0u8; virtio_net::HEADER_LEN];
        hdr.emit(&mut virtio_net::Packet::new_unchecked(&mut head[..]));
        let Some(packet) = with_header.get(virtio_net::HEADER_LEN + ETH..) else {
            return;
        };
        let queue = &self.queues[flow_hash as usize % self.queues.len()];
        match queue.send_vectored(&[IoSlice::new(&head), IoSlice::new(packet)]) {
            Ok(_) => {
                shared.counters.task_tx_frames.inc();
            }
            Err(_) => shared.counters.drop(DropReason::IoError),
        }
    }
}

/// Bytes kept free in front of a packet read from the TUN: room for the
/// VXLAN header of a single datagram.
const HEAD: usize = 16;
/// Where the virtio-net header, the Ethernet header and the IP packet sit.
const V: usize = HEAD;
const E: usize = V + virtio_net::HEADER_LEN;
const I: usize = E + ETH;

/// Queues of the mesh TUN, each read by a thread of its own.
pub const QUEUES: usize = 2;

/// Reads packets for published ports from queue `queue` of the mesh TUN
/// until `stop`.
pub fn run(shared: &Shared, queue: usize, stop: &AtomicBool) {
    let Some(mesh) = shared.mesh.as_ref() else {
        return;
    };
    let tun = &mesh.queues[queue];
    let mut buf = vec![0u8; I + 65_536];
    let mut scratch = Vec::with_capacity(128 * 1024);
    let mut batch = Batch::default();
    while !stop.load(Ordering::Relaxed) {
        // The TUN hands over `[virtio-net header][IP packet]`; an Ethernet
        // header goes in between, as the overlay carries frames.
        let n = {
            let (front, back) = buf.split_at_mut(E);
            tun.recv_vectored(&mut [
                IoSliceMut::new(&mut front[V..]),
                IoSliceMut::new(&mut back[ETH..]),
            ])
        };
        match n {
            Ok(n) if n > virtio_net::HEADER_LEN => {
                let end = I + n - virtio_net::HEADER_LEN;
                enter(shared, &mut buf[..end], &mut scratch, &mut batch);
            }
            Ok(_) => shared.counters.drop(DropReason::MalformedFrame),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                batch.flush(shared);
                if let Err(e) = sys::poll::wait_readable(tun, port::POLL_INTERVAL) {
                    tracing::error!("mesh device failed: {e}");
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!("reading the mesh device failed: {e}");
                return;
            }
        }
    }
}

/// One client packet (possibly a TSO super-packet) for a published port,
/// laid out in `buf` as `[room][virtio-net header][Ethernet (empty)][IP]`.
fn enter(shared: &Shared, buf: &mut [u8], scratch: &mut Vec<u8>, batch: &mut Batch) {
    let Some(mut hdr) = virtio_net::Packet::new_checked(&buf[V..])
        .ok()
        .and_then(|p| virtio_net::Repr::parse(&p).ok())
    else {
        shared.counters.drop(DropReason::MalformedFrame);
        return;
    };
    // Offsets counted from the IP header now count from the Ethernet one.
    if hdr.csum_start != 0 || hdr.flags & virtio_net::F_NEEDS_CSUM != 0 {
        hdr.csum_start += ETH as u16;
    }
    if hdr.hdr_len != 0 {
        hdr.hdr_len += ETH as u16;
    }
    hdr.emit(&mut virtio_net::Packet::new_unchecked(&mut buf[V..E]));

    let snapshot = shared.snapshot.load();
    let frame = &mut buf[E..];
    nat::set_ethernet(frame, [0; 6], [0; 6]);
    let Some(flow) = flow::parse_ipv4(frame) else {
        shared.counters.drop(DropReason::MalformedFrame);
        return;
    };
    let verdict = path::from_mesh(&shared.context(&snapshot.fdb), &flow);
    let Verdict::Deliver {
        to,
        segment,
        translation,
    } = verdict
    else {
        batch.flush(shared);
        if let Verdict::Drop(reason) = verdict {
            shared.counters.drop(reason);
        }
        return;
    };
    let flow = match &translation {
        Some(t) => pipeline::translate(&snapshot, t, frame, &flow, &hdr),
        None => flow,
    };
    match to {
        Location::Local(id) => {
            batch.flush(shared);
            match snapshot.port(id) {
                // The offload header goes along: the task's stack takes TSO.
                Some(port) => port.send(&buf[V..], flow.hash(), shared),
                None => shared.counters.drop(DropReason::UnknownDestination),
            }
        }
        Location::Remote(node) => {
            let segment = snapshot.fdb.segment(segment);
            pipeline::encapsulate(
                shared,
                batch,
                scratch,
                node,
                segment,
                flow.hash(),
                &hdr,
                frame,
            );
        }
    }
}
