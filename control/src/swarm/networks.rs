//! `shoal network create | ls | inspect | rm` on a manager: overlay
//! networks in the replicated state, found by id, id prefix or name.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::SwarmError;
use super::member::Member;
use super::view::find_by_key;
use crate::NetworkId;
use crate::state::{ClusterState, Command, Network, NetworkSpec};

/// `shoal network create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkOptions {
    /// Its name.
    pub name: String,
    /// Only `overlay`.
    pub driver: Option<String>,
    /// Its subnet; by default the lowest free /24 of 10.0.0.0/8.
    pub subnet: Option<Ipv4Net>,
    /// Whether standalone tasks may attach.
    pub attachable: bool,
    /// Driver options (`--opt encrypted`).
    pub options: Vec<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A network as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    /// Its id.
    pub id: NetworkId,
    /// Its name.
    pub name: String,
    /// Always `overlay`.
    pub driver: String,
    /// Always `swarm`.
    pub scope: String,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// Its gateway.
    pub gateway: Ipv4Addr,
    /// Its VXLAN id.
    pub vni: u32,
    /// Whether standalone tasks may attach.
    pub attachable: bool,
    /// Whether it is the routing-mesh network.
    pub ingress: bool,
    /// Its driver options, as Docker shows them: `{"encrypted": ""}` for
    /// an encrypted network.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The MTU of its tasks' interfaces on a node whose underlay MTU is
    /// 1500: 50 bytes less for VXLAN, and 60 more for an encrypted
    /// network's tunnel. Each node takes the same from its own underlay
    /// MTU.
    #[serde(default)]
    pub mtu: u16,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The usual Ethernet MTU, which [`NetworkView::mtu`] assumes.
const ETHERNET_MTU: u16 = 1500;

impl NetworkView {
    fn of(n: &Network) -> NetworkView {
        NetworkView {
            id: n.id.clone(),
            name: n.name.clone(),
            driver: n.driver.clone(),
            scope: "swarm".into(),
            subnet: n.subnet,
            gateway: n.gateway,
            vni: n.vni,
            attachable: n.attachable,
            ingress: n.ingress,
            options: n
                .encrypted
                .then(|| ("encrypted".to_owned(), String::new()))
                .into_iter()
                .collect(),
            mtu: crate::agent::tables::network(n).mtu_or(ETHERNET_MTU),
            labels: n.labels.clone(),
        }
    }
}

/// The routing mesh's network, made by `swarm init` as Swarm does.
pub(super) fn ingress_spec() -> Result<NetworkSpec, SwarmError> {
    Ok(NetworkSpec {
        id: NetworkId::generate()?,
        name: "ingress".into(),
        subnet: None,
        vni: None,
        attachable: false,
        ingress: true,
        encrypted: false,
        labels: BTreeMap::new(),
    })
}

/// Checks `network create` options and makes the spec, with a new id.
pub(super) fn spec_of(o: NetworkOptions) -> Result<NetworkSpec, SwarmError> {
    if let Some(d) = o.driver.as_deref().filter(|d| *d != "overlay") {
        return Err(SwarmError::Refused(format!(
            "network driver `{d}` is not available; shoal makes `overlay` networks"
        )));
    }
    let mut encrypted = false;
    for opt in &o.options {
        match opt.as_str() {
            "encrypted" | "encrypted=true" => encrypted = true,
            other => {
                return Err(SwarmError::Refused(format!(
                    "network option `{other}` is unknown; the only option is `encrypted`"
                )));
            }
        }
    }
    Ok(NetworkSpec {
        id: NetworkId::generate()?,
        name: o.name,
        subnet: o.subnet,
        vni: None,
        attachable: o.attachable,
        ingress: false,
        encrypted,
        labels: o.labels,
    })
}

/// A network by id, name or unique id prefix.
fn find<'a>(state: &'a ClusterState, key: &str) -> Result<&'a Network, SwarmError> {
    find_by_key(
        state.networks().values(),
        key,
        "network",
        |n| n.id.as_str(),
        |n| n.name.as_str(),
    )
    .map_err(SwarmError::Refused)
}

impl Member {
    /// `network create`.
    pub(super) async fn create_network(
        &self,
        o: NetworkOptions,
    ) -> Result<NetworkView, SwarmError> {
        let spec = spec_of(o)?;
        let id = spec.id.clone();
        self.write(Command::CreateNetwork(spec)).await?;
        let state = self.read().await?;
        let n = state
            .network(&id)
            .ok_or_else(|| SwarmError::Refused("the new network vanished".into()))?;
        Ok(NetworkView::of(n))
    }

    /// `network ls`.
    pub(super) async fn networks(&self) -> Result<Vec<NetworkView>, SwarmError> {
        let state = self.read().await?;
        let mut v: Vec<NetworkView> = state.networks().values().map(NetworkView::of).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// `network inspect`.
    pub(super) async fn network(&self, key: &str) -> Result<NetworkView, SwarmError> {
        let state = self.read().await?;
        find(&state, key).map(NetworkView::of)
    }

    /// `network rm`.
    pub(super) async fn remove_network(&self, key: &str) -> Result<(), SwarmError> {
        let state = self.read().await?;
        let n = find(&state, key)?;
        if n.ingress {
            return Err(SwarmError::Refused(
                "the `ingress` network carries the routing mesh and cannot be removed".into(),
            ));
        }
        self.write(Command::RemoveNetwork { id: n.id.clone() })
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(opts: &[&str]) -> NetworkOptions {
        NetworkOptions {
            name: "secret".into(),
            options: opts.iter().map(|o| o.to_string()).collect(),
            ..NetworkOptions::default()
        }
    }

    #[test]
    fn an_encrypted_network_is_made_and_shown_as_docker_shows_it() {
        for opt in ["encrypted", "encrypted=true"] {
            let spec = spec_of(options(&[opt])).expect("accepted");
            assert!(spec.encrypted, "{opt}");
        }
        let mut state = ClusterState::new();
        let spec = spec_of(options(&["encrypted"])).unwrap();
        let id = spec.id.clone();
        state.apply(Command::CreateNetwork(spec)).unwrap();
        let view = NetworkView::of(state.network(&id).unwrap());
        assert_eq!(
            view.options,
            BTreeMap::from([("encrypted".into(), "".into())])
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["options"], serde_json::json!({ "encrypted": "" }));
        // VXLAN's 50 bytes and the tunnel's 60.
        assert_eq!(view.mtu, 1390);

        let mut plain = options(&[]);
        plain.name = "plain".into();
        let spec = spec_of(plain).unwrap();
        let id = spec.id.clone();
        state.apply(Command::CreateNetwork(spec)).unwrap();
        let view = NetworkView::of(state.network(&id).unwrap());
        assert!(view.options.is_empty());
        assert_eq!(view.mtu, 1450);
    }

    #[test]
    fn unknown_options_and_drivers_are_refused() {
        let err = spec_of(options(&["mtu=9000"])).unwrap_err().to_string();
        assert!(err.contains("the only option is `encrypted`"), "{err}");
        let mut o = options(&[]);
        o.driver = Some("bridge".into());
        assert!(spec_of(o).is_err());
    }
}
