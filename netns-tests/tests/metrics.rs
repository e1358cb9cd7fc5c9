//! `/metrics` on every node of a swarm, scraped over TCP (`--metrics-addr`)
//! from a client host as Prometheus would: every node's exposition parses,
//! has the families it must (Raft only on the manager), counts the cluster
//! as it is, and its service counters move with the traffic sent through
//! the routing mesh and to the service's VIP from another service's task.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddrV4, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use shoal_netns_tests::openmetrics::{Exposition, scrape};
use shoal_netns_tests::swarm::{Swarm, T, form, logs, running_tasks, wait_converged};
use shoal_netns_tests::{Host, Lab, http_get, wait_until, whoami_hostname};

const METRICS_PORT: u16 = 9323;
const MESH_PORT: u16 = 8080;
/// Requests sent through each node's mesh between the two scrapes.
const N: usize = 30;

fn scrape_all(lab: &Lab, swarm: &Swarm, client: &Host) -> Result<Vec<Exposition>> {
    swarm
        .nodes
        .iter()
        .map(|n| {
            scrape(
                lab,
                &client.netns,
                SocketAddrV4::new(n.host.underlay, METRICS_PORT),
            )
            .with_context(|| format!("scraping {}", n.host.name))
        })
        .collect()
}

/// `n` requests from `client` to `addr`, each on a new connection: the
/// answers' bodies. Any failure is an error.
fn requests(lab: &Lab, client: &Host, addr: SocketAddrV4, n: usize) -> Result<Vec<String>> {
    let answers = lab.in_netns(&client.netns, move || {
        (0..n)
            .map(|_| http_get(addr, Duration::from_secs(5)))
            .collect::<Vec<_>>()
    })?;
    answers.into_iter().collect()
}

/// The `IP:` lines of a `shoal whoami` answer.
fn whoami_ips(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("IP: "))
        .map(str::to_owned)
        .collect()
}

/// The pid of task `id`, from the log of the daemon that started it.
fn task_pid(log: &Path, id: &str) -> Result<u32> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let started = format!("task {id} started: pid ");
    text.lines()
        .find_map(|l| l.split_once(&started))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no `{started}` in {}", log.display()))
}

/// `(network, backend)` of every `web` series of `e`.
fn web_backends(e: &Exposition) -> BTreeSet<(String, String)> {
    e.series("shoal_dataplane_service_connections_total")
        .filter(|(l, _)| l["service"] == "web")
        .map(|(l, _)| (l["network"].clone(), l["backend"].clone()))
        .collect()
}

fn delta(before: &Exposition, after: &Exposition, name: &str, m: &[(&str, &str)]) -> f64 {
    after.sum(name, m) - before.sum(name, m)
}

