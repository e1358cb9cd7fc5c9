//! The eBPF engine of one node: the underlay program on the underlay
//! interface, a veth pair per local endpoint with the task program on its
//! node end, and the maps that [`Maps::from_tables`] computes. Packets never
//! reach user space; the engine only turns table changes into map updates
//! and interfaces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use aya::maps::{MapData, PerCpuArray};
use aya::programs::XdpMode;
use aya::programs::tc::SchedClassifierLinkId;
use shoal_ebpf_common::{Counters as Raw, counters};

use super::loader::{Flows, Programs};
use super::maps::{Maps, Underlay};
use super::{NODE_END_PREFIX, Options};
use crate::engine::counters::Counters;
use crate::engine::ports::{self, EndpointKey, PortSpec, free_ifname};
use crate::engine::service_stats::ServiceSeries;
use crate::engine::{ApplyReport, Dataplane, EngineError, Metrics};
use crate::overlay::vtep::DropReason;
use crate::sys;
use crate::tables::Tables;

struct Installed {
    spec: PortSpec,
    /// Node end: name and index.
    node_name: String,
    ifindex: u32,
    /// Task end's name in its namespace.
    task_name: String,
    link: Option<SchedClassifierLinkId>,
}

/// The eBPF engine of one node.
pub struct EbpfEngine {
    options: Options,
    programs: Option<Programs>,
    installed: HashMap<EndpointKey, Installed>,
    metrics: Arc<EbpfMetrics>,
    reaper: Option<Reaper>,
}

/// The process that removes the task interfaces when the engine's process
/// ends without doing it (`kill -9`): it waits for the end of the pipe the
/// engine holds.
struct Reaper {
    child: std::process::Child,
    pipe: Option<std::process::ChildStdin>,
}

impl Reaper {
    fn spawn(argv: &[std::ffi::OsString]) -> std::io::Result<Reaper> {
        use std::os::unix::process::CommandExt;
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("the reaper's command line is empty"))?;
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            // A group of its own: whoever kills the daemon's group (a
            // supervisor, a test harness) must not take the reaper along.
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Reaper { child, pipe })
    }

    /// Ends the pipe and waits for the reaper to finish.
    fn finish(mut self) {
        self.pipe = None;
        let _ = self.child.wait();
    }
}

impl EbpfEngine {
    /// Loads the programs, removes a crashed daemon's task interfaces, and
    /// attaches the underlay program (natively, or in generic mode where the
    /// driver has no XDP). Must run in the node's network namespace.
    pub fn start(options: Options) -> Result<EbpfEngine, EngineError> {
        if let Some(why) = super::unavailable() {
            return Err(EngineError::Ebpf(why.to_string()));
        }
        remove_leftovers();
        let reaper = match &options.reaper {
            Some(argv) => Some(Reaper::spawn(argv).map_err(|e| {
                EngineError::Ebpf(format!("starting the task interface reaper: {e}"))
            })?),
            None => None,
        };
        let mut programs = Programs::load().map_err(|e| EngineError::Ebpf(e.to_string()))?;
        let ifindex = options.underlay_ifindex;
        if let Err(native) = programs.attach(ifindex, XdpMode::Driver) {
            tracing::warn!(
                "ebpf: {} has no native XDP ({native}); attaching in generic mode, which is slower",
                options.underlay_ifname
            );
            programs
                .attach(ifindex, XdpMode::Skb)
                .map_err(|e| EngineError::Ebpf(e.to_string()))?;
        }
        let counters = programs
            .take_counters()
            .map_err(|e| EngineError::Ebpf(e.to_string()))?;
        let flows = programs
            .take_flows()
            .map_err(|e| EngineError::Ebpf(e.to_string()))?;
        Ok(EbpfEngine {
            options,
            programs: Some(programs),
            installed: HashMap::new(),
            metrics: Arc::new(EbpfMetrics {
                counters: Counters::new("ebpf"),
                map: Mutex::new((counters, [Raw::default(), Raw::default()])),
                flows: Mutex::new(flows),
            }),
            reaper,
        })
    }

    fn underlay(&self) -> Underlay {
        Underlay {
            ifindex: self.options.underlay_ifindex,
            mtu: self.options.underlay_mtu,
            vxlan_port: self.options.vxlan_port,
        }
    }

    fn maps(&self, tables: &Tables) -> Maps {
        let by_key: BTreeMap<&EndpointKey, u32> =
            self.installed.iter().map(|(k, i)| (k, i.ifindex)).collect();
        let none = Maps::default();
        let previous = self.programs.as_ref().map_or(&none, Programs::installed);
        Maps::from_tables(
            tables,
            self.underlay(),
            |net, ip| by_key.get(&(net.to_owned(), ip)).copied(),
            previous,
        )
    }

