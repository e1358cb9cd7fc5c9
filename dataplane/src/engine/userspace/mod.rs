//! The userspace engine: a TAP device (with TSO/USO offloads) per local
//! endpoint, UDP sockets (with GSO/GRO) for VXLAN, the mesh TUN, and worker
//! threads between them. Each frame is parsed once, decided by the sans-IO
//! `lb::path` (VTEP, VIP and mesh conversations), and carried out by
//! [`pipeline`]. Forwarding state is one immutable [`Snapshot`] swapped
//! atomically on every apply; the conversations' state is sharded by client
//! ([`crate::lb::shards`]), so workers lock only the shard of their flow.

mod mesh;
mod pipeline;
mod port;
mod underlay;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, IoSliceMut};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use quinn_udp::RecvMeta;

use self::port::Port;
use self::underlay::Underlay;
use super::counters::Counters;
use super::ports::{self, EndpointKey, PortSpec, free_ifname};
use super::service_stats::{ServiceSeries, ServiceStats, Tracked};
use super::{ApplyReport, Dataplane, EngineError};
use crate::lb::path::{self, Context, Verdict};
use crate::lb::shards::Shards;
use crate::overlay::fdb::{Fdb, Location, PortId, Segment, SegmentId};
use crate::overlay::gro::Gro;
use crate::overlay::tunnel::{self, NodeKey, Tunnels};
use crate::overlay::vtep::{self, DropReason};
use crate::sys;
use crate::tables::Tables;
use crate::wire::flow;
use crate::wire::{virtio_net, vxlan};

/// Options of the userspace engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// This node's underlay address.
    pub underlay: Ipv4Addr,
    /// MTU of the underlay interface.
    pub underlay_mtu: u16,
    /// UDP port of VXLAN (4789).
    pub vxlan_port: u16,
    /// This node's WireGuard key, for encrypted networks; without one they
    /// are refused.
    pub tunnel_key: Option<NodeKey>,
    /// UDP port of the encrypted networks' WireGuard (51820).
    pub tunnel_port: u16,
}

/// The forwarding state every worker reads.
#[derive(Default)]
pub struct Snapshot {
    fdb: Fdb,
    ports: Vec<Option<(Arc<Port>, SegmentId)>>,
    /// The traffic counters of every service VIP, port and backend.
    services: ServiceStats,
    /// The WireGuard tunnels to the other nodes, when this node has a key.
    tunnels: Option<Tunnels>,
}

impl Snapshot {
    fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id)?.as_ref().map(|(p, _)| p.as_ref())
    }

    /// The segment of port `id`, with its id.
    fn segment_of(&self, id: PortId) -> Option<(SegmentId, &Segment)> {
        let (_, seg) = self.ports.get(id)?.as_ref()?;
        Some((*seg, self.fdb.segment(*seg)))
    }
}

/// What the engine's threads share.
pub struct Shared {
    pub counters: Counters,
    snapshot: ArcSwap<Snapshot>,
    underlay: Underlay,
    /// The WireGuard port's sockets, when this node has a tunnel key.
    tunnel: Option<Underlay>,
    /// The VIP and mesh conversations, sharded by client.
    shards: Shards,
    /// The conversations' clock starts here.
    epoch: Instant,
    mesh: Option<mesh::Mesh>,
    /// This node's underlay address.
    node: Ipv4Addr,
}

/// Flows tracked per conversation table, over all shards; the oldest go
/// first beyond that.
const FLOWS: usize = 1 << 17;
/// Expired flows dropped per table and shard at each sweep.
const EXPIRE_BUDGET: usize = 1024;
/// How often the conversations are swept for expired flows.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

impl Shared {
    /// Milliseconds on the conversations' clock.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// What `lb::path` reads to decide on a frame now.
    fn context<'a>(&'a self, fdb: &'a Fdb) -> Context<'a> {
        Context {
            fdb,
            shards: &self.shards,
            node: self.node,
            now: self.now(),
        }
    }

    /// Drops expired flows, a budget per table and shard, and runs the
    /// tunnels' timers.
    fn sweep(&self) {
        if let (Some(tunnels), Some(wire)) = (&self.snapshot.load().tunnels, &self.tunnel) {
            tunnels.tick(&mut |peer, msg| self.send_control(wire, peer, msg));
        }
        let now = self.now();
        self.shards.each(|shard| {
            shard.vip.expire(now, EXPIRE_BUDGET);
            shard.mesh.expire(now, EXPIRE_BUDGET);
        });
    }

