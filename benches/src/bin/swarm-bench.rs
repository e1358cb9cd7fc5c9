//! Control-plane timings with default settings, on real daemons in network
//! namespaces: join time (worker and manager), commit latency (p50/p99 of
//! `node update` writes through the admin API, on the leader and on a
//! follower that forwards), node-death detection (kill -9 of a worker to
//! `Down` in `node ls`), leader failover (kill -9 of the leader to the
//! next committed write on another manager) and a worker's failover (the
//! manager it streams the state from goes silent, its packets dropped
//! inside the worker's host: a change made on another manager to the
//! worker's copy of the state showing it).
//!
//! `cargo run --release -p shoal-benches --bin swarm-bench [ROUNDS]`
//! (root; build `--bin shoal` in release first).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shoal_netns_tests::{Lab, SwarmNode, wait_until};

const T: Duration = Duration::from_secs(60);

/// One admin-API call; true on a 2xx answer.
fn post(socket: &Path, path: &str, body: &str) -> Result<bool> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(T))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer.starts_with("HTTP/1.1 2"))
}

fn label_write(node: &SwarmNode, target: &str, i: usize) -> Result<bool> {
    post(
        &node.socket,
        &format!("/nodes/{target}/update"),
        &format!(r#"{{"labels_add":{{"n":"{i}"}}}}"#),
    )
}

fn info(node: &SwarmNode) -> Result<Value> {
    Ok(serde_json::from_str(&node.get("/info")?)?)
}

fn nodes(node: &SwarmNode) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&node.get("/nodes")?)?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn status_of(node: &SwarmNode, host: &str) -> Option<String> {
    nodes(node)
        .ok()?
        .into_iter()
        .find(|n| n["hostname"] == host)
        .and_then(|n| n["status"].as_str().map(str::to_owned))
}

fn leader(managers: &[SwarmNode]) -> Result<usize> {
    let id = wait_until("a leader", T, || {
        info(&managers[0]).ok()?["leader"]
            .as_str()
            .map(str::to_owned)
    })?;
    managers
        .iter()
        .position(|m| {
            info(m)
                .ok()
                .and_then(|i| i["node_id"].as_str().map(str::to_owned))
                == Some(id.clone())
        })
        .context("no manager has the leader's id")
}

fn all_ready(node: &SwarmNode, n: usize) -> Result<()> {
    wait_until("every node Ready", T, || {
        let ns = nodes(node).ok()?;
        (ns.len() == n && ns.iter().all(|x| x["status"] == "ready")).then_some(())
    })
}

