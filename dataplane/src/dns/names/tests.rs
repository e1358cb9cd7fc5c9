use std::net::Ipv4Addr;

use hickory_proto::rr::RecordType;

use super::{Answer, Names};
use crate::tables::Tables;

/// Node n1 with tasks on red (t1, also on blue) and blue (t2); `web` has a
/// VIP on red and backends on both hosts, `db` is dnsrr on red, `api` lives
/// on blue only, `bare` is vip mode without a VIP.
const TABLES: &str = r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: red, vni: 4097, subnet: 10.10.0.0/24 }
  - { name: Blue, vni: 4098, subnet: 10.20.0.0/24 }
endpoints:
  - { network: red, ip: 10.10.0.2, node: 198.18.0.1, netns: t1 }
  - { network: Blue, ip: 10.20.0.2, node: 198.18.0.1, netns: t1 }
  - { network: Blue, ip: 10.20.0.3, node: 198.18.0.1, netns: t2 }
  - { network: red, ip: 10.10.0.3, node: 198.18.0.2 }
  - { network: red, ip: 10.10.0.4, node: 198.18.0.2 }
  - { network: red, ip: 10.10.0.5, node: 198.18.0.2, state: down }
services:
  - name: Web
    vips: { red: 10.10.0.100 }
    backends: [ { ip: 10.10.0.2 }, { ip: 10.10.0.3 }, { ip: 10.10.0.4, state: draining }, { ip: 10.10.0.5 } ]
  - name: db
    endpoint_mode: dnsrr
    backends: [ { ip: 10.10.0.3 }, { ip: 10.10.0.4 } ]
  - name: api
    vips: { Blue: 10.20.0.100 }
    backends: [ { ip: 10.20.0.3 } ]
  - name: bare
    backends: [ { ip: 10.20.0.9 } ]
"#;

fn names() -> Names {
    Names::from_tables(&Tables::from_yaml_str(TABLES).expect("test tables"))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn a(names: &Names, netns: &str, q: &str) -> Answer {
    names.lookup(names.networks_of(netns), q, RecordType::A)
}

fn recs(ips: &[&str]) -> Answer {
    Answer::Records(ips.iter().map(|s| ip(s)).collect())
}

#[test]
fn networks_of_local_namespaces() {
    let n = names();
    assert_eq!(n.networks_of("t1"), ["red", "blue"]);
    assert_eq!(n.networks_of("t2"), ["blue"]);
    assert!(n.networks_of("elsewhere").is_empty());
}

#[test]
fn service_name_is_its_vip() {
    let n = names();
    assert_eq!(a(&n, "t1", "web"), recs(&["10.10.0.100"]));
    assert_eq!(a(&n, "t1", "WEB."), recs(&["10.10.0.100"]));
    assert_eq!(a(&n, "t1", "web.red"), recs(&["10.10.0.100"]));
    assert_eq!(a(&n, "t1", "web.RED."), recs(&["10.10.0.100"]));
}

#[test]
fn tasks_name_lists_active_backends_only() {
    let n = names();
    // 10.10.0.4 drains, 10.10.0.5's endpoint is down.
    let want = recs(&["10.10.0.2", "10.10.0.3"]);
    assert_eq!(a(&n, "t1", "tasks.web"), want);
    assert_eq!(a(&n, "t1", "Tasks.Web.red."), want);
}

#[test]
fn dnsrr_name_is_its_backends() {
    let n = names();
    assert_eq!(a(&n, "t1", "db"), recs(&["10.10.0.3", "10.10.0.4"]));
    assert_eq!(
        a(&n, "t1", "tasks.db.red"),
        recs(&["10.10.0.3", "10.10.0.4"])
    );
}

#[test]
fn services_are_visible_only_on_shared_networks() {
    let n = names();
    assert_eq!(a(&n, "t2", "web"), Answer::NotOurs);
    assert_eq!(a(&n, "t2", "tasks.web"), Answer::NotOurs);
    assert_eq!(a(&n, "t2", "db"), Answer::NotOurs);
    assert_eq!(a(&n, "t2", "api"), recs(&["10.20.0.100"]));
    assert_eq!(a(&n, "t1", "api.blue"), recs(&["10.20.0.100"]));
    // t1 is on blue, but web has no VIP there.
    assert_eq!(a(&n, "t1", "web.blue"), Answer::NotOurs);
    // A namespace we do not serve sees nothing.
    assert_eq!(a(&n, "nowhere", "web"), Answer::NotOurs);
}

#[test]
fn vip_service_without_vip_is_visible_where_its_backends_are() {
    let n = names();
    // 10.20.0.9 has no endpoint; blue's subnet holds it. No VIP: no address.
    assert_eq!(a(&n, "t2", "bare"), Answer::Records(Vec::new()));
    assert_eq!(a(&n, "t2", "tasks.bare"), recs(&["10.20.0.9"]));
    assert_eq!(a(&n, "t1", "bare.red"), Answer::NotOurs);
}

#[test]
fn other_types_of_a_known_name_have_no_data() {
    let n = names();
    let nets = n.networks_of("t1");
    for t in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        assert_eq!(n.lookup(nets, "web", t), Answer::Records(Vec::new()));
        assert_eq!(n.lookup(nets, "tasks.web", t), Answer::Records(Vec::new()));
    }
    assert_eq!(
        n.lookup(nets, "example.test", RecordType::AAAA),
        Answer::NotOurs
    );
}

