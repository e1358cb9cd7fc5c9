//! Orchestration timings on real daemons in network namespaces (one
//! manager, two workers, a client host), default settings:
//! - create: `service create --replicas 10 -p 8080:80` to all 10 tasks
//!   answering through the routing mesh on node 1 (a client sprays new
//!   connections until it has seen every task's hostname);
//! - recovery: kill -9 of a worker's daemon (its tasks die with it) to
//!   every slot running again elsewhere and the mesh on both survivors
//!   answering only from live tasks (Swarm's timers add up to about 20 s);
//! - stack: `stack deploy` of a two-service compose file (`front`, 6
//!   replicas published on 8081; `api`, 3 replicas) to every `front` task
//!   answering through the mesh, then a redeploy that scales `api` to 5 to
//!   its 5 tasks running (`front` untouched).
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
const STACK_PORT: u16 = 8081;
const FRONT: usize = 6;

fn compose(api: usize) -> String {
    format!(
        "version: \"3.8\"\nservices:\n  front:\n    command: shoal whoami --port 80\n    \
         deploy: {{ replicas: {FRONT} }}\n    ports: [\"{STACK_PORT}:80\"]\n  api:\n    \
         command: shoal whoami --port 3000\n    deploy: {{ replicas: {api} }}\n"
    )
}

/// Hostnames answering `n` new connections to `addr` from `client`, and
/// how many failed.
fn spray(lab: &Lab, client: &Host, addr: SocketAddrV4, n: usize) -> (BTreeSet<String>, usize) {
    let (seen, failed) = whoami_spray(lab, &client.netns, addr, n, Duration::from_millis(500));
    (seen.into_keys().collect(), failed)
}

/// Times a stack deploy to reachable and a one-service redeploy to converged.
fn stack(
    lab: &Lab,
    m: &shoal_netns_tests::SwarmNode,
    client: &Host,
) -> Result<(Duration, Duration)> {
    let file = lab.dir().join("stack.yml");
    let path = file.to_str().context("path")?.to_owned();
    std::fs::write(&file, compose(3))?;
    let entry = SocketAddrV4::new(m.host.underlay, STACK_PORT);
    let started = Instant::now();
    m.shoal_ok(&["stack", "deploy", "-c", &path, "bench"])?;
    let mut seen = BTreeSet::new();
    wait_until(
        "the stack's front tasks to answer through the mesh",
        T,
        || {
            let (s, _) = spray(lab, client, entry, 20);
            seen.extend(s);
            (seen.len() == FRONT).then_some(())
        },
    )?;
    let deploy = started.elapsed();
    let front: BTreeSet<String> = running_tasks(m, "bench_front")?.into_keys().collect();
    std::fs::write(&file, compose(5))?;
    let started = Instant::now();
    m.shoal_ok(&["stack", "deploy", "-c", &path, "bench"])?;
    wait_until("api to run 5 tasks", T, || {
        (running_tasks(m, "bench_api").ok()?.len() == 5).then_some(())
    })?;
    let redeploy = started.elapsed();
    let after: BTreeSet<String> = running_tasks(m, "bench_front")?.into_keys().collect();
    anyhow::ensure!(
        after == front,
        "the redeploy touched front: {front:?} -> {after:?}"
    );
    m.shoal_ok(&["stack", "rm", "bench"])?;
    Ok((deploy, redeploy))
}

fn round(r: usize) -> Result<(Duration, Duration, Duration, Duration)> {
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
    let (deploy, redeploy) = stack(&lab, m, &client)?;

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
    Ok((create, recovery, deploy, redeploy))
}

fn main() -> Result<()> {
    let rounds = shoal_benches::count_arg("ROUNDS", 3)?;
    let mut creates = Vec::new();
    let mut recoveries = Vec::new();
    let mut deploys = Vec::new();
    let mut redeploys = Vec::new();
    for r in 1..=rounds {
        let (c, k, d, u) = round(r)?;
        println!(
            "round {r}: create --replicas {REPLICAS} to all reachable {:.0} ms; worker killed to recovered {:.0} ms; \
             stack deploy {:.0} ms, redeploy {:.0} ms",
            c.as_secs_f64() * 1e3,
            k.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3,
            u.as_secs_f64() * 1e3
        );
        creates.push(c);
        recoveries.push(k);
        deploys.push(d);
        redeploys.push(u);
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
    println!(
        "stack deploy (front {FRONT} + api 3) to front reachable through the mesh: {}",
        range(&mut deploys)
    );
    println!(
        "stack redeploy (api 3 -> 5) to api converged: {}",
        range(&mut redeploys)
    );
    Ok(())
}
