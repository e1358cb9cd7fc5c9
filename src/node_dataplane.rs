//! The data plane of a node, as the agent feeds it (the engines themselves
//! live in `dataplane/src/engine`): the engine and
//! the task resolver start with the first tables (the node's underlay
//! address is known only once it is in a swarm), follow every change, and
//! are removed when the node leaves or stops.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use anyhow::Context;
use shoal_control::agent::DataPlane;
use shoal_dataplane::dns;
use shoal_dataplane::engine::userspace::{Options, UserspaceEngine};
use shoal_dataplane::engine::{Dataplane, Metrics};
use shoal_dataplane::overlay::tunnel::NodeKey;
use shoal_dataplane::sys;
use shoal_dataplane::tables::Tables;
use tokio::sync::Mutex;

/// Which data-plane engine a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Userspace,
    Ebpf,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Userspace => "userspace",
            Engine::Ebpf => "ebpf",
        }
    }
}

/// The engine and resolver of a node, started on demand.
pub struct NodeDataplane {
    engine: Engine,
    wire: Wire,
    state_dir: PathBuf,
    /// This node's WireGuard key, for the encrypted networks' tunnels.
    pub tunnel_key: NodeKey,
    running: Mutex<Option<Running>>,
    /// The running engine's counters, for `/metrics`.
    counters: std::sync::Mutex<Option<Arc<dyn Metrics>>>,
}

struct Running {
    underlay: Ipv4Addr,
    engine: Box<dyn Dataplane>,
    resolver: dns::Resolver,
}

impl Running {
    fn stop(mut self) {
        self.engine.shutdown();
        self.resolver.shutdown();
    }
}

impl NodeDataplane {
    pub fn new(engine: Engine, wire: Wire, state_dir: &Path, tunnel_key: NodeKey) -> NodeDataplane {
        NodeDataplane {
            engine,
            wire,
            state_dir: state_dir.to_path_buf(),
            tunnel_key,
            running: Mutex::new(None),
            counters: std::sync::Mutex::new(None),
        }
    }

    /// Appends the running engine's families to `out` (nothing before the
    /// engine starts).
    pub fn encode_metrics(&self, out: &mut String) {
        let shared = self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(shared) = shared {
            shared.encode_metrics(out);
        }
    }

    fn set_counters(&self, shared: Option<Arc<dyn Metrics>>) {
        *self.counters.lock().unwrap_or_else(PoisonError::into_inner) = shared;
    }
}

/// The node's UDP ports between nodes.
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    /// VXLAN (4789).
    pub vxlan_port: u16,
    /// The encrypted networks' WireGuard (51820).
    pub tunnel_port: u16,
}

/// Starts `engine` on the device holding `underlay`; `tunnel_key` is the
/// node's WireGuard key, for encrypted networks.
pub async fn start_engine(
    engine: Engine,
    underlay: Ipv4Addr,
    wire: Wire,
    tunnel_key: &NodeKey,
    node: &str,
) -> anyhow::Result<Box<dyn Dataplane>> {
    let vxlan_port = wire.vxlan_port;
    let link = sys::link::find_underlay(underlay).await?;
    tracing::info!(
        "node {node} on underlay {underlay} ({}, MTU {})",
        link.name,
        link.mtu
    );
    match engine {
        Engine::Userspace => Ok(Box::new(UserspaceEngine::start(Options {
            underlay,
            underlay_mtu: link.mtu,
            vxlan_port,
            tunnel_key: Some(tunnel_key.clone()),
            tunnel_port: wire.tunnel_port,
        })?)),
        Engine::Ebpf => Ok(shoal_dataplane::engine::ebpf::start(
            shoal_dataplane::engine::ebpf::Options {
                underlay,
                underlay_ifname: link.name,
                underlay_ifindex: link.index,
                underlay_mtu: link.mtu,
                vxlan_port,
                reaper: reaper_argv(),
            },
        )?),
    }
}

/// The embedded DNS resolver, forwarding to the resolvers of the daemon's
/// own namespace.
pub fn start_resolver(state_dir: &Path) -> anyhow::Result<dns::Resolver> {
    let resolv_conf = Path::new("/etc/resolv.conf");
    let upstreams = dns::upstreams_from_resolv_conf(resolv_conf)?;
    if upstreams.is_empty() {
        tracing::warn!(
            "dns: {} names no resolver; tasks get SERVFAIL for names that are not services",
            resolv_conf.display()
        );
    }
    Ok(dns::Resolver::new(state_dir, upstreams)?)
}

#[async_trait::async_trait]
impl DataPlane for NodeDataplane {
    async fn apply(&self, tables: Option<&Tables>) -> Result<(), String> {
        let mut running = self.running.lock().await;
        let stale = running
            .as_ref()
            .is_some_and(|r| tables.is_none_or(|t| t.node.underlay != r.underlay));
        if stale && let Some(r) = running.take() {
            tracing::info!("data plane: stopping");
            self.set_counters(None);
            r.stop();
        }
        let Some(tables) = tables else {
            return Ok(());
        };
        if running.is_none() {
            let underlay = tables.node.underlay;
            let engine = start_engine(
                self.engine,
                underlay,
                self.wire,
                &self.tunnel_key,
                &tables.node.name,
            )
            .await
            .context("starting the data plane")
            .map_err(|e| format!("{e:#}"))?;
            let resolver = start_resolver(&self.state_dir).map_err(|e| format!("{e:#}"))?;
            self.set_counters(Some(engine.metrics()));
            *running = Some(Running {
                underlay,
                engine,
                resolver,
            });
        }
        let Some(r) = running.as_mut() else {
            return Ok(());
        };
        let report = r.engine.apply(tables).map_err(|e| e.to_string())?;
        if report.ports_added.is_empty() && report.ports_removed.is_empty() {
            tracing::debug!("tables applied: {report}");
        } else {
            tracing::info!("tables applied: {report}");
        }
        r.resolver.apply(tables).map_err(|e| e.to_string())
    }
}

/// `shoal reap-task-interfaces`, by the path of this very binary: the eBPF
/// engine's reaper. Without a path to itself (deleted binary), none.
fn reaper_argv() -> Option<Vec<std::ffi::OsString>> {
    let exe = std::env::current_exe().ok()?;
    Some(vec![exe.into_os_string(), "reap-task-interfaces".into()])
}