    /// Whether two flow hashes leave through the same socket (source port).
    fn same_socket(&self, a: u32, b: u32) -> bool {
        self.underlay.socket_of(a) == self.underlay.socket_of(b)
    }

    /// Appends every data-plane family in the OpenMetrics text format,
    /// without the closing `# EOF`: the engine's counters, the service
    /// counters with the connections conntrack tracks per backend, and the
    /// size of each conntrack table.
    fn encode_all(&self, out: &mut String) {
        self.counters.encode(out);
        let snapshot = self.snapshot.load();
        let stats = &snapshot.services;
        let mut tracked = Tracked::new(stats);
        let now = self.now();
        let (mut vip, mut mesh) = ([0; 2], [0; 2]);
        self.shards.each(|shard| {
            for (proto, dst, backend) in shard.vip.tracked(now) {
                tracked.add(stats.cell_index_by_vip(proto, dst, backend));
            }
            for (proto, published, backend) in shard.mesh.tracked(now) {
                let at = snapshot
                    .fdb
                    .published(proto, published)
                    .and_then(|p| stats.cell_index(p.segment, p.vip, proto, p.target, backend));
                tracked.add(at);
            }
            let ([v, vr], [m, mr]) = (shard.vip.len(), shard.mesh.len());
            vip = [vip[0] + v, vip[1] + vr];
            mesh = [mesh[0] + m, mesh[1] + mr];
        });
        let mut tables = vec![("vip", vip[0]), ("vip_reply", vip[1])];
        if self.mesh.is_some() {
            tables.extend([("mesh", mesh[0]), ("mesh_return", mesh[1])]);
        }
        ServiceSeries::new(stats, &tracked, tables).encode(out);
    }

    /// Sends the VXLAN datagrams in `contents` (`stride` bytes each, the
    /// last possibly shorter) to `node`; `sealed`: inside its tunnel.
    fn transmit(&self, node: Ipv4Addr, flow: u32, contents: &[u8], stride: usize, sealed: bool) {
        let datagrams = contents.len().div_ceil(stride.max(1)) as u64;
        let sent = if sealed {
            self.transmit_sealed(node, flow, contents, stride)
        } else {
            self.underlay.send(node, flow, contents, stride)
        };
        match sent {
            Ok(()) => {
                self.counters.vxlan_tx_packets.inc_by(datagrams);
                self.counters.vxlan_tx_bytes.inc_by(contents.len() as u64);
            }
            Err(e) => {
                tracing::debug!(%node, "VXLAN send failed: {e}");
                self.counters.drop(DropReason::IoError);
            }
        }
    }
}

