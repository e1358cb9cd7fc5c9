//! The routing mesh in the userspace engine: a port published in ingress
//! mode answers on every node and reaches a backend on any node, and the
//! backend sees the client's own address.
//!
//! - Entry node: the kernel DNATs `<node>:<published>` to the mesh address
//!   and routes the packet into the mesh TUN ([`sys::mesh`]). Here it gets a
//!   backend (Maglev + conntrack, as for VIPs), its destination becomes
//!   `<backend>:<target>` (the source stays the client), and it crosses the
//!   overlay like any frame.
//! - Backend node: a frame from outside the overlay's subnet records which
//!   node it entered by. The backend's reply (to the client, through the
//!   gateway) goes back over VXLAN to that node.
//! - Entry node again: the reply gets `<mesh address>:<published>` as its
//!   source and goes into the TUN; the kernel's conntrack turns that into
//!   `<node>:<published>` and routes it to the client.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tun_rs::SyncDevice;

use super::{Shared, port};
use crate::lb::conntrack::{Conntrack, ConntrackError, Direction, FlowKey};
use crate::lb::{self, Selection};
use crate::overlay::nat::{self, Side};
use crate::overlay::vtep::{self, DropReason, FromPort};
use crate::sys::{self, mesh::MESH_ADDR};
use crate::wire::{virtio_net, vxlan};

const ETH: usize = 14;
const FLOWS: usize = 1 << 16;
const EXPIRE_BUDGET: usize = 64;

/// The mesh's device and flow state.
pub struct Mesh {
    tun: SyncDevice,
    epoch: Instant,
    tables: Mutex<Tables>,
}

struct Tables {
    /// Entry node: client flow (client -> mesh address:published) -> backend.
    forward: Conntrack,
    /// Entry node: translated flow (client -> backend:target) -> published port.
    published_of: HashMap<FlowKey, u16>,
    /// Backend node: translated flow -> the node it entered by.
    returns: Conntrack,
}

