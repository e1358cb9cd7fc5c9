use std::path::{Path, PathBuf};

use super::*;
use proptest::prelude::*;

/// The example of DESIGN.md §3, verbatim.
const EXAMPLE: &str = r#"
node: { name: n1, underlay: 198.18.0.1 }          # this node; underlay device found from the address
networks:
  - { name: skynet, vni: 4097, subnet: 10.10.0.0/24 }   # mtu: optional, default underlay MTU - 50
endpoints:                                         # mac: optional, default 02:42 + the IPv4 address
  - { network: skynet, ip: 10.10.0.2, node: 198.18.0.1, netns: web1 }  # local: shoal wires the named netns
  - { network: skynet, ip: 10.10.0.3, node: 198.18.0.2 }               # remote: lives on another node
services:
  - name: web
    vips: { skynet: 10.10.0.100 }
    ports: [ { protocol: tcp, target: 80, published: 8080, mode: ingress } ]
    backends: [ { ip: 10.10.0.2 }, { ip: 10.10.0.3, state: draining } ]   # state: active (default) | draining
    endpoint_mode: vip                             # vip (default) | dnsrr
"#;

fn example() -> Tables {
    Tables::from_yaml_str(EXAMPLE).expect("the DESIGN.md example parses")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(name: &str, vni: u32, subnet: &str) -> Network {
    Network {
        name: name.into(),
        vni,
        subnet: subnet.parse().unwrap(),
        gateway: None,
        mtu: None,
        encrypted: false,
        ingress: false,
    }
}

fn remote(network: &str, addr: &str) -> Endpoint {
    Endpoint {
        network: network.into(),
        ip: ip(addr),
        mac: None,
        node: ip("198.18.0.2"),
        netns: None,
        task: None,
        name: None,
        state: EndpointState::Active,
    }
}

fn port(target: u16, published: Option<u16>) -> Port {
    Port {
        protocol: Protocol::Tcp,
        target,
        published,
        mode: PublishMode::Ingress,
    }
}

#[track_caller]
fn assert_problem(t: &Tables, path: &str, message: &str) {
    let problems = t.validate().expect_err("tables should be invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(message)),
        "want `{path}: …{message}…` in {problems:#?}"
    );
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("shoal-tables-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn design_example_loads_and_validates() {
    let t = example();
    assert_eq!(t.validate(), Ok(()));
    assert_eq!(t.node.name, "n1");
    let web = &t.services[0];
    assert_eq!(web.vips["skynet"], ip("10.10.0.100"));
    assert_eq!(web.ports, [port(80, Some(8080))]);
    assert_eq!(web.backends[1].state, EndpointState::Draining);
    assert_eq!(web.backends[0].weight, 1);

    let file = temp_file("example.yaml", EXAMPLE);
    let loaded = Tables::load(&file);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(loaded.unwrap(), t);
}

#[test]
fn yaml_and_json_round_trip() {
    let mut t = example();
    t.networks[0].mtu = Some(1400);
    t.networks[0].gateway = Some(ip("10.10.0.254"));
    t.endpoints[1].mac = Some(MacAddr([0x02, 0, 0, 0, 0, 9]));
    t.endpoints[1].task = Some("web.2".into());
    let yaml = serde_saphyr::to_string(&t).unwrap();
    assert_eq!(Tables::from_yaml_str(&yaml).unwrap(), t);
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(Tables::from_yaml_str(&json).unwrap(), t);
    let pretty = serde_json::to_string_pretty(&t).unwrap();
    assert_eq!(Tables::from_yaml_str(&pretty).unwrap(), t);
}

#[test]
fn json_file_loads() {
    let text = r#"{"node":{"name":"n1","underlay":"198.18.0.1"},
            "networks":[{"name":"skynet","vni":4097,"subnet":"10.10.0.0/24"}],
            "endpoints":[{"network":"skynet","ip":"10.10.0.3","node":"198.18.0.2","mac":"02:42:0a:0a:00:03"}]}"#;
    let file = temp_file("tables.json", text);
    let loaded = Tables::load(&file);
    std::fs::remove_file(&file).unwrap();
    let t = loaded.unwrap();
    assert_eq!(
        t.endpoints[0].mac,
        Some(MacAddr::from_ipv4(ip("10.10.0.3")))
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let text = "node: { name: n1, underlay: 198.18.0.1 }\nnetworks:\n  - { name: skynet, vni: 4097, subnet: 10.10.0.0/24 }\n  - [ nope\n";
    let Err(LoadError::Syntax { line, column, .. }) = Tables::from_yaml_str(text) else {
        panic!("want a syntax error");
    };
    assert!(line >= 4, "line {line}");
    assert!(column >= 1, "column {column}");

    let text = "node: { name: n1, underlay: 198.18.0.1 }\nnetworks:\n  - { name: skynet, vni: many, subnet: 10.10.0.0/24 }\n";
    let err = Tables::from_yaml_str(text).unwrap_err();
    let LoadError::Syntax {
        line,
        column,
        message,
        ..
    } = &err
    else {
        panic!("want a syntax error, got {err}");
    };
    assert_eq!((*line, *column), (3, 26));
    assert!(message.starts_with("networks[0].vni: "), "{message}");
    assert!(
        err.to_string()
            .starts_with("<input>:3:26: networks[0].vni: "),
        "{err}"
    );
}

#[test]
fn unknown_key_is_reported_with_its_path() {
    let text = EXAMPLE.replace(
        "node: 198.18.0.2 }",
        "node: 198.18.0.2, mack: 02:42:00:00:00:01 }",
    );
    let file = temp_file("unknown.yaml", &text);
    let err = Tables::load(&file).unwrap_err();
    std::fs::remove_file(&file).unwrap();
    let LoadError::Syntax { message, line, .. } = &err else {
        panic!("want a syntax error, got {err}");
    };
    assert!(
        message.starts_with("endpoints[1].mack: unknown field"),
        "{message}"
    );
    assert_eq!(*line, 7, "the example starts with an empty line");
    assert!(err.to_string().contains("unknown.yaml:7:"), "{err}");
}

#[test]
fn missing_file_names_the_file() {
    let err = Tables::load(Path::new("/nonexistent/shoal/tables.yaml")).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(
        err.to_string().contains("/nonexistent/shoal/tables.yaml"),
        "{err}"
    );
}

#[test]
fn invalid_file_lists_every_problem() {
    let text = EXAMPLE
        .replace("name: n1,", "name: '',")
        .replace("vni: 4097", "vni: 0")
        .replace("{ ip: 10.10.0.2 }", "{ ip: 10.10.0.9, weight: 0 }");
    let file = temp_file("invalid.yaml", &text);
    let err = Tables::load(&file).unwrap_err();
    std::fs::remove_file(&file).unwrap();
    let problems = err.problems().to_vec();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "node.name",
            "networks[0].vni",
            "services[0].backends[0].ip",
            "services[0].backends[0].weight"
        ]
    );
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), problems.len(), "{shown}");
    for (line, problem) in lines.iter().zip(&problems) {
        assert_eq!(*line, format!("{}: {problem}", file.display()));
    }
}

