//! What shoal's two engines, the eBPF programs and the userspace one, must
//! agree on, defined once (`no_std`, nothing allocated):
//!
//! - the map ABI between the programs and the user-space loader: every map
//!   key and value, `#[repr(C)]`. Padding is spelled out so no byte of a
//!   key or value is undefined (the kernel hashes and copies whole keys and
//!   values). Addresses are kept as `[u8; 4]` in network order, so neither
//!   side converts them. With the `user` feature every type is an
//!   `aya::Pod`;
//! - the load balancer's flow hash ([`hash`]) and its seeds, the
//!   connection-tracking state machine and its timeouts ([`conntrack`]),
//!   the Internet checksum and its RFC 1624 updates ([`checksum`]), a
//!   flow's protocol and TCP flags ([`flow`]) and the drop reasons
//!   ([`DropReason`]). The data plane re-exports them; their known-answer
//!   tests here cover both engines.
#![no_std]

pub mod checksum;
pub mod conntrack;
pub mod flow;
pub mod hash;

/// Map names, as the programs declare them and the loader looks them up.
pub mod map {
    /// [`crate::Config`] at index 0 of an array.
    pub const CONFIG: &str = "SHOAL_CONFIG";
    /// [`crate::Ipv4Key`] -> [`crate::OwnedAddr`]: addresses whose ARP
    /// requests the underlay program answers.
    pub const OWNED: &str = "SHOAL_OWNED";
    /// VNI -> [`crate::Segment`]: the overlay networks this node serves.
    pub const SEGMENTS: &str = "SHOAL_SEGMENTS";
    /// [`crate::FdbKey`] -> [`crate::FdbEntry`]: where each overlay address
    /// lives.
    pub const FDB: &str = "SHOAL_FDB";
    /// Host-side ifindex (`u32`) -> [`crate::Port`]: the task interfaces
    /// on this node.
    pub const PORTS: &str = "SHOAL_PORTS";
    /// [`crate::Counters`] per program ([`crate::counters`]) in a per-CPU
    /// array.
    pub const COUNTERS: &str = "SHOAL_COUNTERS";
    /// [`crate::VipKey`] -> [`crate::VipEntry`]: the service VIPs on this
    /// node's networks and the Maglev table of each.
    pub const VIPS: &str = "SHOAL_VIPS";
    /// [`crate::BackendKey`] -> [`crate::BackendEntry`]: the backends each
    /// table may send to (active or draining), for the check that a
    /// tracked flow's backend is still listed.
    pub const BACKENDS: &str = "SHOAL_BACKENDS";
    /// One array of [`crate::MAGLEV_SLOTS`] backend addresses (`[u8; 4]`)
    /// per table, flat: table `t`, slot `s` at `t * MAGLEV_SLOTS + s`.
    pub const MAGLEV: &str = "SHOAL_MAGLEV";
    /// [`crate::CtKey`] -> [`crate::CtEntry`], LRU: a task's flow to a
    /// VIP (client -> VIP) and the backend it goes to.
    pub const CT: &str = "SHOAL_CT";
    /// [`crate::CtKey`] -> [`crate::CtEntry`], LRU: the backend's reply
    /// flow (backend -> client) and the VIP it answers for.
    pub const CT_REPLY: &str = "SHOAL_CT_REPLY";
    /// [`crate::Ipv4Key`] -> `u8` ([`crate::IS_NODE`]): the underlay
    /// addresses of the nodes in the tables, the only senders whose VXLAN
    /// the underlay program takes.
    pub const NODES: &str = "SHOAL_NODES";
}

/// Indices of [`map::COUNTERS`]: each program counts in its own slot.
pub mod counters {
    /// The XDP program on the underlay.
    pub const UNDERLAY: u32 = 0;
    /// The tc program on task interfaces.
    pub const TASK: u32 = 1;
    /// Number of slots.
    pub const SLOTS: u32 = 2;
}

/// Program names in the object.
pub mod program {
    /// XDP on the node's underlay interface.
    pub const XDP_UNDERLAY: &str = "shoal_xdp_underlay";
    /// tc ingress on the node side of each task interface.
    pub const TC_TASK: &str = "shoal_tc_task";
}

/// Seed (SipHash `k0`) of the flow hash that picks a flow's backend
/// (`lb::hash::flow_hash` in the data plane). Every node and both engines
/// use this value, so a flow maps to the same backend everywhere. It is the
/// same in every cluster: clients that know it can compute which backend a
/// 5-tuple lands on (as with any unkeyed hash, e.g. Katran's jhash).
pub const LB_FLOW_SEED: u64 = 0x7368_6f61_6c5f_6c62;

