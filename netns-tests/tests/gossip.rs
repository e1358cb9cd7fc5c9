//! Gossip under attack, end to end: a host on the underlay that is no
//! member of the swarm forges, floods and replays gossip datagrams; the
//! swarm's view of its nodes does not move, nothing is answered, and every
//! refusal is counted in `/metrics`. And the gossip key rotates while nodes
//! join and leave without anyone losing sight of anyone.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use shoal_control::NodeId;
use shoal_control::membership::{Member, Sealer, codec};
use shoal_netns_tests::openmetrics::Exposition;
use shoal_netns_tests::pcap;
use shoal_netns_tests::swarm::{T, addr, form, logs, node_ls, wait_converged, worker_token};
use shoal_netns_tests::{Lab, SwarmNode, wait_until};

const GOSSIP_PORT: u16 = 7946;

fn gossip_of(node: &SwarmNode) -> SocketAddr {
    SocketAddr::from((node.host.underlay, GOSSIP_PORT))
}

/// `node`'s `/metrics` sample `name{labels}`, 0 when absent.
fn metric(node: &SwarmNode, name: &str, labels: &[(&str, &str)]) -> f64 {
    node.get("/metrics")
        .ok()
        .and_then(|text| Exposition::parse(&text).ok())
        .and_then(|m| m.get(name, labels))
        .unwrap_or(0.0)
}

fn rejected(node: &SwarmNode, reason: &str) -> f64 {
    metric(node, "shoal_gossip_rejected_total", &[("reason", reason)])
}

/// Hostname to (node id, status) as `node`'s `node ls` has them.
fn nodes_seen_by(node: &SwarmNode) -> Result<BTreeMap<String, (String, String)>> {
    Ok(node_ls(node)?
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or("?").to_owned();
            (s("hostname"), (s("id"), s("status")))
        })
        .collect())
}

/// A plaintext gossip datagram as a shoal without sealing sent it.
fn plain(
    src: &Member,
    dst: &Member,
    message: foca::Message<Member>,
    updates: &[(Member, foca::State)],
) -> Vec<u8> {
    codec::datagram(src, dst, message, updates).expect("a datagram fits a Vec")
}