#[test]
fn problem_display() {
    let mut t = example();
    t.endpoints.push(remote("skynet", "10.10.0.4"));
    t.endpoints.push(remote("skynet", "10.10.0.5"));
    t.endpoints[3].ip = ip("10.9.0.2");
    let problems = t.validate().unwrap_err();
    assert_eq!(
        problems[0].to_string(),
        "endpoints[3].ip: 10.9.0.2 is outside subnet 10.10.0.0/24 of network `skynet`"
    );
}

#[test]
fn node_name_must_not_be_empty() {
    let mut t = example();
    t.node.name = " ".into();
    assert_problem(&t, "node.name", "is empty");
}

#[test]
fn peers_are_unicast_underlay_addresses() {
    let mut t = Tables::from_yaml_str(
        "node: { name: n1, underlay: 198.18.0.1 }\npeers: [ 198.18.0.7, 0.0.0.0, 224.0.0.1 ]\n",
    )
    .expect("peers parse");
    assert_eq!(t.peers[0], ip("198.18.0.7"));
    assert_problem(&t, "peers[1]", "0.0.0.0 is the unspecified address");
    assert_problem(&t, "peers[2]", "224.0.0.1 is a multicast address");
    t.peers = vec![ip("198.18.0.7"), ip("255.255.255.255")];
    assert_problem(&t, "peers[1]", "the broadcast address");
    t.peers.truncate(1);
    assert_eq!(t.validate(), Ok(()));
}

