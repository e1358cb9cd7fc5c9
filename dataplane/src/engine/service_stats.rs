//! The traffic counters of every service VIP, port and backend in one
//! forwarding snapshot, and their Prometheus families.
//!
//! [`ServiceStats::build`] runs on every apply, from the tables and the
//! forwarding database: one [`Cell`] per (service, network, VIP, port,
//! backend) the tables list, so label cardinality is bounded by the
//! tables. A cell that stays listed is carried over from the previous
//! snapshot and keeps counting; one whose backend left is dropped, and its
//! series with it. The packet path finds its cell by segment and VIP and by
//! backend (binary searches) and port (a scan of the few listed): no
//! hashing, no lock. A scrape sums the cells into [`ServiceSeries`], the
//! families under `shoal_dataplane_`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::stats::{Cell, Totals, direction_index};
use crate::lb::conntrack::Direction;
use crate::overlay::fdb::{Fdb, SegmentId};
use crate::tables::{Protocol, Tables};

/// The port a cell counts: one the service lists (protocol and target), or
/// any other port of a VIP that serves every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServicePort {
    Listed(Protocol, u16),
    Other(Protocol),
}

impl ServicePort {
    fn protocol(self) -> Protocol {
        match self {
            ServicePort::Listed(p, _) | ServicePort::Other(p) => p,
        }
    }

    /// The `port` label: the number, or `other`.
    fn label(self) -> String {
        match self {
            ServicePort::Listed(_, port) => port.to_string(),
            ServicePort::Other(_) => "other".into(),
        }
    }
}

/// The counters of one service's VIP on one network.
#[derive(Debug)]
pub struct VipStats {
    pub service: String,
    pub network: String,
    pub vip: Ipv4Addr,
    ports: Vec<ServicePort>,
    /// Sorted.
    backends: Vec<Ipv4Addr>,
    /// `ports.len() * backends.len()` cells, port-major.
    cells: Vec<Arc<Cell>>,
    /// Index of the first cell among all of the snapshot's.
    offset: usize,
}

impl VipStats {
    /// The cell of a packet to `proto`/`port` that goes to (or comes from)
    /// `backend`.
    pub fn cell(&self, proto: Protocol, port: u16, backend: Ipv4Addr) -> Option<&Cell> {
        self.index(proto, port, backend)
            .map(|i| self.cells[i].as_ref())
    }

    fn index(&self, proto: Protocol, port: u16, backend: Ipv4Addr) -> Option<usize> {
        let slot = self
            .ports
            .iter()
            .position(|&p| p == ServicePort::Listed(proto, port))
            .or_else(|| {
                self.ports
                    .iter()
                    .position(|&p| p == ServicePort::Other(proto))
            })?;
        let b = self.backends.binary_search(&backend).ok()?;
        Some(slot * self.backends.len() + b)
    }
}

/// What identifies a cell across snapshots.
type CellKey<'a> = (&'a str, &'a str, Ipv4Addr, ServicePort, Ipv4Addr);

/// The counters of every service VIP in one forwarding snapshot.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Per segment (by [`SegmentId`]), sorted by VIP.
    segments: Vec<Vec<VipStats>>,
    cells: usize,
}

