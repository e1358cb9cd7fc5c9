//! Network commands: creation (with VNI and subnet allocation) and
//! removal.
//!
//! Without an explicit subnet a network gets the lowest /24 of 10.0.0.0/8
//! that overlaps no other network (Swarm's default address pool), and
//! without an explicit VNI the lowest free one from 4096 (Swarm's start).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::command::{NetworkSpec, Outcome};
use super::ipam::Ipam;
use super::model::Network;
use super::{ClusterState, StateError, names};
use crate::ids::NetworkId;

/// The first VNI handed out automatically.
pub const FIRST_AUTO_VNI: u32 = 4096;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Prefix length of automatically allocated subnets.
pub const DEFAULT_SUBNET_PREFIX: u8 = 24;

fn default_pool() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap_or_default()
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl ClusterState {
    pub(super) fn create_network(&mut self, spec: NetworkSpec) -> Result<Outcome, StateError> {
        names::check_network_like("network", &spec.name)?;
        if self.networks.contains_key(&spec.id) {
            return Err(StateError::IdExists {
                kind: "network",
                id: spec.id.to_string(),
            });
        }
        if self.network_by_name(&spec.name).is_some() {
            return Err(StateError::NetworkExists(spec.name));
        }
        if spec.ingress
            && let Some(existing) = self.ingress_network()
        {
            return Err(StateError::IngressExists(existing.name.clone()));
        }
        let vni = self.pick_vni(spec.vni)?;
        let subnet = self.pick_subnet(spec.subnet)?;
        let ipam = Ipam::new(subnet).ok_or(StateError::SubnetTooSmall(subnet))?;

        let gateway = ipam.gateway();
        self.networks.insert(
            spec.id.clone(),
            Network {
                id: spec.id.clone(),
                name: spec.name,
                driver: "overlay".to_owned(),
                vni,
                subnet,
                gateway,
                attachable: spec.attachable,
                ingress: spec.ingress,
                encrypted: spec.encrypted,
                labels: spec.labels,
            },
        );
        self.ipam.insert(spec.id, ipam);
        Ok(Outcome::NetworkCreated {
            vni,
            subnet,
            gateway,
        })
    }

    pub(super) fn remove_network(&mut self, id: &NetworkId) -> Result<Outcome, StateError> {
        let network = self
            .networks
            .get(id)
            .ok_or_else(|| StateError::NetworkNotFound(id.to_string()))?;
        let uses =
            |s: &&super::model::Service| s.spec.networks.contains(id) || s.vips.contains_key(id);
        if let Some(service) = self.services.values().find(uses) {
            return Err(StateError::NetworkInUse {
                network: network.name.clone(),
                service: service.spec.name.clone(),
            });
        }
        if let Some(task) = self.tasks.values().find(|t| t.addresses.contains_key(id)) {
            return Err(StateError::NetworkHasTasks {
                network: network.name.clone(),
                task: task.id.to_string(),
            });
        }
        self.networks.remove(id);
        self.ipam.remove(id);
        Ok(Outcome::Applied)
    }

    fn pick_vni(&self, wanted: Option<u32>) -> Result<u32, StateError> {
        let owner = |vni: u32| self.networks.values().find(|n| n.vni == vni);
        match wanted {
            Some(vni) if vni == 0 || vni > MAX_VNI => Err(StateError::VniOutOfRange(vni)),
            Some(vni) => match owner(vni) {
                Some(n) => Err(StateError::VniInUse {
                    vni,
                    network: n.name.clone(),
                }),
                None => Ok(vni),
            },
            None => {
                let used: std::collections::BTreeSet<u32> =
                    self.networks.values().map(|n| n.vni).collect();
                (FIRST_AUTO_VNI..=MAX_VNI)
                    .find(|v| !used.contains(v))
                    .ok_or(StateError::VniExhausted)
            }
        }
    }

    fn pick_subnet(&self, wanted: Option<Ipv4Net>) -> Result<Ipv4Net, StateError> {
        let Some(subnet) = wanted else {
            return default_pool()
                .subnets(DEFAULT_SUBNET_PREFIX)
                .map_err(|_| StateError::PoolExhausted)?
                .find(|candidate| {
                    !self
                        .networks
                        .values()
                        .any(|n| overlaps(n.subnet, *candidate))
                })
                .ok_or(StateError::PoolExhausted);
        };
        if subnet.trunc() != subnet {
            return Err(StateError::SubnetHostBits {
                given: subnet,
                suggested: subnet.trunc(),
            });
        }
        if subnet.prefix_len() > super::ipam::MAX_PREFIX_LEN {
            return Err(StateError::SubnetTooSmall(subnet));
        }
        if let Some(other) = self.networks.values().find(|n| overlaps(n.subnet, subnet)) {
            return Err(StateError::SubnetOverlap {
                subnet,
                other: other.name.clone(),
                other_subnet: other.subnet,
            });
        }
        Ok(subnet)
    }
}
