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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_saphyr::MessageFormatter;

use crate::wire::vxlan::VNI_MAX;

/// Desired data-plane state of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    pub node: Node,
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
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
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

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One thing wrong with a tables file: where (`endpoints[3].ip`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// Key path in the file, as in `services[0].backends[1].ip`.
    pub path: String,
    pub message: String,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a tables file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read tables file {}; check the path given to --tables", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not YAML or JSON, or not the shape of a tables file (unknown key,
    /// wrong type, missing field); `message` starts with the key path.
    #[error("{}:{line}:{column}: {message}", .file.display())]
    Syntax {
        file: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    /// Well-formed, but [`Tables::validate`] found problems: all of them.
    #[error("{}", list_problems(.file, .problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl LoadError {
    /// The problems of an [`LoadError::Invalid`] file; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            LoadError::Invalid { problems, .. } => problems,
            LoadError::Io { .. } | LoadError::Syntax { .. } => &[],
        }
    }
}

fn list_problems(file: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {p}", file.display()))
        .collect();
    lines.join("\n")
}

/// The name syntax errors carry when the text did not come from a file.
const NO_FILE: &str = "<input>";

impl Tables {
    /// Parses the embed-mode format (YAML, or JSON, which is YAML too)
    /// without validating it. Unknown keys are errors naming their path.
    pub fn from_yaml_str(text: &str) -> Result<Tables, LoadError> {
        parse(text, Path::new(NO_FILE))
    }

    /// Reads, parses and [validates](Tables::validate) a tables file. Checks
    /// that need the machine are left to [`Tables::check_host`].
    pub fn load(path: &Path) -> Result<Tables, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let tables = parse(&text, path)?;
        tables.validate().map_err(|problems| LoadError::Invalid {
            file: path.to_path_buf(),
            problems,
        })?;
        Ok(tables)
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// Whether `e` lives on this node.
    pub fn is_local(&self, e: &Endpoint) -> bool {
        e.node == self.node.underlay
    }