/// The flow hash's second SipHash key word: ASCII "shoal-lb".
pub const LB_HASH_K1: u64 = 0x7368_6f61_6c2d_6c62;

/// Capacity of the maps keyed by address.
pub const MAX_ENTRIES: u32 = 65_536;
/// Capacity of the segment map.
pub const MAX_SEGMENTS: u32 = 4_096;
/// Capacity of the node map: nodes of one cluster.
pub const MAX_NODES: u32 = 16_384;
/// The value of every [`map::NODES`] entry: the key is a node (a hash map
/// needs a value; only the key's presence counts).
pub const IS_NODE: u8 = 1;

/// Slots of one Maglev table (a prime; the data plane's
/// `lb::maglev::DEFAULT_TABLE_SIZE`).
pub const MAGLEV_SLOTS: u32 = 65_537;
/// Maglev tables the eBPF engine holds: one per VIP on this node's networks.
/// The array costs `MAX_VIP_TABLES * MAGLEV_SLOTS * 4` bytes (64 MiB).
pub const MAX_VIP_TABLES: u32 = 256;
/// Capacity of the backend map: backends of every table together.
pub const MAX_BACKENDS: u32 = 65_536;
/// Capacity of each conntrack map. They are LRU maps: at capacity the
/// kernel evicts the least recently used flow of the CPU's list, whatever
/// its state, where the userspace tracker evicts the flow nearest its
/// timeout.
pub const MAX_FLOWS: u32 = 262_144;
/// [`VipEntry::table`] of the entry (protocol 0, port 0) every VIP has:
/// the address is a VIP, but not for this protocol or port.
pub const NO_TABLE: u32 = u32::MAX;

/// Node-wide settings of the underlay program.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    /// The node's underlay address: VXLAN is decapsulated only when sent to it.
    pub underlay: [u8; 4],
    /// UDP port of VXLAN, host byte order. 0 turns decapsulation off.
    pub vxlan_port: u16,
    /// 1 when some segment has a service VIP: without one the programs
    /// skip the VIP and conntrack lookups (as the userspace engine's
    /// `Fdb::has_vips`).
    pub has_vips: u8,
    pub _pad: u8,
    /// The underlay interface: where encapsulated frames leave.
    pub underlay_ifindex: u32,
}

/// An IPv4 address as a map key.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Key {
    pub addr: [u8; 4],
}

/// An address shoal answers ARP requests for, with the MAC it answers.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnedAddr {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// One overlay network: a VXLAN segment, keyed by VNI (`u32`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// Network address of the subnet.
    pub subnet: [u8; 4],
    /// The gateway address tasks route through (answered by ARP, source of
    /// ICMP errors).
    pub gateway: [u8; 4],
    pub gateway_mac: [u8; 6],
    /// MTU of the overlay, host byte order.
    pub mtu: u16,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
    pub _pad: [u8; 3],
}

impl Segment {
    /// Whether `addr` is inside the segment's subnet.
    pub fn contains(&self, addr: [u8; 4]) -> bool {
        let len = u32::from(self.prefix_len.min(32));
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from_be_bytes(addr) & mask == u32::from_be_bytes(self.subnet) & mask
    }
}

/// Key of the forwarding database: an overlay address on one segment, as
/// the userspace VTEP keys its stations.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbKey {
    /// VNI, host byte order.
    pub vni: u32,
    pub ip: [u8; 4],
}

/// Where an overlay address lives.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdbEntry {
    /// Underlay address of the node holding the address.
    pub node: [u8; 4],
    /// The task interface on this node, or 0 when the address lives on
    /// another node.
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// A task interface on this node, keyed by the ifindex of its node-side end.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Port {
    /// VNI of the task's network, host byte order.
    pub vni: u32,
    /// The task's address.
    pub ip: [u8; 4],
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

impl FdbEntry {
    /// Whether the address lives on this node.
    pub fn is_local(&self) -> bool {
        self.ifindex != 0
    }
}

/// A service VIP on one segment for one protocol and port, as a task
/// addresses it. `port` 0 stands for every port (a service that answers on
/// all of them); the programs look up the exact port first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKey {
    /// VNI, host byte order.
    pub vni: u32,
    pub vip: [u8; 4],
    /// Destination port, host byte order; 0 for every port.
    pub port: u16,
    /// IP protocol number (6, 17).
    pub proto: u8,
    pub _pad: u8,
}

impl VipKey {
    /// The entry every VIP has (protocol 0, port 0; [`NO_TABLE`]): the
    /// address is a VIP of segment `vni`.
    pub const fn address(vni: u32, vip: [u8; 4]) -> VipKey {
        VipKey {
            vni,
            vip,
            port: 0,
            proto: 0,
            _pad: 0,
        }
    }
}