#[test]
fn the_nodes_are_this_one_the_peers_and_the_endpoints_nodes() {
    let mut t = example();
    t.peers = vec![ip("198.18.0.9")];
    let nodes: std::collections::BTreeSet<Ipv4Addr> = t.nodes().collect();
    assert_eq!(
        nodes.into_iter().collect::<Vec<_>>(),
        [ip("198.18.0.1"), ip("198.18.0.2"), ip("198.18.0.9")]
    );
}

#[test]
fn network_names_are_non_empty_and_unique() {
    let mut t = example();
    t.networks.push(net("", 2, "10.20.0.0/24"));
    t.networks.push(net("skynet", 3, "10.30.0.0/24"));
    assert_problem(&t, "networks[1].name", "is empty");
    assert_problem(
        &t,
        "networks[2].name",
        "network `skynet` is already defined at networks[0]",
    );
}

#[test]
fn vni_is_24_bits_non_zero_and_unique() {
    let mut t = example();
    t.networks.push(net("a", 0, "10.20.0.0/24"));
    t.networks.push(net("b", 16_777_216, "10.30.0.0/24"));
    t.networks.push(net("c", 4097, "10.40.0.0/24"));
    t.networks.push(net("d", 16_777_215, "10.50.0.0/24"));
    assert_problem(&t, "networks[1].vni", "0 is outside 1..=16777215");
    assert_problem(&t, "networks[2].vni", "16777216 is outside 1..=16777215");
    assert_problem(
        &t,
        "networks[3].vni",
        "VNI 4097 is already used by network `skynet`",
    );
    let problems = t.validate().unwrap_err();
    assert!(
        problems.iter().all(|p| p.path != "networks[4].vni"),
        "{problems:#?}"
    );
}

#[test]
fn subnets_do_not_overlap_and_are_usable() {
    let mut t = example();
    t.networks.push(net("wide", 2, "10.0.0.0/8"));
    t.networks.push(net("tiny", 3, "192.168.0.0/31"));
    t.networks.push(net("sloppy", 4, "172.16.0.5/24"));
    assert_problem(
        &t,
        "networks[1].subnet",
        "10.0.0.0/8 overlaps subnet 10.10.0.0/24 of network `skynet`",
    );
    assert_problem(&t, "networks[2].subnet", "leaves no room");
    assert_problem(
        &t,
        "networks[3].subnet",
        "172.16.0.5/24 has host bits set; write 172.16.0.0/24",
    );
}

#[test]
fn gateway_is_a_host_address_of_its_subnet() {
    for (gw, message) in [
        (
            "10.11.0.1",
            "10.11.0.1 is outside subnet 10.10.0.0/24 of network `skynet`",
        ),
        ("10.10.0.0", "is the network address"),
        ("10.10.0.255", "is the broadcast address"),
    ] {
        let mut t = example();
        t.networks[0].gateway = Some(ip(gw));
        assert_problem(&t, "networks[0].gateway", message);
    }
    let mut t = example();
    t.networks[0].gateway = Some(ip("10.10.0.254"));
    assert_eq!(t.validate(), Ok(()));
}

#[test]
fn mtu_is_within_576_to_9000() {
    for (mtu, ok) in [(575, false), (576, true), (9000, true), (9001, false)] {
        let mut t = example();
        t.networks[0].mtu = Some(mtu);
        if ok {
            assert_eq!(t.validate(), Ok(()), "mtu {mtu}");
        } else {
            assert_problem(
                &t,
                "networks[0].mtu",
                &format!("{mtu} is outside 576..=9000"),
            );
        }
    }
}

#[test]
fn endpoint_network_must_exist() {
    let mut t = example();
    t.endpoints.push(remote("nonet", "10.10.0.4"));
    assert_problem(&t, "endpoints[2].network", "network `nonet` is not defined");
}

#[test]
fn endpoint_ip_is_a_host_address_and_not_the_gateway() {
    for (addr, message) in [
        (
            "10.9.0.2",
            "10.9.0.2 is outside subnet 10.10.0.0/24 of network `skynet`",
        ),
        ("10.10.0.0", "10.10.0.0 is the network address"),
        ("10.10.0.255", "10.10.0.255 is the broadcast address"),
        ("10.10.0.1", "10.10.0.1 is the gateway of network `skynet`"),
    ] {
        let mut t = example();
        t.endpoints.push(remote("skynet", addr));
        assert_problem(&t, "endpoints[2].ip", message);
    }
    let mut t = example();
    t.networks[0].gateway = Some(ip("10.10.0.254"));
    t.endpoints.push(remote("skynet", "10.10.0.254"));
    assert_problem(&t, "endpoints[2].ip", "10.10.0.254 is the gateway");
}