    /// Checks everything that needs no access to the machine and returns
    /// every problem found, in file order.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        if self.node.name.trim().is_empty() {
            problems.push(Problem::new(
                "node.name",
                "is empty; name this node (its hostname, for instance)",
            ));
        }
        self.check_networks(&mut problems);
        let endpoint_ips = self.check_endpoints(&mut problems);
        self.check_services(&endpoint_ips, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Checks what needs the machine: that the namespace of every local
    /// endpoint exists (`netns_exists` is `sys::netns::exists` in the daemon).
    pub fn check_host(&self, netns_exists: &dyn Fn(&str) -> bool) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let Some(ns) = e.netns.as_deref().filter(|ns| !ns.is_empty()) else {
                continue;
            };
            if !self.is_local(e) || netns_exists(ns) {
                continue;
            }
            let message = if ns.starts_with('/') {
                format!(
                    "network namespace `{ns}` does not exist; is the process that owns it still running?"
                )
            } else {
                format!(
                    "network namespace `{ns}` does not exist; create it with `ip netns add {ns}`"
                )
            };
            problems.push(Problem::new(format!("endpoints[{i}].netns"), message));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn check_networks(&self, problems: &mut Vec<Problem>) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut vnis: HashMap<u32, usize> = HashMap::new();
        for (i, n) in self.networks.iter().enumerate() {
            let at = |field: &str| format!("networks[{i}].{field}");
            if n.name.trim().is_empty() {
                problems.push(Problem::new(
                    at("name"),
                    "is empty; every network needs a name",
                ));
            } else if let Some(&j) = names.get(n.name.as_str()) {
                problems.push(Problem::new(
                    at("name"),
                    format!("network `{}` is already defined at networks[{j}]", n.name),
                ));
            } else {
                names.insert(&n.name, i);
            }
            if !(1..=VNI_MAX).contains(&n.vni) {
                problems.push(Problem::new(
                    at("vni"),
                    format!(
                        "{} is outside 1..={VNI_MAX} (VXLAN has 24-bit VNIs and 0 is reserved)",
                        n.vni
                    ),
                ));
            } else if let Some(&j) = vnis.get(&n.vni) {
                problems.push(Problem::new(
                    at("vni"),
                    format!(
                        "VNI {} is already used by network `{}`",
                        n.vni, self.networks[j].name
                    ),
                ));
            } else {
                vnis.insert(n.vni, i);
            }
            self.check_subnet(i, n, problems);
            if let Some(what) = n.gateway.and_then(|gw| special_address(n, gw, false)) {
                problems.push(Problem::new(at("gateway"), what));
            }
            if let Some(mtu) = n.mtu.filter(|m| !(576..=9000).contains(m)) {
                problems.push(Problem::new(
                    at("mtu"),
                    format!("{mtu} is outside 576..=9000; leave it out for the underlay MTU - 50"),
                ));
            }
        }
    }

    /// A subnet must be written as its network address, leave room for a
    /// gateway and endpoints, and overlap no earlier network's subnet.
    fn check_subnet(&self, i: usize, n: &Network, problems: &mut Vec<Problem>) {
        let at = format!("networks[{i}].subnet");
        if n.subnet.prefix_len() > 30 {
            problems.push(Problem::new(
                &at,
                format!(
                    "{} leaves no room for a gateway and endpoints; use /30 or shorter",
                    n.subnet
                ),
            ));
        } else if n.subnet.addr() != n.subnet.network() {
            problems.push(Problem::new(
                &at,
                format!("{} has host bits set; write {}", n.subnet, n.subnet.trunc()),
            ));
        }
        let earlier = self.networks[..i].iter();
        if let Some(other) = earlier.into_iter().find(|o| overlaps(o.subnet, n.subnet)) {
            problems.push(Problem::new(
                at,
                format!(
                    "{} overlaps subnet {} of network `{}`",
                    n.subnet, other.subnet, other.name
                ),
            ));
        }
    }

    /// Checks endpoints and returns where each (network, IP) is defined.
    fn check_endpoints(&self, problems: &mut Vec<Problem>) -> HashMap<(&str, Ipv4Addr), usize> {
        let mut ips: HashMap<(&str, Ipv4Addr), usize> = HashMap::new();
        let mut macs: HashMap<(&str, MacAddr), usize> = HashMap::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let at = |field: &str| format!("endpoints[{i}].{field}");
            match self.network(&e.network) {
                None => problems.push(Problem::new(at("network"), undefined_network(&e.network))),
                Some(n) => {
                    if let Some(what) = special_address(n, e.ip, true) {
                        problems.push(Problem::new(at("ip"), what));
                    }
                }
            }
            let key = (e.network.as_str(), e.ip);
            match ips.get(&key) {
                Some(&j) => problems.push(Problem::new(
                    at("ip"),
                    format!(
                        "{} is already used by endpoints[{j}] on network `{}`",
                        e.ip, e.network
                    ),
                )),
                None => {
                    ips.insert(key, i);
                }
            }
            let mac = e.mac_or_default();
            let whose = if e.mac.is_some() {
                ""
            } else {
                " (the default for its ip)"
            };
            if mac.0[0] & 1 != 0 {
                problems.push(Problem::new(
                    at("mac"),
                    format!("{mac} is a multicast address; an endpoint needs a unicast MAC (even first byte)"),
                ));
            }
            match macs.get(&(e.network.as_str(), mac)) {
                Some(&j) => problems.push(Problem::new(
                    at("mac"),
                    format!(
                        "{mac}{whose} is already used by endpoints[{j}] on network `{}`",
                        e.network
                    ),
                )),
                None => {
                    macs.insert((e.network.as_str(), mac), i);
                }
            }
            self.check_netns(i, e, problems);
        }
        ips
    }

    fn check_netns(&self, i: usize, e: &Endpoint, problems: &mut Vec<Problem>) {
        let at = format!("endpoints[{i}].netns");
        let underlay = self.node.underlay;
        match (self.is_local(e), e.netns.as_deref()) {
            (true, None) => problems.push(Problem::new(
                at,
                format!(
                    "missing; an endpoint on this node ({underlay}) needs the network namespace shoal wires (`ip netns add NAME`)"
                ),
            )),
            (true, Some("")) => problems.push(Problem::new(
                at,
                "is empty; name a namespace (`ip netns add NAME`) or give a path like /proc/PID/ns/net",
            )),
            (true, Some(ns)) if !ns.starts_with('/') && (ns.contains('/') || ns == "." || ns == "..") => {
                problems.push(Problem::new(
                    at,
                    format!("`{ns}` is neither a namespace name (no `/`) nor an absolute path"),
                ));
            }
            (false, Some(_)) => problems.push(Problem::new(
                at,
                format!(
                    "netns is only for endpoints on this node ({underlay}); this one lives on {}",
                    e.node
                ),
            )),
            (true, Some(_)) | (false, None) => {}
        }
    }

    fn check_services(
        &self,
        endpoint_ips: &HashMap<(&str, Ipv4Addr), usize>,
        problems: &mut Vec<Problem>,
    ) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut vips: HashMap<(&str, Ipv4Addr), &str> = HashMap::new();
        let mut published: HashMap<(u16, Protocol), &str> = HashMap::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = |field: &str| format!("services[{i}].{field}");
            if s.name.trim().is_empty() {
                problems.push(Problem::new(
                    at("name"),
                    "is empty; every service needs a name",
                ));
            } else if let Some(&j) = names.get(s.name.as_str()) {
                problems.push(Problem::new(
                    at("name"),
                    format!("service `{}` is already defined at services[{j}]", s.name),
                ));
            } else {
                names.insert(&s.name, i);
            }
            for (net_name, &vip) in &s.vips {
                let path = at(&format!("vips.{net_name}"));
                let Some(n) = self.network(net_name) else {
                    problems.push(Problem::new(path, undefined_network(net_name)));
                    continue;
                };
                if let Some(what) = special_address(n, vip, true) {
                    problems.push(Problem::new(path, what));
                } else if let Some(&j) = endpoint_ips.get(&(net_name.as_str(), vip)) {
                    problems.push(Problem::new(
                        path,
                        format!("{vip} is already the ip of endpoints[{j}]"),
                    ));
                } else if let Some(other) = vips.get(&(net_name.as_str(), vip)) {
                    problems.push(Problem::new(
                        path,
                        format!("{vip} is already the VIP of service `{other}`"),
                    ));
                } else {
                    vips.insert((net_name.as_str(), vip), &s.name);
                }
            }
            for (j, port) in s.ports.iter().enumerate() {
                let at = |field: &str| at(&format!("ports[{j}].{field}"));
                if port.target == 0 {
                    problems.push(Problem::new(
                        at("target"),
                        "is 0; give the port the service's tasks listen on",
                    ));
                }
                match port.published {
                    Some(0) => problems.push(Problem::new(
                        at("published"),
                        "is 0; give a port from 1 to 65535, or leave it out to publish nothing",
                    )),
                    Some(p) => {
                        if let Some(other) = published.get(&(p, port.protocol)) {
                            problems.push(Problem::new(
                                at("published"),
                                format!(
                                    "port {p}/{} is already published by service `{other}`",
                                    port.protocol
                                ),
                            ));
                        } else {
                            published.insert((p, port.protocol), &s.name);
                        }
                    }
                    None => {}
                }
            }
            self.check_backends(i, s, endpoint_ips, problems);
        }
    }

    /// Backends must be endpoints of the service's VIP networks (of any
    /// network when it has no VIP, as with dnsrr), once each, weight >= 1.
    fn check_backends(
        &self,
        i: usize,
        s: &Service,
        endpoint_ips: &HashMap<(&str, Ipv4Addr), usize>,
        problems: &mut Vec<Problem>,
    ) {
        let networks: Vec<&str> = if s.vips.is_empty() {
            self.networks.iter().map(|n| n.name.as_str()).collect()
        } else {
            s.vips
                .keys()
                .map(String::as_str)
                .filter(|n| self.network(n).is_some())
                .collect()
        };
        let mut seen: HashMap<Ipv4Addr, usize> = HashMap::new();
        for (j, b) in s.backends.iter().enumerate() {
            let at = |field: &str| format!("services[{i}].backends[{j}].{field}");
            if let Some(&k) = seen.get(&b.ip) {
                problems.push(Problem::new(
                    at("ip"),
                    format!("{} is already backends[{k}]", b.ip),
                ));
            } else {
                seen.insert(b.ip, j);
                if !networks
                    .iter()
                    .any(|n| endpoint_ips.contains_key(&(*n, b.ip)))
                {
                    problems.push(Problem::new(
                        at("ip"),
                        format!("{} is no endpoint of {}", b.ip, network_list(&networks, s)),
                    ));
                }
            }
            if b.weight == 0 {
                problems.push(Problem::new(
                    at("weight"),
                    "is 0; a weight must be at least 1 (set state: draining to stop new flows)",
                ));
            }
        }
    }
}

