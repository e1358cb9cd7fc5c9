//! The names a task can resolve, computed from the tables: sans-IO and pure.
//!
//! [`Names::from_tables`] turns a [`Tables`] into lookup maps once per
//! apply; [`Names::lookup`] answers one question from a task sitting on a
//! given set of networks ([`Names::networks_of`] its namespace). The rules
//! are Docker Swarm's embedded DNS (DESIGN.md §4):
//!
//! - `NAME`: the service's VIP on a network the asker shares (endpoint mode
//!   vip), or every active backend on shared networks (dnsrr);
//! - `tasks.NAME`: every active backend on shared networks;
//! - `NAME.NETWORK`, `tasks.NAME.NETWORK`: the same, on that network only;
//! - a service's aliases (a stack's short names) like its name.
//!
//! - reverse lookups (`D.C.B.A.in-addr.arpa`, PTR) of a task's address on
//!   a shared network: `TASKNAME.NETWORK`; of a VIP: `SERVICE.NETWORK`.
//!
//! A service is visible on the networks it has a VIP on, or (dnsrr, or no
//! VIP) the networks its backends are on; never on the ingress network,
//! whose addresses only carry published ports. Names are case-insensitive,
//! with or without the trailing dot. A name no visible service owns is not
//! ours: the caller forwards it.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use hickory_proto::rr::RecordType;

use crate::tables::{EndpointMode, Tables};

/// Time to live of every answer, in seconds. Zero: a cache inside the task
/// would otherwise keep a drained or dead backend after the tables changed
/// (for dnsrr the resolver *is* the load balancer), and a query to the
/// resolver on the task's own loopback costs microseconds. Docker's 600 s
/// is why its DNS lags behind scaling.
pub const TTL: u32 = 0;

/// What a question gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The name is ours: these A records (none for a type other than A, or
    /// when no backend is active: NOERROR without data, not NXDOMAIN).
    Records(Vec<Ipv4Addr>),
    /// A reverse name that is ours: these PTR records (fully qualified).
    Pointers(Vec<String>),
    /// No visible service owns the name: forward it upstream.
    NotOurs,
}

