//! The userspace engine: a TAP device (with TSO/USO offloads) per local
//! endpoint, UDP sockets (with GSO/GRO) for VXLAN, and worker threads that
//! run the sans-IO VTEP core between them. Forwarding state is one immutable
//! [`Snapshot`] swapped atomically on every apply, so workers never lock.

mod mesh;
mod port;
mod service;
mod underlay;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, IoSliceMut};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use quinn_udp::RecvMeta;

use self::port::Port;
use self::underlay::Underlay;
use super::counters::Counters;
use super::ports::{self, EndpointKey, PortSpec, free_ifname};
use super::service_stats::{ServiceSeries, ServiceStats, Tracked};
use super::{ApplyReport, Dataplane, EngineError};
use crate::overlay::fdb::{Fdb, PortId, Segment, SegmentId};
use crate::overlay::gro::Gro;
use crate::overlay::vtep::{self, DropReason, FromUnderlay};
use crate::sys;
use crate::tables::Tables;
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
}

/// The forwarding state every worker reads.
#[derive(Default)]
pub struct Snapshot {
    fdb: Fdb,
    ports: Vec<Option<(Arc<Port>, SegmentId)>>,
    /// The traffic counters of every service VIP, port and backend.
    services: ServiceStats,
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
    flows: service::Flows,
    mesh: Option<mesh::Mesh>,
    /// This node's underlay address.
    node: Ipv4Addr,
}

