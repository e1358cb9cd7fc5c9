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
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tun_rs::SyncDevice;

use super::{Shared, Snapshot, port};
use crate::engine::stats::Volume;
use crate::lb::conntrack::{Conntrack, ConntrackError, Direction, FlowKey};
use crate::lb::{self, Selection};
use crate::overlay::gso;
use crate::overlay::nat::{self, Side};
use crate::overlay::vtep::{self, DropReason, FromPort};
use crate::sys::{self, mesh::MESH_ADDR};
use crate::tables::Protocol;
use crate::wire::{virtio_net, vxlan};

const ETH: usize = 14;
const FLOWS: usize = 1 << 16;
const EXPIRE_BUDGET: usize = 64;

/// The mesh's device and flow state.
pub struct Mesh {
    /// One descriptor per queue of the multi-queue TUN.
    queues: Vec<SyncDevice>,
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
            queues: sys::mesh::create_tun(QUEUES)?,
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
    /// as its source, and counts it for its service and backend; false when
    /// no mesh flow knows it. `hdr` is the frame's offload header
    /// ([`virtio_net::Repr::NONE`] for a frame off the wire).
    pub fn translate_reply(
        &self,
        frame: &mut [u8],
        hdr: &virtio_net::Repr,
        snapshot: &Snapshot,
        shared: &Shared,
    ) -> bool {
        let Some((reply, flags)) = nat::flow_of(frame) else {
            return false;
        };
        let translated = reversed(&reply);
        let now = self.now();
        let published = {
            let Ok(mut t) = self.tables.lock() else {
                return false;
            };
            let Some(&published) = t.published_of.get(&translated) else {
                shared.counters.drop(DropReason::UnknownDestination);
                return false;
            };
            let client = FlowKey {
                proto: reply.proto,
                src: reply.dst,
                dst: SocketAddrV4::new(MESH_ADDR, published),
            };
            t.forward.observe(&client, Direction::Reply, flags, now);
            published
        };
        if let Some(cell) = snapshot
            .fdb
            .published(reply.proto, published)
            .and_then(|p| snapshot.services.vip(p.segment, p.vip))
            .and_then(|v| v.cell(reply.proto, reply.src.port(), *reply.src.ip()))
        {
            cell.traffic(Direction::Reply, Volume::of_offloaded(hdr, frame));
        }
        let partial = hdr.flags & virtio_net::F_NEEDS_CSUM != 0;
        nat::rewrite(frame, reply.proto, Side::Src, MESH_ADDR, partial);
        nat::rewrite_port(frame, reply.proto, Side::Src, published, partial);
        true
    }

    /// Hands a translated reply, `[virtio-net header][Ethernet frame]`, to
    /// the kernel through the TUN, which takes IP packets: the header's
    /// offsets move back by the Ethernet header's length.
    pub fn write_tun(&self, with_header: &[u8], shared: &Shared) {
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
        // The queue of the flow: the kernel steers its next packets there.
        let queue = &self.queues
            [vtep::flow_hash(&with_header[virtio_net::HEADER_LEN..]) as usize % self.queues.len()];
        match queue.send_vectored(&[IoSlice::new(&head), IoSlice::new(packet)]) {
            Ok(_) => {
                shared.counters.task_tx_frames.inc();
            }
            Err(_) => shared.counters.drop(DropReason::IoError),
        }
    }

    /// For a scrape: every live client flow on this entry node (protocol,
    /// published port, backend), and the entries of the entry and return
    /// tables. Copied out, so the lock is held only for the copy.
    pub fn tracked(&self) -> (Vec<(Protocol, u16, Ipv4Addr)>, [usize; 2]) {
        let now = self.now();
        let Ok(t) = self.tables.lock() else {
            return (Vec::new(), [0; 2]);
        };
        let flows = t
            .forward
            .iter(now)
            .map(|(k, e)| (k.proto, k.dst.port(), e.backend))
            .collect();
        (flows, [t.forward.len(), t.returns.len()])
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
pub fn run(shared: &Shared, node: Ipv4Addr, queue: usize, stop: &AtomicBool) {
    let Some(mesh) = shared.mesh.as_ref() else {
        return;
    };
    let tun = &mesh.queues[queue];
    let mut buf = vec![0u8; I + 65_536];
    let mut scratch = Vec::with_capacity(128 * 1024);
    let mut batch = port::Batch::default();
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if queue == 0 && last_sweep.elapsed() >= port::POLL_INTERVAL {
            mesh.expire();
            last_sweep = Instant::now();
        }
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
                enter(
                    shared,
                    mesh,
                    node,
                    &mut buf[..end],
                    &mut scratch,
                    &mut batch,
                );
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
fn enter(
    shared: &Shared,
    mesh: &Mesh,
    node: Ipv4Addr,
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
    batch: &mut port::Batch,
) {
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
    let partial = hdr.flags & virtio_net::F_NEEDS_CSUM != 0;
    let offloaded = gso::is_gso(&hdr);

    let snapshot = shared.snapshot.load();
    let frame = &mut buf[E..];
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
    let (backend, opened) = {
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
        (backend, !matches!(selection, Selection::Kept(_)))
    };
    let Some(station) = segment.station(backend) else {
        shared.counters.drop(DropReason::UnknownDestination);
        return;
    };
    if let Some(cell) = snapshot
        .services
        .vip(published.segment, published.vip)
        .and_then(|v| v.cell(key.proto, published.target, backend))
    {
        if opened {
            cell.connection();
        }
        cell.traffic(Direction::Original, Volume::of_offloaded(&hdr, frame));
    }
    nat::rewrite(frame, key.proto, Side::Dst, backend, partial);
    nat::rewrite_port(frame, key.proto, Side::Dst, published.target, partial);
    nat::set_ethernet(frame, segment.gateway_mac.0, station.mac.0);
    match vtep::to_station(segment, backend) {
        FromPort::Local(id) => {
            mesh.note_entry(frame, node);
            batch.flush(shared);
            match snapshot.port(id) {
                // The offload header goes along: the task's stack takes TSO.
                Some(port) => port.send(&buf[V..], shared),
                None => shared.counters.drop(DropReason::UnknownDestination),
            }
        }
        FromPort::Remote(to) => {
            let flow = vtep::flow_hash(frame);
            let mut prefix = [0u8; vxlan::HEADER_LEN];
            vtep::encap_header(segment.vni, &mut prefix);
            if offloaded {
                batch.flush(shared);
                match gso::segment(&hdr, frame, &prefix, scratch) {
                    Ok(segs) => shared.transmit(to, flow, scratch, segs.stride),
                    Err(_) => shared.counters.drop(DropReason::BadOffload),
                }
            } else if gso::complete_checksum(&hdr, frame).is_ok() {
                batch.add(shared, to, flow, &prefix, frame);
            } else {
                shared.counters.drop(DropReason::BadOffload);
            }
        }
        _ => shared.counters.drop(DropReason::UnknownDestination),
    }
}