/// How many tasks `node`'s own copy of the state holds, from its
/// `/metrics`.
fn tasks_seen_by(node: &SwarmNode) -> Option<f64> {
    let text = node.get("/metrics").ok()?;
    Some(
        shoal_netns_tests::openmetrics::Exposition::parse(&text)
            .ok()?
            .sum("shoal_tasks", &[]),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let rounds = shoal_benches::count_arg("ROUNDS", 3)?;
    let mut lab = Lab::new("swarm-bench")?;
    let mut managers = Vec::new();
    for i in 1..=3 {
        let h = lab.add_host(&format!("m{i}"))?;
        managers.push(lab.start_swarm_node(&h, &[])?);
    }
    let wh = lab.add_host("w1")?;
    let mut worker = lab.start_swarm_node(&wh, &[])?;
    managers[0].shoal_ok(&["swarm", "init"])?;
    let remote = format!("{}:2377", managers[0].host.underlay);
    let mtoken = managers[0].shoal_ok(&["swarm", "join-token", "-q", "manager"])?;
    let wtoken = managers[0].shoal_ok(&["swarm", "join-token", "-q", "worker"])?;

    let timed = |node: &SwarmNode, token: &str| -> Result<Duration> {
        let start = Instant::now();
        node.shoal_ok(&["swarm", "join", "--token", token.trim(), &remote])?;
        Ok(start.elapsed())
    };
    let join_manager = [timed(&managers[1], &mtoken)?, timed(&managers[2], &mtoken)?];
    let join_worker = timed(&worker, &wtoken)?;
    all_ready(&managers[0], 4)?;
    println!(
        "join: worker {}, manager {} / {} (until it is a Raft voter)",
        ms(join_worker),
        ms(join_manager[0]),
        ms(join_manager[1])
    );

    // Commit latency.
    let l = leader(&managers)?;
    let f = (l + 1) % 3;
    for (name, node) in [("leader", l), ("follower", f)] {
        let mut lat = Vec::new();
        for i in 0..200 {
            let start = Instant::now();
            if !label_write(&managers[node], "w1", i)? {
                bail!("write {i} on the {name} failed");
            }
            lat.push(start.elapsed());
        }
        lat.sort();
        println!(
            "commit latency on the {name} (node update, 200 writes): p50 {}, p99 {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
    }

    // Detection.
    let mut detection = Vec::new();
    for _ in 0..rounds {
        all_ready(&managers[0], 4)?;
        std::thread::sleep(Duration::from_secs(1));
        let start = Instant::now();
        worker.proc.kill9();
        wait_until("w1 Down", T, || {
            (status_of(&managers[0], "w1")? == "down").then_some(())
        })?;
        detection.push(start.elapsed());
        worker = lab.restart_swarm_node(&worker)?;
    }
    println!(
        "node-death detection (kill -9 to Down): {}",
        detection
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Failover.
    let mut failover = Vec::new();
    for round in 0..rounds {
        all_ready(&managers[0], 4)?;
        std::thread::sleep(Duration::from_secs(1));
        let l = leader(&managers)?;
        let other = (l + 1) % 3;
        let start = Instant::now();
        managers[l].proc.kill9();
        let mut i = 1000 * (round + 1);
        wait_until("a write on the new leader", T, || {
            i += 1;
            label_write(&managers[other], "w1", i).ok()?.then_some(())
        })?;
        failover.push(start.elapsed());
        managers[l] = lab.restart_swarm_node(&managers[l])?;
        // Polled through another manager until the old leader is back.
        all_ready(&managers[other], 4)?;
    }
    println!(
        "leader failover (kill -9 to a committed write on another manager): {}",
        failover
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // A worker's manager goes silent.
    all_ready(&managers[0], 4)?;
    managers[0].shoal_ok(&[
        "service",
        "create",
        "--name",
        "idle",
        "--replicas",
        "1",
        "--constraint",
        "node.role==manager",
        "--",
        "sleep",
        "100000",
    ])?;
    let seen = |n: usize| {
        wait_until(&format!("w1 to see {n} tasks"), T, || {
            (tasks_seen_by(&worker) == Some(n as f64)).then_some(())
        })
    };
    seen(1)?;
    let mut replicas = 1;
    let mut silent = Vec::new();
    for round in 0..rounds {
        let (a, b, c) = (round % 3, (round + 1) % 3, (round + 2) % 3);
        // The worker can reach manager a only, so it streams from a.
        lab.cut_off(&worker.host, &[&managers[b].host, &managers[c].host])?;
        replicas += 1;
        managers[a].shoal_ok(&["service", "scale", "--detach", &format!("idle={replicas}")])?;
        seen(replicas)?;
        lab.cut_off(&worker.host, &[&managers[a].host])?;
        let start = Instant::now();
        replicas += 1;
        managers[b].shoal_ok(&["service", "scale", "--detach", &format!("idle={replicas}")])?;
        seen(replicas)?;
        silent.push(start.elapsed());
        lab.cut_off(&worker.host, &[])?;
    }
    println!(
        "worker failover (its manager silent, a change on another manager to the worker's copy): {}",
        silent.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );

    // CA rotation: from `swarm ca --rotate` to every node trusting the new
    // CA alone (the command waits for that).
    all_ready(&managers[0], 4)?;
    let mut rotation = Vec::new();
    for round in 0..rounds {
        let start = Instant::now();
        let pem = managers[round % 3].shoal_ok(&["swarm", "ca", "--rotate", "--quiet"])?;
        rotation.push(start.elapsed());
        if !pem.contains("BEGIN CERTIFICATE") {
            bail!("`swarm ca --rotate` printed no certificate: {pem}");
        }
        label_write(&managers[(round + 1) % 3], "w1", 9000 + round)?;
    }
    println!(
        "CA rotation (swarm ca --rotate until all 4 nodes trust the new CA alone): {}",
        rotation
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
