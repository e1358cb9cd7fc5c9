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

use super::Shared;
use crate::overlay::fdb::PortId;
use crate::overlay::gso;
use crate::overlay::vtep::{self, DropReason, FromPort};
use crate::sys;
use crate::wire::virtio_net;

/// Everything that defines a task interface; a change to any of it means a
/// new interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub netns: String,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// A live task interface.
pub struct Port {
    pub dev: SyncDevice,
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
        };
        let path: PathBuf = sys::netns::path_of(&spec.netns);
        let dev = sys::tap::create_in(&path, cfg)?;
        Ok(Port {
            dev,
            label: format!("{}/{ifname}", spec.netns),
        })
    }

    /// Writes one frame (behind a virtio-net header) to the task.
    pub fn send(&self, with_header: &[u8], shared: &Shared) {
        match self.dev.send(with_header) {
            Ok(_) => {
                shared.counters.task_tx_frames.inc();
            }
            Err(_) => shared.counters.drop(DropReason::IoError),
        }
    }
}

/// How long a worker waits for input before it looks at its stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Reads frames from port `id` until `stop` is set or the device fails.
pub fn run(id: PortId, port: Arc<Port>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; virtio_net::HEADER_LEN + 65_536];
    let mut scratch = Vec::with_capacity(128 * 1024);
    while !stop.load(Ordering::Relaxed) {
        match port.dev.recv(&mut buf) {
            Ok(n) => on_frame(id, &port, &mut buf[..n], &shared, &mut scratch),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = sys::poll::wait_readable(&port.dev, POLL_INTERVAL) {
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

fn on_frame(id: PortId, me: &Port, buf: &mut [u8], shared: &Shared, scratch: &mut Vec<u8>) {
    shared.counters.task_rx_frames.inc();
    let Some(hdr) = virtio_net::Packet::new_checked(&buf[..])
        .ok()
        .and_then(|p| virtio_net::Repr::parse(&p).ok())
    else {
        shared.counters.drop(DropReason::MalformedFrame);
        return;
    };
    let snapshot = shared.snapshot.load();
    let Some(segment) = snapshot.segment_of(id) else {
        return;
    };
    let offloaded = gso::is_gso(&hdr);
    let frame = &mut buf[virtio_net::HEADER_LEN..];
    match vtep::from_port(segment, frame, offloaded, scratch) {
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
            // Same node: the frame and its offload header pass unchanged.
            Some(peer) => peer.send(buf, shared),
            None => shared.counters.drop(DropReason::UnknownDestination),
        },
        FromPort::Remote(node) => {
            let flow = vtep::flow_hash(frame);
            let mut prefix = [0u8; crate::wire::vxlan::HEADER_LEN];
            vtep::encap_header(segment.vni, &mut prefix);
            let stride = if offloaded {
                match gso::segment(&hdr, frame, &prefix, scratch) {
                    Ok(segs) => segs.stride,
                    Err(_) => {
                        shared.counters.drop(DropReason::BadOffload);
                        return;
                    }
                }
            } else {
                if gso::complete_checksum(&hdr, frame).is_err() {
                    shared.counters.drop(DropReason::BadOffload);
                    return;
                }
                scratch.clear();
                scratch.extend_from_slice(&prefix);
                scratch.extend_from_slice(frame);
                scratch.len()
            };
            shared.transmit(node, flow, scratch, stride);
        }
        FromPort::Ignore => {}
        FromPort::Drop(reason) => shared.counters.drop(reason),
    }
}