/// What a VIP balances over.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VipEntry {
    /// Its Maglev table in [`map::MAGLEV`], below [`MAX_VIP_TABLES`].
    pub table: u32,
}

/// A backend of one table.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendKey {
    pub table: u32,
    pub addr: [u8; 4],
}

/// A backend's state: draining backends keep their flows and take no new
/// ones (they hold no Maglev slot).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendEntry {
    /// [`BACKEND_ACTIVE`] or [`BACKEND_DRAINING`].
    pub state: u32,
}

/// [`BackendEntry::state`] of a backend that takes new flows.
pub const BACKEND_ACTIVE: u32 = 1;
/// [`BackendEntry::state`] of one that only keeps its flows.
pub const BACKEND_DRAINING: u32 = 2;

/// A flow in the conntrack maps: addresses as on the wire, ports in host
/// byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CtKey {
    /// VNI of the segment, host byte order.
    pub vni: u32,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl CtKey {
    /// The same flow seen from the other end.
    pub const fn reversed(&self) -> CtKey {
        CtKey {
            vni: self.vni,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// What is known of a tracked flow.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// When a packet of the flow was last seen, in milliseconds of the
    /// kernel's monotonic clock (`bpf_ktime_get_ns`).
    pub last_seen_ms: u64,
    /// The backend (client flows) or the VIP (reply flows).
    pub addr: [u8; 4],
    /// [`conntrack::FlowState::to_u8`].
    pub state: u8,
    pub _pad: [u8; 3],
}

impl CtEntry {
    /// A flow going to `addr` in `state`, seen at `now_ms`.
    pub const fn new(addr: [u8; 4], state: conntrack::FlowState, now_ms: u64) -> CtEntry {
        CtEntry {
            last_seen_ms: now_ms,
            addr,
            state: state.to_u8(),
            _pad: [0; 3],
        }
    }

    /// The flow's state if it has not timed out by `now_ms`; `None` when it
    /// has (or its state byte is none of ours).
    pub fn live_state(&self, now_ms: u64) -> Option<conntrack::FlowState> {
        let state = conntrack::FlowState::from_u8(self.state)?;
        (now_ms <= self.last_seen_ms.saturating_add(state.timeout_ms())).then_some(state)
    }
}

/// Why a packet was dropped, in either engine: the userspace engine and
/// the programs count every drop under one of these, by the same label.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A datagram on the VXLAN port that is no valid VXLAN (short, bad flags).
    MalformedVxlan = 0,
    /// A VXLAN datagram for a VNI this node does not serve.
    UnknownVni = 1,
    /// An inner frame too short or malformed to forward.
    MalformedFrame = 2,
    /// An IPv4 destination on the network that the tables do not know.
    UnknownDestination = 3,
    /// A frame from the underlay for an address that does not live here.
    NotLocal = 4,
    /// A destination outside the overlay network that no routing-mesh flow
    /// knows (no route).
    NoRoute = 5,
    /// An ethertype the overlay does not carry (IPv6, LLDP, ...).
    UnsupportedProtocol = 6,
    /// A frame larger than the overlay MTU that may not be fragmented
    /// further (a "fragmentation needed" answer went back for DF packets).
    TooBig = 7,
    /// A TSO/USO super-frame the engine could not segment.
    BadOffload = 8,
    /// Writing to a task interface or the underlay failed.
    IoError = 9,
    /// Traffic to a VIP on a port or protocol the service does not publish,
    /// or that is not TCP/UDP.
    NoServicePort = 10,
    /// A service with no active backend.
    NoBackend = 11,
    /// A VXLAN datagram from an underlay address that is no node in the
    /// tables: nobody else may put frames on an overlay network.
    UnknownPeer = 12,
    /// A plain VXLAN datagram for an encrypted network: its frames come
    /// only through the tunnel.
    Unsealed = 13,
    /// A datagram on the tunnel port that WireGuard refused (not
    /// authentic, replayed, no session), or encrypted traffic for a node
    /// without a tunnel key.
    Tunnel = 14,
}

/// Number of [`DropReason`]s: the length of [`Counters::drops`].
pub const DROP_REASONS: usize = 15;

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; DROP_REASONS] = [
        DropReason::MalformedVxlan,
        DropReason::UnknownVni,
        DropReason::MalformedFrame,
        DropReason::UnknownDestination,
        DropReason::NotLocal,
        DropReason::NoRoute,
        DropReason::UnsupportedProtocol,
        DropReason::TooBig,
        DropReason::BadOffload,
        DropReason::IoError,
        DropReason::NoServicePort,
        DropReason::NoBackend,
        DropReason::UnknownPeer,
        DropReason::Unsealed,
        DropReason::Tunnel,
    ];

    /// The reason's label in metrics, as the userspace engine's.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::MalformedVxlan => "malformed_vxlan",
            DropReason::UnknownVni => "unknown_vni",
            DropReason::MalformedFrame => "malformed_frame",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::NotLocal => "not_local",
            DropReason::NoRoute => "no_route",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::TooBig => "too_big",
            DropReason::BadOffload => "bad_offload",
            DropReason::IoError => "io_error",
            DropReason::NoServicePort => "no_service_port",
            DropReason::NoBackend => "no_backend",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Unsealed => "unsealed",
            DropReason::Tunnel => "tunnel",
        }
    }

    /// Index into [`Counters::drops`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// One CPU's counters of a program. Each CPU writes only its own copy, so