#[test]
fn endpoint_ips_and_macs_are_unique_per_network() {
    let mut t = example();
    t.endpoints.push(remote("skynet", "10.10.0.3"));
    let mut clash = remote("skynet", "10.10.0.4");
    clash.mac = Some(MacAddr::from_ipv4(ip("10.10.0.2")));
    t.endpoints.push(clash);
    let mut multicast = remote("skynet", "10.10.0.5");
    multicast.mac = Some(MacAddr([0x03, 0, 0, 0, 0, 1]));
    t.endpoints.push(multicast);
    assert_problem(
        &t,
        "endpoints[2].ip",
        "10.10.0.3 is already used by endpoints[1]",
    );
    assert_problem(
        &t,
        "endpoints[3].mac",
        "02:42:0a:0a:00:02 is already used by endpoints[0]",
    );
    assert_problem(&t, "endpoints[4].mac", "multicast");
}

#[test]
fn local_endpoints_need_netns_and_remote_ones_must_not_have_it() {
    let mut t = example();
    t.endpoints[0].netns = None;
    t.endpoints[1].netns = Some("web2".into());
    assert_problem(
        &t,
        "endpoints[0].netns",
        "missing; an endpoint on this node",
    );
    assert_problem(
        &t,
        "endpoints[1].netns",
        "netns is only for endpoints on this node",
    );
    t.endpoints[0].netns = Some("../etc".into());
    assert_problem(&t, "endpoints[0].netns", "neither a namespace name");
}

#[test]
fn service_names_are_non_empty_and_unique() {
    let mut t = example();
    let mut other = t.services[0].clone();
    other.vips.clear();
    other.ports.clear();
    t.services.push(other.clone());
    other.name = String::new();
    t.services.push(other);
    assert_problem(
        &t,
        "services[1].name",
        "service `web` is already defined at services[0]",
    );
    assert_problem(&t, "services[2].name", "is empty");
}

#[test]
fn vips_name_networks_and_are_free_host_addresses() {
    for (addr, message) in [
        ("10.11.0.100", "is outside subnet 10.10.0.0/24"),
        ("10.10.0.0", "is the network address"),
        ("10.10.0.255", "is the broadcast address"),
        ("10.10.0.1", "is the gateway"),
        ("10.10.0.3", "10.10.0.3 is already the ip of endpoints[1]"),
    ] {
        let mut t = example();
        t.services[0].vips.insert("skynet".into(), ip(addr));
        assert_problem(&t, "services[0].vips.skynet", message);
    }
    let mut t = example();
    t.services[0].vips.insert("nonet".into(), ip("10.10.0.100"));
    let mut db = t.services[0].clone();
    db.name = "db".into();
    db.vips.remove("nonet");
    db.ports.clear();
    t.services.push(db);
    assert_problem(
        &t,
        "services[0].vips.nonet",
        "network `nonet` is not defined",
    );
    assert_problem(
        &t,
        "services[1].vips.skynet",
        "10.10.0.100 is already the VIP of service `web`",
    );
}

#[test]
fn ports_are_non_zero_and_published_once() {
    let mut t = example();
    t.services[0].ports.push(port(0, Some(0)));
    let mut api = t.services[0].clone();
    api.name = "api".into();
    api.vips.clear();
    api.ports = vec![
        port(80, Some(8080)),
        Port {
            protocol: Protocol::Udp,
            ..port(80, Some(8080))
        },
    ];
    t.services.push(api);
    assert_problem(&t, "services[0].ports[1].target", "is 0");
    assert_problem(&t, "services[0].ports[1].published", "is 0");
    assert_problem(
        &t,
        "services[1].ports[0].published",
        "port 8080/tcp is already published by service `web`",
    );
    let problems = t.validate().unwrap_err();
    assert!(
        problems
            .iter()
            .all(|p| p.path != "services[1].ports[1].published"),
        "udp and tcp do not clash: {problems:#?}"
    );
}