#[test]
fn unknown_and_odd_names_are_not_ours() {
    let n = names();
    for q in [
        "",
        ".",
        "..",
        "tasks",
        "tasks.",
        "red",
        "web.",
        "x.web",
        "web.red.x",
        "tasks.tasks.web",
        "example.test",
        "web..red",
        "\u{0}",
        "wéb",
    ] {
        let want = if q == "web." {
            recs(&["10.10.0.100"])
        } else {
            Answer::NotOurs
        };
        assert_eq!(a(&n, "t1", q), want, "{q:?}");
    }
}

#[test]
fn tables_changes_show_at_once() {
    let mut tables = Tables::from_yaml_str(TABLES).expect("test tables");
    tables.services[0].backends[1].state = crate::tables::EndpointState::Draining;
    let n = Names::from_tables(&tables);
    assert_eq!(a(&n, "t1", "tasks.web"), recs(&["10.10.0.2"]));
    tables.services.remove(0);
    let n = Names::from_tables(&tables);
    assert_eq!(a(&n, "t1", "web"), Answer::NotOurs);
}

#[test]
fn aliases_answer_like_the_name_and_lose_to_real_names() {
    let mut tables = Tables::from_yaml_str(TABLES).expect("test tables");
    tables.services[0].aliases = vec!["front".into(), "db".into()];
    tables.services[2].aliases = vec!["Front".into()];
    let n = Names::from_tables(&tables);
    assert_eq!(a(&n, "t1", "front"), recs(&["10.10.0.100"]));
    // t1 is on red (web's `front`) and blue (api's): tasks of both.
    assert_eq!(
        a(&n, "t1", "tasks.front"),
        recs(&["10.10.0.2", "10.10.0.3", "10.20.0.3"])
    );
    assert_eq!(
        a(&n, "t1", "tasks.front.red"),
        recs(&["10.10.0.2", "10.10.0.3"])
    );
    assert_eq!(a(&n, "t1", "front.red"), recs(&["10.10.0.100"]));
    // `db` is a service's own name: the alias does not take it over.
    assert_eq!(a(&n, "t1", "db"), recs(&["10.10.0.3", "10.10.0.4"]));
    // On blue, where web is not, `front` is api's.
    assert_eq!(a(&n, "t2", "front"), recs(&["10.20.0.100"]));
    // Each network has its own owner of an alias.
    assert_eq!(a(&n, "t1", "front.blue"), recs(&["10.20.0.100"]));
}