impl Shared {
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
        let (flows, [vip, vip_reply]) = self.flows.tracked();
        for (proto, dst, backend) in flows {
            tracked.add(stats.cell_index_by_vip(proto, dst, backend));
        }
        let mut tables = vec![("vip", vip), ("vip_reply", vip_reply)];
        if let Some(mesh) = &self.mesh {
            let (flows, [entry, returns]) = mesh.tracked();
            for (proto, published, backend) in flows {
                let at = snapshot
                    .fdb
                    .published(proto, published)
                    .and_then(|p| stats.cell_index(p.segment, p.vip, proto, p.target, backend));
                tracked.add(at);
            }
            tables.extend([("mesh", entry), ("mesh_return", returns)]);
        }
        ServiceSeries::new(stats, &tracked, tables).encode(out);
    }

    fn transmit(&self, node: Ipv4Addr, flow: u32, contents: &[u8], stride: usize) {
        let datagrams = contents.len().div_ceil(stride.max(1)) as u64;
        match self.underlay.send(node, flow, contents, stride) {
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
        let shared = Arc::new(Shared {
            counters: Counters::new("userspace"),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            underlay,
            flows: service::Flows::new().map_err(|e| EngineError::Underlay(io::Error::other(e)))?,
            mesh: Some(mesh::Mesh::new().map_err(EngineError::Mesh)?),
            node: options.underlay,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let underlay_workers = (0..underlay::RX_SOCKETS)
            .map(|socket| {
                let (shared, stop) = (shared.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("shoal-underlay{socket}"))
                    .spawn(move || underlay_worker(&shared, socket, &stop))
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(EngineError::Underlay)?;
        let mut underlay_workers = underlay_workers;
        for queue in 0..mesh::QUEUES {
            let (shared, stop) = (shared.clone(), stop.clone());
            let node = options.underlay;
            let worker = std::thread::Builder::new()
                .name(format!("shoal-mesh{queue}"))
                .spawn(move || mesh::run(&shared, node, queue, &stop))
                .map_err(EngineError::Underlay)?;
            underlay_workers.push(worker);
        }
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
        let desired = ports::desired(tables, self.options.underlay_mtu);
        // Every local endpoint's port id is decided first, so the
        // forwarding database (Maglev tables and all) is built once, and
        // its published ports can be checked before anything changes.
        let ids = self.plan_ids(&desired);
        let fdb = Fdb::build(tables, self.options.underlay_mtu, |net, ip| {
            ids.get(&(net.to_owned(), ip)).copied()
        });
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
        let fdb = Fdb::build(tables, self.options.underlay_mtu, |net, ip| {
            ids.get(&(net, ip)).copied()
        });
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
        let services = ServiceStats::build(tables, &fdb, &self.shared.snapshot.load().services);
        self.shared.snapshot.store(Arc::new(Snapshot {
            fdb,
            ports,
            services,
        }));
    }
}

impl Drop for UserspaceEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The GRO "port" of replies leaving through the mesh TUN.
const MESH_PORT: PortId = PortId::MAX;

/// Receive buffers per batch; each holds a GRO train of up to 64 KiB.
const RX_BATCH: usize = 8;

fn underlay_worker(shared: &Shared, socket: usize, stop: &AtomicBool) {
    let mut storage = vec![[0u8; 65_536]; RX_BATCH];
    let mut meta = vec![RecvMeta::default(); RX_BATCH];
    let mut gro = Gro::default();
    let mut reply = Vec::with_capacity(2048);
    while !stop.load(Ordering::Relaxed) {
        let n = {
            let mut bufs: Vec<IoSliceMut<'_>> = storage
                .iter_mut()
                .map(|b| IoSliceMut::new(&mut b[..]))
                .collect();
            shared.underlay.recv(socket, &mut bufs, &mut meta)
        };
        match n {
            Ok(n) => {
                let snapshot = shared.snapshot.load();
                let mut to_task = |id: PortId, frame: &[u8]| match (id, &shared.mesh) {
                    (MESH_PORT, Some(mesh)) => mesh.write_tun(frame, shared),
                    _ => match snapshot.port(id) {
                        Some(port) => port.send(frame, shared),
                        None => shared.counters.drop(DropReason::UnknownDestination),
                    },
                };
                for (buf, meta) in storage.iter_mut().zip(&meta).take(n) {
                    let stride = meta.stride.max(1);
                    for datagram in buf[..meta.len].chunks_mut(stride) {
                        on_datagram(
                            shared,
                            &snapshot,
                            datagram,
                            meta,
                            &mut gro,
                            &mut to_task,
                            &mut reply,
                        );
                    }
                }
                gro.flush(&mut to_task);
                shared.flows.expire();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) =
                    sys::poll::wait_readable(shared.underlay.rx_socket(socket), port::POLL_INTERVAL)
                {
                    tracing::error!("VXLAN socket failed: {e}");
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => tracing::debug!("VXLAN receive error: {e}"),
        }
    }
}

/// The IPv4 source of a frame (unspecified if there is none).
fn mesh_source(frame: &[u8]) -> Ipv4Addr {
    match frame.get(14 + 12..14 + 16) {
        Some(b) => Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        None => Ipv4Addr::UNSPECIFIED,
    }
}

fn on_datagram(
    shared: &Shared,
    snapshot: &Snapshot,
    datagram: &mut [u8],
    meta: &RecvMeta,
    gro: &mut Gro,
    to_task: &mut impl FnMut(PortId, &[u8]),
    reply: &mut Vec<u8>,
) {
    shared.counters.vxlan_rx_packets.inc();
    shared.counters.vxlan_rx_bytes.inc_by(datagram.len() as u64);
    match vtep::from_underlay(&snapshot.fdb, datagram, reply) {
        FromUnderlay::Local(id) => {
            let frame = &mut datagram[vxlan::HEADER_LEN..];
            let segment = snapshot.segment_of(id);
            if let (Some(mesh), Some((_, segment)), std::net::IpAddr::V4(entry)) =
                (&shared.mesh, segment, meta.addr.ip())
                && !segment.subnet.contains(&mesh_source(frame))
            {
                mesh.note_entry(frame, entry);
            }
            if let Some((seg, _)) = segment {
                service::reverse(shared, snapshot, seg, frame, &virtio_net::Repr::NONE);
            }
            gro.push(id, frame, to_task);
        }
        FromUnderlay::MeshReply => match &shared.mesh {
            Some(mesh) => {
                let frame = &mut datagram[vxlan::HEADER_LEN..];
                if mesh.translate_reply(frame, &virtio_net::Repr::NONE, snapshot, shared) {
                    gro.push(MESH_PORT, frame, to_task);
                }
            }
            None => shared.counters.drop(DropReason::NoRoute),
        },
        FromUnderlay::Reply { vni } => {
            let std::net::IpAddr::V4(sender) = meta.addr.ip() else {
                return;
            };
            shared.counters.arp_replies.inc();
            let mut datagram = vec![0u8; vxlan::HEADER_LEN];
            vtep::encap_header(vni, &mut datagram);
            datagram.extend_from_slice(reply);
            let len = datagram.len();
            shared.transmit(sender, 0, &datagram, len);
        }
        FromUnderlay::Ignore => {}
        FromUnderlay::Drop(reason) => shared.counters.drop(reason),
    }
}