    fn remove_port(&mut self, inst: Installed) {
        if let (Some(link), Some(programs)) = (inst.link, self.programs.as_mut()) {
            programs.detach_task(link);
        }
        if let Err(e) = sys::veth::delete(inst.ifindex) {
            tracing::warn!("removing {}: {e}", inst.node_name);
        }
    }

    fn create_port(&mut self, spec: &PortSpec, task_name: String) -> std::io::Result<Installed> {
        let node_name = node_end_name(spec);
        let cfg = sys::veth::VethConfig {
            node_name: node_name.clone(),
            task_name: task_name.clone(),
            mac: spec.mac,
            mtu: spec.mtu,
            ip: spec.ip,
            prefix_len: spec.prefix_len,
            default_gateway: spec.gateway,
        };
        let ifindex = sys::veth::create(&sys::netns::path_of(&spec.netns), &cfg)?;
        let mut inst = Installed {
            spec: spec.clone(),
            node_name,
            ifindex,
            task_name,
            link: None,
        };
        let Some(programs) = self.programs.as_mut() else {
            return Err(std::io::Error::other("the engine is shut down"));
        };
        match programs.attach_task(&inst.node_name) {
            Ok(link) => inst.link = Some(link),
            Err(e) => {
                self.remove_port(inst);
                return Err(std::io::Error::other(e.to_string()));
            }
        }
        Ok(inst)
    }
}

/// The node end's name: `shv` and a hash of the endpoint, stable across
/// restarts and within the 15 bytes of an interface name.
fn node_end_name(spec: &PortSpec) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in spec
        .netns
        .bytes()
        .chain([0])
        .chain(spec.ip.octets())
        .chain(spec.mac)
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{NODE_END_PREFIX}{h:08x}")
}

/// Removes the task interfaces a crashed daemon left in this namespace.
fn remove_leftovers() {
    match sys::veth::list(NODE_END_PREFIX) {
        Ok(links) => {
            for (name, index) in links {
                tracing::info!("ebpf: removing {name}, left by an earlier run");
                if let Err(e) = sys::veth::delete(index) {
                    tracing::warn!("removing {name}: {e}");
                }
            }
        }
        Err(e) => tracing::warn!("ebpf: listing leftover interfaces: {e}"),
    }
}

impl Dataplane for EbpfEngine {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn apply(&mut self, tables: &Tables) -> Result<ApplyReport, EngineError> {
        if tables.node.underlay != self.options.underlay {
            return Err(EngineError::NodeChanged {
                tables: tables.node.underlay,
                engine: self.options.underlay,
            });
        }
        let published = tables
            .services
            .iter()
            .find(|s| s.ports.iter().any(|p| p.published.is_some()));
        if let Some(service) = published {
            return Err(EngineError::Unsupported {
                engine: "ebpf",
                what: format!(
                    "service `{}`: published ports (the routing mesh) are not in the eBPF engine yet; run the node with --dataplane userspace, or publish no port",
                    service.name
                ),
            });
        }
        if let Some(network) = tables.networks.iter().find(|n| n.encrypted) {
            return Err(EngineError::Unsupported {
                engine: "ebpf",
                what: format!(
                    "network `{}` is encrypted: WireGuard runs in the userspace engine only; run the node with --dataplane userspace",
                    network.name
                ),
            });
        }
        let desired = ports::desired(tables, self.options.underlay_mtu);
        let mut report = ApplyReport::default();
        // Changed endpoints give their interface up first, so the new one
        // can take its name back; the maps stop naming the old one at once.
        let changed: Vec<EndpointKey> = self
            .installed
            .iter()
            .filter(|(key, inst)| desired.get(*key).is_some_and(|spec| *spec != inst.spec))
            .map(|(key, _)| key.clone())
            .collect();
        for key in changed {
            if let Some(inst) = self.installed.remove(&key) {
                report
                    .ports_removed
                    .push(format!("{}/{}", inst.spec.netns, inst.task_name));
                self.remove_port(inst);
            }
        }
        let mut taken: BTreeSet<(String, String)> = self
            .installed
            .values()
            .map(|i| (i.spec.netns.clone(), i.task_name.clone()))
            .collect();
        let mut created = Vec::new();
        for (key, spec) in &desired {
            if self.installed.contains_key(key) {
                continue;
            }
            let task_name = free_ifname(&spec.netns, &taken);
            match self.create_port(spec, task_name) {
                Ok(inst) => {
                    taken.insert((spec.netns.clone(), inst.task_name.clone()));
                    report
                        .ports_added
                        .push(format!("{}/{}", spec.netns, inst.task_name));
                    created.push(key.clone());
                    self.installed.insert(key.clone(), inst);
                }
                Err(source) => {
                    // What this apply made goes; what was in force stays.
                    for key in created {
                        if let Some(inst) = self.installed.remove(&key) {
                            self.remove_port(inst);
                        }
                    }
                    return Err(EngineError::Port {
                        endpoint: format!("{}/{}", key.0, key.1),
                        netns: spec.netns.clone(),
                        source,
                    });
                }
            }
        }
        // Endpoints that left stay in the maps until the new contents are
        // in, then their interfaces go.
        let gone: Vec<EndpointKey> = self
            .installed
            .keys()
            .filter(|key| !desired.contains_key(*key))
            .cloned()
            .collect();
        let gone: Vec<Installed> = gone
            .iter()
            .filter_map(|key| self.installed.remove(key))
            .collect();
        let maps = self.maps(tables);
        let installed = match self.programs.as_mut() {
            Some(programs) => programs
                .install(&maps)
                .map_err(|e| EngineError::Ebpf(e.to_string())),
            None => Err(EngineError::Ebpf("the engine is shut down".into())),
        };
        for inst in gone {
            report
                .ports_removed
                .push(format!("{}/{}", inst.spec.netns, inst.task_name));
            self.remove_port(inst);
        }
        installed?;
        report.ports_kept = self.installed.len() - report.ports_added.len();
        Ok(report)
    }

