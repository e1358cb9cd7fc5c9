//! The contract between control and data plane: the desired data-plane state
//! of one node ([`Tables`]), and the embed-mode file that carries it
//! (DESIGN.md §3). Field names are a public interface: add, never rename.
//!
//! A file enters through [`Tables::load`] (or text through
//! [`Tables::from_yaml_str`]); YAML or JSON, unknown keys rejected with their
//! path. [`Tables::validate`] then checks everything that can be checked
//! without the machine and reports every [`Problem`] at once;
//! [`Tables::check_host`] adds what needs the machine (namespaces). What
//! leaves is a `Tables` the engines can install without second-guessing it.

mod load;
mod validate;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use crate::wire::flow::Protocol;
pub use load::LoadError;
pub use validate::Problem;

/// Desired data-plane state of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    pub node: Node,
    /// Underlay addresses of the cluster's other nodes that no endpoint
    /// names (a node that only lets routing-mesh clients in, say). VXLAN is
    /// taken only from [`Tables::nodes`]: these, and every endpoint's node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Ipv4Addr>,
    /// WireGuard for the encrypted networks.
    #[serde(default, skip_serializing_if = "Tunnel::is_empty")]
    pub tunnel: Tunnel,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub services: Vec<Service>,
}

/// The node these tables are for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// Underlay address; the underlay device is the one holding it.
    pub underlay: Ipv4Addr,
}

/// What the encrypted networks' WireGuard sessions need besides this
/// node's own key, which is the daemon's (`tunnel.key` in its state
/// directory; `shoal info` prints its public half).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// The public key of each other node, by its underlay address. A node
    /// without one gets no encrypted traffic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peers: BTreeMap<Ipv4Addr, WgKey>,
    /// Preshared keys mixed into every handshake, newest first: the
    /// cluster's, rotated; handshakes are answered under each, and started
    /// under the newest a few seconds after it appears.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preshared: Vec<PresharedKey>,
}

impl Tunnel {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.preshared.is_empty()
    }
}

/// One preshared key of the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresharedKey {
    /// Grows with each rotation.
    pub id: u32,
    pub key: WgKey,
}

/// A WireGuard key (Curve25519, or a preshared key): 32 bytes, written in
/// base64 as `wg genkey` and `wg pubkey` print them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

impl std::fmt::Debug for WgKey {
    /// Only a prefix: private and preshared keys must not reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgKey({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl std::fmt::Display for WgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use base64::Engine as _;
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl std::str::FromStr for WgKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a WireGuard key (want 32 bytes in base64, as `wg genkey` prints)"
                )
            })?;
        Ok(WgKey(bytes))
    }
}

impl Serialize for WgKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WgKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One overlay network: a VXLAN segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Net,
    /// Default: the first host address of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Default: underlay MTU - 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// The routing mesh's network. Its addresses carry published ports
    /// only: DNS never answers from it, as Docker's does not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ingress: bool,
}

/// One address on an overlay network, on this node or another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    /// Default: 02:42 followed by the four bytes of `ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Underlay address of the node the endpoint lives on.
    pub node: Ipv4Addr,
    /// For an endpoint on this node: the network namespace shoal wires, by
    /// name (`ip netns add NAME`) or by path (`/proc/PID/ns/net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The task this endpoint belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The name a reverse lookup of `ip` answers on this network (a
    /// task's hostname, `SERVICE.SLOT.ID`); the network's name is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "EndpointState::is_active")]
    pub state: EndpointState,
}

/// A load-balanced service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// Virtual IP per network name.
    #[serde(default)]
    pub vips: BTreeMap<String, Ipv4Addr>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub endpoint_mode: EndpointMode,
    /// The VIPs serve every TCP and UDP port, as Swarm's do; `ports` then
    /// only say what is published. Default: only the ports listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_ports: bool,
    /// Other names it answers to in DNS, as `name` does (a stack's
    /// services find each other by their short names). A service's own
    /// name wins over another's alias; of two services with one alias,
    /// the first in the tables wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    #[serde(default)]
    pub protocol: Protocol,
    pub target: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u16>,
    #[serde(default)]
    pub mode: PublishMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub ip: Ipv4Addr,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "EndpointState::is_active")]
    pub state: EndpointState,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    #[default]
    Active,
    Draining,
    Down,
}

impl EndpointState {
    pub fn is_active(&self) -> bool {
        *self == EndpointState::Active
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    #[default]
    Ingress,
    Host,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    #[default]
    Vip,
    Dnsrr,
}

/// An Ethernet address, written `02:42:0a:0a:00:02` in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Docker's convention for overlay endpoints: 02:42 then the IPv4 address.
    pub fn from_ipv4(ip: Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| {
                format!("`{s}` is not a MAC address (want six hex pairs like 02:42:0a:00:00:02)")
            })?;
            if part.len() != 2 {
                return Err(format!(
                    "`{s}` is not a MAC address (want six hex pairs like 02:42:0a:00:00:02)"
                ));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| {
                format!("`{s}` is not a MAC address (want six hex pairs like 02:42:0a:00:00:02)")
            })?;
        }
        if parts.next().is_some() {
            return Err(format!(
                "`{s}` is not a MAC address (want six hex pairs like 02:42:0a:00:00:02)"
            ));
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Tables {
    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// Whether `e` lives on this node.
    pub fn is_local(&self, e: &Endpoint) -> bool {
        e.node == self.node.underlay
    }

    /// Underlay addresses of every node the tables name: this one, the
    /// peers and each endpoint's node, possibly more than once. The only
    /// senders whose VXLAN datagrams are taken.
    pub fn nodes(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.node.underlay)
            .chain(self.peers.iter().copied())
            .chain(self.endpoints.iter().map(|e| e.node))
    }
}

impl Network {
    /// The gateway: explicit, else the first host address of the subnet.
    pub fn gateway_or_default(&self) -> Ipv4Addr {
        self.gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(self.subnet.network()).saturating_add(1)))
    }

    /// The MTU of the network's interfaces: explicit, else the underlay MTU
    /// minus the 50 bytes of VXLAN over IPv4, and for an encrypted network
    /// the tunnel's 60 more ([`crate::overlay::tunnel::OVERHEAD`]).
    pub fn mtu_or(&self, underlay_mtu: u16) -> u16 {
        let tunnel = if self.encrypted {
            crate::overlay::tunnel::OVERHEAD
        } else {
            0
        };
        self.mtu
            .unwrap_or(underlay_mtu.saturating_sub(50).saturating_sub(tunnel))
    }
}

impl Endpoint {
    /// The MAC: explicit, else [`MacAddr::from_ipv4`] of the IP.
    pub fn mac_or_default(&self) -> MacAddr {
        self.mac.unwrap_or_else(|| MacAddr::from_ipv4(self.ip))
    }
}

#[cfg(test)]
mod tests;