impl ServiceStats {
    /// The cells of `tables` as `fdb` installs them (a VIP it left out has
    /// none), reusing those of `previous` that are still listed.
    pub fn build(tables: &Tables, fdb: &Fdb, previous: &ServiceStats) -> ServiceStats {
        let mut old: HashMap<CellKey<'_>, &Arc<Cell>> = HashMap::new();
        for v in previous.vips() {
            for (s, &port) in v.ports.iter().enumerate() {
                for (b, &backend) in v.backends.iter().enumerate() {
                    let key = (v.service.as_str(), v.network.as_str(), v.vip, port, backend);
                    old.insert(key, &v.cells[s * v.backends.len() + b]);
                }
            }
        }
        let mut segments: Vec<Vec<VipStats>> = fdb.segments().iter().map(|_| Vec::new()).collect();
        for svc in &tables.services {
            for (network, &vip) in &svc.vips {
                let Some((seg, segment)) = fdb.segment_by_name(network) else {
                    continue;
                };
                let Some(installed) = segment.vip(vip) else {
                    continue;
                };
                let mut ports: Vec<ServicePort> = Vec::new();
                for &(proto, port) in &installed.ports {
                    let p = ServicePort::Listed(proto, port);
                    if !ports.contains(&p) {
                        ports.push(p);
                    }
                }
                if installed.all_ports {
                    ports.extend([Protocol::Tcp, Protocol::Udp].map(ServicePort::Other));
                }
                let mut backends: Vec<Ipv4Addr> =
                    installed.backends.backends().iter().map(|b| b.ip).collect();
                backends.sort_unstable();
                backends.dedup();
                let cells = ports
                    .iter()
                    .flat_map(|&port| backends.iter().map(move |&b| (port, b)))
                    .map(|(port, b)| {
                        old.get(&(svc.name.as_str(), network.as_str(), vip, port, b))
                            .map_or_else(Arc::default, |&c| c.clone())
                    })
                    .collect();
                segments[seg].push(VipStats {
                    service: svc.name.clone(),
                    network: network.clone(),
                    vip,
                    ports,
                    backends,
                    cells,
                    offset: 0,
                });
            }
        }
        let mut cells = 0;
        for seg in &mut segments {
            seg.sort_by_key(|v| v.vip);
            for v in seg {
                v.offset = cells;
                cells += v.cells.len();
            }
        }
        ServiceStats { segments, cells }
    }

    /// The VIP `vip` of segment `seg`.
    pub fn vip(&self, seg: SegmentId, vip: Ipv4Addr) -> Option<&VipStats> {
        let vips = self.segments.get(seg)?;
        let at = vips.binary_search_by_key(&vip, |v| v.vip).ok()?;
        Some(&vips[at])
    }

    /// Every VIP, segment by segment.
    pub fn vips(&self) -> impl Iterator<Item = &VipStats> {
        self.segments.iter().flatten()
    }

    /// The snapshot-wide index of the cell of a flow to `proto`/`port` of
    /// `vip` on `seg`, served by `backend`; see [`Tracked`].
    pub fn cell_index(
        &self,
        seg: SegmentId,
        vip: Ipv4Addr,
        proto: Protocol,
        port: u16,
        backend: Ipv4Addr,
    ) -> Option<usize> {
        let v = self.vip(seg, vip)?;
        Some(v.offset + v.index(proto, port, backend)?)
    }

    /// [`ServiceStats::cell_index`] of a flow to a VIP address, on whichever
    /// segment has it first (conntrack keys carry no segment).
    pub fn cell_index_by_vip(
        &self,
        proto: Protocol,
        dst: SocketAddrV4,
        backend: Ipv4Addr,
    ) -> Option<usize> {
        (0..self.segments.len())
            .find_map(|seg| self.cell_index(seg, *dst.ip(), proto, dst.port(), backend))
    }
}

/// Connections tracked now, per cell of one [`ServiceStats`], counted from
/// the conntrack tables at scrape time.
#[derive(Debug)]
pub struct Tracked(Vec<u64>);

impl Tracked {
    /// No connections yet, for each cell of `stats`.
    pub fn new(stats: &ServiceStats) -> Tracked {
        Tracked(vec![0; stats.cells])
    }