/// Lookup maps built from one version of the tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Lower-cased service name -> where it is visible.
    services: HashMap<String, ServiceNames>,
    /// Network namespace (as written in the tables) -> lower-cased names of
    /// the networks of its local endpoints, in tables order.
    netns: HashMap<String, Vec<String>>,
    /// Address -> (lower-cased network, name) of a task or a VIP there.
    reverse: HashMap<Ipv4Addr, Vec<(String, String)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceNames {
    /// One entry per network the service is visible on, in tables order.
    on: Vec<OnNetwork>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OnNetwork {
    /// Lower-cased network name.
    network: String,
    /// How `NAME` answers here.
    mode: EndpointMode,
    vip: Option<Ipv4Addr>,
    /// Active backends on this network.
    tasks: Vec<Ipv4Addr>,
}

impl Names {
    /// Builds the lookup maps for `tables`. Never fails: what cannot be
    /// placed on a network (a backend outside every subnet, a VIP on an
    /// unknown network) is simply not resolvable.
    pub fn from_tables(tables: &Tables) -> Names {
        let mut names = Names::default();
        let ingress = |net: &str| tables.network(net).is_some_and(|n| n.ingress);
        for e in tables.endpoints.iter().filter(|e| !ingress(&e.network)) {
            let net = e.network.to_ascii_lowercase();
            if let Some(name) = &e.name {
                let fqdn = format!("{}.{net}", name.to_ascii_lowercase());
                names.reverse.entry(e.ip).or_default().push((net, fqdn));
            }
            let Some(ns) = e.netns.as_deref().filter(|ns| !ns.is_empty()) else {
                continue;
            };
            if !tables.is_local(e) {
                continue;
            }
            let nets = names.netns.entry(ns.to_string()).or_default();
            let net = e.network.to_ascii_lowercase();
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        for s in &tables.services {
            for (net, vip) in s.vips.iter().filter(|(net, _)| !ingress(net)) {
                let net = net.to_ascii_lowercase();
                let fqdn = format!("{}.{net}", s.name.to_ascii_lowercase());
                names.reverse.entry(*vip).or_default().push((net, fqdn));
            }
            let service = service_names(tables, s);
            if !service.on.is_empty() {
                names.services.insert(s.name.to_ascii_lowercase(), service);
            }
        }
        // Aliases: on each network, a service's own name wins, then the
        // first service in the tables with the alias there.
        let own: HashSet<String> = names.services.keys().cloned().collect();
        for s in tables.services.iter().filter(|s| !s.aliases.is_empty()) {
            let service = service_names(tables, s);
            for alias in &s.aliases {
                let alias = alias.to_ascii_lowercase();
                if own.contains(&alias) {
                    continue;
                }
                let entry = names
                    .services
                    .entry(alias)
                    .or_insert_with(|| ServiceNames { on: Vec::new() });
                for on in &service.on {
                    if !entry.on.iter().any(|o| o.network == on.network) {
                        entry.on.push(on.clone());
                    }
                }
            }
        }
        names.services.retain(|_, s| !s.on.is_empty());
        names
    }

    /// The networks of the local endpoints in network namespace `netns`
    /// (as the tables name it); empty for a namespace we do not serve.
    pub fn networks_of(&self, netns: &str) -> &[String] {
        self.netns.get(netns).map(Vec::as_slice).unwrap_or_default()
    }

    /// Answers a question for `name` (any case, trailing dot or not) of type
    /// `qtype` from a task on `networks` (lower-cased, as
    /// [`Names::networks_of`] returns them).
    pub fn lookup(&self, networks: &[String], name: &str, qtype: RecordType) -> Answer {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name.is_empty() {
            return Answer::NotOurs;
        }
        if let Some(ip) = reverse_of(&name) {
            let found: Vec<String> = self
                .reverse
                .get(&ip)
                .into_iter()
                .flatten()
                .filter(|(net, _)| networks.contains(net))
                .map(|(_, fqdn)| format!("{fqdn}."))
                .collect();
            return match (found.is_empty(), qtype) {
                (true, _) => Answer::NotOurs,
                (false, RecordType::PTR) => Answer::Pointers(found),
                (false, _) => Answer::Records(Vec::new()),
            };
        }
        let Some(ips) = self.resolve(networks, &name) else {
            return Answer::NotOurs;
        };
        if qtype == RecordType::A {
            Answer::Records(ips)
        } else {
            Answer::Records(Vec::new())
        }
    }

    /// The addresses of a lower-cased name without the trailing dot, or
    /// `None` when it is not ours. `NAME` before `NAME.NETWORK`.
    fn resolve(&self, networks: &[String], name: &str) -> Option<Vec<Ipv4Addr>> {
        if let Some(ips) = self.resolve_on(networks, name, None) {
            return Some(ips);
        }
        networks.iter().find_map(|net| {
            let base = name.strip_suffix(net.as_str())?.strip_suffix('.')?;
            self.resolve_on(networks, base, Some(net))
        })
    }

    /// `base` is `NAME` or `tasks.NAME`, on the shared networks or only on
    /// `only`.
    fn resolve_on(
        &self,
        networks: &[String],
        base: &str,
        only: Option<&String>,
    ) -> Option<Vec<Ipv4Addr>> {
        let shared = |on: &&OnNetwork| {
            networks.contains(&on.network) && only.is_none_or(|n| *n == on.network)
        };
        if let Some(service) = self.services.get(base) {
            let mut on = service.on.iter().filter(shared).peekable();
            return Some(match on.peek()?.mode {
                EndpointMode::Vip => on.find_map(|o| o.vip).into_iter().collect(),
                EndpointMode::Dnsrr => union(on),
            });
        }
        let service = self.services.get(base.strip_prefix("tasks.")?)?;
        let mut on = service.on.iter().filter(shared).peekable();
        on.peek()?;
        Some(union(on))
    }
}

/// The address of a reverse name `D.C.B.A.in-addr.arpa` (lower-cased,
/// no trailing dot).
fn reverse_of(name: &str) -> Option<Ipv4Addr> {
    let octets = name.strip_suffix(".in-addr.arpa")?;
    let mut parts = octets.split('.').map(|p| p.parse::<u8>().ok());
    let (d, c, b, a) = (
        parts.next()??,
        parts.next()??,
        parts.next()??,
        parts.next()??,
    );
    parts.next().is_none().then_some(Ipv4Addr::new(a, b, c, d))
}

/// The active backends of several networks, each address once.
fn union<'a>(on: impl Iterator<Item = &'a OnNetwork>) -> Vec<Ipv4Addr> {
    let mut ips = Vec::new();
    for ip in on.flat_map(|o| &o.tasks) {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    ips
}

/// Where service `s` is visible, and its active backends there.
fn service_names(tables: &Tables, s: &crate::tables::Service) -> ServiceNames {
    let by_vip = s.endpoint_mode == EndpointMode::Vip && !s.vips.is_empty();
    let mut on = Vec::new();
    for net in tables.networks.iter().filter(|n| !n.ingress) {
        let vip = s.vips.get(&net.name).copied();
        let mut listed = false;
        let mut tasks = Vec::new();
        for b in &s.backends {
            let Some(active) = backend_on(tables, &net.name, b.ip) else {
                continue;
            };
            listed = true;
            if active && b.state.is_active() && !tasks.contains(&b.ip) {
                tasks.push(b.ip);
            }
        }
        let visible = if by_vip { vip.is_some() } else { listed };
        if visible {
            on.push(OnNetwork {
                network: net.name.to_ascii_lowercase(),
                mode: s.endpoint_mode,
                vip: if by_vip { vip } else { None },
                tasks,
            });
        }
    }
    ServiceNames { on }
}

/// Whether backend address `ip` is on network `net`, and if so whether its
/// endpoint is active. A backend with no endpoint in the tables belongs to
/// the network whose subnet holds it.
fn backend_on(tables: &Tables, net: &str, ip: Ipv4Addr) -> Option<bool> {
    let mut endpoints = tables.endpoints.iter().filter(|e| e.ip == ip).peekable();
    if endpoints.peek().is_some() {
        return endpoints
            .find(|e| e.network == net)
            .map(|e| e.state.is_active());
    }
    tables
        .network(net)
        .filter(|n| n.subnet.contains(&ip))
        .map(|_| true)
}

#[cfg(test)]
mod tests;
