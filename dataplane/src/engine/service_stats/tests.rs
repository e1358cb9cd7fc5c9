use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::engine::stats::Volume;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 100);
const B2: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const B3: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
const B4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 4);

/// `web` on skynet with a listed port 80 and the given backends; `all`
/// serves every port.
fn tables(backends: &[Ipv4Addr], all: bool) -> Tables {
    let mut yaml = String::from(
        "node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: other, vni: 4098, subnet: 10.20.0.0/24 }
  - { name: skynet, vni: 4097, subnet: 10.10.0.0/24 }
endpoints:
  - { network: skynet, ip: 10.10.0.2, node: 198.18.0.2 }
  - { network: skynet, ip: 10.10.0.3, node: 198.18.0.2 }
  - { network: skynet, ip: 10.10.0.4, node: 198.18.0.3 }
services:
  - name: web
    vips: { skynet: 10.10.0.100 }
    ports: [ { protocol: tcp, target: 80, published: 8080 } ]
",
    );
    yaml += &format!("    all_ports: {all}\n    backends:\n");
    for b in backends {
        yaml += &format!("      - {{ ip: {b} }}\n");
    }
    Tables::from_yaml_str(&yaml).expect("valid tables")
}

fn build(t: &Tables, previous: &ServiceStats) -> (Fdb, ServiceStats) {
    let fdb = Fdb::build(t, 1500, |_, _| None);
    let stats = ServiceStats::build(t, &fdb, previous);
    (fdb, stats)
}

fn skynet(fdb: &Fdb) -> SegmentId {
    fdb.segment_by_name("skynet").expect("skynet").0
}

fn one(packets: u64, bytes: u64) -> Volume {
    Volume { packets, bytes }
}

#[test]
fn one_cell_per_listed_port_and_backend() {
    let (fdb, stats) = build(&tables(&[B3, B2], false), &ServiceStats::default());
    let seg = skynet(&fdb);
    let v = stats.vip(seg, VIP).expect("the VIP's stats");
    assert_eq!((v.service.as_str(), v.network.as_str()), ("web", "skynet"));
    assert!(v.cell(Protocol::Tcp, 80, B2).is_some());
    assert!(v.cell(Protocol::Tcp, 80, B3).is_some());
    assert!(v.cell(Protocol::Tcp, 80, B4).is_none(), "not a backend");
    assert!(v.cell(Protocol::Tcp, 81, B2).is_none(), "not a listed port");
    assert!(
        v.cell(Protocol::Udp, 80, B2).is_none(),
        "not a listed protocol"
    );
    assert!(stats.vip(seg, B2).is_none());
    assert!(stats.vip(seg + 7, VIP).is_none());
    assert_eq!(stats.vips().count(), 1);
}

#[test]
fn a_vip_serving_every_port_counts_unlisted_ports_as_other() {
    let (fdb, stats) = build(&tables(&[B2], true), &ServiceStats::default());
    let v = stats.vip(skynet(&fdb), VIP).expect("stats");
    let listed = v.cell(Protocol::Tcp, 80, B2).expect("listed") as *const Cell;
    let tcp = v.cell(Protocol::Tcp, 5432, B2).expect("other tcp") as *const Cell;
    let udp = v.cell(Protocol::Udp, 53, B2).expect("other udp") as *const Cell;
    assert!(listed != tcp && tcp != udp && listed != udp);
    assert_eq!(
        v.cell(Protocol::Tcp, 9999, B2).map(|c| c as *const Cell),
        Some(tcp)
    );
}

#[test]
fn cells_of_backends_that_stay_keep_counting_and_the_others_go() {
    let (fdb, first) = build(&tables(&[B2, B3], false), &ServiceStats::default());
    let seg = skynet(&fdb);
    let v = first.vip(seg, VIP).expect("stats");
    for b in [B2, B3] {
        let cell = v.cell(Protocol::Tcp, 80, b).expect("cell");
        cell.connection();
        cell.traffic(Direction::Original, one(3, 300));
    }
    let (fdb, second) = build(&tables(&[B3, B4], false), &first);
    let v = second.vip(skynet(&fdb), VIP).expect("stats");
    let kept = v.cell(Protocol::Tcp, 80, B3).expect("B3 stays").totals();
    assert_eq!(
        (kept.connections, kept.packets[0], kept.bytes[0]),
        (1, 3, 300)
    );
    assert_eq!(
        v.cell(Protocol::Tcp, 80, B4).expect("B4 is new").totals(),
        Totals::default()
    );
    assert!(v.cell(Protocol::Tcp, 80, B2).is_none(), "B2 left");
    // A cell the old snapshot's workers still hold counts into the new one.
    first
        .vip(seg, VIP)
        .and_then(|v| v.cell(Protocol::Tcp, 80, B3))
        .expect("old B3")
        .traffic(Direction::Reply, one(1, 60));
    assert_eq!(
        v.cell(Protocol::Tcp, 80, B3).expect("B3").totals().bytes,
        [300, 60]
    );
}

