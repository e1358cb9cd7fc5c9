//! Services end to end, as the Swarm tutorials use them: a swarm of real
//! daemons, `shoal service ...` typed as a user would, tasks run by the
//! nodes' agents, and HTTP through the routing mesh from a client host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shoal_netns_tests::swarm::{Swarm, T, form, logs, wait_converged};
use shoal_netns_tests::{Host, Lab, SwarmNode, http_get, netns_list, task_netns, wait_until};

/// `service ps NAME --format json`.
fn service_ps(node: &SwarmNode, service: &str) -> Result<Vec<Value>> {
    let text = node.shoal_ok(&["service", "ps", service, "--format", "json"])?;
    let v: Value = serde_json::from_str(&text).context("service ps json")?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Hostnames of the running tasks of `service`, by node hostname.
fn running(node: &SwarmNode, service: &str) -> Result<BTreeMap<String, String>> {
    Ok(service_ps(node, service)?
        .iter()
        .filter(|t| t["state"] == "running" && t["desired"] == "running")
        .map(|t| {
            let hostname = format!(
                "{}.{}",
                t["name"].as_str().unwrap_or("?"),
                t["id"].as_str().unwrap_or("?")
            );
            (hostname, t["node"].as_str().unwrap_or("?").to_owned())
        })
        .collect())
}

/// The `Hostname:` line of a whoami answer.
fn hostname_of(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("Hostname: "))
        .map(str::to_owned)
}

/// `n` HTTP requests from `client` to `addr`; the hostnames that answered,
/// with counts, and how many requests failed.
fn spray(
    lab: &Lab,
    client: &Host,
    addr: SocketAddrV4,
    n: usize,
) -> (BTreeMap<String, usize>, usize) {
    let bodies = lab
        .in_netns(&client.netns, move || {
            (0..n)
                .map(|_| http_get(addr, Duration::from_secs(3)).ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut seen = BTreeMap::new();
    let mut failed = n - bodies.len();
    for body in bodies {
        match body.as_deref().and_then(hostname_of) {
            Some(h) => *seen.entry(h).or_insert(0) += 1,
            None => failed += 1,
        }
    }
    (seen, failed)
}

/// Waits until the mesh on every node answers from exactly `want`.
fn wait_mesh(
    lab: &Lab,
    swarm: &Swarm,
    client: &Host,
    port: u16,
    want: &BTreeSet<String>,
) -> Result<()> {
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, port);
        let mut last = BTreeMap::new();
        let ok = wait_until(&format!("{addr} to answer from {want:?}"), T, || {
            let (seen, _) = spray(lab, client, addr, 30);
            last = seen.clone();
            (seen.keys().cloned().collect::<BTreeSet<_>>() == *want).then_some(())
        });
        if let Err(e) = ok {
            bail!("{e}; last answers: {last:?}\n{}", logs(swarm));
        }
    }
    Ok(())
}

fn task_namespaces_left(lab: &Lab) -> Vec<String> {
    let existing = netns_list();
    task_netns(lab.dir())
        .into_iter()
        .filter(|n| existing.contains(n))
        .collect()
}

#[test]
fn the_swarm_tutorial_create_scale_and_remove_a_published_service() -> Result<()> {
    let mut lab = Lab::new("svc-tutorial")?;
    let swarm = form(&mut lab, 1, 2, &[])?;
    wait_converged(&swarm, &[0], 3)?;
    let client = lab.add_host("client")?;
    let m = swarm.manager(0);

    m.shoal_ok(&["network", "create", "-d", "overlay", "skynet"])?;
    let out = m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "http",
        "--network",
        "skynet",
        "--replicas",
        "2",
        "-p",
        "80:80",
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    assert!(out.contains("overall progress: 2 out of 2 tasks"), "{out}");
    assert!(out.contains("verify: Service converged"), "{out}");

    // HTTP to port 80 on every node's address reaches both replicas.
    let tasks = running(m, "http")?;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let want: BTreeSet<String> = tasks.keys().cloned().collect();
    wait_mesh(&lab, &swarm, &client, 80, &want)?;
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, 80);
        let (seen, failed) = spray(&lab, &client, addr, 100);
        assert_eq!(failed, 0, "{addr}: {seen:?}");
        for (h, n) in &seen {
            assert!(*n >= 20, "{addr}: {h} answered only {n} of 100: {seen:?}");
        }
    }

    // Scale to 5: spread over the 3 nodes; service ps, node ps agree.
    let out = m.shoal_ok(&["service", "scale", "http=5"])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let tasks = running(m, "http")?;
    assert_eq!(tasks.len(), 5, "{tasks:?}");
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for node in tasks.values() {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "spread over every node: {per_node:?}");
    assert!(per_node.values().all(|&n| n <= 2), "{per_node:?}");
    for node in &swarm.nodes {
        let name = node.host.name.as_str();
        let key = if name == "m1" { "self" } else { name };
        let text = m.shoal_ok(&["node", "ps", key, "--format", "json"])?;
        let listed: Vec<Value> = serde_json::from_str(&text)?;
        let here = listed
            .iter()
            .filter(|t| t["state"] == "running" && t["desired"] == "running")
            .count();
        assert_eq!(
            here,
            per_node.get(name).copied().unwrap_or(0),
            "node ps {key}"
        );
    }
    let ls = m.shoal_ok(&["service", "ls"])?;
    assert!(ls.contains("5/5"), "{ls}");
    assert!(ls.contains("*:80->80/tcp"), "{ls}");
    let want: BTreeSet<String> = tasks.keys().cloned().collect();
    wait_mesh(&lab, &swarm, &client, 80, &want)?;

    // Logs come from every node with docker's prefix.
    let text = m.shoal_ok(&["service", "logs", "http"])?;
    let prefixed = text
        .lines()
        .filter(|l| {
            l.starts_with("http.") && l.contains('@') && l.contains(" | shoal whoami: HTTP")
        })
        .count();
    assert_eq!(prefixed, 5, "{text}");

    // Remove: the port closes, and no namespace or process is left.
    m.shoal_ok(&["service", "rm", "http"])?;
    wait_until("task namespaces to go", T, || {
        task_namespaces_left(&lab).is_empty().then_some(())
    })?;
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, 80);
        wait_until(&format!("{addr} to close"), T, || {
            let (seen, _) = spray(&lab, &client, addr, 1);
            seen.is_empty().then_some(())
        })?;
    }
    let ps = std::process::Command::new("pgrep")
        .args(["-f", "whoami --port 80"])
        .output()?;
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "whoami processes left"
    );
    Ok(())
}