#[test]
fn a_host_that_is_no_member_cannot_forge_flood_or_replay_gossip() -> Result<()> {
    let mut lab = Lab::new("gossip-forged")?;
    let mut swarm = form(&mut lab, 1, 2, &[])?;
    wait_converged(&swarm, &[0], 3)?;
    let evil = lab.add_host("evil")?;
    let (m1, w1, w2) = (&swarm.nodes[0], &swarm.nodes[1], &swarm.nodes[2]);
    let seen = nodes_seen_by(m1)?;
    let id_of = |host: &str| -> Result<NodeId> {
        let (id, _) = seen
            .get(host)
            .ok_or_else(|| anyhow!("{host} not in {seen:?}"))?;
        NodeId::new(id.as_str()).map_err(|e| anyhow!("node id {id}: {e}"))
    };
    let member_of = |n: &SwarmNode, generation: u64| -> Result<Member> {
        Ok(Member::new(id_of(&n.host.name)?, gossip_of(n), generation))
    };
    let evil_member = Member::new(
        NodeId::new("evil").map_err(|e| anyhow!("{e}"))?,
        SocketAddr::from((evil.underlay, GOSSIP_PORT)),
        1,
    );

    // A real datagram to w1, captured on its interface, to replay later.
    let pcap = lab.dir().join("gossip-to-w1.pcap");
    lab.run_timeout(
        &w1.host.netns,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-c",
            "3",
            "-U",
            "-Q",
            "in",
            "-w",
            &pcap.display().to_string(),
            &format!("udp dst port {GOSSIP_PORT}"),
        ],
        Duration::from_secs(20),
    )?;
    let captured = pcap::udp_datagrams(&std::fs::read(&pcap).context("reading the capture")?);
    // Inbound only: w1 replaying its own datagram is another case.
    let replay = captured
        .iter()
        .find(|d| d.src != w1.host.underlay)
        .map(|d| d.payload.clone())
        .ok_or_else(|| anyhow!("no gossip datagram captured to w1"))?;

    // The forgeries: w1 down for good, from the attacker as itself and as
    // a member, in the old plaintext format and sealed under its own key.
    let forever = member_of(w1, u64::MAX)?;
    let m1_member = member_of(m1, 1)?;
    let down_w1 = [
        plain(
            &evil_member,
            &m1_member,
            foca::Message::Gossip,
            &[(forever.clone(), foca::State::Down)],
        ),
        plain(
            &member_of(w2, u64::MAX - 1)?,
            &m1_member,
            foca::Message::Gossip,
            &[(forever, foca::State::Down)],
        ),
    ];
    let mut own_key = Sealer::new([0xee; 16]);
    own_key.set_keys([(1, [0x42; 32])], 0);
    let now_ms = shoal_control::clock::now_ms();
    let sealed: Vec<Vec<u8>> = down_w1
        .iter()
        .filter_map(|p| own_key.seal(p, now_ms))
        .collect();
    let announce = plain(&evil_member, &m1_member, foca::Message::Announce, &[]);
    let targets = [gossip_of(m1), gossip_of(w1), gossip_of(w2)];
    let w1_target = gossip_of(w1);
    let (sent, answered) = lab.in_netns(&evil.netns, move || -> Result<(usize, usize)> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, GOSSIP_PORT))?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut sent = 0;
        // The replays go first: the flood below may overrun the receive
        // buffers, which would hide them.
        for _ in 0..3 {
            sent += socket.send_to(&replay, w1_target)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        for to in targets {
            for d in down_w1.iter().chain(&sealed) {
                sent += socket.send_to(d, to)?;
            }
        }
        for i in 0..10_000 {
            sent += socket.send_to(&announce, targets[i % targets.len()])?;
        }
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            answered += n;
        }
        Ok((sent, answered))
    })??;
    eprintln!("the attacker sent {sent} bytes and got {answered} back");
    assert_eq!(answered, 0, "gossip answered a non-member");

    // Every refusal is counted where it landed.
    let counted = |node: &SwarmNode, reason: &str, at_least: f64| -> Result<()> {
        wait_until(
            &format!("{} to count {at_least} {reason}", node.host.name),
            T,
            || (rejected(node, reason) >= at_least).then_some(()),
        )
        .map(drop)
        .with_context(|| format!("{reason}: {}", rejected(node, reason)))
    };
    counted(m1, "malformed", 3_000.0)?;
    // The attacker's key happens to have the cluster key's id.
    counted(m1, "forged", 2.0)?;
    counted(w1, "replayed", 3.0)?;

    // For 30 s the manager keeps every node Ready and gossip sees all.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let statuses = nodes_seen_by(m1)?;
        if statuses.values().any(|(_, st)| st != "ready") {
            bail!(
                "a forged datagram moved a node: {statuses:?}\n{}",
                logs(&swarm)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(metric(m1, "shoal_gossip_members", &[]), 3.0);

    // w2 dies; the attacker keeps saying it lives, yet it goes Down in
    // the normal detection time.
    let w2_alive = plain(
        &evil_member,
        &m1_member,
        foca::Message::Gossip,
        &[(member_of(w2, u64::MAX)?, foca::State::Alive)],
    );
    let w2_as_itself = plain(
        &member_of(w2, u64::MAX)?,
        &m1_member,
        foca::Message::Ping(1),
        &[],
    );
    swarm.nodes[2].proc.kill9();
    let killed = Instant::now();
    let m1_gossip = gossip_of(&swarm.nodes[0]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let netns = evil.netns.clone();
        std::thread::spawn(move || {
            let _ = shoal_dataplane::sys::netns::run_in(
                &shoal_dataplane::sys::netns::path_of(&netns),
                move || -> std::io::Result<()> {
                    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        socket.send_to(&w2_alive, m1_gossip)?;
                        socket.send_to(&w2_as_itself, m1_gossip)?;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(())
                },
            );
        })
    };
    let m1 = &swarm.nodes[0];
    let down = wait_until("w2 to be Down on m1", T, || {
        let statuses = nodes_seen_by(m1).ok()?;
        (statuses.get("w2")?.1 == "down").then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flood.join();
    down.with_context(|| logs(&swarm))?;
    eprintln!("killed w2 was Down after {:?}", killed.elapsed());
    assert_eq!(
        nodes_seen_by(m1)?.get("w1").map(|s| s.1.as_str()),
        Some("ready")
    );
    Ok(())
}

#[test]
fn the_gossip_key_rotates_while_nodes_join_and_leave_and_no_one_is_lost() -> Result<()> {
    let mut lab = Lab::new("gossip-rotate")?;
    let swarm = form(&mut lab, 1, 1, &[])?;
    wait_converged(&swarm, &[0], 2)?;
    let m1 = &swarm.nodes[0];
    let w1 = &swarm.nodes[1];
    let w2_host = lab.add_host("w2")?;
    let w2 = lab.start_swarm_node(&w2_host, &[])?;
    let rotate = || m1.shoal_ok(&["swarm", "update", "--rotate-gossip-key"]);

    // Watches `span`: the nodes in `ready` stay Ready on m1 throughout.
    let steady = |ready: &[&str], span: Duration| -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < span {
            let statuses = nodes_seen_by(m1)?;
            for host in ready {
                if statuses.get(*host).map(|s| s.1.as_str()) != Some("ready") {
                    bail!("{host} is not Ready during the rotation: {statuses:?}");
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    };

    rotate()?;
    w2.shoal_ok(&["swarm", "join", "--token", &worker_token(m1)?, &addr(m1)])?;
    // Two rotations closer together than the switch to a new key.
    rotate()?;
    rotate()?;
    wait_until("w2 to be Ready", T, || {
        (nodes_seen_by(m1).ok()?.get("w2")?.1 == "ready").then_some(())
    })?;
    steady(&["m1", "w1", "w2"], Duration::from_secs(12)).with_context(|| logs(&swarm))?;

    w1.shoal_ok(&["swarm", "leave"])?;
    rotate()?;
    steady(&["m1", "w2"], Duration::from_secs(12)).with_context(|| logs(&swarm))?;
    for node in [m1, &w2] {
        wait_until(
            &format!("{} to see 2 gossip members", node.host.name),
            T,
            || (metric(node, "shoal_gossip_members", &[]) == 2.0).then_some(()),
        )?;
    }
    // Five keys were made (the leader's first and four rotations); w2
    // moved with them.
    let log = std::fs::read_to_string(w2.state_dir.with_file_name("daemon.log"))?;
    let keyrings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gossip: keyring now"))
        .collect();
    assert!(
        keyrings.last().is_some_and(|l| l.contains("[5, 4]")),
        "{keyrings:#?}"
    );
    Ok(())
}
