use std::net::Ipv4Addr;

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn create_allocates_vips_from_the_top_and_ports_from_the_dynamic_range() {
    let mut s = cluster();
    let mut web = spec("web", &["backend"]);
    web.ports.push(port(None, 80, Protocol::Tcp));
    web.ports.push(port(Some(53), 53, Protocol::Udp));
    let out = ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: web,
        },
    );
    let Outcome::ServiceSaved {
        version,
        vips,
        ports,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(version, 1);
    assert_eq!(vips.get(&net_id("backend")), Some(&ip("10.0.1.254")));
    assert_eq!(vips.get(&net_id("ingress")), Some(&ip("10.0.0.254")));
    assert_eq!(ports[0].published, Some(30000));
    assert_eq!(ports[1].published, Some(53));
    // Same target port over UDP does not collide with TCP.
    let mut dns = spec("dns", &[]);
    dns.ports.push(port(Some(80), 80, Protocol::Udp));
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: dns,
        },
    );
}

#[test]
fn dnsrr_services_get_no_vip() {
    let mut s = cluster();
    let mut db = spec("db", &["backend"]);
    db.endpoint_mode = EndpointMode::Dnsrr;
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: db.clone(),
        },
    );
    assert!(s.service(&svc_id("s1")).unwrap().vips.is_empty());
    db.ports.push(port(Some(5432), 5432, Protocol::Tcp));
    let msg = refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: {
                db.name = "db2".into();
                db
            },
        },
    );
    assert!(msg.contains("endpoint mode vip"), "{msg}");
}

#[test]
fn refuses_bad_services() {
    let mut s = cluster();
    let mut web = spec("web", &["backend"]);
    web.ports.push(port(Some(8080), 80, Protocol::Tcp));
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: web.clone(),
        },
    );

    let msg = refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: web.clone(),
        },
    );
    assert!(
        msg.contains("a service named `web` already exists"),
        "{msg}"
    );
    refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: spec("other", &[]),
        },
    );

    let mut clash = spec("api", &[]);
    clash.ports.push(port(Some(8080), 9000, Protocol::Tcp));
    let msg = refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: clash,
        },
    );
    assert!(
        msg.contains("8080/tcp is already used by service `web`"),
        "{msg}"
    );

    let mut twice = spec("api", &[]);
    twice.ports.push(port(Some(9000), 1, Protocol::Tcp));
    twice.ports.push(port(Some(9000), 2, Protocol::Tcp));
    refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: twice,
        },
    );

    let msg = refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: spec("api", &["nope"]),
        },
    );
    assert!(msg.contains("network `nope` not found"), "{msg}");
    let msg = refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: spec("api", &["backend", "backend"]),
        },
    );
    assert!(msg.contains("listed twice"), "{msg}");
    let msg = refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: spec("api", &["ingress"]),
        },
    );
    assert!(msg.contains("explicitly"), "{msg}");
    refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: spec("Bad.Name", &[]),
        },
    );
    let mut zero = spec("api", &[]);
    zero.ports.push(port(None, 0, Protocol::Tcp));
    refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: zero,
        },
    );

    // Host-mode ports are not checked against the mesh.
    let mut host = spec("api", &[]);
    host.ports.push(PortConfig {
        mode: PublishMode::Host,
        ..port(Some(8080), 80, Protocol::Tcp)
    });
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: host,
        },
    );
}

#[test]
fn ingress_ports_need_an_ingress_network() {
    let mut s = ClusterState::new();
    ok(
        &mut s,
        Command::CreateNetwork(network("n1", "backend", None)),
    );
    let mut web = spec("web", &["n1"]);
    web.ports.push(port(Some(80), 80, Protocol::Tcp));
    let msg = refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: web,
        },
    );
    assert!(msg.contains("no ingress network"), "{msg}");
}

#[test]
fn a_full_network_refuses_the_whole_service() {
    let mut s = cluster();
    // A /30 has a single allocatable address.
    ok(
        &mut s,
        Command::CreateNetwork(network("tiny", "tiny", Some("192.168.0.0/30"))),
    );
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: spec("a", &["tiny"]),
        },
    );
    let msg = refused(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: spec("b", &["backend", "tiny"]),
        },
    );
    assert_eq!(
        msg,
        "network `tiny` (192.168.0.0/30) has no free address; create a larger one with --subnet"
    );
    // The VIP that would have been taken on `backend` is still free.
    assert_eq!(s.ipam(&net_id("backend")).unwrap().used().count(), 0);
}

#[test]
fn update_keeps_vips_and_ports_and_checks_the_version() {
    let mut s = cluster();
    let mut web = spec("web", &["backend"]);
    web.ports.push(port(None, 80, Protocol::Tcp));
    ok(
        &mut s,
        Command::CreateNetwork(network("front", "front", None)),
    );
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: web.clone(),
        },
    );
    let before = s.service(&svc_id("s1")).unwrap().clone();

    web.networks = vec![net_id("front")];
    web.command = vec![
        "shoal".into(),
        "whoami".into(),
        "--port".into(),
        "81".into(),
    ];
    let out = ok(
        &mut s,
        Command::UpdateService {
            id: svc_id("s1"),
            version: 1,
            spec: web.clone(),
            rollback: false,
            at_ms: 0,
        },
    );
    let Outcome::ServiceSaved {
        version,
        vips,
        ports,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(version, 2);
    assert_eq!(ports[0].published, before.spec.ports[0].published);
    assert_eq!(
        vips.get(&net_id("ingress")),
        before.vips.get(&net_id("ingress"))
    );
    assert!(!vips.contains_key(&net_id("backend")));
    assert!(vips.contains_key(&net_id("front")));
    assert_eq!(
        s.ipam(&net_id("backend")).unwrap().used().count(),
        0,
        "old VIP released"
    );

    let msg = refused(
        &mut s,
        Command::UpdateService {
            id: svc_id("s1"),
            version: 1,
            spec: web.clone(),
            rollback: false,
            at_ms: 0,
        },
    );
    assert!(msg.contains("version 2, you had 1"), "{msg}");
    refused(
        &mut s,
        Command::UpdateService {
            id: svc_id("nope"),
            version: 1,
            spec: web.clone(),
            rollback: false,
            at_ms: 0,
        },
    );

    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: spec("api", &[]),
        },
    );
    web.name = "api".into();
    let msg = refused(
        &mut s,
        Command::UpdateService {
            id: svc_id("s1"),
            version: 2,
            spec: web,
            rollback: false,
            at_ms: 0,
        },
    );
    assert!(msg.contains("`api` already exists"), "{msg}");
}

#[test]
fn remove_releases_vips_and_stops_tasks() {
    let mut s = cluster();
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: spec("web", &["backend"]),
        },
    );
    ok(
        &mut s,
        Command::CreateTask {
            id: task_id("t1"),
            service: svc_id("s1"),
            slot: Some(1),
            node: None,
            at_ms: 0,
        },
    );
    ok(&mut s, Command::RemoveService { id: svc_id("s1") });
    assert!(s.service(&svc_id("s1")).is_none());
    assert_eq!(
        s.task(&task_id("t1")).unwrap().desired,
        DesiredState::Shutdown
    );
    let used: Vec<_> = s.ipam(&net_id("backend")).unwrap().used().collect();
    assert_eq!(
        used,
        vec![ip("10.0.1.2")],
        "only the task's address is left"
    );
    refused(&mut s, Command::RemoveService { id: svc_id("s1") });
}