#[test]
fn every_node_serves_metrics_that_move_with_traffic() -> Result<()> {
    let mut lab = Lab::new("metrics")?;
    let metrics_addr = format!("0.0.0.0:{METRICS_PORT}");
    let swarm = form(&mut lab, 1, 2, &["--metrics-addr", &metrics_addr])?;
    wait_converged(&swarm, &[0], 3)?;
    let client = lab.add_host("client")?;
    let m = swarm.manager(0);
    m.shoal_ok(&["network", "create", "-d", "overlay", "skynet"])?;
    m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--network",
        "skynet",
        "--replicas",
        "3",
        "-p",
        &format!("{MESH_PORT}:80"),
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    // A second service, whose task is the client of web's VIP.
    m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "probe",
        "--network",
        "skynet",
        "--",
        "shoal",
        "whoami",
        "--port",
        "81",
    ])?;
    let tasks = running_tasks(m, "web")?;
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let probe = running_tasks(m, "probe")?;
    let (probe_task, probe_node) = probe.iter().next().context("the probe task")?;
    let probe_id = probe_task.rsplit_once('.').context("a task hostname")?.1;
    let log = lab.dir().join(probe_node).join("daemon.log");
    let probe_netns = format!("/proc/{}/ns/net", task_pid(&log, probe_id)?);
    let want: BTreeSet<String> = tasks.keys().cloned().collect();
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, MESH_PORT);
        wait_until(&format!("{addr} to answer from {want:?}"), T, || {
            let bodies = requests(&lab, &client, addr, 15).ok()?;
            let seen: BTreeSet<String> = bodies.iter().filter_map(|b| whoami_hostname(b)).collect();
            (seen == want).then_some(())
        })
        .with_context(|| logs(&swarm))?;
    }

    // Every node: gossip sees all three, and its copy of the state shows
    // the running replicas of both services.
    let before = wait_until(
        "every node to count 3 members and 4 running tasks",
        T,
        || {
            let all = scrape_all(&lab, &swarm, &client).ok()?;
            all.iter()
                .all(|e| {
                    e.get("shoal_gossip_members", &[]) == Some(3.0)
                        && e.get("shoal_tasks", &[("state", "running")]) == Some(4.0)
                        && e.sum("shoal_nodes", &[("status", "ready")]) == 3.0
                })
                .then_some(all)
        },
    )?;

    // The families every node has, and Raft on the manager only.
    for (node, e) in swarm.nodes.iter().zip(&before) {
        let name = &node.host.name;
        for sample in [
            "shoal_swarm_node_info",
            "shoal_swarm_manager",
            "shoal_gossip_members",
            "shoal_nodes",
            "shoal_tasks",
            "shoal_dataplane_engine_info",
            "shoal_dataplane_vxlan_packets_total",
            "shoal_dataplane_drops_total",
            "shoal_dataplane_conntrack_entries",
            "shoal_dataplane_service_connections_total",
            "shoal_dataplane_service_tracked_connections",
            "shoal_dataplane_service_packets_total",
            "shoal_dataplane_service_bytes_total",
        ] {
            assert!(e.has(sample), "{name} has no {sample}");
        }
        assert_eq!(
            e.get("shoal_dataplane_engine_info", &[("engine", "userspace")]),
            Some(1.0),
            "{name}"
        );
        let manager = node.host.name == "m1";
        assert_eq!(
            e.get("shoal_swarm_manager", &[]),
            Some(if manager { 1.0 } else { 0.0 }),
            "{name}"
        );
        let raft: Vec<&str> = e.names().filter(|s| s.starts_with("shoal_raft")).collect();
        if manager {
            assert_eq!(e.get("shoal_raft_leader", &[]), Some(1.0), "{raft:?}");
            assert!(e.get("shoal_raft_term", &[]).is_some_and(|t| t >= 1.0));
            assert!(
                e.get("shoal_raft_commit_index", &[])
                    .is_some_and(|i| i >= 1.0)
            );
            let (me, _) = e
                .series("shoal_swarm_node_info")
                .next()
                .context("node info")?;
            let (leader, _) = e
                .series("shoal_raft_leader_node_info")
                .next()
                .context("leader info")?;
            assert_eq!(leader["leader"], me["node_id"]);
        } else {
            assert!(raft.is_empty(), "{name} is a worker, yet shows {raft:?}");
        }
        // The service's series: one per backend on each of its networks.
        let backends = web_backends(e);
        let networks: BTreeSet<&str> = backends.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(networks, BTreeSet::from(["ingress", "skynet"]), "{name}");
        assert_eq!(backends.len(), 6, "{name}: {backends:?}");
    }
    // The admin socket serves the same exposition.
    let local = Exposition::parse(&m.get("/metrics")?)?;
    assert!(local.has("shoal_raft_term") && local.has("shoal_dataplane_drops_total"));

    // Traffic: a connection held open through w1's mesh, N requests
    // through each node's, and N from the probe to web's VIP on skynet.
    let (vip_labels, _) = before[0]
        .series("shoal_dataplane_service_connections_total")
        .find(|(l, _)| l["service"] == "web" && l["network"] == "skynet")
        .context("web's series on skynet")?;
    let vip = SocketAddrV4::new(vip_labels["vip"].parse()?, 80);
    let east_west = lab.in_netns(&probe_netns, move || {
        (0..N)
            .map(|_| http_get(vip, Duration::from_secs(5)))
            .collect::<Result<Vec<_>>>()
    })??;
    let w1 = SocketAddrV4::new(swarm.nodes[1].host.underlay, MESH_PORT);
    let held: TcpStream = lab
        .in_netns(&client.netns, move || TcpStream::connect(w1))?
        .context("holding a connection through w1's mesh")?;
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut ips_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut shortest_answer = usize::MAX;
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, MESH_PORT);
        for body in requests(&lab, &client, addr, N)? {
            let host = whoami_hostname(&body).context("a whoami answer")?;
            *served.entry(host.clone()).or_default() += 1;
            ips_of.entry(host).or_default().extend(whoami_ips(&body));
            shortest_answer = shortest_answer.min(body.len());
        }
    }
    let after = scrape_all(&lab, &swarm, &client)?;

    let web = [("service", "web")];
    let conns = "shoal_dataplane_service_connections_total";
    let packets = "shoal_dataplane_service_packets_total";
    let bytes = "shoal_dataplane_service_bytes_total";
    for ((node, b), a) in swarm.nodes.iter().zip(&before).zip(&after) {
        let name = &node.host.name;
        // Each node counts the connections that entered by it.
        let opened = delta(b, a, conns, &web);
        assert!(
            opened >= N as f64,
            "{name}: {opened} connections for {N} requests"
        );
        // Per connection at least SYN, ACK and the request one way, and the
        // SYN-ACK and the answer the other.
        let sent = delta(
            b,
            a,
            packets,
            &[("service", "web"), ("direction", "original")],
        );
        let answered = delta(b, a, packets, &[("service", "web"), ("direction", "reply")]);
        assert!(sent >= (3 * N) as f64, "{name}: {sent} packets to backends");
        assert!(
            answered >= (2 * N) as f64,
            "{name}: {answered} packets back"
        );
        let up = delta(
            b,
            a,
            bytes,
            &[("service", "web"), ("direction", "original")],
        );
        let down = delta(b, a, bytes, &[("service", "web"), ("direction", "reply")]);
        assert!(up >= (N * 100) as f64, "{name}: {up} bytes to backends");
        assert!(
            down >= (N * shortest_answer) as f64,
            "{name}: {down} bytes back, answers of {shortest_answer}+ bytes"
        );
        // Counters never go back.
        for sample in b.names().filter(|s| s.ends_with("_total")) {
            for (labels, v) in b.series(sample) {
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let now = a.get(sample, &pairs);
                assert!(
                    now.is_some_and(|n| n >= v),
                    "{name}: {sample}{labels:?} went from {v} to {now:?}"
                );
            }
        }
    }
    // East-west: the probe's node counted its connections to the VIP.
    let at = swarm
        .nodes
        .iter()
        .position(|n| &n.host.name == probe_node)
        .context("the probe's node")?;
    let skynet = |dir: &'static str| {
        [
            ("service", "web"),
            ("network", "skynet"),
            ("direction", dir),
        ]
    };
    let (b, a) = (&before[at], &after[at]);
    let opened = delta(b, a, conns, &[("service", "web"), ("network", "skynet")]);
    assert!(
        opened >= N as f64,
        "{probe_node}: {opened} VIP connections for {N}"
    );
    let shortest = east_west.iter().map(String::len).min().unwrap_or(0);
    for (name, dir, at_least) in [
        (packets, "original", 3 * N),
        (packets, "reply", 2 * N),
        (bytes, "original", 100 * N),
        (bytes, "reply", shortest * N),
    ] {
        let moved = delta(b, a, name, &skynet(dir));
        assert!(
            moved >= at_least as f64,
            "{probe_node}: {name} {dir} to web's VIP rose by {moved}, want {at_least}+"
        );
    }

    // Summed over nodes, each backend's connections cover the requests its
    // task answered (the held connection may add one).
    for (task, n) in &served {
        let ips = &ips_of[task];
        let counted: f64 = swarm
            .nodes
            .iter()
            .zip(&before)
            .zip(&after)
            .map(|((_, b), a)| {
                ips.iter()
                    .map(|ip| delta(b, a, conns, &[("service", "web"), ("backend", ip)]))
                    .sum::<f64>()
            })
            .sum();
        assert!(
            counted >= *n as f64,
            "{task} answered {n}, counted {counted}"
        );
    }
    // The held connection is tracked on the node it entered by.
    let on_w1 = &after[1];
    assert!(
        on_w1.sum("shoal_dataplane_service_tracked_connections", &web) >= 1.0,
        "w1 tracks no connection of web"
    );
    assert!(on_w1.get("shoal_dataplane_conntrack_entries", &[("table", "mesh")]) >= Some(1.0));
    drop(held);

    // Scaling down takes the gone backend's series away on every node.
    m.shoal_ok(&["service", "scale", "web=2"])?;
    let mut last = Vec::new();
    let shrunk = wait_until("every node to list 2 backends per network", T, || {
        let all = scrape_all(&lab, &swarm, &client).ok()?;
        last = all.iter().map(web_backends).collect();
        last.iter().all(|b| b.len() == 4).then_some(())
    });
    if let Err(e) = shrunk {
        bail!("{e}; last: {last:?}\n{}", logs(&swarm));
    }
    Ok(())
}