impl Network {
    /// The gateway: explicit, else the first host address of the subnet.
    pub fn gateway_or_default(&self) -> Ipv4Addr {
        self.gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(self.subnet.network()).saturating_add(1)))
    }

    /// The MTU of the network's interfaces: explicit, else the underlay MTU
    /// minus the 50 bytes of VXLAN over IPv4.
    pub fn mtu_or(&self, underlay_mtu: u16) -> u16 {
        self.mtu.unwrap_or(underlay_mtu.saturating_sub(50))
    }
}

impl Endpoint {
    /// The MAC: explicit, else [`MacAddr::from_ipv4`] of the IP.
    pub fn mac_or_default(&self) -> MacAddr {
        self.mac.unwrap_or_else(|| MacAddr::from_ipv4(self.ip))
    }
}

fn parse(text: &str, file: &Path) -> Result<Tables, LoadError> {
    let mut key_path = None;
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key_path = Some(e.path().to_string());
            e.into_inner()
        })
    })
    .map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let raw = serde_saphyr::UserMessageFormatter.format_message(e.without_snippet());
        let mut message = String::new();
        // serde_path_to_error writes `.` for the root and `?` for a segment
        // it cannot name (a duplicate key, for one).
        let key_path = key_path.map(|p| p.trim_end_matches(".?").to_string());
        if let Some(path) = key_path.filter(|p| p != "." && p != "?") {
            message.push_str(&path);
            message.push_str(": ");
        }
        for c in raw.chars() {
            if c.is_control() {
                message.extend(c.escape_default());
            } else {
                message.push(c);
            }
        }
        LoadError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            message,
        }
    })
}

