//! The control plane end to end: real daemons on test hosts form a swarm
//! with `shoal swarm init` and `join`, and the CLI manages it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shoal_netns_tests::{Lab, SwarmNode, wait_until};

/// Long enough for an election plus failure detection on a busy machine.
const T: Duration = Duration::from_secs(30);

/// A formed swarm: managers first, then workers.
struct Swarm {
    nodes: Vec<SwarmNode>,
    managers: usize,
}

impl Swarm {
    fn manager(&self, i: usize) -> &SwarmNode {
        &self.nodes[i]
    }
}

fn worker_token(node: &SwarmNode) -> Result<String> {
    Ok(node
        .shoal_ok(&["swarm", "join-token", "-q", "worker"])?
        .trim()
        .to_owned())
}

fn manager_token(node: &SwarmNode) -> Result<String> {
    Ok(node
        .shoal_ok(&["swarm", "join-token", "-q", "manager"])?
        .trim()
        .to_owned())
}

fn addr(node: &SwarmNode) -> String {
    format!("{}:2377", node.host.underlay)
}

/// `node ls --format json` on `node`.
fn node_ls(node: &SwarmNode) -> Result<Vec<Value>> {
    let text = node.shoal_ok(&["node", "ls", "--format", "json"])?;
    let v: Value = serde_json::from_str(&text).context("node ls json")?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// (hostname, status, manager_status) for every node, sorted.
fn summary(nodes: &[Value]) -> Vec<(String, String, String)> {
    let mut s: Vec<(String, String, String)> = nodes
        .iter()
        .map(|n| {
            (
                n["hostname"].as_str().unwrap_or("?").to_owned(),
                n["status"].as_str().unwrap_or("?").to_owned(),
                n["manager_status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    s.sort();
    s
}

/// Forms a swarm of `managers` managers and `workers` workers, each host
/// named m1.., w1...
fn form(lab: &mut Lab, managers: usize, workers: usize, extra: &[&str]) -> Result<Swarm> {
    let mut nodes = Vec::new();
    for i in 1..=managers {
        let host = lab.add_host(&format!("m{i}"))?;
        nodes.push(lab.start_swarm_node(&host, extra)?);
    }
    for i in 1..=workers {
        let host = lab.add_host(&format!("w{i}"))?;
        nodes.push(lab.start_swarm_node(&host, extra)?);
    }
    let out = nodes[0].shoal_ok(&["swarm", "init"])?;
    if !out.contains("shoal swarm join --token SWMTKN-1-") {
        bail!("swarm init did not print the join command:\n{out}");
    }
    let mtoken = manager_token(&nodes[0])?;
    let wtoken = worker_token(&nodes[0])?;
    let leader = addr(&nodes[0]);
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let token = if i < managers { &mtoken } else { &wtoken };
        let out = node.shoal_ok(&["swarm", "join", "--token", token, &leader])?;
        let role = if i < managers { "manager" } else { "worker" };
        if !out.contains(&format!("joined a swarm as a {role}")) {
            bail!("join said:\n{out}");
        }
    }
    Ok(Swarm { nodes, managers })
}

/// Waits until every manager's `node ls` shows `n` Ready nodes and one
/// leader.
fn wait_converged(swarm: &Swarm, managers: &[usize], n: usize) -> Result<()> {
    for &m in managers {
        let mut last = Vec::new();
        let waited = wait_until(
            &format!("{} to list {n} Ready nodes", swarm.manager(m).host.name),
            T,
            || {
                let nodes = node_ls(swarm.manager(m)).ok()?;
                last = summary(&nodes);
                let ready = last.iter().filter(|(_, st, _)| st == "ready").count();
                let leaders = last.iter().filter(|(_, _, ms)| ms == "Leader").count();
                (ready == n && leaders == 1).then_some(())
            },
        );
        if let Err(e) = waited {
            bail!("{e}; last seen: {last:?}\n{}", logs(swarm));
        }
    }
    Ok(())
}

/// The tail of every daemon's log, for failure messages.
fn logs(swarm: &Swarm) -> String {
    let mut out = String::new();
    for n in &swarm.nodes {
        let log = n.state_dir.parent().map(|d| d.join("daemon.log"));
        let text = log
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        out.push_str(&format!("--- {} ---\n", n.host.name));
        for l in tail.into_iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[test]
fn three_managers_and_two_workers_form_a_swarm() -> Result<()> {
    let mut lab = Lab::new("swarm-form")?;
    let swarm = form(&mut lab, 3, 2, &[])?;
    wait_converged(&swarm, &[0, 1, 2], 5)?;

    // Every manager lists the same nodes, statuses and leader.
    let views: Vec<_> = (0..swarm.managers)
        .map(|m| node_ls(swarm.manager(m)).map(|n| summary(&n)))
        .collect::<Result<_>>()?;
    assert!(views.windows(2).all(|w| w[0] == w[1]), "{views:#?}");
    let table = swarm.manager(0).shoal_ok(&["node", "ls"])?;
    assert!(
        table.starts_with("ID") && table.contains("MANAGER STATUS") && table.contains("Leader"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.contains(" *")).count(),
        1,
        "the current node is marked: {table}"
    );

    // A worker cannot read or change the cluster state.
    let worker = &swarm.nodes[3];
    let out = worker.shoal(&["node", "ls"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a swarm manager"), "{err}");

    // info tells role, cluster and leader.
    let info: Value =
        serde_json::from_str(&swarm.manager(1).shoal_ok(&["info", "--format", "json"])?)?;
    assert_eq!(info["role"], "manager");
    assert_eq!(info["swarm"], "active");
    assert!(info["leader"].is_string(), "{info}");
    assert_eq!(info["raft"]["voters"], 3, "{info}");
    let winfo: Value = serde_json::from_str(&worker.shoal_ok(&["info", "--format", "json"])?)?;
    assert_eq!(winfo["role"], "worker");
    assert_eq!(winfo["cluster_id"], info["cluster_id"]);
    Ok(())
}