#[test]
fn embed_mode_serves_metrics_over_tcp_and_a_bad_address_stops_the_start() -> Result<()> {
    let mut lab = Lab::new("metrics-embed")?;
    let node = lab.add_host("n1")?;
    let client = lab.add_host("client")?;
    let web1 = lab.add_netns("web1")?;
    let at = node.underlay;
    let yaml = format!(
        "node: {{ name: n1, underlay: {at} }}
networks: [ {{ name: red, vni: 4097, subnet: 10.10.0.0/24 }} ]
endpoints: [ {{ network: red, ip: 10.10.0.2, node: {at}, netns: {web1} }} ]
services:
  - {{ name: web, vips: {{ red: 10.10.0.100 }}, ports: [ {{ target: 80, published: {MESH_PORT} }} ], backends: [ {{ ip: 10.10.0.2 }} ] }}
"
    );

    // An address this host does not have: refused before anything is set up.
    let err = lab
        .start_daemon(&node, &yaml, &["--metrics-addr", "203.0.113.7:9323"])
        .expect_err("a daemon with a foreign metrics address started");
    let err = format!("{err:#}");
    assert!(err.contains("--metrics-addr"), "{err}");
    let links = lab.run_ok(&web1, &["ip", "-o", "link", "show"])?;
    assert_eq!(links.lines().count(), 1, "only lo in web1: {links}");

    let metrics_addr = format!("0.0.0.0:{METRICS_PORT}");
    let _daemon = lab.start_daemon(&node, &yaml, &["--metrics-addr", &metrics_addr])?;
    let bin = shoal_netns_tests::shoal_bin();
    let bin = bin.to_str().context("utf-8 path")?;
    lab.spawn(&web1, &[bin, "whoami", "--port", "80", "--name", "web1"])?;
    let mesh = SocketAddrV4::new(at, MESH_PORT);
    wait_until(&format!("{mesh} to answer"), T, || {
        requests(&lab, &client, mesh, 1).ok()
    })?;

    let scrape_addr = SocketAddrV4::new(at, METRICS_PORT);
    let before = scrape(&lab, &client.netns, scrape_addr)?;
    assert_eq!(
        before.get("shoal_dataplane_engine_info", &[("engine", "userspace")]),
        Some(1.0)
    );
    assert!(
        !before
            .names()
            .any(|n| n.starts_with("shoal_raft") || n.starts_with("shoal_swarm")),
        "embed mode has no swarm"
    );
    requests(&lab, &client, mesh, N)?;
    let after = scrape(&lab, &client.netns, scrape_addr)?;
    let series = [
        ("service", "web"),
        ("network", "red"),
        ("vip", "10.10.0.100"),
        ("protocol", "tcp"),
        ("port", "80"),
        ("backend", "10.10.0.2"),
    ];
    let conns = "shoal_dataplane_service_connections_total";
    let opened =
        after.get(conns, &series).unwrap_or(0.0) - before.get(conns, &series).unwrap_or(0.0);
    assert!(opened >= N as f64, "{opened} connections for {N} requests");
    Ok(())
}