/// Why `ip` cannot be an address of network `n` (outside the subnet, its
/// network or broadcast address, or, when `not_gateway`, its gateway).
fn special_address(n: &Network, ip: Ipv4Addr, not_gateway: bool) -> Option<String> {
    let (subnet, name) = (n.subnet.trunc(), &n.name);
    if !subnet.contains(&ip) {
        Some(format!(
            "{ip} is outside subnet {subnet} of network `{name}`"
        ))
    } else if ip == subnet.network() {
        Some(format!(
            "{ip} is the network address of subnet {subnet} of network `{name}`"
        ))
    } else if ip == subnet.broadcast() {
        Some(format!(
            "{ip} is the broadcast address of subnet {subnet} of network `{name}`"
        ))
    } else if not_gateway && ip == n.gateway_or_default() {
        Some(format!(
            "{ip} is the gateway of network `{name}`; pick another address"
        ))
    } else {
        None
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    let (a, b) = (a.trunc(), b.trunc());
    a.contains(&b.network()) || b.contains(&a.network())
}

fn undefined_network(name: &str) -> String {
    format!("network `{name}` is not defined; add it under `networks`")
}

fn network_list(networks: &[&str], s: &Service) -> String {
    match networks {
        [] if s.vips.is_empty() => "any network (there are none)".to_string(),
        [] => "any defined network (its vips name none)".to_string(),
        [one] => format!("network `{one}`"),
        many => {
            let names: Vec<String> = many.iter().map(|n| format!("`{n}`")).collect();
            format!("networks {}", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
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
}
