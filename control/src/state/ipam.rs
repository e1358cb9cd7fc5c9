//! Address allocation inside one overlay network.
//!
//! Virtual IPs are taken from the top of the subnet downward and task
//! addresses from the bottom upward. Each kind stays contiguous, so many
//! services with few tasks (each holding a VIP) do not fragment the range
//! tasks need, and a full network is one clear error instead of Swarm's
//! silent exhaustion (moby/moby#43052). The network address, the gateway
//! (first host address) and the broadcast address are never handed out.
//! Allocation always picks the lowest (or highest) free address, so every
//! manager applying the same commands computes the same addresses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The longest prefix a network may have: a /30 still has the network,
/// gateway and broadcast addresses plus one usable address.
pub const MAX_PREFIX_LEN: u8 = 30;

/// The addresses in use on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    subnet: Ipv4Net,
    used: BTreeSet<Ipv4Addr>,
}

impl Ipam {
    /// An empty allocator for `subnet`, or `None` when the subnet is too
    /// small (prefix longer than [`MAX_PREFIX_LEN`]).
    pub fn new(subnet: Ipv4Net) -> Option<Ipam> {
        (subnet.prefix_len() <= MAX_PREFIX_LEN).then(|| Ipam {
            subnet: subnet.trunc(),
            used: BTreeSet::new(),
        })
    }

    /// The subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The gateway: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()).saturating_add(1))
    }

    /// The range allocations come from, as integers: after the gateway,
    /// before the broadcast address.
    fn range(&self) -> (u32, u32) {
        let low = u32::from(self.subnet.network()).saturating_add(2);
        let high = u32::from(self.subnet.broadcast()).saturating_sub(1);
        (low, high)
    }

    /// The lowest free address, for a task; `None` when the network is full.
    pub fn next_task_address(&self) -> Option<Ipv4Addr> {
        let (low, high) = self.range();
        let mut candidate = low;
        for used in self.used.range(Ipv4Addr::from(low)..=Ipv4Addr::from(high)) {
            if u32::from(*used) != candidate {
                break;
            }
            candidate = candidate.checked_add(1)?;
        }
        (candidate <= high).then(|| Ipv4Addr::from(candidate))
    }

    /// The highest free address, for a VIP; `None` when the network is full.
    pub fn next_vip(&self) -> Option<Ipv4Addr> {
        let (low, high) = self.range();
        let mut candidate = high;
        for used in self
            .used
            .range(Ipv4Addr::from(low)..=Ipv4Addr::from(high))
            .rev()
        {
            if u32::from(*used) != candidate {
                break;
            }
            candidate = candidate.checked_sub(1)?;
        }
        (candidate >= low).then(|| Ipv4Addr::from(candidate))
    }

    /// Marks `addr` as used; false if it was already used or is not
    /// allocatable on this network.
    pub fn claim(&mut self, addr: Ipv4Addr) -> bool {
        let (low, high) = self.range();
        (low..=high).contains(&u32::from(addr)) && self.used.insert(addr)
    }

    /// Frees `addr`; false if it was not in use.
    pub fn release(&mut self, addr: Ipv4Addr) -> bool {
        self.used.remove(&addr)
    }

    /// Whether `addr` is in use.
    pub fn is_used(&self, addr: Ipv4Addr) -> bool {
        self.used.contains(&addr)
    }

    /// The addresses in use, lowest first.
    pub fn used(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.used.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(net: &str) -> Ipam {
        Ipam::new(net.parse().unwrap()).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn tasks_grow_up_vips_grow_down() {
        let mut a = ipam("10.0.1.0/24");
        assert_eq!(a.gateway(), ip("10.0.1.1"));
        assert_eq!(a.next_task_address(), Some(ip("10.0.1.2")));
        assert_eq!(a.next_vip(), Some(ip("10.0.1.254")));
        assert!(a.claim(ip("10.0.1.2")));
        assert!(a.claim(ip("10.0.1.254")));
        assert_eq!(a.next_task_address(), Some(ip("10.0.1.3")));
        assert_eq!(a.next_vip(), Some(ip("10.0.1.253")));
    }

    #[test]
    fn reuses_the_lowest_freed_address() {
        let mut a = ipam("10.0.1.0/24");
        for _ in 0..3 {
            let next = a.next_task_address().unwrap();
            assert!(a.claim(next));
        }
        assert!(a.release(ip("10.0.1.3")));
        assert_eq!(a.next_task_address(), Some(ip("10.0.1.3")));
        assert!(!a.release(ip("10.0.1.3")));
    }

    #[test]
    fn never_hands_out_network_gateway_or_broadcast() {
        let mut a = ipam("10.0.1.0/30");
        assert!(!a.claim(ip("10.0.1.0")));
        assert!(!a.claim(ip("10.0.1.1")));
        assert!(!a.claim(ip("10.0.1.3")));
        assert!(!a.claim(ip("10.0.2.2")));
        assert_eq!(a.next_vip(), Some(ip("10.0.1.2")));
        assert!(a.claim(ip("10.0.1.2")));
        assert!(!a.claim(ip("10.0.1.2")));
        assert_eq!(a.next_task_address(), None);
        assert_eq!(a.next_vip(), None);
    }

    #[test]
    fn refuses_tiny_subnets() {
        assert!(Ipam::new("10.0.0.0/31".parse().unwrap()).is_none());
        assert!(Ipam::new("10.0.0.0/32".parse().unwrap()).is_none());
    }

    #[test]
    fn fills_a_whole_network_without_repeats() {
        let mut a = ipam("10.9.0.0/28");
        let mut got = BTreeSet::new();
        for i in 0.. {
            let next = if i % 2 == 0 {
                a.next_task_address()
            } else {
                a.next_vip()
            };
            let Some(next) = next else { break };
            assert!(a.claim(next));
            assert!(got.insert(next));
        }
        assert_eq!(got.len(), 16 - 3);
    }
}
