//! Routing mesh throughput, side by side in one run: a client host reaches
//! a published port on node 1 whose backends run on nodes 2 and 3, through
//! shoal, through nftables DNAT (kube-proxy's way: `numgen` and masquerade)
//! and through HAProxy in TCP mode; and the same client connects directly to
//! a backend as the ceiling. HTTP requests/s with wrk (50 connections) to two
//! backends, and iperf3 Gbit/s to one.
//!
//! `cargo run --release -p shoal-benches --bin mesh-bench [SECONDS [shoal]]`
//! (root; build `--bin shoal` in release first).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use shoal_benches::iperf::{Test, measure};
use shoal_netns_tests::{Host, Lab, shoal_bin, write_atomic};

/// Threads wrk and HAProxy use.
const THREADS: &str = "2";

struct Topology {
    lab: Lab,
    client: Host,
    nodes: Vec<Host>,
}

fn topology(name: &str) -> Result<Topology> {
    let mut lab = Lab::new(name)?;
    let client = lab.add_host("client")?;
    let nodes = (1..=3)
        .map(|i| lab.add_host(&format!("n{i}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(Topology { lab, client, nodes })
}

/// whoami on port 80 and iperf3 on 5201 in the host namespaces of nodes 2
/// and 3, for the variants without an overlay.
fn plain_backends(t: &mut Topology) -> Result<()> {
    let bin = shoal_bin();
    let bin = bin.to_str().context("utf-8 path")?.to_string();
    for n in t.nodes[1..].iter().cloned() {
        t.lab.spawn(
            &n.netns,
            &[&bin, "whoami", "--port", "80", "--name", &n.name],
        )?;
        t.lab.spawn(&n.netns, &["iperf3", "-s", "-p", "5201"])?;
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

fn wrk(t: &Topology, target: &str, seconds: u32) -> Result<f64> {
    let secs = format!("{seconds}s");
    let url = format!("http://{target}/");
    let out = t.lab.run_ok(
        &t.client.netns,
        &["wrk", "-t", THREADS, "-c", "50", "-d", &secs, &url],
    )?;
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk output:\n{out}"))?;
    if out.contains("Non-2xx") || out.contains("Socket errors") {
        eprintln!("wrk to {target} reported errors:\n{out}");
    }
    Ok(rps)
}

fn iperf(t: &Topology, server: Ipv4Addr, seconds: u32) -> Result<f64> {
    measure(
        &t.lab,
        &t.client.netns,
        &server.to_string(),
        Test::Tcp { streams: 1 },
        seconds,
    )
}

fn direct(seconds: u32) -> Result<(f64, f64)> {
    let mut t = topology("bench-direct")?;
    plain_backends(&mut t)?;
    let b = t.nodes[1].underlay;
    Ok((
        wrk(&t, &format!("{b}:80"), seconds)?,
        iperf(&t, b, seconds)?,
    ))
}

fn nftables(seconds: u32) -> Result<(f64, f64)> {
    let mut t = topology("bench-nft")?;
    plain_backends(&mut t)?;
    let (entry, b2, b3) = (
        t.nodes[0].underlay,
        t.nodes[1].underlay,
        t.nodes[2].underlay,
    );
    let rules = format!(
        "table ip bench {{
  chain prerouting {{ type nat hook prerouting priority -100; policy accept;
    ip daddr {entry} tcp dport 8080 dnat to numgen inc mod 2 map {{ 0 : {b2}, 1 : {b3} }}:80
    ip daddr {entry} tcp dport 5201 dnat to {b2}:5201
  }}
  chain postrouting {{ type nat hook postrouting priority 100; policy accept;
    ct status dnat masquerade
  }}
}}
"
    );
    let file = t.lab.dir().join("nft.conf");
    write_atomic(&file, &rules)?;
    let n1 = t.nodes[0].netns.clone();
    t.lab
        .run_ok(&n1, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    t.lab
        .run_ok(&n1, &["nft", "-f", file.to_str().context("path")?])?;
    Ok((
        wrk(&t, &format!("{entry}:8080"), seconds)?,
        iperf(&t, entry, seconds)?,
    ))
}

fn haproxy(seconds: u32) -> Result<(f64, f64)> {
    let mut t = topology("bench-haproxy")?;
    plain_backends(&mut t)?;
    let (entry, b2, b3) = (
        t.nodes[0].underlay,
        t.nodes[1].underlay,
        t.nodes[2].underlay,
    );
    let cfg = format!(
        "global
  nbthread {THREADS}
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend web
  bind {entry}:8080
  default_backend web
backend web
  balance roundrobin
  server b2 {b2}:80
  server b3 {b3}:80
frontend bulk
  bind {entry}:5201
  default_backend bulk
backend bulk
  server b2 {b2}:5201
"
    );
    let file = t.lab.dir().join("haproxy.cfg");
    write_atomic(&file, &cfg)?;
    let n1 = t.nodes[0].netns.clone();
    t.lab.spawn(
        &n1,
        &["haproxy", "-db", "-f", file.to_str().context("path")?],
    )?;
    std::thread::sleep(Duration::from_millis(500));
    Ok((
        wrk(&t, &format!("{entry}:8080"), seconds)?,
        iperf(&t, entry, seconds)?,
    ))
}

fn shoal(seconds: u32) -> Result<(f64, f64)> {
    let mut t = topology("bench-shoal-mesh")?;
    let bin = shoal_bin();
    let bin = bin.to_str().context("utf-8 path")?.to_string();
    let web2 = t.lab.add_netns("web2")?;
    let web3 = t.lab.add_netns("web3")?;
    let tasks = [(&web2, "10.10.0.12", 1usize), (&web3, "10.10.0.13", 2usize)];
    let services = "services:
  - { name: web, vips: { red: 10.10.0.100 }, ports: [ { target: 80, published: 8080 } ], backends: [ { ip: 10.10.0.12 }, { ip: 10.10.0.13 } ] }
  - { name: bulk, vips: { red: 10.10.0.101 }, ports: [ { target: 5201, published: 5201 } ], backends: [ { ip: 10.10.0.12 } ] }
";
    for (me, node) in t.nodes.clone().iter().enumerate() {
        let mut y = format!(
            "node: {{ name: {}, underlay: {} }}\npeers: [ {} ]\nnetworks: [ {{ name: red, vni: 4097, subnet: 10.10.0.0/24 }} ]\nendpoints:\n",
            node.name,
            node.underlay,
            // The entry node runs no task: only as a peer is it a node.
            t.nodes
                .iter()
                .filter(|n| n.underlay != node.underlay)
                .map(|n| n.underlay.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (netns, ip, host) in &tasks {
            let at = t.nodes[*host].underlay;
            if *host == me {
                y += &format!("  - {{ network: red, ip: {ip}, node: {at}, netns: {netns} }}\n");
            } else {
                y += &format!("  - {{ network: red, ip: {ip}, node: {at} }}\n");
            }
        }
        y += services;
        t.lab.start_daemon(node, &y, &[])?;
    }
    for (netns, _, host) in &tasks {
        let name = format!("web-n{}", host + 1);
        t.lab
            .spawn(netns, &[&bin, "whoami", "--port", "80", "--name", &name])?;
    }
    t.lab.spawn(&web2, &["iperf3", "-s", "-p", "5201"])?;
    std::thread::sleep(Duration::from_millis(500));
    let entry = t.nodes[0].underlay;
    Ok((
        wrk(&t, &format!("{entry}:8080"), seconds)?,
        iperf(&t, entry, seconds)?,
    ))
}

fn main() -> Result<()> {
    let seconds: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    if seconds == 0 {
        bail!("SECONDS must be at least 1");
    }
    // `shoal` as a second argument runs shoal alone (for profiling).
    if std::env::args().nth(2).as_deref() == Some("shoal") {
        let (rps, gbps) = shoal(seconds)?;
        println!("shoal userspace mesh: {rps:.0} requests/s, {gbps:.2} Gbit/s");
        return Ok(());
    }
    let rows = [
        ("direct to one backend", direct(seconds)?),
        ("nftables DNAT (numgen) + masquerade", nftables(seconds)?),
        ("HAProxy, TCP mode, 2 threads", haproxy(seconds)?),
        ("shoal userspace mesh", shoal(seconds)?),
    ];
    let haproxy_rps = rows[2].1.0;
    println!(
        "| routing mesh, client -> node 1 -> backends on nodes 2 and 3, {seconds} s | HTTP req/s (wrk, 50 conns) | vs HAProxy | TCP Gbit/s (iperf3, 1 stream, 1 backend) |"
    );
    println!("|---|---:|---:|---:|");
    for (name, (rps, gbps)) in rows {
        println!(
            "| {name} | {rps:.0} | {:.2}x | {gbps:.2} |",
            rps / haproxy_rps
        );
    }
    Ok(())
}
