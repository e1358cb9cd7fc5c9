//! Service commands: create, remove, and the planner updates share
//! (`updates` has the rest of them).
//!
//! Creation and update share one planner that checks the spec against the
//! state and works out the service's ports and VIPs without changing
//! anything; only when the plan is complete are addresses claimed and the
//! service stored. A service keeps its VIP on a network for as long as it
//! stays attached, and an ingress port left unpublished keeps the port the
//! state picked for it, so updates do not move clients around.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::command::Outcome;
use super::model::{
    DesiredState, EndpointMode, PortConfig, Protocol, PublishMode, Service, ServiceSpec,
};
use super::{ClusterState, StateError, names};
use crate::ids::{NetworkId, ServiceId};

/// The first ingress port the state picks when none is given (Swarm's
/// range is 30000-32767).
pub const FIRST_DYNAMIC_PORT: u16 = 30000;
/// The last ingress port the state picks.
pub const LAST_DYNAMIC_PORT: u16 = 32767;

/// A checked service and the address changes it needs.
pub(super) struct Plan {
    pub(super) service: Service,
    claim: Vec<(NetworkId, Ipv4Addr)>,
    release: Vec<(NetworkId, Ipv4Addr)>,
}

impl ClusterState {
    pub(super) fn create_service(
        &mut self,
        id: ServiceId,
        spec: ServiceSpec,
    ) -> Result<Outcome, StateError> {
        if self.services.contains_key(&id) {
            return Err(StateError::IdExists {
                kind: "service",
                id: id.to_string(),
            });
        }
        let plan = self.plan_service(id, spec, None)?;
        Ok(self.commit_service(plan))
    }

    pub(super) fn remove_service(&mut self, id: &ServiceId) -> Result<Outcome, StateError> {
        let service = self
            .services
            .remove(id)
            .ok_or_else(|| StateError::ServiceNotFound(id.to_string()))?;
        for (network, vip) in &service.vips {
            if let Some(ipam) = self.ipam.get_mut(network) {
                ipam.release(*vip);
            }
        }
        // Tasks keep their addresses until they are removed, once stopped.
        for task in self.tasks.values_mut().filter(|t| &t.service == id) {
            task.desired = DesiredState::Shutdown;
        }
        Ok(Outcome::Applied)
    }

    pub(super) fn commit_service(&mut self, plan: Plan) -> Outcome {
        for (network, addr) in plan.release {
            if let Some(ipam) = self.ipam.get_mut(&network) {
                ipam.release(addr);
            }
        }
        for (network, addr) in plan.claim {
            if let Some(ipam) = self.ipam.get_mut(&network) {
                ipam.claim(addr);
            }
        }
        let outcome = Outcome::ServiceSaved {
            version: plan.service.version,
            vips: plan.service.vips.clone(),
            ports: plan.service.spec.ports.clone(),
        };
        self.services.insert(plan.service.id.clone(), plan.service);
        outcome
    }

    /// Checks `spec` and computes the service it becomes, as a new one
    /// with no update history; changes nothing.
    pub(super) fn plan_service(
        &self,
        id: ServiceId,
        mut spec: ServiceSpec,
        existing: Option<&Service>,
    ) -> Result<Plan, StateError> {
        names::check_service(&spec.name)?;
        for alias in &spec.aliases {
            names::check_service(alias)?;
        }
        if let Some(other) = self.service_by_name(&spec.name)
            && other.id != id
        {
            return Err(StateError::ServiceExists(spec.name));
        }
        let mut seen = BTreeSet::new();
        for network in &spec.networks {
            let n = self
                .networks
                .get(network)
                .ok_or_else(|| StateError::NetworkNotFound(network.to_string()))?;
            if n.ingress {
                return Err(StateError::IngressAttach(n.name.clone()));
            }
            if !seen.insert(network) {
                return Err(StateError::NetworkListedTwice(n.name.clone()));
            }
        }
        spec.ports = self.plan_ports(&id, &spec.ports, existing)?;
        let attached = self.attached_networks(&spec)?;

        let mut vips = BTreeMap::new();
        let mut claim = Vec::new();
        if spec.endpoint_mode == EndpointMode::Vip {
            for network in &attached {
                let kept = existing.and_then(|s| s.vips.get(network)).copied();
                let vip = match kept {
                    Some(vip) => vip,
                    None => {
                        let vip = self.next_vip(network)?;
                        claim.push((network.clone(), vip));
                        vip
                    }
                };
                vips.insert(network.clone(), vip);
            }
        }
        let release = existing
            .map(|s| {
                s.vips
                    .iter()
                    .filter(|(n, _)| !vips.contains_key(*n))
                    .map(|(n, a)| (n.clone(), *a))
                    .collect()
            })
            .unwrap_or_default();
        let version = existing.map_or(1, |s| s.version.saturating_add(1));
        Ok(Plan {
            service: Service {
                id,
                spec,
                vips,
                version,
                spec_version: version,
                previous_spec: None,
                previous_spec_version: 0,
                update_status: None,
            },
            claim,
            release,
        })
    }