#[test]
fn flows_are_found_by_vip_address_and_by_segment() {
    let (fdb, stats) = build(&tables(&[B2, B3], true), &ServiceStats::default());
    let seg = skynet(&fdb);
    let by_addr = stats.cell_index_by_vip(Protocol::Tcp, SocketAddrV4::new(VIP, 80), B3);
    assert!(by_addr.is_some());
    assert_eq!(by_addr, stats.cell_index(seg, VIP, Protocol::Tcp, 80, B3));
    assert_ne!(by_addr, stats.cell_index(seg, VIP, Protocol::Tcp, 80, B2));
    assert_eq!(
        stats.cell_index_by_vip(Protocol::Tcp, SocketAddrV4::new(B2, 80), B3),
        None
    );
    let mut tracked = Tracked::new(&stats);
    tracked.add(by_addr);
    tracked.add(by_addr);
    tracked.add(None);
    assert_eq!(tracked.0.iter().sum::<u64>(), 2);
}

#[test]
fn series_render_every_cell_with_its_sums() {
    let (fdb, stats) = build(&tables(&[B2, B3], false), &ServiceStats::default());
    let seg = skynet(&fdb);
    let v = stats.vip(seg, VIP).expect("stats");
    let cell = v.cell(Protocol::Tcp, 80, B2).expect("cell");
    cell.connection();
    cell.traffic(Direction::Original, one(4, 400));
    cell.traffic(Direction::Reply, one(2, 1000));
    let mut tracked = Tracked::new(&stats);
    tracked.add(stats.cell_index(seg, VIP, Protocol::Tcp, 80, B2));
    let mut out = String::new();
    ServiceSeries::new(&stats, &tracked, vec![("vip", 1), ("mesh", 0)]).encode(&mut out);
    let b2 = r#"service="web",network="skynet",vip="10.10.0.100",protocol="tcp",port="80",backend="10.10.0.2""#;
    let b3 = r#"service="web",network="skynet",vip="10.10.0.100",protocol="tcp",port="80",backend="10.10.0.3""#;
    for line in [
        format!("shoal_dataplane_service_connections_total{{{b2}}} 1"),
        format!("shoal_dataplane_service_connections_total{{{b3}}} 0"),
        format!("shoal_dataplane_service_tracked_connections{{{b2}}} 1"),
        format!("shoal_dataplane_service_tracked_connections{{{b3}}} 0"),
        format!("shoal_dataplane_service_packets_total{{{b2},direction=\"original\"}} 4"),
        format!("shoal_dataplane_service_packets_total{{{b2},direction=\"reply\"}} 2"),
        format!("shoal_dataplane_service_bytes_total{{{b2},direction=\"original\"}} 400"),
        format!("shoal_dataplane_service_bytes_total{{{b2},direction=\"reply\"}} 1000"),
        "shoal_dataplane_conntrack_entries{table=\"vip\"} 1".to_owned(),
        "shoal_dataplane_conntrack_entries{table=\"mesh\"} 0".to_owned(),
        "# TYPE shoal_dataplane_service_connections counter".to_owned(),
        "# TYPE shoal_dataplane_service_tracked_connections gauge".to_owned(),
    ] {
        assert!(out.lines().any(|l| l == line), "no `{line}` in\n{out}");
    }
    assert!(!out.contains("# EOF"), "the caller closes the exposition");
    // Four families of two series each, two of them by direction.
    let samples = out
        .lines()
        .filter(|l| l.starts_with("shoal_dataplane_service"))
        .count();
    assert_eq!(samples, 2 + 2 + 4 + 4);
}

#[test]
fn nothing_listed_renders_only_the_conntrack_tables() {
    let mut out = String::new();
    let stats = ServiceStats::default();
    ServiceSeries::new(&stats, &Tracked::new(&stats), vec![("vip", 0)]).encode(&mut out);
    assert!(!out.contains("service_"), "{out}");
    assert!(
        out.contains("shoal_dataplane_conntrack_entries{table=\"vip\"} 0"),
        "{out}"
    );
}
