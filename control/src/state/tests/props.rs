//! Random command sequences keep the state's invariants, refusals change
//! nothing, and the state survives a JSON round trip.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

const SUBNETS: [Option<&str>; 7] = [
    None,
    None,
    Some("10.0.0.0/28"),
    Some("10.0.1.0/29"),
    Some("192.168.0.0/29"),
    Some("192.168.0.0/16"),
    Some("172.16.0.0/30"),
];

#[derive(Debug, Clone)]
enum Op {
    CreateNetwork {
        n: usize,
        subnet: usize,
        vni: Option<u32>,
        ingress: bool,
    },
    RemoveNetwork(usize),
    CreateService {
        s: usize,
        nets: Vec<usize>,
        published: Option<u16>,
        dnsrr: bool,
    },
    UpdateService {
        s: usize,
        version: u64,
        nets: Vec<usize>,
        published: Option<u16>,
    },
    RemoveService(usize),
    CreateTask {
        t: usize,
        s: usize,
    },
    RemoveTask(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..5usize, 0..SUBNETS.len(), proptest::option::of(4096..4100u32), any::<bool>())
            .prop_map(|(n, subnet, vni, ingress)| Op::CreateNetwork { n, subnet, vni, ingress }),
        1 => (0..5usize).prop_map(Op::RemoveNetwork),
        3 => (0..5usize, proptest::collection::vec(0..5usize, 0..3), proptest::option::of(80..83u16), any::<bool>())
            .prop_map(|(s, nets, published, dnsrr)| Op::CreateService { s, nets, published, dnsrr }),
        1 => (0..5usize, 1..4u64, proptest::collection::vec(0..5usize, 0..3), proptest::option::of(80..83u16))
            .prop_map(|(s, version, nets, published)| Op::UpdateService { s, version, nets, published }),
        1 => (0..5usize).prop_map(Op::RemoveService),
        5 => (0..12usize, 0..5usize).prop_map(|(t, s)| Op::CreateTask { t, s }),
        2 => (0..12usize).prop_map(Op::RemoveTask),
    ]
}

fn service_spec(s: usize, nets: &[usize], published: Option<u16>, dnsrr: bool) -> ServiceSpec {
    let names: Vec<String> = nets.iter().map(|n| format!("n{n}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut spec = spec(&format!("svc{s}"), &refs);
    if dnsrr {
        spec.endpoint_mode = EndpointMode::Dnsrr;
    }
    if let Some(p) = published {
        spec.ports.push(port(Some(p), 80, Protocol::Tcp));
    }
    spec
}

fn command(op: &Op) -> Command {
    match op {
        Op::CreateNetwork {
            n,
            subnet,
            vni,
            ingress,
        } => {
            let mut spec = network(&format!("n{n}"), &format!("net{n}"), SUBNETS[*subnet]);
            spec.vni = *vni;
            spec.ingress = *ingress;
            Command::CreateNetwork(spec)
        }
        Op::RemoveNetwork(n) => Command::RemoveNetwork {
            id: net_id(&format!("n{n}")),
        },
        Op::CreateService {
            s,
            nets,
            published,
            dnsrr,
        } => Command::CreateService {
            id: svc_id(&format!("s{s}")),
            spec: service_spec(*s, nets, *published, *dnsrr),
        },
        Op::UpdateService {
            s,
            version,
            nets,
            published,
        } => Command::UpdateService {
            id: svc_id(&format!("s{s}")),
            version: *version,
            spec: service_spec(*s, nets, *published, false),
            rollback: false,
            at_ms: 0,
        },
        Op::RemoveService(s) => Command::RemoveService {
            id: svc_id(&format!("s{s}")),
        },
        Op::CreateTask { t, s } => Command::CreateTask {
            id: task_id(&format!("t{t}")),
            service: svc_id(&format!("s{s}")),
            slot: None,
            node: None,
            at_ms: 0,
        },
        Op::RemoveTask(t) => Command::RemoveTask {
            id: task_id(&format!("t{t}")),
        },
    }
}

fn check_invariants(s: &ClusterState) -> Result<(), TestCaseError> {
    let vnis: BTreeSet<u32> = s.networks().values().map(|n| n.vni).collect();
    prop_assert_eq!(vnis.len(), s.networks().len(), "duplicate VNI");
    let nets: Vec<&Network> = s.networks().values().collect();
    for (i, a) in nets.iter().enumerate() {
        for b in &nets[i + 1..] {
            prop_assert!(
                !a.subnet.contains(&b.subnet.network()) && !b.subnet.contains(&a.subnet.network()),
                "{} overlaps {}",
                a.subnet,
                b.subnet
            );
        }
    }
    prop_assert_eq!(
        s.networks().keys().collect::<Vec<_>>(),
        s.ipam.keys().collect::<Vec<_>>()
    );

    // Every address held by a VIP or a task, per network, exactly once.
    let mut held: BTreeMap<NetworkId, Vec<Ipv4Addr>> = BTreeMap::new();
    for svc in s.services().values() {
        for (n, a) in &svc.vips {
            held.entry(n.clone()).or_default().push(*a);
        }
    }
    for task in s.tasks().values() {
        for (n, a) in &task.addresses {
            held.entry(n.clone()).or_default().push(*a);
        }
    }
    for (n, addrs) in &held {
        let network = s.network(n);
        prop_assert!(network.is_some(), "address on removed network {}", n);
        let network = network.unwrap();
        let unique: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
        prop_assert_eq!(unique.len(), addrs.len(), "duplicate address on {}", n);
        let used: BTreeSet<Ipv4Addr> = s.ipam(n).unwrap().used().collect();
        prop_assert_eq!(&unique, &used, "ipam out of sync on {}", n);
        for a in &unique {
            prop_assert!(network.subnet.contains(a));
            prop_assert!(*a != network.gateway);
            prop_assert!(*a != network.subnet.network() && *a != network.subnet.broadcast());
        }
    }
    for (n, ipam) in &s.ipam {
        if !held.contains_key(n) {
            prop_assert_eq!(ipam.used().count(), 0, "leaked address on {}", n);
        }
    }

    let mut ports = BTreeSet::new();
    for svc in s.services().values() {
        for p in svc
            .spec
            .ports
            .iter()
            .filter(|p| p.mode == PublishMode::Ingress)
        {
            prop_assert!(
                ports.insert((p.protocol, p.published)),
                "duplicate port {:?}",
                p
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sequences_keep_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut s = ClusterState::new();
        for op in &ops {
            let before = s.clone();
            if s.apply(command(op)).is_err() {
                prop_assert_eq!(&s, &before, "refused {:?} changed the state", op);
            }
            check_invariants(&s)?;
        }
        let json = serde_json::to_string(&s).unwrap();
        let back: ClusterState = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn replicas_applying_the_same_log_agree(ops in proptest::collection::vec(op(), 1..40)) {
        let (mut a, mut b) = (ClusterState::new(), ClusterState::new());
        for op in &ops {
            let cmd = command(op);
            // Through JSON, as a Raft log entry would travel.
            let wire: Command = serde_json::from_str(&serde_json::to_string(&cmd).unwrap()).unwrap();
            prop_assert_eq!(a.apply(cmd), b.apply(wire));
        }
        prop_assert_eq!(a, b);
    }
}