    /// The networks a service's tasks attach to: its own, plus the ingress
    /// network when it publishes ingress ports.
    pub(super) fn attached_networks(
        &self,
        spec: &ServiceSpec,
    ) -> Result<Vec<NetworkId>, StateError> {
        let mut attached = spec.networks.clone();
        if let Some(port) = spec.ports.iter().find(|p| p.mode == PublishMode::Ingress) {
            if spec.endpoint_mode == EndpointMode::Dnsrr {
                return Err(StateError::DnsrrWithIngress);
            }
            let ingress = self.ingress_network().ok_or(StateError::NoIngressNetwork(
                port.published.unwrap_or(port.target),
            ))?;
            attached.push(ingress.id.clone());
        }
        Ok(attached)
    }

    fn next_vip(&self, network: &NetworkId) -> Result<Ipv4Addr, StateError> {
        let ipam = self
            .ipam
            .get(network)
            .ok_or_else(|| StateError::NetworkNotFound(network.to_string()))?;
        ipam.next_vip().ok_or_else(|| StateError::NetworkFull {
            network: self.network_name(network),
            subnet: ipam.subnet(),
        })
    }

    /// Checks ports and fills in unpublished ingress ports.
    fn plan_ports(
        &self,
        id: &ServiceId,
        ports: &[PortConfig],
        existing: Option<&Service>,
    ) -> Result<Vec<PortConfig>, StateError> {
        // Published ingress ports of every other service.
        let mut taken: BTreeMap<(Protocol, u16), &str> = BTreeMap::new();
        for other in self.services.values().filter(|s| &s.id != id) {
            for p in other
                .spec
                .ports
                .iter()
                .filter(|p| p.mode == PublishMode::Ingress)
            {
                if let Some(published) = p.published {
                    taken.insert((p.protocol, published), other.spec.name.as_str());
                }
            }
        }
        let this_name = existing.map_or("this service", |s| s.spec.name.as_str());
        let mut mine: BTreeSet<(Protocol, u16)> = BTreeSet::new();
        for p in ports {
            if p.target == 0 || p.published == Some(0) {
                return Err(StateError::PortZero);
            }
            if p.mode != PublishMode::Ingress {
                continue;
            }
            if let Some(published) = p.published {
                let key = (p.protocol, published);
                if let Some(other) = taken.get(&key) {
                    return Err(port_in_use(key, other));
                }
                if !mine.insert(key) {
                    return Err(port_in_use(key, this_name));
                }
            }
        }

        let mut out = Vec::with_capacity(ports.len());
        for p in ports {
            let mut p = *p;
            if p.mode == PublishMode::Ingress && p.published.is_none() {
                let free = |port: &u16| {
                    let key = (p.protocol, *port);
                    !taken.contains_key(&key) && !mine.contains(&key)
                };
                let previous = existing.and_then(|s| {
                    s.spec.ports.iter().find_map(|q| {
                        (q.mode == PublishMode::Ingress
                            && q.protocol == p.protocol
                            && q.target == p.target)
                            .then_some(q.published)
                            .flatten()
                    })
                });
                let port = previous
                    .filter(free)
                    .or_else(|| (FIRST_DYNAMIC_PORT..=LAST_DYNAMIC_PORT).find(free))
                    .ok_or(StateError::PortsExhausted)?;
                mine.insert((p.protocol, port));
                p.published = Some(port);
            }
            out.push(p);
        }
        Ok(out)
    }
}

fn port_in_use((protocol, port): (Protocol, u16), service: &str) -> StateError {
    StateError::PortInUse {
        port,
        protocol,
        service: service.to_owned(),
    }
}
