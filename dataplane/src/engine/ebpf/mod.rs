//! The eBPF engine: the overlay at kernel speed. An XDP program on the
//! underlay (ARP for owned addresses, VXLAN decapsulation to local tasks,
//! ARP inside VXLAN) and a tc program on the node end of each task's veth
//! (ARP, ICMP "fragmentation needed", local delivery, VXLAN encapsulation),
//! with per-CPU counters. Service VIPs are balanced in tc and their replies
//! translated back in tc or XDP (`ebpf/programs/src/vip.rs`); the routing
//! mesh is not in it yet: it refuses tables with published ports.
//!
//! [`maps`] computes what the maps hold from [`crate::tables::Tables`]
//! without touching the kernel; [`loader`] and [`engine`] (only in builds
//! with the programs, `cfg(shoal_ebpf)`) put it there.

#[cfg(shoal_ebpf)]
pub mod engine;
#[cfg(shoal_ebpf)]
pub mod loader;
pub mod maps;

use std::fmt;
use std::net::Ipv4Addr;

pub use maps::{Maps, Underlay};

use super::{Dataplane, EngineError};

/// Options of the eBPF engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// This node's underlay address.
    pub underlay: Ipv4Addr,
    /// The interface holding it.
    pub underlay_ifname: String,
    pub underlay_ifindex: u32,
    pub underlay_mtu: u16,
    /// UDP port of VXLAN (4789).
    pub vxlan_port: u16,
    /// The program and arguments of a process that removes the task
    /// interfaces once its standard input ends (`sys::veth::reap_after_eof`
    /// with [`NODE_END_PREFIX`]); the engine holds the writing end, so a
    /// crashed daemon leaves no veth behind. `None`: no reaper (the next
    /// start removes what a crash left).
    pub reaper: Option<Vec<std::ffi::OsString>>,
}

/// Prefix of the node ends of the eBPF engine's task interfaces.
pub const NODE_END_PREFIX: &str = "shv";

/// Starts the eBPF engine, or says why it cannot run here. Must run in the
/// node's network namespace.
pub fn start(options: Options) -> Result<Box<dyn Dataplane>, EngineError> {
    #[cfg(shoal_ebpf)]
    {
        Ok(Box::new(engine::EbpfEngine::start(options)?))
    }
    #[cfg(not(shoal_ebpf))]
    {
        let _ = options;
        Err(EngineError::Ebpf(Unavailable::NotBuilt.to_string()))
    }
}

/// Turns on the kernel's run-time accounting of BPF programs while the
/// descriptor is open (for benchmarks: CPU per packet of the programs).
pub fn run_time_stats() -> Result<std::os::fd::OwnedFd, EngineError> {
    #[cfg(shoal_ebpf)]
    {
        loader::run_time_stats().map_err(|e| EngineError::Ebpf(e.to_string()))
    }
    #[cfg(not(shoal_ebpf))]
    {
        Err(EngineError::Ebpf(Unavailable::NotBuilt.to_string()))
    }
}

/// Why the eBPF engine cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// This binary was built without the eBPF toolchain.
    NotBuilt,
    /// The kernel is too old, or its release could not be read.
    Kernel(String),
    /// The process lacks CAP_BPF/CAP_SYS_ADMIN or CAP_NET_ADMIN.
    Privileges(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NotBuilt => write!(
                f,
                "this build has no eBPF programs ({}); run scripts/setup.sh and rebuild",
                option_env!("SHOAL_EBPF_LEFT_OUT").unwrap_or("built without them")
            ),
            Unavailable::Kernel(why) => write!(f, "the kernel cannot run the eBPF engine: {why}"),
            Unavailable::Privileges(why) => write!(f, "not privileged enough for eBPF: {why}"),
        }
    }
}

/// Whether this build carries the eBPF programs.
pub const fn built_in() -> bool {
    cfg!(shoal_ebpf)
}

/// Oldest kernel the programs are written for: XDP through bpf_link and
/// CAP_BPF (5.8), and BTF-described maps.
const MIN_KERNEL: (u32, u32) = (5, 8);

/// Why the eBPF engine cannot run in this process on this machine, or
/// `None` when it can: built in, a recent enough kernel, and the
/// capabilities to load programs and attach them to interfaces.
pub fn unavailable() -> Option<Unavailable> {
    if !built_in() {
        return Some(Unavailable::NotBuilt);
    }
    let release = match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(r) => r,
        Err(e) => {
            return Some(Unavailable::Kernel(format!(
                "reading /proc/sys/kernel/osrelease: {e}"
            )));
        }
    };
    if let Err(why) = kernel_ok(release.trim()) {
        return Some(Unavailable::Kernel(why));
    }
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        Err(e) => {
            return Some(Unavailable::Privileges(format!(
                "reading /proc/self/status: {e}"
            )));
        }
    };
    privileges_ok(&status).err().map(Unavailable::Privileges)
}

/// Checks a kernel release string such as `6.18.0-1-amd64`.
fn kernel_ok(release: &str) -> Result<(), String> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    let (Some(major), Some(minor)) = (next(), next()) else {
        return Err(format!("unrecognised kernel release `{release}`"));
    };
    if (major, minor) < MIN_KERNEL {
        return Err(format!(
            "kernel {major}.{minor} is older than {}.{}",
            MIN_KERNEL.0, MIN_KERNEL.1
        ));
    }
    Ok(())
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Checks the effective capabilities in the text of `/proc/self/status`.
fn privileges_ok(status: &str) -> Result<(), String> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or("no CapEff line in /proc/self/status")?;
    let has = |cap: u32| eff & (1 << cap) != 0;
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        return Err("CAP_BPF (or CAP_SYS_ADMIN) is missing; run as root".into());
    }
    if !has(CAP_NET_ADMIN) {
        return Err("CAP_NET_ADMIN is missing; run as root".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        assert!(kernel_ok("6.18.0-1-amd64").is_ok());
        assert!(kernel_ok("5.8.0").is_ok());
        assert!(kernel_ok("5.10").is_ok());
        assert!(kernel_ok("5.7.19").unwrap_err().contains("older than 5.8"));
        assert!(kernel_ok("4.19.0").is_err());
        assert!(kernel_ok("linux").unwrap_err().contains("unrecognised"));
    }

    #[test]
    fn capabilities_come_from_cap_eff() {
        let root = "Name:\tshoal\nCapEff:\t000001ffffffffff\n";
        assert!(privileges_ok(root).is_ok());
        let sys_admin_only = format!("CapEff:\t{:016x}\n", (1u64 << 21) | (1 << 12));
        assert!(privileges_ok(&sys_admin_only).is_ok());
        let no_net = format!("CapEff:\t{:016x}\n", 1u64 << 39);
        assert!(
            privileges_ok(&no_net)
                .unwrap_err()
                .contains("CAP_NET_ADMIN")
        );
        let none = "CapEff:\t0000000000000000\n";
        assert!(privileges_ok(none).unwrap_err().contains("CAP_BPF"));
        assert!(privileges_ok("Name: x\n").is_err());
    }
}
