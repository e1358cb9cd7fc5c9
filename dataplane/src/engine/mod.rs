//! Engines install [`Tables`] on a node: the userspace engine (TAP devices
//! and UDP sockets driven by the sans-IO [`crate::overlay`] core) and the
//! eBPF fast path (programs on the underlay and task interfaces). Both
//! implement [`Dataplane`].

pub mod counters;
pub mod ebpf;
pub mod ports;
pub mod service_stats;
pub mod stats;
pub mod userspace;

use std::fmt;

use crate::tables::Tables;

/// What an engine did to reach the desired tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub ports_added: Vec<String>,
    pub ports_removed: Vec<String>,
    pub ports_kept: usize,
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} interfaces added, {} removed, {} unchanged",
            self.ports_added.len(),
            self.ports_removed.len(),
            self.ports_kept
        )
    }
}

/// A failure to install tables. Tables are validated before they reach an
/// engine, so this is the operating system refusing (a namespace vanished
/// meanwhile, no memory). The engine keeps running the endpoints that were
/// in force and did not change, and names the one that failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "setting up the interface of endpoint {endpoint} in network namespace `{netns}`: {source}"
    )]
    Port {
        endpoint: String,
        netns: String,
        source: std::io::Error,
    },
    #[error("underlay: {0}")]
    Underlay(std::io::Error),
    #[error("routing mesh: {0}")]
    Mesh(std::io::Error),
    #[error(
        "port {port}/{proto} is already in use on this node; publish another port or stop the program using it"
    )]
    PortInUse {
        proto: crate::tables::Protocol,
        port: u16,
    },
    #[error("eBPF engine: {0}")]
    Ebpf(String),
    #[error("the {engine} engine cannot carry these tables: {what}")]
    Unsupported { engine: &'static str, what: String },
    #[error(
        "the tables are for node {tables}, but this engine runs on {engine}; restart the daemon to change the node's underlay address"
    )]
    NodeChanged {
        tables: std::net::Ipv4Addr,
        engine: std::net::Ipv4Addr,
    },
}

/// What `/metrics` shows of a running engine; shared with the metrics
/// endpoint, which outlives borrows of the engine.
pub trait Metrics: Send + Sync {
    /// Appends the engine's families in the OpenMetrics text format,
    /// without the closing `# EOF`.
    fn encode_metrics(&self, out: &mut String);
}

/// A data-plane engine.
pub trait Dataplane: Send {
    /// Short name for logs and metrics (`userspace`, `ebpf`).
    fn name(&self) -> &'static str;

    /// Installs `tables` (already validated): creates what is new, removes
    /// what is gone, leaves unchanged endpoints and their flows alone.
    fn apply(&mut self, tables: &Tables) -> Result<ApplyReport, EngineError>;

    /// Removes everything the engine created.
    fn shutdown(&mut self);

    /// The engine's counters, for `/metrics`.
    fn metrics(&self) -> std::sync::Arc<dyn Metrics>;
}
