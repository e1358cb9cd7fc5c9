//! The control plane end to end: real daemons on test hosts form a swarm
//! with `shoal swarm init` and `join`, and the CLI manages it.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shoal_netns_tests::swarm::{
    Swarm, T, addr, form, logs, node_ls, summary, wait_converged, worker_token,
};
use shoal_netns_tests::{Lab, SwarmNode, wait_until};

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

    // Networks, from a follower: the ingress network exists from init.
    let m2 = swarm.manager(1);
    m2.shoal_ok(&["network", "create", "-d", "overlay", "skynet"])?;
    m2.shoal_ok(&[
        "network",
        "create",
        "--subnet",
        "10.99.0.0/24",
        "--attachable",
        "lab",
    ])?;
    let nets: Value = serde_json::from_str(
        &swarm
            .manager(2)
            .shoal_ok(&["network", "ls", "--format", "json"])?,
    )?;
    let names: Vec<&str> = nets
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["ingress", "lab", "skynet"], "{nets}");
    let lab_net = nets
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == "lab")
        .cloned()
        .unwrap_or_default();
    assert_eq!(lab_net["subnet"], "10.99.0.0/24");
    for (args, why) in [
        (vec!["network", "create", "skynet"], "exists"),
        (vec!["network", "create", "-d", "bridge", "b"], "driver"),
        (vec!["network", "rm", "ingress"], "routing mesh"),
        (vec!["network", "rm", "nosuch"], "not found"),
    ] {
        let out = m2.shoal(&args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // Encrypted networks ride WireGuard between nodes; inspect says so.
    m2.shoal_ok(&["network", "create", "--opt", "encrypted", "secret"])?;
    let secret = m2.shoal_ok(&["network", "inspect", "secret"])?;
    assert!(
        secret.contains("\"encrypted\"") && secret.contains("1390"),
        "{secret}"
    );
    m2.shoal_ok(&["network", "rm", "secret"])?;
    m2.shoal_ok(&["network", "rm", "lab"])?;
    let table = m2.shoal_ok(&["network", "ls"])?;
    assert!(
        table.contains("skynet") && !table.contains("lab") && table.contains("swarm"),
        "{table}"
    );
    Ok(())
}

/// `info --format json` on `node`.
fn info(node: &SwarmNode) -> Result<Value> {
    Ok(serde_json::from_str(
        &node.shoal_ok(&["info", "--format", "json"])?,
    )?)
}

/// The index of the node whose id `info` reports as leader, seen from `from`.
fn leader_index(swarm: &Swarm, from: usize) -> Result<usize> {
    let leader = wait_until("a leader", T, || {
        info(&swarm.nodes[from]).ok()?["leader"]
            .as_str()
            .map(str::to_owned)
    })?;
    for (i, n) in swarm.nodes.iter().enumerate() {
        if info(n)
            .ok()
            .and_then(|v| v["node_id"].as_str().map(str::to_owned))
            == Some(leader.clone())
        {
            return Ok(i);
        }
    }
    bail!("no node has the leader's id {leader}")
}

/// The labels of `host` in `node ls` on `node`.
fn labels_of(node: &SwarmNode, host: &str) -> Option<Value> {
    node_ls(node)
        .ok()?
        .into_iter()
        .find(|n| n["hostname"] == host)
        .map(|n| n["labels"].clone())
}

/// Retries a write until it commits (an election may be under way).
fn write_label(node: &SwarmNode, target: &str, label: &str) -> Result<()> {
    wait_until(
        &format!("`node update --label-add {label}` to commit"),
        T,
        || {
            node.shoal(&["node", "update", "--label-add", label, target])
                .ok()
                .filter(|o| o.status.success())
        },
    )
    .map(drop)
}

#[test]
fn the_leader_dies_a_new_one_takes_over_and_the_old_one_catches_up() -> Result<()> {
    let mut lab = Lab::new("swarm-failover")?;
    let mut swarm = form(&mut lab, 3, 1, &[])?;
    wait_converged(&swarm, &[0, 1, 2], 4)?;
    let old = leader_index(&swarm, 1)?;
    let old_host = swarm.nodes[old].host.name.clone();
    swarm.nodes[old].proc.kill9();

    let survivor = (0..3).find(|&i| i != old).unwrap_or(1);
    write_label(&swarm.nodes[survivor], "w1", "after=failover")?;
    let new = leader_index(&swarm, survivor)?;
    assert_ne!(new, old);
    wait_until(&format!("{old_host} to be Down"), T, || {
        let nodes = node_ls(&swarm.nodes[survivor]).ok()?;
        let s = summary(&nodes);
        s.iter()
            .any(|(h, st, ms)| h == &old_host && st == "down" && ms == "Unreachable")
            .then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&swarm)))?;

    // The old leader restarts from its files and catches up.
    let restarted = lab.restart_swarm_node(&swarm.nodes[old])?;
    swarm.nodes[old] = restarted;
    wait_until("the old leader to see the write made without it", T, || {
        let l = labels_of(&swarm.nodes[old], "w1")?;
        (l["after"] == "failover").then_some(())
    })?;
    wait_converged(&swarm, &[old], 4)?;
    Ok(())
}

