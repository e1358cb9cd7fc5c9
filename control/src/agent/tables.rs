//! The cluster state as one node's data plane needs it: its [`Tables`]
//! (DESIGN.md §3), computed from the state alone, so every node that sees
//! the same state programs the same forwarding.
//!
//! - every other node's underlay address as a peer: VXLAN is taken only
//!   from nodes in the tables, and a node with no task still brings the
//!   routing mesh's clients;
//! - every overlay network (the ingress network too: the routing mesh
//!   answers on every node);
//! - an endpoint for each address of each task that is placed, not yet
//!   stopped, and on a node that is not down; a task on this node only
//!   once the executor made its namespace (`wired`), since a local
//!   endpoint names the namespace the data plane wires;
//! - every service with its VIPs (serving every port, as Swarm's do),
//!   published ports and backends: the addresses of its running tasks that
//!   have endpoints here and, if it has a health check, were found healthy. A task told to shut down
//!   that still runs is `draining`: it keeps its flows and takes no new
//!   ones until it stops;
//! - the tunnel: every other node's WireGuard public key by its underlay
//!   address, and the preshared keys derived from the gossip keyring, so
//!   that rotating that keyring rekeys the encrypted networks too (as
//!   Swarm derives its gossip and IPsec keys from one set of network
//!   keys). Always filled: an engine without encrypted networks ignores it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use shoal_dataplane::tables::{self, Tables};

use crate::ids::{NetworkId, NodeId, TaskId};
use crate::state::{
    ClusterState, DesiredState, EndpointMode, GossipKey, Network, NodeStatus, Protocol,
    PublishMode, Task, TaskHealth, TaskState,
};

/// The tables of node `me`, or `None` when the state does not list it
/// (yet) with an IPv4 address. `wired` names the network namespace of a
/// task on this node once it exists.
pub fn tables_for(
    state: &ClusterState,
    me: &NodeId,
    wired: &dyn Fn(&TaskId) -> Option<String>,
) -> Option<Tables> {
    let underlay = ipv4_of(state, me)?;
    let node = state.node(me)?;
    let network_name = |id: &NetworkId| state.network(id).map(|n| n.name.clone());

    let networks = state.networks().values().map(network).collect();

    // Where each present task's endpoints live: its node's underlay
    // address, and the namespace for tasks on this node.
    let mut present: BTreeMap<&TaskId, (Ipv4Addr, Option<String>)> = BTreeMap::new();
    for task in state.tasks().values().filter(|t| has_endpoint(t)) {
        let Some(on) = task.node.as_ref() else {
            continue;
        };
        if on == me {
            if let Some(netns) = wired(&task.id) {
                present.insert(&task.id, (underlay, Some(netns)));
            }
        } else if let Some(ip) = ipv4_of(state, on)
            && state.node(on).is_some_and(|n| n.status != NodeStatus::Down)
        {
            present.insert(&task.id, (ip, None));
        }
    }

    let mut endpoints = Vec::new();
    for (id, (node_ip, netns)) in &present {
        let Some(task) = state.task(id) else { continue };
        for (network, ip) in &task.addresses {
            let Some(network) = network_name(network) else {
                continue;
            };
            endpoints.push(tables::Endpoint {
                network,
                ip: *ip,
                mac: None,
                node: *node_ip,
                netns: netns.clone(),
                task: Some(task.id.to_string()),
                name: Some(super::task_name(state, task)),
                state: tables::EndpointState::Active,
            });
        }
    }

    let services = state
        .services()
        .values()
        .map(|service| {
            // With a health check, only tasks found healthy serve.
            let checked = service
                .spec
                .healthcheck
                .as_ref()
                .filter(|h| !h.command.is_empty());
            let backends = state
                .tasks()
                .values()
                .filter(|t| t.service == service.id && t.state == TaskState::Running)
                .filter(|t| present.contains_key(&t.id))
                .filter(|t| checked.is_none() || t.health == Some(TaskHealth::Healthy))
                .flat_map(|t| {
                    let backend_state = match t.desired {
                        DesiredState::Running => tables::EndpointState::Active,
                        DesiredState::Shutdown => tables::EndpointState::Draining,
                    };
                    t.addresses.values().map(move |ip| tables::Backend {
                        ip: *ip,
                        weight: 1,
                        state: backend_state,
                    })
                })
                .collect();
            tables::Service {
                name: service.spec.name.clone(),
                vips: service
                    .vips
                    .iter()
                    .filter_map(|(n, vip)| Some((network_name(n)?, *vip)))
                    .collect(),
                ports: service
                    .spec
                    .ports
                    .iter()
                    .map(|p| tables::Port {
                        protocol: match p.protocol {
                            Protocol::Tcp => tables::Protocol::Tcp,
                            Protocol::Udp => tables::Protocol::Udp,
                        },
                        target: p.target,
                        published: p.published,
                        mode: match p.mode {
                            PublishMode::Ingress => tables::PublishMode::Ingress,
                            PublishMode::Host => tables::PublishMode::Host,
                        },
                    })
                    .collect(),
                backends,
                endpoint_mode: match service.spec.endpoint_mode {
                    EndpointMode::Vip => tables::EndpointMode::Vip,
                    EndpointMode::Dnsrr => tables::EndpointMode::Dnsrr,
                },
                all_ports: true,
                aliases: service.spec.aliases.clone(),
            }
        })
        .collect();

    let mut peers: Vec<Ipv4Addr> = state
        .nodes()
        .keys()
        .filter(|id| *id != me)
        .filter_map(|id| ipv4_of(state, id))
        .filter(|ip| *ip != underlay)
        .collect();
    peers.sort();
    peers.dedup();

    let tunnel = tables::Tunnel {
        peers: state
            .nodes()
            .values()
            .filter(|n| &n.id != me)
            .filter_map(|n| Some((ipv4_of(state, &n.id)?, n.tunnel_key?)))
            .filter(|(ip, _)| *ip != underlay)
            .collect(),
        preshared: state
            .gossip_keys()
            .iter()
            .take(PRESHARED_KEYS)
            .map(preshared_key)
            .collect(),
    };

    Some(Tables {
        node: tables::Node {
            name: node.hostname.clone(),
            underlay,
        },
        peers,
        tunnel,
        networks,
        endpoints,
        services,
    })
}