proptest::proptest! {
    /// Names come from the network: any string, any type, never a panic,
    /// and never an answer for a name no service could own.
    #[test]
    fn any_name_is_answered_without_panic(name in "\\PC{0,80}", t in 0u16..300) {
        let n = names();
        let answer = n.lookup(n.networks_of("t1"), &name, RecordType::from(t));
        let lower = name.to_ascii_lowercase();
        let ours = ["web", "db", "api", "bare"].iter().any(|s| lower.contains(s));
        proptest::prop_assert!(ours || answer == Answer::NotOurs, "{name:?}: {answer:?}");
    }
}

/// A swarm-like node: task t1 of `web` is on `ingress` (its service
/// publishes a port) and on the user network `front`, as is t2 of `web` on
/// another node.
const SWARM: &str = r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: ingress, vni: 4096, subnet: 10.0.0.0/24, ingress: true }
  - { name: front, vni: 4097, subnet: 10.10.0.0/24 }
endpoints:
  - { network: ingress, ip: 10.0.0.2, node: 198.18.0.1, netns: t1, name: web.1.aaa }
  - { network: front, ip: 10.10.0.2, node: 198.18.0.1, netns: t1, name: web.1.aaa }
  - { network: ingress, ip: 10.0.0.3, node: 198.18.0.2, name: web.2.bbb }
  - { network: front, ip: 10.10.0.3, node: 198.18.0.2, name: web.2.bbb }
services:
  - name: web
    vips: { ingress: 10.0.0.100, front: 10.10.0.100 }
    backends: [ { ip: 10.0.0.2 }, { ip: 10.0.0.3 }, { ip: 10.10.0.2 }, { ip: 10.10.0.3 } ]
"#;

fn swarm() -> Names {
    Names::from_tables(&Tables::from_yaml_str(SWARM).expect("test tables"))
}

#[test]
fn the_ingress_network_never_answers() {
    let n = swarm();
    assert_eq!(n.networks_of("t1"), ["front"]);
    assert_eq!(a(&n, "t1", "web"), recs(&["10.10.0.100"]));
    // Each task once: its address on the user network.
    assert_eq!(a(&n, "t1", "tasks.web"), recs(&["10.10.0.2", "10.10.0.3"]));
    assert_eq!(a(&n, "t1", "web.ingress"), Answer::NotOurs);
}

#[test]
fn reverse_lookups_name_tasks_and_vips_on_shared_networks() {
    let n = swarm();
    let ptr = |q: &str| n.lookup(n.networks_of("t1"), q, RecordType::PTR);
    assert_eq!(
        ptr("3.0.10.10.in-addr.arpa."),
        Answer::Pointers(vec!["web.2.bbb.front.".into()])
    );
    assert_eq!(
        ptr("100.0.10.10.IN-ADDR.ARPA"),
        Answer::Pointers(vec!["web.front.".into()])
    );
    // Not on the ingress network, not for unknown or malformed addresses.
    assert_eq!(ptr("3.0.0.10.in-addr.arpa."), Answer::NotOurs);
    assert_eq!(ptr("9.0.10.10.in-addr.arpa."), Answer::NotOurs);
    assert_eq!(ptr("0.10.10.in-addr.arpa."), Answer::NotOurs);
    assert_eq!(ptr("1.3.0.10.10.in-addr.arpa."), Answer::NotOurs);
    assert_eq!(ptr("x.0.10.10.in-addr.arpa."), Answer::NotOurs);
    // Another type for a reverse name of ours: no data, not forwarded.
    assert_eq!(
        n.lookup(
            n.networks_of("t1"),
            "3.0.10.10.in-addr.arpa.",
            RecordType::A
        ),
        Answer::Records(Vec::new())
    );
}