thread_local! {
    /// Each thread's buffers for sealing: the plaintext, one message, and
    /// the messages gathered for one GSO send.
    static SEALING: std::cell::RefCell<(Vec<u8>, Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

impl Shared {
    /// [`Shared::transmit`] through the tunnel: each datagram sealed, the
    /// messages of one size gathered for GSO (a shorter one ends a send).
    fn transmit_sealed(
        &self,
        node: Ipv4Addr,
        flow: u32,
        contents: &[u8],
        stride: usize,
    ) -> io::Result<()> {
        let snapshot = self.snapshot.load();
        let (Some(tunnels), Some(wire)) = (&snapshot.tunnels, &self.tunnel) else {
            self.counters.drop(DropReason::Tunnel);
            return Ok(());
        };
        let full = stride + usize::from(tunnel::OVERHEAD);
        SEALING.with_borrow_mut(|(scratch, msg, gathered)| {
            gathered.clear();
            for datagram in contents.chunks(stride.max(1)) {
                let control = &mut |m: &[u8]| self.send_control(wire, node, m);
                match tunnels.seal(node, datagram, scratch, msg, control) {
                    Ok(true) => {
                        gathered.extend_from_slice(msg);
                        if msg.len() < full {
                            wire.send(node, flow, gathered, full)?;
                            gathered.clear();
                        }
                    }
                    // It waits in the tunnel for the handshake.
                    Ok(false) => {}
                    Err(_) => self.counters.drop(DropReason::Tunnel),
                }
            }
            if !gathered.is_empty() {
                wire.send(node, flow, gathered, full)?;
            }
            Ok(())
        })
    }

    /// Sends a tunnel's handshake message to `peer`.
    fn send_control(&self, wire: &Underlay, peer: Ipv4Addr, msg: &[u8]) {
        if let Err(e) = wire.send(peer, 0, msg, msg.len()) {
            tracing::debug!(%peer, "WireGuard send failed: {e}");
            self.counters.drop(DropReason::IoError);
        }
    }
}

struct Installed {
    id: PortId,
    spec: PortSpec,
    ifname: String,
    port: Arc<Port>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

/// The userspace engine of one node.
pub struct UserspaceEngine {
    options: Options,
    shared: Arc<Shared>,
    installed: HashMap<EndpointKey, Installed>,
    stop: Arc<AtomicBool>,
    underlay_workers: Vec<JoinHandle<()>>,
    /// Ports whose mesh rules are installed.
    mesh_ports: Option<Vec<(crate::tables::Protocol, u16)>>,
}

impl UserspaceEngine {
    /// Binds the VXLAN port and starts the underlay worker. Must run in the
    /// node's network namespace.
    pub fn start(options: Options) -> Result<UserspaceEngine, EngineError> {
        let underlay =
            Underlay::bind(options.underlay, options.vxlan_port).map_err(EngineError::Underlay)?;
        let tunnel = match options.tunnel_key {
            Some(_) => Some(
                Underlay::bind_tunnel(options.underlay, options.tunnel_port)
                    .map_err(EngineError::Underlay)?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            counters: Counters::new("userspace"),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            underlay,
            tunnel,
            shards: Shards::new(FLOWS, sys::mesh::MESH_ADDR)
                .map_err(|e| EngineError::Underlay(io::Error::other(e)))?,
            epoch: Instant::now(),
            mesh: Some(mesh::Mesh::new().map_err(EngineError::Mesh)?),
            node: options.underlay,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let wires = [Wire::Vxlan, Wire::Tunnel]
            .into_iter()
            .filter(|w| *w == Wire::Vxlan || shared.tunnel.is_some());
        let mut underlay_workers = Vec::new();
        for wire in wires {
            for socket in 0..underlay::RX_SOCKETS {
                let (shared, stop) = (shared.clone(), stop.clone());
                let name = match wire {
                    Wire::Vxlan => format!("shoal-underlay{socket}"),
                    Wire::Tunnel => format!("shoal-tunnel{socket}"),
                };
                let worker = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || underlay_worker(&shared, wire, socket, &stop))
                    .map_err(EngineError::Underlay)?;
                underlay_workers.push(worker);
            }
        }
        for queue in 0..mesh::QUEUES {
            let (shared, stop) = (shared.clone(), stop.clone());
            let worker = std::thread::Builder::new()
                .name(format!("shoal-mesh{queue}"))
                .spawn(move || mesh::run(&shared, queue, &stop))
                .map_err(EngineError::Underlay)?;
            underlay_workers.push(worker);
        }
        let sweeper = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("shoal-flows".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(SWEEP_INTERVAL);
                        shared.sweep();
                    }
                })
                .map_err(EngineError::Underlay)?
        };
        underlay_workers.push(sweeper);
        Ok(UserspaceEngine {
            options,
            shared,
            installed: HashMap::new(),
            stop,
            underlay_workers,
            mesh_ports: None,
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The counters, for a metrics endpoint that outlives a borrow.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn stop_port(&self, installed: Installed) {
        installed.stop.store(true, Ordering::Relaxed);
        for worker in installed.workers {
            let _ = worker.join();
        }
        // The snapshot no longer refers to the port; dropping the last
        // reference closes the TAP, and the kernel removes the interface.
        drop(installed.port);
    }
}

impl super::Metrics for Shared {
    fn encode_metrics(&self, out: &mut String) {
        self.encode_all(out);
    }
}

impl Dataplane for UserspaceEngine {
    fn name(&self) -> &'static str {
        "userspace"
    }

    fn apply(&mut self, tables: &Tables) -> Result<ApplyReport, EngineError> {
        if tables.node.underlay != self.options.underlay {
            return Err(EngineError::NodeChanged {
                tables: tables.node.underlay,
                engine: self.options.underlay,
            });
        }
        if self.options.tunnel_key.is_none()
            && let Some(network) = tables.networks.iter().find(|n| n.encrypted)
        {
            return Err(EngineError::Unsupported {
                engine: "userspace",
                what: format!(
                    "network `{}` is encrypted, but this node has no WireGuard key (the daemon makes one in its state directory)",
                    network.name
                ),
            });
        }
        let desired = ports::desired(tables, self.options.underlay_mtu);
        // Every local endpoint's port id is decided first, so the
        // forwarding database (Maglev tables and all) is built once, and
        // its published ports can be checked before anything changes.
        let ids = self.plan_ids(&desired);
        let fdb = Fdb::rebuild(
            tables,
            self.options.underlay_mtu,
            |net, ip| ids.get(&(net.to_owned(), ip)).copied(),
            &self.shared.snapshot.load().fdb,
        );
        // A port that a program on this node already serves is not taken
        // over.
        let publishes = fdb.published_ports();
        for &(proto, port) in &publishes {
            let installed = self
                .mesh_ports
                .as_ref()
                .is_some_and(|p| p.contains(&(proto, port)));
            if !installed && sys::mesh::port_in_use(self.options.underlay, proto, port) {
                return Err(EngineError::PortInUse { proto, port });
            }
        }
        let mut report = ApplyReport::default();

        // Endpoints that left the tables or changed go first, so that a
        // changed endpoint can take its interface name back.
        let stale: Vec<EndpointKey> = self
            .installed
            .iter()
            .filter(|(key, inst)| desired.get(*key) != Some(&inst.spec))
            .map(|(key, _)| key.clone())
            .collect();
        let mut retired = Vec::new();
        for key in stale {
            if let Some(inst) = self.installed.remove(&key) {
                report.ports_removed.push(inst.port.label.clone());
                retired.push(inst);
            }
        }

        let mut taken: BTreeSet<(String, String)> = self
            .installed
            .values()
            .map(|i| (i.spec.netns.clone(), i.ifname.clone()))
            .collect();
        let mut created = Vec::new();
        for (key, spec) in &desired {
            if self.installed.contains_key(key) {
                continue;
            }
            let ifname = free_ifname(&spec.netns, &taken);
            let port = match Port::create(spec, &ifname) {
                Ok(port) => Arc::new(port),
                Err(source) => {
                    // The interfaces made by this apply go away with their
                    // descriptors; what was in force keeps running, less
                    // the endpoints that changed or left.
                    drop(created);
                    for inst in retired {
                        self.stop_port(inst);
                    }
                    self.publish(tables);
                    return Err(EngineError::Port {
                        endpoint: format!("{}/{}", key.0, key.1),
                        netns: spec.netns.clone(),
                        source,
                    });
                }
            };
            let Some(&id) = ids.get(key) else {
                continue;
            };
            taken.insert((spec.netns.clone(), ifname.clone()));
            report.ports_added.push(port.label.clone());
            created.push((key.clone(), spec.clone(), ifname, id, port));
        }

        for (key, spec, ifname, id, port) in created {
            let stop = Arc::new(AtomicBool::new(false));
            let workers = (0..port.queues.len())
                .map(|queue| {
                    let (port, shared, stop) = (port.clone(), self.shared.clone(), stop.clone());
                    std::thread::Builder::new()
                        .name(format!("shoal-port{id}q{queue}"))
                        .spawn(move || port::run(id, queue, port, shared, stop))
                })
                .collect::<io::Result<Vec<_>>>()
                .map_err(EngineError::Underlay)?;
            self.installed.insert(
                key,
                Installed {
                    id,
                    spec,
                    ifname,
                    port,
                    stop,
                    workers,
                },
            );
        }
        report.ports_kept = self.installed.len() - report.ports_added.len();
        self.store(tables, fdb);
        if self.mesh_ports.as_ref() != Some(&publishes) {
            sys::mesh::install_rules(self.options.underlay, &publishes)
                .map_err(EngineError::Mesh)?;
            self.mesh_ports = Some(publishes);
        }
        for inst in retired {
            self.stop_port(inst);
        }
        Ok(report)
    }

    fn metrics(&self) -> Arc<dyn super::Metrics> {
        self.shared.clone()
    }

    fn shutdown(&mut self) {
        self.shared.snapshot.store(Arc::new(Snapshot::default()));
        if self.mesh_ports.take().is_some()
            && let Err(e) = sys::mesh::remove_rules()
        {
            tracing::warn!("removing the mesh rules: {e}");
        }
        for (_, inst) in self.installed.drain() {
            inst.stop.store(true, Ordering::Relaxed);
            for worker in inst.workers {
                let _ = worker.join();
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.underlay_workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl UserspaceEngine {
    /// The port id of every desired endpoint: the one it has when it stays
    /// as it is, else the lowest id no staying endpoint holds.
    fn plan_ids(&self, desired: &BTreeMap<EndpointKey, PortSpec>) -> HashMap<EndpointKey, PortId> {
        let mut ids: HashMap<EndpointKey, PortId> = self
            .installed
            .iter()
            .filter(|(key, inst)| desired.get(*key) == Some(&inst.spec))
            .map(|(key, inst)| (key.clone(), inst.id))
            .collect();
        let mut used: BTreeSet<PortId> = ids.values().copied().collect();
        for key in desired.keys() {
            if !ids.contains_key(key) {
                let id = (0..).find(|i| !used.contains(i)).unwrap_or(0);
                used.insert(id);
                ids.insert(key.clone(), id);
            }
        }
        ids
    }

    /// Builds the snapshot for `tables` and the installed ports, and swaps
    /// it in (after a failed apply: what was in force, less what left).
    fn publish(&self, tables: &Tables) {
        let ids: HashMap<(&str, Ipv4Addr), PortId> = self
            .installed
            .iter()
            .map(|((net, ip), inst)| ((net.as_str(), *ip), inst.id))
            .collect();
        let fdb = Fdb::rebuild(
            tables,
            self.options.underlay_mtu,
            |net, ip| ids.get(&(net, ip)).copied(),
            &self.shared.snapshot.load().fdb,
        );
        self.store(tables, fdb);
    }

    /// Swaps in the snapshot of `fdb` (built from `tables`), the installed
    /// ports, and the service counters (those still listed carry over).
    fn store(&self, tables: &Tables, fdb: Fdb) {
        let mut ports = Vec::new();
        for ((net, _), inst) in &self.installed {
            let Some((seg, _)) = fdb.segment_by_name(net) else {
                continue;
            };
            if ports.len() <= inst.id {
                ports.resize_with(inst.id + 1, || None);
            }
            ports[inst.id] = Some((inst.port.clone(), seg));
        }
        let previous = self.shared.snapshot.load();
        let services = ServiceStats::build(tables, &fdb, &previous.services);
        let tunnels = self.options.tunnel_key.as_ref().map(|key| {
            Tunnels::build(
                key,
                self.options.underlay,
                self.options.vxlan_port,
                &tables.tunnel,
                previous.tunnels.as_ref(),
                Instant::now(),
            )
        });
        self.shared.snapshot.store(Arc::new(Snapshot {
            fdb,
            ports,
            services,
            tunnels,
        }));
    }
}

impl Drop for UserspaceEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where a decapsulated frame goes after GRO: a task interface, or the
/// kernel through the mesh device; with the flow's hash, which picks the
/// queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Port(PortId),
    Mesh,
}

/// Receive buffers per batch; each holds a GRO train of up to 64 KiB.
const RX_BATCH: usize = 8;

/// What an underlay worker receives: plain VXLAN, or the encrypted
/// networks' WireGuard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Vxlan,
    Tunnel,
}

fn underlay_worker(shared: &Shared, wire: Wire, socket: usize, stop: &AtomicBool) {
    let Some(sockets) = (match wire {
        Wire::Vxlan => Some(&shared.underlay),
        Wire::Tunnel => shared.tunnel.as_ref(),
    }) else {
        return;
    };
    let mut storage = vec![[0u8; 65_536]; RX_BATCH];
    let mut meta = vec![RecvMeta::default(); RX_BATCH];
    let mut gro = Gro::default();
    let mut reply = Vec::with_capacity(2048);
    let mut opened = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let n = {
            let mut bufs: Vec<IoSliceMut<'_>> = storage
                .iter_mut()
                .map(|b| IoSliceMut::new(&mut b[..]))
                .collect();
            sockets.recv(socket, &mut bufs, &mut meta)
        };
        match n {
            Ok(n) => {
                let snapshot = shared.snapshot.load();
                let mut to_task = |(sink, hash): (Sink, u32), frame: &[u8]| match sink {
                    Sink::Mesh => match &shared.mesh {
                        Some(mesh) => mesh.write_tun(frame, hash, shared),
                        None => shared.counters.drop(DropReason::NoRoute),
                    },
                    Sink::Port(id) => match snapshot.port(id) {
                        Some(port) => port.send(frame, hash, shared),
                        None => shared.counters.drop(DropReason::UnknownDestination),
                    },
                };
                for (buf, meta) in storage.iter_mut().zip(&meta).take(n) {
                    let std::net::IpAddr::V4(sender) = meta.addr.ip() else {
                        continue;
                    };
                    let stride = meta.stride.max(1);
                    for datagram in buf[..meta.len].chunks_mut(stride) {
                        let datagram = match wire {
                            Wire::Vxlan => datagram,
                            Wire::Tunnel => {
                                match unseal(shared, &snapshot, sender, datagram, &mut opened) {
                                    Some(range) => &mut opened[range],
                                    None => continue,
                                }
                            }
                        };
                        let sealed = wire == Wire::Tunnel;
                        let verdict =
                            on_datagram(shared, &snapshot, datagram, sender, sealed, &mut reply);
                        if let Some((sink, hash)) = verdict {
                            gro.push((sink, hash), &datagram[vxlan::HEADER_LEN..], &mut to_task);
                        }
                    }
                }
                gro.flush(&mut to_task);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) =
                    sys::poll::wait_readable(sockets.rx_socket(socket), port::POLL_INTERVAL)
                {
                    tracing::error!("underlay socket failed: {e}");
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => tracing::debug!("underlay receive error: {e}"),
        }
    }
}

/// Opens a WireGuard datagram from `sender` into `out`: where the VXLAN
/// datagram it carried is, if it carried one. Handshake answers go back
/// at once; refusals are counted.
fn unseal(
    shared: &Shared,
    snapshot: &Snapshot,
    sender: Ipv4Addr,
    datagram: &[u8],
    out: &mut [u8],
) -> Option<std::ops::Range<usize>> {
    let (Some(tunnels), Some(wire)) = (&snapshot.tunnels, &shared.tunnel) else {
        shared.counters.drop(DropReason::Tunnel);
        return None;
    };
    let reply = &mut |m: &[u8]| shared.send_control(wire, sender, m);
    match tunnels.open(sender, datagram, out, reply) {
        Ok(tunnel::Opened::Vxlan(range)) => Some(range),
        Ok(tunnel::Opened::Nothing) => None,
        Err(tunnel::Refusal::UnknownPeer) => {
            shared.counters.drop(DropReason::UnknownPeer);
            None
        }
        Err(_) => {
            shared.counters.drop(DropReason::Tunnel);
            None
        }
    }
}

/// Decides on one VXLAN datagram from `sender` and carries out what does
/// not deliver; what does (its inner frame translated in place) leaves as
/// the sink it goes to, for GRO.
fn on_datagram(
    shared: &Shared,
    snapshot: &Snapshot,
    datagram: &mut [u8],
    sender: Ipv4Addr,
    sealed: bool,
    reply: &mut Vec<u8>,
) -> Option<(Sink, u32)> {
    shared.counters.vxlan_rx_packets.inc();
    shared.counters.vxlan_rx_bytes.inc_by(datagram.len() as u64);
    let seg = match vtep::open(&snapshot.fdb, sender, datagram, sealed) {
        Ok(seg) => seg,
        Err(reason) => {
            shared.counters.drop(reason);
            return None;
        }
    };
    let (vni, encrypted) = {
        let segment = snapshot.fdb.segment(seg);
        (segment.vni, segment.encrypted)
    };
    let inner = &mut datagram[vxlan::HEADER_LEN..];
    let parsed = flow::parse(inner);
    let cx = shared.context(&snapshot.fdb);
    let verdict = path::from_underlay(&cx, seg, inner, parsed, sender, reply);
    let flow = flow::ipv4(parsed);
    let mut translated = |t: &path::Translation| {
        flow.map(|f| pipeline::translate(snapshot, t, inner, &f, &virtio_net::Repr::NONE))
    };
    match verdict {
        Verdict::Deliver {
            to: Location::Local(id),
            translation,
            ..
        } => {
            let flow = match &translation {
                Some(t) => translated(t),
                None => flow,
            };
            Some((Sink::Port(id), flow.map_or(0, |f| f.hash())))
        }
        Verdict::MeshExit(t) => Some((Sink::Mesh, translated(&t).map_or(0, |f| f.hash()))),
        Verdict::Reply => {
            shared.counters.arp_replies.inc();
            let mut datagram = vec![0u8; vxlan::HEADER_LEN];
            vtep::encap_header(vni, &mut datagram);
            datagram.extend_from_slice(reply);
            let len = datagram.len();
            shared.transmit(sender, 0, &datagram, len, encrypted);
            None
        }
        // Frames off the wire are never sent on: a remote destination is
        // another node's to deliver.
        Verdict::Deliver { .. } => {
            shared.counters.drop(DropReason::NotLocal);
            None
        }
        Verdict::Ignore => None,
        Verdict::Drop(reason) => {
            shared.counters.drop(reason);
            None
        }
    }
}
