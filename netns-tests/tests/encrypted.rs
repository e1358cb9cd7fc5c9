//! Encrypted overlay networks, end to end in embed mode: three hosts, an
//! encrypted network beside a plain one, a capture on the underlay bridge,
//! a preshared key rotated under a running transfer, and a node taken out
//! of the tables.

mod common;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use common::{BLUE, Ep, Net, RED, T, counter, start_whoami, tables_for};
use shoal_dataplane::overlay::tunnel::NodeKey;
use shoal_netns_tests::pcap::{self, Datagram};
use shoal_netns_tests::{Daemon, Host, Lab, Proc, Signal, http_get, wait_until};

const TUNNEL_PORT: u16 = 51820;
const VXLAN_PORT: u16 = 4789;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

/// The tables of `hosts[me]` with `red` encrypted, the other `hosts` as
/// tunnel peers with their keys, and the preshared keys `psks`.
fn encrypted_tables(
    hosts: &[Host],
    keys: &[NodeKey],
    me: usize,
    eps: &[Ep],
    psks: &[(u32, u8)],
) -> String {
    let nets: [Net; 2] = [RED, BLUE];
    let mut y = tables_for(hosts, me, &nets, eps, &[]).replace(
        "{ name: red, vni: 4097, subnet: 10.10.0.0/24 }",
        "{ name: red, vni: 4097, subnet: 10.10.0.0/24, encrypted: true }",
    );
    let _ = writeln!(y, "tunnel:\n  peers:");
    for (i, h) in hosts.iter().enumerate().filter(|&(i, _)| i != me) {
        let _ = writeln!(y, "    {}: {}", h.underlay, keys[i].public());
    }
    let _ = writeln!(y, "  preshared:");
    for &(id, b) in psks {
        let key = shoal_dataplane::tables::WgKey([b; 32]);
        let _ = writeln!(y, "    - {{ id: {id}, key: {key} }}");
    }
    y
}

/// `tcpdump` on `host`'s underlay interface (a bridge device does not
/// see what it forwards between its ports), writing UDP matching `filter`.
fn capture(lab: &mut Lab, host: &Host, file: &PathBuf, filter: &str) -> Proc {
    let out = file.display().to_string();
    let proc = lab
        .spawn(
            &host.netns,
            &[
                "tcpdump",
                "-i",
                "eth0",
                "--immediate-mode",
                "-U",
                "-n",
                "-w",
                &out,
                filter,
            ],
        )
        .expect("tcpdump");
    // tcpdump writes the file header once it listens.
    wait_until("tcpdump to listen", T, || {
        (std::fs::metadata(file).ok()?.len() >= 24).then_some(())
    })
    .expect("tcpdump starts");
    proc
}

/// Stops a capture and reads its datagrams.
fn finish(mut proc: Proc, file: &PathBuf) -> Vec<Datagram> {
    // What the kernel has for it still goes to the file first.
    std::thread::sleep(Duration::from_millis(500));
    proc.signal(Signal::SIGINT).expect("stop tcpdump");
    let _ = wait_until("tcpdump to stop", T, || proc.exit_status());
    let bytes = std::fs::read(file).expect("the capture");
    let seen = pcap::udp_datagrams(&bytes);
    eprintln!(
        "{}: {} bytes, {} datagrams; tcpdump: {}",
        file.display(),
        bytes.len(),
        seen.len(),
        proc.stderr().trim()
    );
    seen
}

fn vni(d: &Datagram) -> Option<u32> {
    let p = &d.payload;
    (p.len() >= 8).then(|| u32::from_be_bytes([0, p[4], p[5], p[6]]))
}

fn ping(lab: &Lab, from: &str, to: &str, size: &str) -> bool {
    lab.run(
        from,
        &["ping", "-M", "do", "-s", size, "-c", "1", "-W", "2", to],
    )
    .is_ok_and(|o| o.status.success())
}

