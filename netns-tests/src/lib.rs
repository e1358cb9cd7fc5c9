//! Test hosts in network namespaces on one underlay bridge, for shoal's
//! end-to-end tests and `shoal sandbox`.
//!
//! A [`Lab`] creates namespaces (a switch holding the bridge, hosts with
//! `eth0` on it, bare task namespaces), runs processes and `shoal daemon`
//! inside them, and removes everything when dropped, panics included. The
//! clients in [`net`] run in the caller's namespace: wrap them in
//! [`Lab::in_netns`]. Needs root.

pub mod cdp;
mod daemon;
mod ip;
mod kernel;
mod lab;
pub mod net;
pub mod openmetrics;
mod paths;
pub mod pcap;
mod proc;
pub mod registry;
pub mod swarm;

pub use daemon::{DAEMON_START_TIMEOUT, Daemon, DaemonConfig, write_atomic};
pub use ip::netns_list;
pub use lab::{Host, Lab, LabState, RUN_TIMEOUT, sweep, task_netns, teardown};
pub use net::{http_get, udp_roundtrip, unix_http_get, wait_until, whoami_hostname, whoami_spray};
pub use nix::sys::signal::Signal;
pub use paths::{shoal_bin, target_dir, try_shoal_bin};
pub use proc::{Proc, ProcRecord, SpawnOpts, TERM_GRACE};
pub use swarm::SwarmNode;
