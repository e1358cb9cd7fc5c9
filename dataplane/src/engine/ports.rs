//! The task interfaces a node's tables ask for, as both engines make them:
//! one per local endpoint with a namespace, named `ethN` inside it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::tables::Tables;

/// An endpoint, by network name and address.
pub type EndpointKey = (String, Ipv4Addr);

/// Everything that defines a task interface; a change to any of it means a
/// new interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub netns: String,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// The interface of every local endpoint that has a namespace.
pub fn desired(tables: &Tables, underlay_mtu: u16) -> BTreeMap<EndpointKey, PortSpec> {
    let mut out = BTreeMap::new();
    for ep in tables.endpoints.iter().filter(|e| tables.is_local(e)) {
        let (Some(net), Some(netns)) = (tables.network(&ep.network), ep.netns.as_ref()) else {
            continue;
        };
        out.insert(
            (ep.network.clone(), ep.ip),
            PortSpec {
                netns: netns.clone(),
                mac: ep.mac_or_default().0,
                mtu: net.mtu_or(underlay_mtu),
                ip: ep.ip,
                prefix_len: net.subnet.prefix_len(),
                gateway: net.gateway_or_default(),
            },
        );
    }
    out
}

/// The first `ethN` not used in `netns` by `taken` (namespace, name).
pub fn free_ifname(netns: &str, taken: &BTreeSet<(String, String)>) -> String {
    (0..)
        .map(|n| format!("eth{n}"))
        .find(|name| !taken.contains(&(netns.to_string(), name.clone())))
        .unwrap_or_else(|| "eth0".into())
}