#[test]
fn an_encrypted_network_rides_wireguard_and_survives_rotation_and_removal() {
    let mut lab = Lab::new("encrypted").expect("lab");
    let hosts: Vec<Host> = (1..=3)
        .map(|i| lab.add_host(&format!("h{i}")).expect("host"))
        .collect();
    // Each daemon's key, made where it will find it.
    let keys: Vec<NodeKey> = hosts
        .iter()
        .map(|h| {
            let state = lab.dir().join(&h.name).join("state");
            std::fs::create_dir_all(&state).expect("state dir");
            NodeKey::load_or_create(&state.join("tunnel.key")).expect("key")
        })
        .collect();
    let mut eps = Vec::new();
    for (i, (net, addr, host)) in [
        ("red", "10.10.0.11", 0),
        ("red", "10.10.0.12", 1),
        ("red", "10.10.0.13", 2),
        ("blue", "10.20.0.11", 0),
        ("blue", "10.20.0.12", 1),
    ]
    .into_iter()
    .enumerate()
    {
        let netns = lab.add_netns(&format!("t{i}")).expect("task netns");
        eps.push(Ep {
            net,
            ip: ip(addr),
            host,
            netns,
        });
    }
    let task = |addr: &str| -> String {
        eps.iter()
            .find(|e| e.ip == ip(addr))
            .expect("task")
            .netns
            .clone()
    };
    let (r1, r2, r3, b1, b2) = (
        task("10.10.0.11"),
        task("10.10.0.12"),
        task("10.10.0.13"),
        task("10.20.0.11"),
        task("10.20.0.12"),
    );
    let mut daemons: Vec<Daemon> = (0..3)
        .map(|me| {
            let yaml = encrypted_tables(&hosts, &keys, me, &eps, &[(1, 0x11)]);
            lab.start_daemon(&hosts[me], &yaml, &[]).expect("daemon")
        })
        .collect();

    // The encrypted network's interfaces leave room for the tunnel.
    let link = lab
        .run_ok(&r1, &["ip", "-o", "link", "show", "eth0"])
        .expect("ip link");
    assert!(link.contains("mtu 1390"), "{link}");

    // Everything below crosses the underlay while h1's wire is watched.
    let file = lab.dir().join("underlay.pcap");
    let tcpdump = capture(&mut lab, &hosts[0], &file, "udp");
    assert!(
        wait_until("red h1 -> h2", T, || ping(&lab, &r1, "10.10.0.12", "56")
            .then_some(()))
        .is_ok(),
        "red h1 -> h2"
    );
    assert!(ping(&lab, &r1, "10.10.0.13", "56"), "red h1 -> h3");
    assert!(ping(&lab, &r3, "10.10.0.12", "56"), "red h3 -> h2");
    assert!(ping(&lab, &r2, "10.10.0.11", "56"), "red h2 -> h1");
    // A full-size packet fits: 1390 + the tunnel's 110 is the underlay's 1500.
    assert!(ping(&lab, &r1, "10.10.0.12", "1362"), "full-size DF ping");
    assert!(
        wait_until("blue h2 -> h1", T, || ping(&lab, &b2, "10.20.0.11", "56")
            .then_some(()))
        .is_ok(),
        "blue h2 -> h1"
    );
    // HTTP with a known body on each network.
    start_whoami(&mut lab, &r2, "SECRETMARKER");
    start_whoami(&mut lab, &b2, "PLAINMARKER");
    for (from, to, name) in [
        (&r1, "10.10.0.12", "SECRETMARKER"),
        (&b1, "10.20.0.12", "PLAINMARKER"),
    ] {
        let body = lab
            .in_netns(from, move || {
                http_get(SocketAddrV4::new(ip(to), 80), Duration::from_secs(2))
            })
            .expect("netns")
            .expect("HTTP across the overlay");
        assert!(body.contains(&format!("Hostname: {name}")), "{body}");
    }
    let seen = finish(tcpdump, &file);
    let vxlan: Vec<&Datagram> = seen.iter().filter(|d| d.dst_port == VXLAN_PORT).collect();
    let tunnel: Vec<&Datagram> = seen.iter().filter(|d| d.dst_port == TUNNEL_PORT).collect();
    assert!(
        !vxlan.iter().any(|d| vni(d) == Some(RED.vni)),
        "the encrypted network showed up as VXLAN"
    );
    assert!(
        vxlan.iter().any(|d| vni(d) == Some(BLUE.vni)),
        "the plain network beside it is VXLAN: {} datagrams seen",
        seen.len()
    );
    assert!(
        tunnel.len() >= 10,
        "only {} WireGuard datagrams",
        tunnel.len()
    );
    assert!(
        !seen
            .iter()
            .any(|d| pcap::contains(&d.payload, b"SECRETMARKER")),
        "the encrypted network's HTTP body crossed the underlay in the clear"
    );
    assert!(
        seen.iter()
            .any(|d| pcap::contains(&d.payload, b"PLAINMARKER")),
        "the capture sees plain bodies (else it proves nothing)"
    );

    // A transfer runs while the preshared key rotates on every node; new
    // handshakes under key 2 start 5 s later, and the transfer goes on.
    let inits = lab.dir().join("handshakes.pcap");
    let handshakes = capture(&mut lab, &hosts[0], &inits, "udp port 51820 and udp[8] = 1");
    lab.spawn(&r2, &["iperf3", "-s", "-p", "5201"])
        .expect("iperf3 server");
    wait_until("iperf3 server", T, || {
        let o = lab
            .run(
                &r1,
                &["iperf3", "-c", "10.10.0.12", "-p", "5201", "-n", "1K"],
            )
            .ok()?;
        o.status.success().then_some(())
    })
    .expect("iperf3 server listens");
    let mut client = lab
        .spawn(
            &r1,
            &["iperf3", "-c", "10.10.0.12", "-p", "5201", "-t", "10", "-J"],
        )
        .expect("iperf3 client");
    std::thread::sleep(Duration::from_secs(2));
    for (me, d) in daemons.iter_mut().enumerate() {
        let yaml = encrypted_tables(&hosts, &keys, me, &eps, &[(2, 0x22), (1, 0x11)]);
        d.reload(&yaml).expect("reload");
    }
    let status = wait_until("iperf3 to finish", Duration::from_secs(30), || {
        client.exit_status()
    })
    .expect("iperf3 ends");
    let report = client.stdout();
    assert!(
        status.success(),
        "iperf3 failed across the rotation: {report}"
    );
    let json: serde_json::Value = serde_json::from_str(&report).expect("iperf3 json");
    let bytes = json["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    // Every second of the ten moved data: no stall across the switch.
    let stalled = json["intervals"].as_array().map_or(0, |i| {
        i.iter()
            .filter(|iv| iv["sum"]["bytes"].as_u64().unwrap_or(0) == 0)
            .count()
    });
    assert!(bytes > 10_000_000, "only {bytes} bytes across the rotation");
    assert_eq!(stalled, 0, "intervals without data: {report}");
    let inits = finish(handshakes, &inits);
    assert!(
        !inits.is_empty(),
        "no handshake under the new key after the rotation"
    );

    // h3 leaves the cluster: the others take it out of their tables, and
    // its session is worth nothing from then on.
    assert!(ping(&lab, &r3, "10.10.0.11", "56"), "h3 still reaches h1");
    let without_h3: Vec<Ep> = eps
        .iter()
        .filter(|e| e.host != 2)
        .map(|e| Ep {
            net: e.net,
            ip: e.ip,
            host: e.host,
            netns: e.netns.clone(),
        })
        .collect();
    let two = &hosts[..2];
    for (me, d) in daemons.iter_mut().take(2).enumerate() {
        let yaml = encrypted_tables(two, &keys, me, &without_h3, &[(2, 0x22), (1, 0x11)]);
        d.reload(&yaml).expect("reload");
    }
    let before = counter(
        &daemons[0].metrics().expect("metrics"),
        "shoal_dataplane_drops_total",
        "reason=\"unknown_peer\"",
    );
    wait_until("h3 to be cut off", T, || {
        (!ping(&lab, &r3, "10.10.0.11", "56")).then_some(())
    })
    .expect("a removed node can no longer send on the encrypted network");
    assert!(!ping(&lab, &r3, "10.10.0.11", "56"));
    let after = counter(
        &daemons[0].metrics().expect("metrics"),
        "shoal_dataplane_drops_total",
        "reason=\"unknown_peer\"",
    );
    assert!(after > before, "h1 counts what h3 still sends");
    assert!(ping(&lab, &r1, "10.10.0.12", "56"), "h1 -> h2 goes on");
}
