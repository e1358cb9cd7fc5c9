//! Service load balancing: which backend a connection to a VIP goes to.
//! Sans-IO and pure, shared by both engines.
//!
//! A service's backends enter as a [`BackendSet`] (built when the tables
//! change: it holds the Maglev table over the active backends); each packet
//! from a client enters [`select`] with its [`FlowKey`] and the clock, and the
//! chosen backend leaves as a [`Selection`]. The [`conntrack::Conntrack`]
//! passed along remembers the choice, so:
//!
//! - a flow keeps its backend while that backend is listed, active or
//!   draining;
//! - new flows go only to active backends, by Maglev over the flow hash, so
//!   a backend change moves only about `1/N` of new flows;
//! - a flow whose backend is gone (unlisted or down) is re-picked among the
//!   active backends and reported as [`Selection::Repicked`]. For TCP the new
//!   backend answers the mid-stream segment with a RST, so the flow ends
//!   promptly rather than hanging; engines that want to reset at once call
//!   [`conntrack::Conntrack::remove_backend`] when they apply the tables.
//!
//! On top of that sit the two conversations the engines carry out, pure
//! state machines with an explicit clock: [`vip`] (a task to a service VIP)
//! and [`mesh`] (a client outside the cluster to a published port), kept in
//! [`shards`] by client, and translating frames through [`nat`].
//!
//! Cross-node contract: a backend's Maglev name is its IPv4 address's four
//! octets in network order, and the flow hash is [`hash::flow_hash`] with the
//! set's seed, so every node and the eBPF side pick the same backend.

pub mod conntrack;
pub mod hash;
pub mod maglev;
pub mod mesh;
pub mod nat;
pub mod path;
pub mod shards;
pub mod vip;

use std::net::Ipv4Addr;
use std::sync::Arc;

use thiserror::Error;

use self::conntrack::{Conntrack, Direction};
use self::maglev::{Maglev, MaglevBackend, MaglevError};
use crate::tables::{self, EndpointState};
use crate::wire::flow::{FlowKey, Protocol, TcpFlags};

/// One backend of a service, as the load balancer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbBackend {
    pub ip: Ipv4Addr,
    pub weight: u32,
    pub state: EndpointState,
}