impl Mesh {
    /// Creates the mesh TUN in the calling thread's namespace.
    pub fn new() -> io::Result<Mesh> {
        let table = || Conntrack::new(FLOWS).map_err(|e: ConntrackError| io::Error::other(e));
        Ok(Mesh {
            tun: sys::mesh::create_tun()?,
            epoch: Instant::now(),
            tables: Mutex::new(Tables {
                forward: table()?,
                published_of: HashMap::new(),
                returns: table()?,
            }),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Records, on a backend's node, that the flow of `frame` (from a client
    /// outside the overlay) entered the cluster at `entry`.
    pub fn note_entry(&self, frame: &[u8], entry: Ipv4Addr) {
        let Some((key, flags)) = nat::flow_of(frame) else {
            return;
        };
        let now = self.now();
        if let Ok(mut t) = self.tables.lock() {
            // The same client port may come back through another node
            // (ports are reused): the latest entry node wins.
            let known = t
                .returns
                .observe(&key, Direction::Original, flags, now)
                .map(|e| e.backend);
            if known != Some(entry) {
                t.returns.insert(key, entry, flags, now);
            }
        }
    }

    /// Where a backend's reply to a client outside the overlay goes: the
    /// node the client's flow entered by.
    pub fn route_reply(&self, frame: &[u8]) -> Option<Ipv4Addr> {
        let (reply, flags) = nat::flow_of(frame)?;
        let key = reversed(&reply);
        let now = self.now();
        let mut t = self.tables.lock().ok()?;
        t.returns
            .observe(&key, Direction::Reply, flags, now)
            .map(|e| e.backend)
    }

    /// Gives a reply that reached its entry node the published address back
    /// and hands it to the kernel through the TUN.
    pub fn exit(&self, frame: &mut [u8], shared: &Shared) {
        let Some((reply, flags)) = nat::flow_of(frame) else {
            return;
        };
        let translated = reversed(&reply);
        let now = self.now();
        let published = {
            let Ok(mut t) = self.tables.lock() else {
                return;
            };
            let Some(&published) = t.published_of.get(&translated) else {
                shared.counters.drop(DropReason::UnknownDestination);
                return;
            };
            let client = FlowKey {
                proto: reply.proto,
                src: reply.dst,
                dst: SocketAddrV4::new(MESH_ADDR, published),
            };
            t.forward.observe(&client, Direction::Reply, flags, now);
            published
        };
        nat::rewrite(frame, Side::Src, MESH_ADDR, false);
        nat::rewrite_port(frame, Side::Src, published, false);
        if self.tun.send(&frame[ETH..]).is_err() {
            shared.counters.drop(DropReason::IoError);
        }
    }

    fn expire(&self) {
        let now = self.now();
        if let Ok(mut t) = self.tables.lock() {
            t.forward.expire(now, EXPIRE_BUDGET);
            t.returns.expire(now, EXPIRE_BUDGET);
            let Tables {
                forward,
                published_of,
                ..
            } = &mut *t;
            published_of.retain(|k, &mut published| {
                let client = FlowKey {
                    proto: k.proto,
                    src: k.src,
                    dst: SocketAddrV4::new(MESH_ADDR, published),
                };
                forward.contains(&client, now)
            });
        }
    }
}

/// The same flow seen from the other end.
fn reversed(key: &FlowKey) -> FlowKey {
    FlowKey {
        proto: key.proto,
        src: key.dst,
        dst: key.src,
    }
}

/// Reads packets for published ports from the mesh TUN until `stop`.
pub fn run(shared: &Shared, node: Ipv4Addr, stop: &AtomicBool) {
    let Some(mesh) = shared.mesh.as_ref() else {
        return;
    };
    let head = virtio_net::HEADER_LEN.max(vxlan::HEADER_LEN);
    let mut buf = vec![0u8; head + ETH + 65_536];
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_sweep.elapsed() >= port::POLL_INTERVAL {
            mesh.expire();
            last_sweep = Instant::now();
        }
        match mesh.tun.recv(&mut buf[head + ETH..]) {
            Ok(n) => enter(shared, mesh, node, &mut buf[..head + ETH + n], head),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = sys::poll::wait_readable(&mesh.tun, port::POLL_INTERVAL) {
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

/// One client packet for a published port, with `head` bytes of room
/// before its (still empty) Ethernet header.
fn enter(shared: &Shared, mesh: &Mesh, node: Ipv4Addr, buf: &mut [u8], head: usize) {
    let snapshot = shared.snapshot.load();
    let frame = &mut buf[head..];
    nat::set_ethernet(frame, [0; 6], [0; 6]);
    let Some((key, flags)) = nat::flow_of(frame) else {
        shared.counters.drop(DropReason::NoServicePort);
        return;
    };
    let Some(published) = snapshot.fdb.published(key.proto, key.dst.port()) else {
        shared.counters.drop(DropReason::NoServicePort);
        return;
    };
    let segment = snapshot.fdb.segment(published.segment);
    let Some(vip) = segment.vip(published.vip) else {
        shared.counters.drop(DropReason::NoServicePort);
        return;
    };
    let now = mesh.now();
    let backend = {
        let Ok(mut t) = mesh.tables.lock() else {
            return;
        };
        let set = published.local.as_ref().unwrap_or(&vip.backends);
        let Some(selection) = lb::select(&mut t.forward, set, &key, flags, now) else {
            shared.counters.drop(DropReason::NoBackend);
            return;
        };
        let backend = selection.backend();
        let translated = FlowKey {
            proto: key.proto,
            src: key.src,
            dst: SocketAddrV4::new(backend, published.target),
        };
        if let Selection::Repicked { previous, .. } = selection {
            let old = FlowKey {
                dst: SocketAddrV4::new(previous, published.target),
                ..translated
            };
            t.published_of.remove(&old);
        }
        t.published_of.insert(translated, key.dst.port());
        backend
    };
    let Some(station) = segment.station(backend) else {
        shared.counters.drop(DropReason::UnknownDestination);
        return;
    };
    nat::rewrite(frame, Side::Dst, backend, false);
    nat::rewrite_port(frame, Side::Dst, published.target, false);
    nat::set_ethernet(frame, segment.gateway_mac.0, station.mac.0);
    match vtep::to_station(segment, backend) {
        FromPort::Local(id) => {
            mesh.note_entry(frame, node);
            let with_header = &mut buf[head - virtio_net::HEADER_LEN..];
            with_header[..virtio_net::HEADER_LEN].fill(0);
            match snapshot.port(id) {
                Some(port) => port.send(with_header, shared),
                None => shared.counters.drop(DropReason::UnknownDestination),
            }
        }
        FromPort::Remote(to) => {
            let datagram = &mut buf[head - vxlan::HEADER_LEN..];
            vtep::encap_header(segment.vni, datagram);
            let len = datagram.len();
            shared.transmit(
                to,
                vtep::flow_hash(&datagram[vxlan::HEADER_LEN..]),
                datagram,
                len,
            );
        }
        _ => shared.counters.drop(DropReason::UnknownDestination),
    }
}