    fn shutdown(&mut self) {
        let all: Vec<Installed> = self.installed.drain().map(|(_, i)| i).collect();
        for inst in all {
            self.remove_port(inst);
        }
        // Dropping the programs detaches them and frees their maps.
        self.programs = None;
        if let Some(reaper) = self.reaper.take() {
            reaper.finish();
        }
    }

    fn metrics(&self) -> Arc<dyn Metrics> {
        self.metrics.clone()
    }
}

impl Drop for EbpfEngine {
    fn drop(&mut self) {
        if self.programs.is_some() {
            self.shutdown();
        }
    }
}

/// The programs' per-CPU counters, rendered under the userspace engine's
/// families and labels.
pub struct EbpfMetrics {
    counters: Counters,
    /// The counters map, and the sums (underlay, task) last carried over.
    map: Mutex<(PerCpuArray<MapData, Raw>, [Raw; 2])>,
    /// The VIP conntrack maps, swept and counted at each scrape.
    flows: Mutex<Flows>,
}

impl EbpfMetrics {
    /// Carries what the programs counted since the last call over to the
    /// OpenMetrics counters.
    fn sync(&self) {
        let mut guard = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, last) = &mut *guard;
        let sum = |slot: u32| -> Option<Raw> {
            let per_cpu = map.get(&slot, 0).ok()?;
            Some(per_cpu.iter().fold(Raw::default(), |s, c| s.add(c)))
        };
        let (Some(u), Some(t)) = (sum(counters::UNDERLAY), sum(counters::TASK)) else {
            return;
        };
        let (du, dt) = (delta(&last[0], &u), delta(&last[1], &t));
        *last = [u, t];
        let c = &self.counters;
        c.vxlan_rx_packets.inc_by(du.vxlan_packets);
        c.vxlan_rx_bytes.inc_by(du.vxlan_bytes);
        c.vxlan_tx_packets.inc_by(dt.vxlan_packets);
        c.vxlan_tx_bytes.inc_by(dt.vxlan_bytes);
        c.task_rx_frames.inc_by(dt.packets);
        // Into tasks: decapsulated frames, local deliveries and answers.
        c.task_tx_frames
            .inc_by(du.redirected + dt.redirected.saturating_sub(dt.vxlan_packets));
        c.arp_replies.inc_by(du.arp_replies + dt.arp_replies);
        c.icmp_errors.inc_by(dt.icmp_errors);
        for reason in DropReason::ALL {
            let i = reason.index();
            c.drops_inc_by(reason, du.drops[i] + dt.drops[i]);
        }
    }
}

/// `now - before`, field by field (the counters only grow).
fn delta(before: &Raw, now: &Raw) -> Raw {
    let mut drops = now.drops;
    for (d, b) in drops.iter_mut().zip(before.drops) {
        *d = d.wrapping_sub(b);
    }
    Raw {
        packets: now.packets.wrapping_sub(before.packets),
        bytes: now.bytes.wrapping_sub(before.bytes),
        passed: now.passed.wrapping_sub(before.passed),
        answered: now.answered.wrapping_sub(before.answered),
        redirected: now.redirected.wrapping_sub(before.redirected),
        arp_replies: now.arp_replies.wrapping_sub(before.arp_replies),
        icmp_errors: now.icmp_errors.wrapping_sub(before.icmp_errors),
        vxlan_packets: now.vxlan_packets.wrapping_sub(before.vxlan_packets),
        vxlan_bytes: now.vxlan_bytes.wrapping_sub(before.vxlan_bytes),
        drops,
    }
}

impl Metrics for EbpfMetrics {
    fn encode_metrics(&self, out: &mut String) {
        self.sync();
        self.counters.encode(out);
        let [vip, vip_reply] = self
            .flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sweep(sys::clock::monotonic_ms());
        ServiceSeries::conntrack_only(vec![("vip", vip), ("vip_reply", vip_reply)]).encode(out);
    }
}
