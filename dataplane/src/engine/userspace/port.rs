//! Task interfaces of the userspace engine: what one looks like (its spec),
//! and the worker that reads the frames a task sends, has `lb::path` decide
//! and `pipeline` carry the verdict out.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tun_rs::SyncDevice;

use super::Shared;
use super::pipeline::{self, Batch};
use crate::engine::ports::PortSpec;
use crate::lb::path::{self, Translation, Verdict};
use crate::overlay::fdb::{Location, PortId};
use crate::overlay::gso;
use crate::overlay::vtep::DropReason;
use crate::sys;
use crate::wire::flow;
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
    /// queue of its flow (by `flow_hash`, [`crate::wire::flow::Flow::hash`]):
    /// the kernel steers the flow's replies to the queue it was last written
    /// on, so each flow stays with one reader.
    pub fn send(&self, with_header: &[u8], flow_hash: u32, shared: &Shared) {
        let queue = &self.queues[flow_hash as usize % self.queues.len()];
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
    let Some((seg, _)) = snapshot.segment_of(id) else {
        return;
    };
    let frame = &mut buf[virtio_net::HEADER_LEN..];
    let parsed = flow::parse(frame);
    let cx = shared.context(&snapshot.fdb);
    let verdict = path::from_port(&cx, seg, frame, parsed, gso::is_gso(&hdr), scratch);
    let flow = flow::ipv4(parsed);
    let translated = |t: &Option<Translation>, frame: &mut [u8]| match (t, flow) {
        (Some(t), Some(flow)) => Some(pipeline::translate(&snapshot, t, frame, &flow, &hdr)),
        _ => flow,
    };
    if let Verdict::Deliver {
        to: Location::Remote(node),
        segment,
        translation,
    } = verdict
    {
        let flow = translated(&translation, frame);
        let segment = snapshot.fdb.segment(segment);
        let hash = flow.map_or(0, |f| f.hash());
        pipeline::encapsulate(shared, batch, scratch, node, segment, hash, &hdr, frame);
        return;
    }
    // Everything else goes out now, after what was gathered, in order.
    batch.flush(shared);
    match verdict {
        Verdict::Deliver {
            to: Location::Local(peer),
            translation,
            ..
        } => {
            let flow = translated(&translation, frame);
            match snapshot.port(peer) {
                // Same node: the offload header passes unchanged.
                Some(peer) => peer.send(buf, flow.map_or(0, |f| f.hash()), shared),
                None => shared.counters.drop(DropReason::UnknownDestination),
            }
        }
        Verdict::MeshExit(t) => {
            let flow = translated(&Some(t), frame);
            match &shared.mesh {
                Some(mesh) => mesh.write_tun(buf, flow.map_or(0, |f| f.hash()), shared),
                None => shared.counters.drop(DropReason::NoRoute),
            }
        }
        Verdict::Reply => {
            if scratch.get(12..14) == Some(&[0x08, 0x06]) {
                shared.counters.arp_replies.inc();
            } else {
                shared.counters.icmp_errors.inc();
            }
            scratch.splice(0..0, [0u8; virtio_net::HEADER_LEN]);
            me.send(scratch, 0, shared);
        }
        Verdict::Deliver { .. } | Verdict::Ignore => {}
        Verdict::Drop(reason) => shared.counters.drop(reason),
    }
}