#[test]
fn a_partitioned_manager_cannot_commit_and_catches_up_after_healing() -> Result<()> {
    let mut lab = Lab::new("swarm-partition")?;
    let swarm = form(&mut lab, 3, 0, &[])?;
    wait_converged(&swarm, &[0, 1, 2], 3)?;
    let leader = leader_index(&swarm, 0)?;
    let cut = (0..3).find(|&i| i != leader).unwrap_or(1);
    let cut_node = &swarm.nodes[cut];
    lab.run_ok(&cut_node.host.netns, &["ip", "link", "set", "eth0", "down"])?;

    // The minority cannot commit, and never elects itself.
    let out = cut_node.shoal(&["node", "update", "--label-add", "side=minority", "m1"])?;
    assert!(!out.status.success(), "a cut-off manager committed a write");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.lines().count() == 1, "one-line error: {err}");
    let cut_id = info(cut_node)?["node_id"].clone();
    assert_ne!(
        info(cut_node)?["leader"],
        cut_id,
        "a minority of one elected itself"
    );

    // The majority goes on.
    write_label(&swarm.nodes[leader], "m1", "side=majority")?;
    assert_ne!(info(cut_node)?["leader"], cut_id);

    lab.run_ok(&cut_node.host.netns, &["ip", "link", "set", "eth0", "up"])?;
    wait_until("the healed manager to catch up", T, || {
        let l = labels_of(cut_node, "m1")?;
        (l["side"] == "majority").then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&swarm)))?;
    wait_converged(&swarm, &[0, 1, 2], 3)?;
    Ok(())
}

#[test]
fn a_swarm_stopped_whole_comes_back_with_its_state() -> Result<()> {
    let mut lab = Lab::new("swarm-restart")?;
    let mut swarm = form(&mut lab, 3, 1, &[])?;
    wait_converged(&swarm, &[0, 1, 2], 4)?;
    write_label(&swarm.nodes[0], "w1", "kept=yes")?;
    let cluster = info(&swarm.nodes[0])?["cluster_id"].clone();
    let before: Vec<String> = node_ls(&swarm.nodes[0])?
        .iter()
        .map(|n| n["id"].as_str().unwrap_or("").to_owned())
        .collect();
    for n in &mut swarm.nodes {
        n.proc.terminate()?;
    }
    for i in 0..swarm.nodes.len() {
        let restarted = lab.restart_swarm_node(&swarm.nodes[i])?;
        swarm.nodes[i] = restarted;
    }
    wait_converged(&swarm, &[0, 1, 2], 4)?;
    assert_eq!(info(&swarm.nodes[2])?["cluster_id"], cluster);
    let mut after: Vec<String> = node_ls(&swarm.nodes[1])?
        .iter()
        .map(|n| n["id"].as_str().unwrap_or("").to_owned())
        .collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after);
    assert_eq!(
        labels_of(&swarm.nodes[2], "w1").unwrap_or_default()["kept"],
        "yes"
    );
    Ok(())
}

