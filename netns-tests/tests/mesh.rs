//! The routing mesh, north-south: a published port answers on every node,
//! also on one that runs no backend, reaches backends on every node, and the
//! backends see the client's own address.

mod common;

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use common::{Ep, RED, T, start_whoami, tables_for};
use shoal_netns_tests::{Lab, http_get, shoal_bin, udp_roundtrip, wait_until};

const BACKENDS: [&str; 3] = ["10.10.0.11", "10.10.0.12", "10.10.0.13"];

fn hostname(body: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix("Hostname: "))
        .unwrap_or("?")
        .to_string()
}

#[test]
fn published_ports_answer_on_every_node_with_the_clients_address() {
    let mut lab = Lab::new("mesh").expect("lab");
    // h1-h3 run a backend each; h4 runs shoal and no backend.
    let hosts: Vec<_> = (1..=4)
        .map(|i| lab.add_host(&format!("h{i}")).expect("host"))
        .collect();
    let client = lab.add_host("client").expect("client host");
    let mut eps = Vec::new();
    for (i, ip) in BACKENDS.iter().enumerate() {
        let netns = lab.add_netns(&format!("web{}", i + 1)).expect("netns");
        eps.push(Ep {
            net: "red",
            ip: ip.parse().expect("ip"),
            host: i,
            netns,
        });
    }
    let service = "services:
  - name: web
    vips: { red: 10.10.0.100 }
    ports: [ { protocol: tcp, target: 80, published: 8080 }, { protocol: udp, target: 9000, published: 9000 } ]
    backends: [ { ip: 10.10.0.11 }, { ip: 10.10.0.12 }, { ip: 10.10.0.13 } ]
  - name: hostweb
    vips: { red: 10.10.0.101 }
    ports: [ { protocol: tcp, target: 80, published: 8090, mode: host } ]
    backends: [ { ip: 10.10.0.11 } ]
";
    let _daemons: Vec<_> = (0..4)
        .map(|me| {
            let yaml = tables_for(&hosts, me, &[RED], &eps, &[]) + service;
            lab.start_daemon(&hosts[me], &yaml, &[]).expect("daemon")
        })
        .collect();
    for (i, ep) in eps.iter().enumerate() {
        start_whoami(&mut lab, &ep.netns, &format!("web{}", i + 1));
    }

    let client_ip = client.underlay;
    for node in &hosts {
        let addr = SocketAddrV4::new(node.underlay, 8080);
        wait_until(&format!("{addr} to answer"), T, || {
            lab.in_netns(&client.netns, move || {
                http_get(addr, Duration::from_secs(2))
            })
            .ok()?
            .ok()
        })
        .expect("published port answers");
        let bodies = lab
            .in_netns(&client.netns, move || {
                (0..300)
                    .map(|_| http_get(addr, Duration::from_secs(3)).expect("HTTP through the mesh"))
                    .collect::<Vec<_>>()
            })
            .expect("client");
        let mut seen: HashMap<String, usize> = HashMap::new();
        for body in &bodies {
            *seen.entry(hostname(body)).or_insert(0) += 1;
            let remote = body
                .lines()
                .find_map(|l| l.strip_prefix("RemoteAddr: "))
                .unwrap_or("");
            assert!(
                remote.starts_with(&format!("{client_ip}:")),
                "the backend sees the client's address, not {remote} (entry {})",
                node.name
            );
        }
        for name in ["web1", "web2", "web3"] {
            let n = seen.get(name).copied().unwrap_or(0);
            assert!(
                n >= 60,
                "entry {}: {name} got {n} of 300: {seen:?}",
                node.name
            );
        }

        let udp = SocketAddrV4::new(node.underlay, 9000);
        let echo = lab
            .in_netns(&client.netns, move || {
                udp_roundtrip(udp, b"mesh", Duration::from_secs(2))
            })
            .expect("client")
            .expect("UDP through the mesh");
        let echo = String::from_utf8_lossy(&echo);
        assert!(
            echo.starts_with("Hostname: web") && echo.ends_with("mesh"),
            "{echo}"
        );
    }

    // Mode host: only the node running a backend answers, with that backend.
    let on_h1 = SocketAddrV4::new(hosts[0].underlay, 8090);
    let body = lab
        .in_netns(&client.netns, move || {
            http_get(on_h1, Duration::from_secs(3))
        })
        .expect("client")
        .expect("host-mode port on the backend's node");
    assert_eq!(hostname(&body), "web1");
    for node in &hosts[1..] {
        let addr = SocketAddrV4::new(node.underlay, 8090);
        let answer = lab
            .in_netns(&client.netns, move || {
                http_get(addr, Duration::from_secs(3))
            })
            .expect("client");
        assert!(
            answer.is_err(),
            "{} runs no hostweb backend and must not answer",
            node.name
        );
    }
}

#[test]
fn a_port_already_served_on_the_node_is_refused() {
    let mut lab = Lab::new("mesh-port-in-use").expect("lab");
    let host = lab.add_host("h1").expect("host");
    let web = lab.add_netns("web").expect("netns");
    let bin = shoal_bin();
    let bin = bin.to_str().expect("utf-8 path");
    // Something on the node itself already serves 8080.
    lab.spawn(&host.netns, &[bin, "whoami", "--port", "8080"])
        .expect("whoami");
    let addr = SocketAddrV4::new(host.underlay, 8080);
    wait_until("the local server", T, || {
        lab.in_netns(&host.netns, move || http_get(addr, Duration::from_secs(1)))
            .ok()?
            .ok()
    })
    .expect("local server up");
    let yaml = format!(
        "node: {{ name: h1, underlay: {u} }}
networks: [ {{ name: red, vni: 4097, subnet: 10.10.0.0/24 }} ]
endpoints: [ {{ network: red, ip: 10.10.0.11, node: {u}, netns: {web} }} ]
services:
  - {{ name: web, vips: {{ red: 10.10.0.100 }}, ports: [ {{ target: 80, published: 8080 }} ], backends: [ {{ ip: 10.10.0.11 }} ] }}
",
        u = host.underlay
    );
    let err = lab.start_daemon(&host, &yaml, &[]).expect_err("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("port 8080/tcp is already in use"), "{msg}");
    let links = lab.run_ok(&web, &["ip", "-o", "link"]).expect("links");
    assert_eq!(links.lines().count(), 1, "nothing applied: {links}");
}