    /// One more tracked connection in cell `index`, if there is one.
    pub fn add(&mut self, index: Option<usize>) {
        if let Some(n) = index.and_then(|i| self.0.get_mut(i)) {
            *n += 1;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CellLabels {
    service: String,
    network: String,
    vip: String,
    protocol: String,
    port: String,
    backend: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectedLabels {
    #[prometheus(flatten)]
    cell: CellLabels,
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TableLabel {
    table: &'static str,
}

/// The service and conntrack families of one scrape, summed and labelled.
#[derive(Debug, Default)]
pub struct ServiceSeries {
    rows: Vec<(CellLabels, Totals, u64)>,
    conntrack: Vec<(&'static str, usize)>,
}

impl ServiceSeries {
    /// The series of every cell of `stats`, with its tracked connections,
    /// and the number of entries in each conntrack table by name.
    pub fn new(
        stats: &ServiceStats,
        tracked: &Tracked,
        conntrack: Vec<(&'static str, usize)>,
    ) -> ServiceSeries {
        let mut rows = Vec::with_capacity(stats.cells);
        for v in stats.vips() {
            for (s, &port) in v.ports.iter().enumerate() {
                for (b, backend) in v.backends.iter().enumerate() {
                    let i = s * v.backends.len() + b;
                    let labels = CellLabels {
                        service: v.service.clone(),
                        network: v.network.clone(),
                        vip: v.vip.to_string(),
                        protocol: port.protocol().to_string(),
                        port: port.label(),
                        backend: backend.to_string(),
                    };
                    let open = tracked.0.get(v.offset + i).copied().unwrap_or(0);
                    rows.push((labels, v.cells[i].totals(), open));
                }
            }
        }
        ServiceSeries { rows, conntrack }
    }

    /// Only the number of entries in each conntrack table by name (an
    /// engine without per-service counters).
    pub fn conntrack_only(conntrack: Vec<(&'static str, usize)>) -> ServiceSeries {
        ServiceSeries {
            rows: Vec::new(),
            conntrack,
        }
    }

    /// Appends the families in the OpenMetrics text format (no `# EOF`).
    pub fn encode(self, out: &mut String) {
        let mut registry = Registry::with_prefix("shoal_dataplane");
        registry.register_collector(Box::new(self));
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(out, &registry);
    }
}

impl Collector for ServiceSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.conntrack.is_empty() {
            let mut family = encoder.encode_descriptor(
                "conntrack_entries",
                "Flows in each connection-tracking table (vip: clients to service VIPs; vip_reply: their replies; mesh: clients of published ports on this entry node; mesh_return: routing-mesh flows served here, by entry node).",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for &(table, n) in &self.conntrack {
                let g = ConstGauge::new(n as i64);
                g.encode(family.encode_family(&TableLabel { table })?)?;
            }
        }
        if self.rows.is_empty() {
            return Ok(());
        }
        let counter = prometheus_client::metrics::MetricType::Counter;
        let mut family = encoder.encode_descriptor(
            "service_connections",
            "Connections the load balancer opened to a backend (new flows, and flows moved off a backend that left), counted on the node they entered by.",
            None,
            counter,
        )?;
        for (labels, totals, _) in &self.rows {
            ConstCounter::new(totals.connections).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "service_tracked_connections",
            "Connections to a backend that this node's conntrack tracks now.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (labels, _, open) in &self.rows {
            ConstGauge::new(*open as i64).encode(family.encode_family(labels)?)?;
        }
        for (name, help, pick) in [
            (
                "service_packets",
                "Packets of a backend's connections, by direction (original: client to backend; reply).",
                (|t: &Totals, d: usize| t.packets[d]) as fn(&Totals, usize) -> u64,
            ),
            (
                "service_bytes",
                "IP bytes of a backend's connections, by direction (original: client to backend; reply).",
                |t: &Totals, d: usize| t.bytes[d],
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, counter)?;
            for (labels, totals, _) in &self.rows {
                for (dir, direction) in [
                    (Direction::Original, "original"),
                    (Direction::Reply, "reply"),
                ] {
                    let labels = DirectedLabels {
                        cell: labels.clone(),
                        direction,
                    };
                    let v = pick(totals, direction_index(dir));
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