/// plain adds suffice; user space sums the copies.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen (frame length on entry).
    pub bytes: u64,
    /// Packets handed to the kernel's stack (XDP_PASS).
    pub passed: u64,
    /// Packets rewritten into an answer and sent back the way they came.
    pub answered: u64,
    /// Packets redirected to another interface (a task's, the underlay).
    pub redirected: u64,
    /// ARP requests answered from the tables.
    pub arp_replies: u64,
    /// ICMP errors originated (fragmentation needed).
    pub icmp_errors: u64,
    /// VXLAN datagrams decapsulated (underlay) or encapsulated (task).
    pub vxlan_packets: u64,
    /// Bytes of those datagrams' VXLAN payload (the inner frames).
    pub vxlan_bytes: u64,
    /// Dropped packets by [`DropReason::index`].
    pub drops: [u64; DROP_REASONS],
}

impl Counters {
    /// The sum of `self` and `other`, field by field.
    pub fn add(&self, other: &Counters) -> Counters {
        self.zip(other, u64::wrapping_add)
    }

    /// What was counted since `earlier`, field by field.
    pub fn since(&self, earlier: &Counters) -> Counters {
        self.zip(earlier, u64::wrapping_sub)
    }

    fn zip(&self, other: &Counters, f: fn(u64, u64) -> u64) -> Counters {
        let mut drops = [0; DROP_REASONS];
        for (i, d) in drops.iter_mut().enumerate() {
            *d = f(self.drops[i], other.drops[i]);
        }
        Counters {
            packets: f(self.packets, other.packets),
            bytes: f(self.bytes, other.bytes),
            passed: f(self.passed, other.passed),
            answered: f(self.answered, other.answered),
            redirected: f(self.redirected, other.redirected),
            arp_replies: f(self.arp_replies, other.arp_replies),
            icmp_errors: f(self.icmp_errors, other.icmp_errors),
            vxlan_packets: f(self.vxlan_packets, other.vxlan_packets),
            vxlan_bytes: f(self.vxlan_bytes, other.vxlan_bytes),
            drops,
        }
    }
}

#[cfg(feature = "user")]
#[allow(unsafe_code)]
mod pod {
    use super::{
        BackendEntry, BackendKey, Config, Counters, CtEntry, CtKey, FdbEntry, FdbKey, Ipv4Key,
        OwnedAddr, Port, Segment, VipEntry, VipKey,
    };