/// How many preshared keys the tables carry: the newest, and the one
/// before while tunnels move over.
const PRESHARED_KEYS: usize = 2;

/// The overlay preshared key derived from a gossip key, under the same
/// id: SHA-256 of a label and the key, so that neither key tells the
/// other.
fn preshared_key(key: &GossipKey) -> tables::PresharedKey {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(b"shoal overlay psk v1")
        .chain_update(&key.key.0)
        .finalize();
    tables::PresharedKey {
        id: key.id,
        key: tables::WgKey(digest.into()),
    }
}

/// A network of the state as the data plane takes it.
pub fn network(n: &Network) -> tables::Network {
    tables::Network {
        name: n.name.clone(),
        vni: n.vni,
        subnet: n.subnet,
        gateway: Some(n.gateway),
        mtu: None,
        encrypted: n.encrypted,
        ingress: n.ingress,
    }
}

/// Whether a task has network presence: placed, started or about to be,
/// and not stopped.
fn has_endpoint(task: &Task) -> bool {
    task.node.is_some()
        && !task.addresses.is_empty()
        && (TaskState::Assigned..=TaskState::Running).contains(&task.state)
}

/// A node's IPv4 underlay address.
fn ipv4_of(state: &ClusterState, node: &NodeId) -> Option<Ipv4Addr> {
    match state.node(node)?.addr.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use crate::state::{Command, SecretBytes};
    use crate::testkit::{apply, node};

    fn at(id: &str, ip: &str) -> crate::state::Node {
        let mut n = node(id, Role::Worker);
        n.addr = format!("{ip}:2377").parse().unwrap();
        n
    }

    #[test]
    fn every_other_node_is_a_peer_also_without_tasks() {
        let mut state = ClusterState::new();
        for (id, ip) in [
            ("a", "198.18.0.1"),
            ("c", "198.18.0.3"),
            ("b", "198.18.0.2"),
        ] {
            apply(&mut state, Command::AddNode(at(id, ip)));
        }
        let me = NodeId::new("a").unwrap();
        let tables = tables_for(&state, &me, &|_| None).expect("tables");
        assert_eq!(tables.node.underlay, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(
            tables.peers,
            [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)]
        );
        assert!(tables.endpoints.is_empty());
    }

    #[test]
    fn the_tunnel_lists_the_other_nodes_keys_and_the_keyring_derived_newest_first() {
        let mut state = ClusterState::new();
        for (id, ip, key) in [
            ("a", "198.18.0.1", Some(1u8)),
            ("b", "198.18.0.2", Some(2)),
            ("c", "198.18.0.3", None),
        ] {
            let mut n = at(id, ip);
            n.tunnel_key = key.map(|b| tables::WgKey([b; 32]));
            apply(&mut state, Command::AddNode(n));
        }
        for (b, at_ms) in [(1u8, 10), (2, 20), (3, 30)] {
            apply(
                &mut state,
                Command::RotateGossipKey {
                    key: SecretBytes(vec![b; 32]),
                    at_ms,
                },
            );
        }
        let me = NodeId::new("a").unwrap();
        let tunnel = tables_for(&state, &me, &|_| None).expect("tables").tunnel;
        // Not this node itself; not `c`, which has no key (yet).
        assert_eq!(
            tunnel.peers,
            BTreeMap::from([(Ipv4Addr::new(198, 18, 0, 2), tables::WgKey([2; 32]))])
        );
        // SHA-256("shoal overlay psk v1" || key), as Python's hashlib
        // computes it: the keyring keeps the two newest.
        let want = |id, b64: &str| tables::PresharedKey {
            id,
            key: b64.parse().unwrap(),
        };
        assert_eq!(
            tunnel.preshared,
            [
                want(3, "SZvoO8TlDtqmpNyqON5bcmWDWdZXjft+nOXbV+I0Cbw="),
                want(2, "mLaRc/iiJ4Ir/WW7b7N8g5B0FHh96ftO2I7kVScx9M4="),
            ]
        );
    }

    #[test]
    fn no_keyring_no_preshared_keys() {
        let mut state = ClusterState::new();
        apply(&mut state, Command::AddNode(at("a", "198.18.0.1")));
        let me = NodeId::new("a").unwrap();
        let tables = tables_for(&state, &me, &|_| None).expect("tables");
        assert!(tables.tunnel.is_empty());
    }
}