#[test]
fn operators_promote_demote_drain_label_and_remove_nodes() -> Result<()> {
    let mut lab = Lab::new("swarm-nodes")?;
    let mut swarm = form(&mut lab, 1, 2, &[])?;
    wait_converged(&swarm, &[0], 3)?;
    let m1 = &swarm.nodes[0];

    m1.shoal_ok(&["node", "promote", "w1"])?;
    wait_until("w1 to become a Reachable manager", T, || {
        let s = summary(&node_ls(&swarm.nodes[0]).ok()?);
        s.iter()
            .any(|(h, _, ms)| h == "w1" && ms == "Reachable")
            .then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&swarm)))?;
    // Now a manager, w1 can list nodes itself.
    wait_until("w1 to answer node ls", T, || node_ls(&swarm.nodes[1]).ok())?;
    swarm.nodes[0].shoal_ok(&["node", "demote", "w1"])?;
    wait_until("w1 to be a worker again", T, || {
        let nodes = node_ls(&swarm.nodes[0]).ok()?;
        let w1 = nodes.iter().find(|n| n["hostname"] == "w1")?;
        (w1["role"] == "worker" && info(&swarm.nodes[0]).ok()?["raft"]["voters"] == 1).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&swarm)))?;

    let m1 = &swarm.nodes[0];
    m1.shoal_ok(&["node", "update", "--availability", "drain", "w2"])?;
    m1.shoal_ok(&[
        "node",
        "update",
        "--label-add",
        "zone=a",
        "--label-add",
        "disk=ssd",
        "w2",
    ])?;
    m1.shoal_ok(&["node", "update", "--label-rm", "disk", "w2"])?;
    let w2 = node_ls(m1)?
        .into_iter()
        .find(|n| n["hostname"] == "w2")
        .context("w2 listed")?;
    assert_eq!(w2["availability"], "drain");
    assert_eq!(w2["labels"], serde_json::json!({"zone": "a"}));
    m1.shoal_ok(&["node", "update", "--availability", "active", "w2"])?;
    let pretty = m1.shoal_ok(&["node", "inspect", "--pretty", "w2"])?;
    assert!(
        pretty.contains("Availability:\t\tActive") && pretty.contains("zone=a"),
        "{pretty}"
    );

    // A node that is up cannot be removed; once down, it can.
    let out = m1.shoal(&["node", "rm", "w2"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not down") && err.lines().count() == 1,
        "{err}"
    );
    swarm.nodes[2].proc.terminate()?;
    wait_until("w2 to be Down", T, || {
        let s = summary(&node_ls(&swarm.nodes[0]).ok()?);
        s.iter()
            .any(|(h, st, _)| h == "w2" && st == "down")
            .then_some(())
    })?;
    swarm.nodes[0].shoal_ok(&["node", "rm", "w2"])?;
    let left = summary(&node_ls(&swarm.nodes[0])?);
    assert!(left.iter().all(|(h, _, _)| h != "w2"), "{left:?}");
    // The last manager cannot be demoted.
    let out = swarm.nodes[0].shoal(&["node", "demote", "m1"])?;
    assert!(!out.status.success());
    Ok(())
}

#[test]
fn bad_tokens_and_foreign_clusters_are_refused_with_a_reason() -> Result<()> {
    let mut lab = Lab::new("swarm-refuse")?;
    let h1 = lab.add_host("m1")?;
    let h2 = lab.add_host("other")?;
    let h3 = lab.add_host("w1")?;
    let m1 = lab.start_swarm_node(&h1, &[])?;
    let other = lab.start_swarm_node(&h2, &[])?;
    let w1 = lab.start_swarm_node(&h3, &[])?;
    m1.shoal_ok(&["swarm", "init"])?;
    other.shoal_ok(&["swarm", "init"])?;
    let remote = addr(&m1);
    let refused = |token: &str, what: &str| -> Result<()> {
        let out = w1.shoal(&["swarm", "join", "--token", token, &remote])?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() || !err.contains(what) || err.lines().count() != 1 {
            bail!("join with {token} should fail with `{what}`: {err}");
        }
        Ok(())
    };
    let token = worker_token(&m1)?;
    // A token whose secret is wrong.
    let mut wrong = token.clone();
    wrong.replace_range(wrong.len() - 3.., "zzz");
    refused(&wrong, "not accepted")?;
    // A token of another swarm: its CA is not the one this manager shows.
    refused(&worker_token(&other)?, "digest")?;
    refused("SWMTKN-1-abc", "four parts")?;
    // A rotated token stops working; the new one works, as a worker.
    let rotated = m1.shoal_ok(&["swarm", "join-token", "--rotate", "worker"])?;
    assert!(
        rotated.contains("Successfully rotated worker join token"),
        "{rotated}"
    );
    refused(&token, "not accepted")?;
    let out = w1.shoal_ok(&["swarm", "join", "--token", &worker_token(&m1)?, &remote])?;
    assert!(out.contains("as a worker"), "{out}");
    // Keys are private.
    use std::os::unix::fs::PermissionsExt;
    for n in [&m1, &w1] {
        let key = n.state_dir.join("swarm/node-key.pem");
        let mode = std::fs::metadata(&key)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        let sock = std::fs::metadata(&n.socket)?.permissions().mode() & 0o777;
        assert_eq!(sock, 0o600);
    }
    // Already a member: a second join is refused, leave works.
    let out = w1.shoal(&["swarm", "join", "--token", &worker_token(&m1)?, &remote])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("already part of a swarm"));
    w1.shoal_ok(&["swarm", "leave"])?;
    let i = info(&w1)?;
    assert_eq!(i["swarm"], "inactive");
    // The last manager does not leave without --force.
    let out = m1.shoal(&["swarm", "leave"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("last manager"));
    Ok(())
}