    // SAFETY: repr(C), a byte array, a u16, two bytes and a 4-aligned u32
    // laid out without gaps (4 + 2 + 1 + 1 + 4 bytes); every bit pattern
    // is valid.
    unsafe impl aya::Pod for Config {}
    // SAFETY: repr(C) over one byte array; every bit pattern is valid.
    unsafe impl aya::Pod for Ipv4Key {}
    // SAFETY: repr(C), 6 + 2 bytes of byte arrays; every bit pattern is valid.
    unsafe impl aya::Pod for OwnedAddr {}
    // SAFETY: repr(C), 4 + 4 + 6 bytes, a 2-aligned u16, then 1 + 3 bytes:
    // no implicit padding; every bit pattern is valid.
    unsafe impl aya::Pod for Segment {}
    // SAFETY: repr(C), a u32 then 4 + 6 + 2 bytes, no implicit padding;
    // every bit pattern is valid.
    unsafe impl aya::Pod for Port {}
    // SAFETY: repr(C), a u32 then 4 bytes, no implicit padding; every bit
    // pattern is valid.
    unsafe impl aya::Pod for FdbKey {}
    // SAFETY: repr(C), 4 + 4 + 6 + 2 bytes with the u32 4-aligned, no
    // implicit padding; every bit pattern is valid.
    unsafe impl aya::Pod for FdbEntry {}
    // SAFETY: repr(C), only u64 fields and a u64 array, no implicit padding;
    // every bit pattern is valid.
    unsafe impl aya::Pod for Counters {}
    // SAFETY: repr(C), a u32, 4 bytes, a u16 then 1 + 1 bytes: 12 bytes
    // without implicit padding; every bit pattern is valid.
    unsafe impl aya::Pod for VipKey {}
    // SAFETY: repr(C) over one u32; every bit pattern is valid.
    unsafe impl aya::Pod for VipEntry {}
    // SAFETY: repr(C), a u32 then 4 bytes, no implicit padding; every bit
    // pattern is valid.
    unsafe impl aya::Pod for BackendKey {}
    // SAFETY: repr(C) over one u32; every bit pattern is valid.
    unsafe impl aya::Pod for BackendEntry {}
    // SAFETY: repr(C), a u32, 4 + 4 bytes, two u16 then 1 + 3 bytes: 20
    // bytes without implicit padding; every bit pattern is valid.
    unsafe impl aya::Pod for CtKey {}
    // SAFETY: repr(C), a u64 then 4 + 1 + 3 bytes: 16 bytes without
    // implicit padding; every bit pattern is valid (an unknown state byte
    // reads as no state).
    unsafe impl aya::Pod for CtEntry {}
}

/// Sizes checked at compile time: a change here is an ABI change for both
/// sides, and implicit padding would leave bytes undefined.
const _: () = {
    assert!(core::mem::size_of::<Config>() == 12);
    assert!(core::mem::size_of::<Ipv4Key>() == 4);
    assert!(core::mem::size_of::<OwnedAddr>() == 8);
    assert!(core::mem::size_of::<Segment>() == 20);
    assert!(core::mem::size_of::<Port>() == 16);
    assert!(core::mem::size_of::<FdbKey>() == 8);
    assert!(core::mem::size_of::<FdbEntry>() == 16);
    assert!(core::mem::size_of::<Counters>() == 8 * (9 + DROP_REASONS));
    assert!(core::mem::size_of::<VipKey>() == 12);
    assert!(core::mem::size_of::<VipEntry>() == 4);
    assert!(core::mem::size_of::<BackendKey>() == 8);
    assert!(core::mem::size_of::<BackendEntry>() == 4);
    assert!(core::mem::size_of::<CtKey>() == 20);
    assert!(core::mem::size_of::<CtEntry>() == 16);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_contains_by_prefix() {
        let s = Segment {
            subnet: [10, 0, 1, 0],
            prefix_len: 24,
            ..Segment::default()
        };
        assert!(s.contains([10, 0, 1, 200]));
        assert!(!s.contains([10, 0, 2, 1]));
        let all = Segment { prefix_len: 0, ..s };
        assert!(all.contains([192, 168, 0, 1]));
        let host = Segment {
            prefix_len: 32,
            subnet: [10, 0, 1, 7],
            ..Segment::default()
        };
        assert!(host.contains([10, 0, 1, 7]));
        assert!(!host.contains([10, 0, 1, 8]));
    }

    #[test]
    fn a_flow_lives_until_its_states_timeout() {
        use conntrack::FlowState;
        let e = CtEntry::new([10, 0, 0, 1], FlowState::UdpUnreplied, 1_000);
        assert_eq!(e.live_state(31_000), Some(FlowState::UdpUnreplied));
        assert_eq!(e.live_state(31_001), None);
        let bad = CtEntry { state: 0, ..e };
        assert_eq!(bad.live_state(1_000), None);
    }

    #[test]
    fn a_reversed_key_swaps_ends_and_comes_back() {
        let k = CtKey {
            vni: 7,
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 100],
            sport: 40_000,
            dport: 80,
            proto: 6,
            _pad: [0; 3],
        };
        let r = k.reversed();
        assert_eq!((r.src, r.dst, r.sport, r.dport), (k.dst, k.src, 80, 40_000));
        assert_eq!(r.reversed(), k);
    }

    #[test]
    fn drop_reasons_are_indexed_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn counters_add_field_by_field() {
        let mut a = Counters {
            packets: 1,
            bytes: 60,
            ..Counters::default()
        };
        a.drops[DropReason::UnknownVni.index()] = 2;
        let b = a.add(&a);
        assert_eq!(b.packets, 2);
        assert_eq!(b.bytes, 120);
        assert_eq!(b.drops[1], 4);
        assert_eq!(b.drops[0], 0);
    }
}
