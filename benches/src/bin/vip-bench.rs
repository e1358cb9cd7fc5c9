//! Service VIP throughput east-west, the two engines side by side in one
//! run: a task on host 1 reaches a VIP whose backends run on hosts 2 and 3
//! (HTTP requests/s with wrk, 50 connections) and a VIP with one backend on
//! host 2 (iperf3, one TCP stream); the same task connecting to a backend's
//! own address over the same overlay is the ceiling of each engine.
//!
//! `cargo run --release -p shoal-benches --bin vip-bench [SECONDS]`
//! (root; build `--bin shoal` in release first).

use std::time::Duration;

use anyhow::{Context, Result};
use shoal_benches::iperf::{Test, measure};
use shoal_netns_tests::{Daemon, Lab, shoal_bin};

const CLIENT: &str = "10.10.0.50";
const BACKENDS: [&str; 2] = ["10.10.0.11", "10.10.0.12"];
/// The VIP of `web` (both backends, HTTP on 80).
const WEB: &str = "10.10.0.100";
/// The VIP of `perf` (the first backend only, iperf3 on 5201): iperf3's
/// control and data connections must reach the same server.
const PERF: &str = "10.10.0.101";

struct Cluster {
    lab: Lab,
    client: String,
    _daemons: Vec<Daemon>,
}

/// Three hosts running `engine`: the client task on the first, a backend
/// task on each of the others serving HTTP and iperf3.
fn cluster(engine: &str) -> Result<Cluster> {
    let mut lab = Lab::new(&format!("vip-bench-{engine}"))?;
    let hosts = (1..=3)
        .map(|i| lab.add_host(&format!("h{i}")))
        .collect::<Result<Vec<_>>>()?;
    let client = lab.add_netns("client")?;
    let backends = [lab.add_netns("web1")?, lab.add_netns("web2")?];
    let tasks = [
        (CLIENT, 0, &client),
        (BACKENDS[0], 1, &backends[0]),
        (BACKENDS[1], 2, &backends[1]),
    ];
    let mut daemons = Vec::new();
    for (me, host) in hosts.iter().enumerate() {
        let mut y = format!(
            "node: {{ name: {}, underlay: {} }}\nnetworks:\n  - {{ name: bench, vni: 4097, subnet: 10.10.0.0/24 }}\nendpoints:\n",
            host.name, host.underlay
        );
        for (ip, on, netns) in tasks {
            let node = hosts[on].underlay;
            if on == me {
                y += &format!("  - {{ network: bench, ip: {ip}, node: {node}, netns: {netns} }}\n");
            } else {
                y += &format!("  - {{ network: bench, ip: {ip}, node: {node} }}\n");
            }
        }
        y += &format!(
            "services:\n  - {{ name: web, vips: {{ bench: {WEB} }}, ports: [ {{ target: 80 }} ],\n      backends: [ {{ ip: {} }}, {{ ip: {} }} ] }}\n  - {{ name: perf, vips: {{ bench: {PERF} }}, ports: [ {{ target: 5201 }} ],\n      backends: [ {{ ip: {} }} ] }}\n",
            BACKENDS[0], BACKENDS[1], BACKENDS[0]
        );
        daemons.push(lab.start_daemon(host, &y, &["--dataplane", engine])?);
    }
    let bin = shoal_bin();
    let bin = bin.to_str().context("utf-8 path")?.to_string();
    for (i, netns) in backends.iter().enumerate() {
        let name = format!("web{}", i + 1);
        lab.spawn(netns, &[&bin, "whoami", "--port", "80", "--name", &name])?;
        lab.spawn(netns, &["iperf3", "-s", "-p", "5201"])?;
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(Cluster {
        lab,
        client,
        _daemons: daemons,
    })
}

fn wrk(c: &Cluster, target: &str, seconds: u32) -> Result<f64> {
    let secs = format!("{seconds}s");
    let url = format!("http://{target}/");
    let out = c.lab.run_ok(
        &c.client,
        &["wrk", "-t", "2", "-c", "50", "-d", &secs, &url],
    )?;
    if out.contains("Non-2xx") || out.contains("Socket errors") {
        eprintln!("wrk to {target} reported errors:\n{out}");
    }
    out.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk output:\n{out}"))
}

fn iperf(c: &Cluster, server: &str, seconds: u32) -> Result<f64> {
    measure(&c.lab, &c.client, server, Test::Tcp { streams: 1 }, seconds)
}

fn main() -> Result<()> {
    let seconds = shoal_benches::count_arg("SECONDS", 5)? as u32;
    let mut rows = Vec::new();
    for engine in ["userspace", "ebpf"] {
        let c = cluster(engine)?;
        // The first requests set up neighbours and flows.
        wrk(&c, WEB, 1)?;
        let row = (
            engine,
            wrk(&c, WEB, seconds)?,
            wrk(&c, BACKENDS[0], seconds)?,
            iperf(&c, PERF, seconds)?,
            iperf(&c, BACKENDS[0], seconds)?,
        );
        eprintln!("{row:?}");
        rows.push(row);
    }
    println!(
        "| VIP east-west, task on host 1, backends on hosts 2 and 3, {seconds} s | HTTP req/s to the VIP | direct to a backend | ratio | TCP Gbit/s to the VIP | direct | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (engine, vip_rps, direct_rps, vip_tcp, direct_tcp) in &rows {
        println!(
            "| shoal {engine} | {vip_rps:.0} | {direct_rps:.0} | {:.2}x | {vip_tcp:.2} | {direct_tcp:.2} | {:.2}x |",
            vip_rps / direct_rps,
            vip_tcp / direct_tcp
        );
    }
    Ok(())
}
