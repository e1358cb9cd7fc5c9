use super::*;

#[test]
fn allocates_vni_subnet_and_gateway_in_order() {
    let mut s = ClusterState::new();
    let first = ok(&mut s, Command::CreateNetwork(network("n1", "a", None)));
    assert_eq!(
        first,
        Outcome::NetworkCreated {
            vni: 4096,
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
        }
    );
    // An explicit network takes 10.0.1.0/24, so the next default is 10.0.2.0/24.
    ok(
        &mut s,
        Command::CreateNetwork(network("n2", "b", Some("10.0.1.0/24"))),
    );
    let third = ok(&mut s, Command::CreateNetwork(network("n3", "c", None)));
    let Outcome::NetworkCreated { vni, subnet, .. } = third else {
        panic!("{third:?}")
    };
    assert_eq!(vni, 4098);
    assert_eq!(subnet, "10.0.2.0/24".parse().unwrap());

    // VNIs and subnets freed by removal are reused, lowest first.
    ok(&mut s, Command::RemoveNetwork { id: net_id("n1") });
    let again = ok(&mut s, Command::CreateNetwork(network("n4", "d", None)));
    let Outcome::NetworkCreated { vni, subnet, .. } = again else {
        panic!("{again:?}")
    };
    assert_eq!((vni, subnet), (4096, "10.0.0.0/24".parse().unwrap()));
}

#[test]
fn default_pool_skips_explicit_overlapping_ranges() {
    let mut s = ClusterState::new();
    ok(
        &mut s,
        Command::CreateNetwork(network("big", "big", Some("10.0.0.0/16"))),
    );
    let out = ok(&mut s, Command::CreateNetwork(network("n1", "a", None)));
    let Outcome::NetworkCreated { subnet, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(subnet, "10.1.0.0/24".parse().unwrap());
}

#[test]
fn refuses_bad_networks() {
    let mut s = cluster();
    let msg = refused(
        &mut s,
        Command::CreateNetwork(network("x1", "backend", None)),
    );
    assert!(msg.contains("already exists"), "{msg}");
    refused(
        &mut s,
        Command::CreateNetwork(network("backend", "other", None)),
    );
    let msg = refused(&mut s, Command::CreateNetwork(network("x1", "-bad", None)));
    assert!(msg.contains("invalid"), "{msg}");
    let msg = refused(
        &mut s,
        Command::CreateNetwork(network("x1", "x", Some("10.0.1.128/25"))),
    );
    assert!(
        msg.contains("overlaps network `backend` (10.0.1.0/24)"),
        "{msg}"
    );
    let msg = refused(
        &mut s,
        Command::CreateNetwork(network("x1", "x", Some("10.0.0.0/8"))),
    );
    assert!(msg.contains("overlaps"), "{msg}");
    let msg = refused(
        &mut s,
        Command::CreateNetwork(network("x1", "x", Some("192.168.1.5/24"))),
    );
    assert!(msg.contains("did you mean `192.168.1.0/24`"), "{msg}");
    let msg = refused(
        &mut s,
        Command::CreateNetwork(network("x1", "x", Some("192.168.1.0/31"))),
    );
    assert!(msg.contains("too small"), "{msg}");

    let mut ingress = network("x1", "ingress2", None);
    ingress.ingress = true;
    let msg = refused(&mut s, Command::CreateNetwork(ingress));
    assert!(
        msg.contains("already has an ingress network `ingress`"),
        "{msg}"
    );

    for (vni, expected) in [
        (0, "out of range"),
        (1 << 24, "out of range"),
        (4096, "already used"),
    ] {
        let mut n = network("x1", "x", None);
        n.vni = Some(vni);
        let msg = refused(&mut s, Command::CreateNetwork(n));
        assert!(msg.contains(expected), "{vni}: {msg}");
    }
}

#[test]
fn removal_refuses_networks_in_use() {
    let mut s = cluster();
    refused(&mut s, Command::RemoveNetwork { id: net_id("nope") });
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: spec("web", &["backend"]),
        },
    );
    let msg = refused(
        &mut s,
        Command::RemoveNetwork {
            id: net_id("backend"),
        },
    );
    assert!(msg.contains("used by service `web`"), "{msg}");

    let mut published = spec("pub", &[]);
    published.ports.push(port(Some(80), 80, Protocol::Tcp));
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s2"),
            spec: published,
        },
    );
    let msg = refused(
        &mut s,
        Command::RemoveNetwork {
            id: net_id("ingress"),
        },
    );
    assert!(msg.contains("used by service `pub`"), "{msg}");

    // A task of a removed service still holds an address.
    ok(
        &mut s,
        Command::CreateTask {
            id: task_id("t1"),
            service: svc_id("s1"),
            slot: None,
            node: None,
            at_ms: 0,
        },
    );
    ok(&mut s, Command::RemoveService { id: svc_id("s1") });
    let msg = refused(
        &mut s,
        Command::RemoveNetwork {
            id: net_id("backend"),
        },
    );
    assert!(msg.contains("held by task `t1`"), "{msg}");
    ok(&mut s, Command::RemoveTask { id: task_id("t1") });
    ok(
        &mut s,
        Command::RemoveNetwork {
            id: net_id("backend"),
        },
    );
    assert!(s.ipam(&net_id("backend")).is_none());
}

#[test]
fn a_batch_applies_entirely_or_not_at_all() {
    let mut s = ClusterState::new();
    let outcome = ok(
        &mut s,
        Command::Batch(vec![
            Command::CreateNetwork(network("n1", "a", None)),
            Command::CreateNetwork(network("n2", "b", None)),
        ]),
    );
    assert!(matches!(outcome, Outcome::Batch(ref o) if o.len() == 2));
    assert!(s.network_by_name("b").is_some());
    // The second command fails (name taken): the first is not kept either.
    let err = refused(
        &mut s,
        Command::Batch(vec![
            Command::CreateNetwork(network("n3", "c", None)),
            Command::CreateNetwork(network("n4", "a", None)),
        ]),
    );
    assert!(err.contains("`a`"), "{err}");
    assert!(s.network_by_name("c").is_none());
    let err = refused(&mut s, Command::Batch(vec![Command::Batch(vec![])]));
    assert!(err.contains("another batch"), "{err}");
}
