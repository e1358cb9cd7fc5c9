//! CPU per packet of the two engines, measured around a benchmark run: the
//! daemons' own CPU time for the userspace engine, the kernel's run-time
//! accounting of shoal's programs for the eBPF engine.

use anyhow::{Context, Result};
use shoal_netns_tests::{Daemon, Lab};

/// User plus system CPU time of `pid` and all its threads, in nanoseconds.
pub fn process_cpu_ns(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may
    // hold spaces: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(") ").context("a /proc stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("a tick count")
    };
    // Linux reports these in USER_HZ, 100 per second on every architecture
    // it runs on.
    Ok((ticks(11)? + ticks(12)?) * 10_000_000)
}

/// The daemons' CPU time together.
pub fn daemons_cpu_ns(daemons: &[Daemon]) -> Result<u64> {
    daemons.iter().map(|d| process_cpu_ns(d.proc.pid)).sum()
}

/// VXLAN datagrams the daemons sent, from their `/metrics`.
pub fn vxlan_sent(daemons: &[Daemon]) -> Result<u64> {
    let mut sum = 0;
    for d in daemons {
        let metrics = d.metrics()?;
        sum += metrics
            .lines()
            .filter(|l| l.starts_with("shoal_dataplane_vxlan_packets_total{direction=\"tx\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(sum)
}

/// Run time and run count summed over every loaded program whose name
/// starts with `shoal_`, by `bpftool -j prog show` in `netns`.
pub fn bpf_run_time(lab: &Lab, netns: &str) -> Result<(u64, u64)> {
    let out = lab.run_ok(netns, &["bpftool", "-j", "prog", "show"])?;
    let progs: Vec<serde_json::Value> = serde_json::from_str(&out).context("bpftool JSON")?;
    Ok(progs
        .iter()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("shoal_")))
        .fold((0, 0), |(ns, cnt), p| {
            (
                ns + p["run_time_ns"].as_u64().unwrap_or(0),
                cnt + p["run_cnt"].as_u64().unwrap_or(0),
            )
        }))
}