#[test]
fn bad_service_input_is_refused_and_nothing_is_created() -> Result<()> {
    let mut lab = Lab::new("svc-bad")?;
    let swarm = form(&mut lab, 1, 0, &[])?;
    wait_converged(&swarm, &[0], 1)?;
    let m = swarm.manager(0);
    let create = |extra: &[&str]| {
        let mut args = vec!["service", "create", "--detach"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sleep", "1000"]);
        m.shoal(&args)
    };
    for (args, says) in [
        (
            vec!["--name", "a", "--network", "nope"],
            "network `nope` not found",
        ),
        (
            vec!["--name", "a", "--constraint", "node.labels.zone=a"],
            "constraint",
        ),
        (vec!["--name", "a", "-p", "80:x"], "target port `x`"),
        (
            vec!["--name", "a", "--replicas", "-1"],
            "replicas must be 0 or more",
        ),
    ] {
        let out = create(&args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    m.shoal_ok(&[
        "service", "create", "--detach", "--name", "web", "-p", "8080:80", "--", "sleep", "1000",
    ])?;
    let out = create(&["--name", "other", "-p", "8080:81"])?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("8080"),
        "{out:?}"
    );
    m.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "everywhere",
        "--mode",
        "global",
        "--",
        "sleep",
        "1000",
    ])?;
    let out = m.shoal(&["service", "scale", "everywhere=3"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replicated mode"),
        "{out:?}"
    );
    let out = m.shoal(&["service", "scale", "web=-2"])?;
    assert!(!out.status.success());
    let names: Vec<String> =
        serde_json::from_str::<Vec<Value>>(&m.shoal_ok(&["service", "ls", "--format", "json"])?)?
            .iter()
            .map(|s| s["name"].as_str().unwrap_or("?").to_owned())
            .collect();
    assert_eq!(names, ["everywhere", "web"]);
    Ok(())
}