impl From<&tables::Backend> for LbBackend {
    fn from(b: &tables::Backend) -> Self {
        LbBackend {
            ip: b.ip,
            weight: b.weight,
            state: b.state,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LbError {
    #[error("backend {0} is listed twice; list each backend once")]
    DuplicateBackend(Ipv4Addr),
    #[error(transparent)]
    Maglev(#[from] MaglevError),
}

/// A service's backends with the Maglev table over its active ones.
#[derive(Debug, Clone)]
pub struct BackendSet {
    backends: Vec<LbBackend>,
    /// `(ip, index in backends)`, sorted by ip, for the per-packet check
    /// that a flow's backend is still listed.
    by_ip: Vec<(Ipv4Addr, u32)>,
    /// Shared by the sets that a table update carries over unchanged.
    maglev: Arc<Maglev>,
    flow_seed: u64,
}

impl BackendSet {
    /// Builds the set; `table_size` is the Maglev table size (prime, e.g.
    /// [`maglev::DEFAULT_TABLE_SIZE`]) and `flow_seed` the seed of the flow
    /// hash, the same on every node.
    pub fn new(
        backends: Vec<LbBackend>,
        table_size: u32,
        flow_seed: u64,
    ) -> Result<BackendSet, LbError> {
        let mut by_ip: Vec<(Ipv4Addr, u32)> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.ip, i as u32))
            .collect();
        by_ip.sort_unstable();
        if let Some(pair) = by_ip.windows(2).find(|p| p[0].0 == p[1].0) {
            return Err(LbError::DuplicateBackend(pair[0].0));
        }
        // Non-active backends keep their index but weigh nothing, so they
        // take no slots and the table equals the one without them.
        let weighted: Vec<MaglevBackend> = backends
            .iter()
            .map(|b| {
                let weight = if b.state.is_active() { b.weight } else { 0 };
                MaglevBackend::new(b.ip.octets(), weight)
            })
            .collect();
        let maglev = Arc::new(Maglev::new(&weighted, table_size)?);
        Ok(BackendSet {
            backends,
            by_ip,
            maglev,
            flow_seed,
        })
    }

    /// [`BackendSet::new`], or a copy of `previous` (sharing its Maglev
    /// table) when it was built from the same backends, size and seed: a
    /// table update rebuilds only the tables whose backends changed.
    pub fn new_or_kept(
        backends: Vec<LbBackend>,
        table_size: u32,
        flow_seed: u64,
        previous: Option<&BackendSet>,
    ) -> Result<BackendSet, LbError> {
        match previous {
            Some(p)
                if p.backends == backends
                    && p.flow_seed == flow_seed
                    && p.maglev.size() == table_size =>
            {
                Ok(p.clone())
            }
            _ => BackendSet::new(backends, table_size, flow_seed),
        }
    }

    /// Whether `other` shares this set's Maglev table (it was kept).
    #[cfg(test)]
    pub fn shares_table_with(&self, other: &BackendSet) -> bool {
        Arc::ptr_eq(&self.maglev, &other.maglev)
    }

    pub fn backends(&self) -> &[LbBackend] {
        &self.backends
    }

    pub fn maglev(&self) -> &Maglev {
        &self.maglev
    }

    /// The listed backend with this address.
    pub fn get(&self, ip: Ipv4Addr) -> Option<&LbBackend> {
        let at = self.by_ip.binary_search_by_key(&ip, |&(ip, _)| ip).ok()?;
        self.backends.get(self.by_ip[at].1 as usize)
    }

    /// The active backend Maglev picks for a new flow.
    pub fn pick(&self, key: &FlowKey) -> Option<Ipv4Addr> {
        let h = hash::flow_hash(
            self.flow_seed,
            *key.src.ip(),
            *key.dst.ip(),
            key.proto.number(),
            key.src.port(),
            key.dst.port(),
        );
        let i = self.maglev.lookup(h)?;
        self.backends.get(i as usize).map(|b| b.ip)
    }
}

/// The backend for one client packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The flow's tracked backend, still listed (active or draining).
    Kept(Ipv4Addr),
    /// A new flow, tracked from now on.
    New(Ipv4Addr),
    /// The flow's backend `previous` is gone; it now goes to `backend`.
    Repicked {
        backend: Ipv4Addr,
        previous: Ipv4Addr,
    },
}

impl Selection {
    pub fn backend(self) -> Ipv4Addr {
        match self {
            Selection::Kept(b) | Selection::New(b) | Selection::Repicked { backend: b, .. } => b,
        }
    }
}

/// Picks the backend for a client-to-service packet of flow `key` carrying
/// TCP `flags` (ignored for UDP) at `now` (milliseconds), updating `ct`.
/// `None` when the flow has no live backend and no backend is active: the
/// engine drops the packet or answers ICMP unreachable.
///
/// Reply packets do not come here: the engine passes them to
/// [`Conntrack::observe`] with [`Direction::Reply`] on its reverse-NAT path.
pub fn select(
    ct: &mut Conntrack,
    set: &BackendSet,
    key: &FlowKey,
    flags: TcpFlags,
    now: u64,
) -> Option<Selection> {
    // A client reusing the ports of a connection that is closing or closed
    // opens a new one: it gets a fresh pick (and never a draining backend),
    // as Linux conntrack reopens a TIME_WAIT entry on a new SYN.
    let opening = key.proto == Protocol::Tcp && flags.is_opening();
    if opening && ct.lookup(key, now).is_some_and(|e| e.state.is_closing()) {
        ct.remove(key);
    }
    let previous = match ct.observe(key, Direction::Original, flags, now) {
        Some(entry) => {
            let backend = entry.backend;
            match set.get(backend) {
                Some(b) if b.state != EndpointState::Down => {
                    return Some(Selection::Kept(backend));
                }
                _ => Some(backend),
            }
        }
        None => None,
    };
    let Some(backend) = set.pick(key) else {
        if previous.is_some() {
            ct.remove(key);
        }
        return None;
    };
    ct.insert(*key, backend, flags, now);
    Some(match previous {
        Some(previous) => Selection::Repicked { backend, previous },
        None => Selection::New(backend),
    })
}

#[cfg(test)]
mod tests;
