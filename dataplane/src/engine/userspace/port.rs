//! Task interfaces of the userspace engine: what one looks like (its spec),
//! and the worker that reads the frames a task sends and carries out the
//! VTEP's verdicts.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tun_rs::SyncDevice;

use super::{Shared, service};
use crate::engine::ports::PortSpec;
use crate::overlay::fdb::PortId;
use crate::overlay::gso;
use crate::overlay::vtep::{self, DropReason, FromPort};
use crate::sys;
use crate::wire::virtio_net;

/// Queues per task interface, each read by a worker thread of its own.
pub const QUEUES: usize = 2;

/// A live task interface.
pub struct Port {
    /// One descriptor per queue of the multi-queue TAP.
    pub queues: Vec<SyncDevice>,
    /// `netns/ifname`, for logs and reports.
    pub label: String,
}

impl Port {
    /// Creates the interface `ifname` for `spec` inside its namespace.
    pub fn create(spec: &PortSpec, ifname: &str) -> io::Result<Port> {
        let cfg = sys::tap::TapConfig {
            name: ifname.to_string(),
            mac: spec.mac,
            mtu: spec.mtu,
            ip: spec.ip,
            prefix_len: spec.prefix_len,
            default_gateway: Some(spec.gateway),
            queues: QUEUES,
        };
        let path: PathBuf = sys::netns::path_of(&spec.netns);
        let queues = sys::tap::create_in(&path, cfg)?;
        Ok(Port {
            queues,
            label: format!("{}/{ifname}", spec.netns),
        })
    }

    /// Writes one frame (behind a virtio-net header) to the task, on the
    /// queue of its flow: the kernel steers the flow's replies to the queue
    /// it was last written on, so each flow stays with one reader.
    pub fn send(&self, with_header: &[u8], shared: &Shared) {
        let frame = with_header
            .get(virtio_net::HEADER_LEN..)
            .unwrap_or_default();
        let queue = &self.queues[vtep::flow_hash(frame) as usize % self.queues.len()];
        match queue.send(with_header) {
            Ok(_) => {
                shared.counters.task_tx_frames.inc();
            }
            Err(_) => shared.counters.drop(DropReason::IoError),
        }
    }
}

/// How long a worker waits for input before it looks at its stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Reads frames from queue `queue` of port `id` until `stop` is set or the
/// device fails.
pub fn run(id: PortId, queue: usize, port: Arc<Port>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let dev = &port.queues[queue];
    let mut buf = vec![0u8; virtio_net::HEADER_LEN + 65_536];
    let mut scratch = Vec::with_capacity(128 * 1024);
    let mut batch = Batch::default();
    while !stop.load(Ordering::Relaxed) {
        match dev.recv(&mut buf) {
            Ok(n) => on_frame(id, &port, &mut buf[..n], &shared, &mut scratch, &mut batch),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The task has nothing more queued: send what was gathered.
                batch.flush(&shared);
                if let Err(e) = sys::poll::wait_readable(dev, POLL_INTERVAL) {
                    tracing::warn!(port = %port.label, "task interface failed: {e}");
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(port = %port.label, "reading the task interface failed: {e}");
                return;
            }
        }
    }
}

/// Frames for one node gathered while the task keeps sending, to leave in
/// one GSO send: VXLAN datagrams of one size, the last possibly shorter.
#[derive(Default)]
pub(super) struct Batch {
    node: Option<Ipv4Addr>,
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
    pub(super) fn add(
        &mut self,
        shared: &Shared,
        node: Ipv4Addr,
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

    pub(super) fn flush(&mut self, shared: &Shared) {
        if let Some(node) = self.node.take() {
            shared.transmit(node, self.flow, &self.buf, self.stride);
        }
        self.buf.clear();
        self.closed = false;
    }
}

fn on_frame(
    id: PortId,
    me: &Port,
    buf: &mut [u8],
    shared: &Shared,
    scratch: &mut Vec<u8>,
    batch: &mut Batch,
) {
    shared.counters.task_rx_frames.inc();
    let Some(hdr) = virtio_net::Packet::new_checked(&buf[..])
        .ok()
        .and_then(|p| virtio_net::Repr::parse(&p).ok())
    else {
        shared.counters.drop(DropReason::MalformedFrame);
        return;
    };
    let snapshot = shared.snapshot.load();
    let Some((seg, segment)) = snapshot.segment_of(id) else {
        return;
    };
    let offloaded = gso::is_gso(&hdr);
    let frame = &mut buf[virtio_net::HEADER_LEN..];
    let mut verdict = vtep::from_port(segment, frame, offloaded, scratch);
    if let FromPort::Service(vip) = verdict {
        verdict = service::balance(shared, &snapshot, seg, vip, frame, &hdr);
    }
    if verdict == FromPort::Drop(DropReason::NoRoute)
        && let Some(mesh) = shared.mesh.as_ref()
        && let Some(entry) = mesh.route_reply(frame)
    {
        // A reply to a routing-mesh client: back to the node it came by.
        if entry != shared.node {
            verdict = FromPort::Remote(entry);
        } else {
            batch.flush(shared);
            if mesh.translate_reply(frame, &hdr, &snapshot, shared) {
                mesh.write_tun(buf, shared);
            }
            return;
        }
    }
    if let FromPort::Remote(node) = verdict {
        let flow = vtep::flow_hash(frame);
        let mut prefix = [0u8; crate::wire::vxlan::HEADER_LEN];
        vtep::encap_header(segment.vni, &mut prefix);
        if !offloaded {
            if gso::complete_checksum(&hdr, frame).is_err() {
                shared.counters.drop(DropReason::BadOffload);
                return;
            }
            batch.add(shared, node, flow, &prefix, frame);
            return;
        }
        batch.flush(shared);
        match gso::segment(&hdr, frame, &prefix, scratch) {
            Ok(segs) => shared.transmit(node, flow, scratch, segs.stride),
            Err(_) => shared.counters.drop(DropReason::BadOffload),
        }
        return;
    }
    // Everything else goes out now, after what was gathered, in order.
    batch.flush(shared);
    match verdict {
        FromPort::Reply => {
            if scratch.get(12..14) == Some(&[0x08, 0x06]) {
                shared.counters.arp_replies.inc();
            } else {
                shared.counters.icmp_errors.inc();
            }
            scratch.splice(0..0, [0u8; virtio_net::HEADER_LEN]);
            me.send(scratch, shared);
        }
        FromPort::Local(peer) => match snapshot.port(peer) {
            // Same node: the frame and its offload header pass unchanged,
            // but a backend's reply gets its VIP back first.
            Some(peer) => {
                service::reverse(
                    shared,
                    &snapshot,
                    seg,
                    &mut buf[virtio_net::HEADER_LEN..],
                    &hdr,
                );
                peer.send(buf, shared);
            }
            None => shared.counters.drop(DropReason::UnknownDestination),
        },
        FromPort::Remote(_) | FromPort::Service(_) | FromPort::Ignore => {}
        FromPort::Drop(reason) => shared.counters.drop(reason),
    }
}
