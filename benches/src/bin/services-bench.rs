//! Orchestration timings on real daemons in network namespaces (one
//! manager, two workers, a client host), default settings:
//! - create: `service create --replicas 10 -p 8080:80` to all 10 tasks
//!   answering through the routing mesh on node 1 (a client sprays new
//!   connections until it has seen every task's hostname);
//! - recovery: kill -9 of a worker's daemon (its tasks die with it) to
//!   every slot running again elsewhere and the mesh on both survivors
//!   answering only from live tasks (Swarm's timers add up to about 20 s).
//!
//! `cargo run --release -p shoal-benches --bin services-bench [ROUNDS]`
//! (root; build `--bin shoal` in release first).

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use shoal_netns_tests::swarm::{formed, running_tasks};
use shoal_netns_tests::{Host, Lab, wait_until, whoami_spray};

const T: Duration = Duration::from_secs(60);
const REPLICAS: usize = 10;
const PORT: u16 = 8080;

/// Hostnames answering `n` new connections to `addr` from `client`, and
/// how many failed.
fn spray(lab: &Lab, client: &Host, addr: SocketAddrV4, n: usize) -> (BTreeSet<String>, usize) {
    let (seen, failed) = whoami_spray(lab, &client.netns, addr, n, Duration::from_millis(500));
    (seen.into_keys().collect(), failed)
}

fn round(r: usize) -> Result<(Duration, Duration)> {
    let mut lab = Lab::new(&format!("services-bench-{r}"))?;
    let mut swarm = formed(&mut lab, 1, 2)?;
    let client = lab.add_host("client")?;
    let m = swarm.manager(0);
    let entry = SocketAddrV4::new(m.host.underlay, PORT);

    let replicas = REPLICAS.to_string();
    let published = format!("{PORT}:80");
    let started = Instant::now();
    m.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        &replicas,
        "-p",
        &published,
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    let mut seen = BTreeSet::new();
    wait_until("all replicas to answer through the mesh", T, || {
        let (s, _) = spray(&lab, &client, entry, 20);
        seen.extend(s);
        (seen.len() == REPLICAS).then_some(())
    })?;
    let create = started.elapsed();

    // Kill w2's daemon; its tasks die with it.
    let victim = swarm.nodes[2].host.name.clone();
    let started = Instant::now();
    swarm.nodes[2].proc.kill9();
    let survivors: Vec<SocketAddrV4> = swarm.nodes[..2]
        .iter()
        .map(|n| SocketAddrV4::new(n.host.underlay, PORT))
        .collect();
    wait_until("replacements running and the mesh updated", T, || {
        let tasks = running_tasks(swarm.manager(0), "web").ok()?;
        if tasks.len() != REPLICAS || tasks.iter().any(|(_, n)| *n == victim) {
            return None;
        }
        let live: BTreeSet<String> = tasks.into_keys().collect();
        for addr in &survivors {
            let (seen, failed) = spray(&lab, &client, *addr, 20);
            if failed > 0 || !seen.is_subset(&live) {
                return None;
            }
        }
        Some(())
    })
    .context("recovery")?;
    let recovery = started.elapsed();
    swarm.nodes.truncate(2);
    Ok((create, recovery))
}

fn main() -> Result<()> {
    let rounds = shoal_benches::count_arg("ROUNDS", 3)?;
    let mut creates = Vec::new();
    let mut recoveries = Vec::new();
    for r in 1..=rounds {
        let (c, k) = round(r)?;
        println!(
            "round {r}: create --replicas {REPLICAS} to all reachable {:.0} ms; worker killed to recovered {:.0} ms",
            c.as_secs_f64() * 1e3,
            k.as_secs_f64() * 1e3
        );
        creates.push(c);
        recoveries.push(k);
    }
    let range = |v: &mut Vec<Duration>| {
        v.sort();
        format!(
            "{:.0}-{:.0} ms (median {:.0})",
            v[0].as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3,
            v[v.len() / 2].as_secs_f64() * 1e3
        )
    };
    println!(
        "create --replicas {REPLICAS} to all reachable through the mesh: {}",
        range(&mut creates)
    );
    println!(
        "worker killed to replacements running and the mesh updated: {}",
        range(&mut recoveries)
    );
    Ok(())
}