#[test]
fn backends_are_endpoints_of_the_vip_networks_with_weight() {
    let mut t = example();
    t.services[0].backends[1].ip = ip("10.10.0.9");
    t.services[0].backends.push(Backend {
        ip: ip("10.10.0.2"),
        weight: 0,
        state: EndpointState::Active,
    });
    let problems = t.validate().unwrap_err();
    assert_eq!(
        problems[0].to_string(),
        "services[0].backends[1].ip: 10.10.0.9 is no endpoint of network `skynet`"
    );
    assert_problem(
        &t,
        "services[0].backends[2].ip",
        "10.10.0.2 is already backends[0]",
    );
    assert_problem(&t, "services[0].backends[2].weight", "is 0");

    // Without a VIP (dnsrr), a backend may be an endpoint of any network.
    let mut t = example();
    t.services[0].vips.clear();
    t.services[0].endpoint_mode = EndpointMode::Dnsrr;
    assert_eq!(t.validate(), Ok(()));
    t.services[0].backends[0].ip = ip("10.10.0.50");
    assert_problem(
        &t,
        "services[0].backends[0].ip",
        "is no endpoint of network `skynet`",
    );
}

#[test]
fn check_host_reports_missing_namespaces_of_local_endpoints() {
    let mut t = example();
    t.endpoints.push(Endpoint {
        netns: Some("/proc/1234/ns/net".into()),
        node: ip("198.18.0.1"),
        ..remote("skynet", "10.10.0.4")
    });
    assert_eq!(t.check_host(&|_| true), Ok(()));
    let problems = t.check_host(&|ns| ns == "web2").unwrap_err();
    assert_eq!(
        problems[0].to_string(),
        "endpoints[0].netns: network namespace `web1` does not exist; create it with `ip netns add web1`"
    );
    assert_eq!(problems[1].path, "endpoints[2].netns");
    assert_eq!(problems.len(), 2);
}

#[test]
fn resolved_accessors() {
    let mut t = example();
    let skynet = t.network("skynet").unwrap();
    assert_eq!(skynet.gateway_or_default(), ip("10.10.0.1"));
    assert_eq!(skynet.mtu_or(1500), 1450);
    assert!(t.network("nonet").is_none());
    assert_eq!(
        t.endpoints[0].mac_or_default().to_string(),
        "02:42:0a:0a:00:02"
    );
    assert!(t.is_local(&t.endpoints[0]));
    assert!(!t.is_local(&t.endpoints[1]));
    t.networks[0].gateway = Some(ip("10.10.0.254"));
    t.networks[0].mtu = Some(1400);
    assert_eq!(t.networks[0].gateway_or_default(), ip("10.10.0.254"));
    assert_eq!(t.networks[0].mtu_or(1500), 1400);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        if let Ok(t) = Tables::from_yaml_str(&text) {
            let _ = t.validate();
        }
    }
}

#[test]
fn the_tunnel_section_parses_and_is_checked() {
    let text = format!(
        "{EXAMPLE}tunnel:\n  peers: {{ 198.18.0.2: {k}, 198.18.0.1: {k} }}\n  preshared: [ {{ id: 4, key: {k} }}, {{ id: 4, key: {k} }}, {{ id: 2, key: {k} }} ]\n",
        k = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
    );
    let t = Tables::from_yaml_str(&text).expect("the tunnel section parses");
    assert_eq!(t.tunnel.peers[&ip("198.18.0.2")].0[0], 0xc8);
    assert_eq!(
        t.tunnel.peers[&ip("198.18.0.2")].to_string(),
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
    );
    assert_problem(&t, "tunnel.preshared", "lists 3 keys");
    assert_problem(&t, "tunnel.preshared[1].id", "4 is listed twice");
    assert_problem(&t, "tunnel.peers.198.18.0.1", "this node's own address");
    let mut same_parity = t.clone();
    same_parity.tunnel.preshared.remove(1);
    same_parity.tunnel.preshared[1].id = 6;
    assert_problem(
        &same_parity,
        "tunnel.preshared[1].id",
        "4 and 6 are both even",
    );
    let bad = format!("{EXAMPLE}tunnel: {{ peers: {{ 198.18.0.2: c2hvcnQ= }} }}\n");
    let err = Tables::from_yaml_str(&bad).expect_err("a short key is refused");
    assert!(err.to_string().contains("not a WireGuard key"), "{err}");
}

#[test]
fn encrypted_networks_lose_the_tunnel_overhead_from_their_mtu() {
    let mut t = example();
    t.networks[0].encrypted = true;
    t.validate().expect("encrypted networks are valid");
    assert_eq!(t.networks[0].mtu_or(1500), 1500 - 50 - 60);
    t.networks[0].encrypted = false;
    assert_eq!(t.networks[0].mtu_or(1500), 1450);
}
