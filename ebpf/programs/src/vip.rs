//! Service VIPs east-west, translated on the client's node as the
//! userspace engine does (`lb::vip::VipFlows`):
//!
//! - in tc on the task's interface, a task's packet to `VIP:port` gets its
//!   backend ([`balance`]: conntrack for a known flow, Maglev over the
//!   active backends for a new one) and its destination rewritten to the
//!   backend (DNAT); the caller then delivers it as any packet to that
//!   address;
//! - a backend's reply about to reach the client gets the VIP back as its
//!   source: in tc when the backend is on this node ([`unbalance`]), in
//!   XDP when it came from another node inside VXLAN ([`unbalance_xdp`]).
//!
//! The flow hash, the state machine and its timeouts are the userspace
//! engine's own code, from `shoal_ebpf_common`.
//!
//! Where this differs from the userspace tracker: the conntrack maps are
//! LRU maps, so at capacity the kernel evicts the least recently used flow
//! of a CPU's list, whatever its state (userspace evicts the flow nearest
//! its timeout); an idle flow's timeout is checked when its next packet
//! comes, and user space sweeps timed-out flows out at each scrape
//! (`engine/ebpf/loader.rs`).

use aya_ebpf::bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR};
use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use core::net::Ipv4Addr;

use aya_ebpf::programs::{TcContext, XdpContext};
use shoal_ebpf_common::checksum;
use shoal_ebpf_common::conntrack::{Direction, FlowState};
use shoal_ebpf_common::flow::{Protocol, TcpFlags};
use shoal_ebpf_common::hash::flow_hash;
use shoal_ebpf_common::{
    BACKEND_ACTIVE, BACKEND_DRAINING, BackendKey, CtEntry, CtKey, DropReason, LB_FLOW_SEED,
    MAGLEV_SLOTS, NO_TABLE, VipKey,
};

use crate::hdr::{self, ETH_LEN, IPPROTO_TCP, IPPROTO_UDP, Ipv4};
use crate::{BACKENDS, CT, CT_REPLY, MAGLEV, VIPS};

/// Offsets inside the IPv4 header.
const IP_CHECK: usize = 10;
const IP_SRC: usize = 12;
const IP_DST: usize = 16;
/// Offset of the TCP flags byte.
const TCP_FLAGS: usize = 13;

/// What became of a task's packet.
pub enum Balanced {
    /// Its destination is no VIP.
    NotVip,
    /// Rewritten for the backend at this address.
    To([u8; 4]),
    Drop(DropReason),
}

/// Balances the IPv4 packet `ip` (IHL `ihl`, bounds already checked) that a
/// task on segment `vni` sent, if it is for a VIP.
#[inline(always)]
pub fn balance(ctx: &TcContext, vni: u32, ip: &Ipv4, ihl: usize) -> Balanced {
    let vip = ip.dst;
    // SAFETY: a hash map value reference is valid for the program's run.
    if unsafe { VIPS.get(&VipKey::address(vni, vip)) }.is_none() {
        return Balanced::NotVip;
    }
    // Only a first (or only) fragment carries the ports, as in userspace.
    let Some(proto) = protocol(ip) else {
        return Balanced::Drop(DropReason::NoServicePort);
    };
    let l4 = ETH_LEN + (ihl & 0x3c);
    let Some((sport, dport, flags)) = ports(ctx, proto, l4) else {
        return Balanced::Drop(DropReason::MalformedFrame);
    };
    let mut key = VipKey {
        vni,
        vip,
        port: dport,
        proto: proto.number(),
        _pad: 0,
    };
    // SAFETY: as above.
    let table = match unsafe { VIPS.get(&key) } {
        Some(e) => e.table,
        None => {
            key.port = 0;
            // SAFETY: as above.
            match unsafe { VIPS.get(&key) } {
                Some(e) => e.table,
                None => return Balanced::Drop(DropReason::NoServicePort),
            }
        }
    };
    if table == NO_TABLE {
        return Balanced::Drop(DropReason::NoServicePort);
    }
    let flow = CtKey {
        vni,
        src: ip.src,
        dst: vip,
        sport,
        dport,
        proto: proto.number(),
        _pad: [0; 3],
    };
    let Some(backend) = select(table, &flow, proto, flags, now_ms()) else {
        return Balanced::Drop(DropReason::NoBackend);
    };
    if rewrite(ctx, ETH_LEN + IP_DST, l4, proto, ip.dst, backend).is_err() {
        return Balanced::Drop(DropReason::MalformedFrame);
    }
    Balanced::To(backend)
}

/// The backend of a client packet of `flow` to a VIP whose table is
/// `table`: `lb::select` and `VipFlows::balance` over the maps.
#[inline(always)]
fn select(table: u32, flow: &CtKey, proto: Protocol, flags: TcpFlags, now: u64) -> Option<[u8; 4]> {
    let opening = proto == Protocol::Tcp && flags.is_opening();
    let mut previous = None;
    // A new SYN on a closing tuple opens a new connection.
    if let Some((addr, state)) = live(&CT, flow, now)
        && !(opening && state.is_closing())
    {
        // SAFETY: as in `balance`.
        match unsafe { BACKENDS.get(&BackendKey { table, addr }) } {
            Some(b) if b.state == BACKEND_ACTIVE || b.state == BACKEND_DRAINING => {
                let next = state.next(flags, Direction::Original);
                track(&CT, flow, addr, next, now);
                // The reply entry too; re-made if the LRU evicted it or a
                // sweep took it, or replies would lose their VIP.
                let reply = reply_of(flow, addr);
                let reply_state = live(&CT_REPLY, &reply, now)
                    .map_or(next, |(_, s)| s.next(flags, Direction::Original));
                track(&CT_REPLY, &reply, flow.dst, reply_state, now);
                return Some(addr);
            }
            _ => previous = Some(addr),
        }
    }
    let hash = flow_hash(
        LB_FLOW_SEED,
        flow.src.into(),
        flow.dst.into(),
        flow.proto,
        flow.sport,
        flow.dport,
    );
    let slot = table.wrapping_mul(MAGLEV_SLOTS) + hash % MAGLEV_SLOTS;
    let backend = match MAGLEV.get(slot) {
        Some(addr) if *addr != [0; 4] => *addr,
        _ => {
            if previous.is_some() {
                let _ = CT.remove(flow);
            }
            return None;
        }
    };
    let state = FlowState::initial(proto, flags);
    track(&CT, flow, backend, state, now);
    if let Some(old) = previous {
        let _ = CT_REPLY.remove(&reply_of(flow, old));
    }
    track(&CT_REPLY, &reply_of(flow, backend), flow.dst, state, now);
    Some(backend)
}

/// Where `flow` goes in `map` (the backend, or the VIP of a reply) and its
/// state, if it has not timed out by `now`.
#[inline(always)]
fn live(
    map: &aya_ebpf::maps::LruHashMap<CtKey, CtEntry>,
    flow: &CtKey,
    now: u64,
) -> Option<([u8; 4], FlowState)> {
    // SAFETY: as in `balance`; the entry is copied out at once.
    let entry = *unsafe { map.get(flow) }?;
    match entry.live_state(now) {
        Some(state) => Some((entry.addr, state)),
        None => {
            let _ = map.remove(flow);
            None
        }
    }
}

/// Records `flow` in `map` as going to `addr` in `state`, seen `now`.
#[inline(always)]
fn track(
    map: &aya_ebpf::maps::LruHashMap<CtKey, CtEntry>,
    flow: &CtKey,
    addr: [u8; 4],
    state: FlowState,
    now: u64,
) {
    // A full LRU map evicts; an insert fails only on bad arguments.
    let _ = map.insert(flow, &CtEntry::new(addr, state, now), 0);
}

/// The reply flow of client flow `flow` served by `backend`.
#[inline(always)]
fn reply_of(flow: &CtKey, backend: [u8; 4]) -> CtKey {
    CtKey {
        dst: backend,
        ..*flow
    }
    .reversed()
}

/// Rewrites the address at `at` (the source or destination field of the
/// IPv4 header) from `old` to `new`, updating the IPv4 and the TCP/UDP
/// checksums (at `l4`) incrementally: a UDP checksum of zero, "none", stays
/// zero, and the helper handles the partial checksum of an offloaded
/// packet.
#[inline(always)]
fn rewrite(
    ctx: &TcContext,
    at: usize,
    l4: usize,
    proto: Protocol,
    old: [u8; 4],
    new: [u8; 4],
) -> Result<(), i64> {
    let from = u64::from(u32::from_ne_bytes(old));
    let to = u64::from(u32::from_ne_bytes(new));
    let mut l4_flags = u64::from(BPF_F_PSEUDO_HDR) | 4;
    if proto == Protocol::Udp {
        l4_flags |= u64::from(BPF_F_MARK_MANGLED_0);
    }
    ctx.l4_csum_replace(l4 + proto.checksum_offset(), from, to, l4_flags)?;
    ctx.l3_csum_replace(ETH_LEN + IP_CHECK, from, to, 4)?;
    ctx.store(at, &new, 0)?;
    Ok(())
}

/// The ports and TCP flags of the TCP or UDP header at `l4`.
#[inline(always)]
fn ports(ctx: &TcContext, proto: Protocol, l4: usize) -> Option<(u16, u16, TcpFlags)> {
    let ports = ctx.load::<[u8; 4]>(l4).ok()?;
    let flags = match proto {
        Protocol::Tcp => TcpFlags(ctx.load::<u8>(l4 + TCP_FLAGS).ok()?),
        Protocol::Udp => TcpFlags::NONE,
    };
    Some((
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
        flags,
    ))
}

/// The kernel's monotonic clock in milliseconds.
#[inline(always)]
fn now_ms() -> u64 {
    // SAFETY: the helper takes no arguments and only reads the clock.
    unsafe { bpf_ktime_get_ns() / 1_000_000 }
}

/// The VIP that `flow`, a backend's reply to a client of a VIP, answers
/// for, with both directions' states advanced (`VipFlows::reverse`);
/// `None` for any other flow.
#[inline(always)]
fn reverse(flow: &CtKey, flags: TcpFlags, now: u64) -> Option<[u8; 4]> {
    let (vip, state) = live(&CT_REPLY, flow, now)?;
    track(
        &CT_REPLY,
        flow,
        vip,
        state.next(flags, Direction::Reply),
        now,
    );
    let client = CtKey { src: vip, ..*flow }.reversed();
    if let Some((backend, s)) = live(&CT, &client, now) {
        track(&CT, &client, backend, s.next(flags, Direction::Reply), now);
    }
    Some(vip)
}

/// The protocol of a first (or only) TCP or UDP fragment.
#[inline(always)]
fn protocol(ip: &Ipv4) -> Option<Protocol> {
    if u16::from_be_bytes(ip.frag) & 0x1fff != 0 {
        return None;
    }
    match ip.protocol {
        IPPROTO_TCP => Some(Protocol::Tcp),
        IPPROTO_UDP => Some(Protocol::Udp),
        _ => None,
    }
}

/// In tc, a packet about to reach a task on this node (segment `vni`): if
/// it is a local backend's reply to a client of a VIP, its source becomes
/// the VIP again. An error when the packet could not be rewritten.
#[inline(always)]
pub fn unbalance(ctx: &TcContext, vni: u32, ip: &Ipv4, ihl: usize) -> Result<(), DropReason> {
    let Some(proto) = protocol(ip) else {
        return Ok(());
    };
    let l4 = ETH_LEN + (ihl & 0x3c);
    let Some((sport, dport, flags)) = ports(ctx, proto, l4) else {
        return Ok(());
    };
    let (src, dst) = (ip.src, ip.dst);
    let flow = CtKey {
        vni,
        src,
        dst,
        sport,
        dport,
        proto: proto.number(),
        _pad: [0; 3],
    };
    let Some(vip) = reverse(&flow, flags, now_ms()) else {
        return Ok(());
    };
    rewrite(ctx, ETH_LEN + IP_SRC, l4, proto, src, vip).map_err(|_| DropReason::MalformedFrame)
}

/// In XDP, the inner IPv4 packet at `ip_at` that a remote backend sent
/// back to a task on this node (segment `vni`): if it is a reply to a
/// client of a VIP, its source becomes the VIP again, with the checksums
/// updated in code (RFC 1624; XDP has no checksum helpers and no partial
/// checksums).
#[inline(always)]
pub fn unbalance_xdp(ctx: &XdpContext, vni: u32, ip_at: usize) -> Result<(), DropReason> {
    let Some(ip_ptr) = hdr::at::<Ipv4>(ctx, ip_at) else {
        return Err(DropReason::MalformedFrame);
    };
    // SAFETY: `at` checked that the header lies inside the frame, which is
    // the program's for its run.
    let ip = unsafe { &mut *ip_ptr };
    let Some(proto) = protocol(ip) else {
        return Ok(());
    };
    let l4_at = ip_at + (ip.header_len() & 0x3c);
    let Some(l4_ptr) = hdr::at::<[u8; 20]>(ctx, l4_at) else {
        // Too short for TCP: a UDP header alone, or nothing to rewrite.
        return match hdr::at::<[u8; 8]>(ctx, l4_at) {
            Some(udp) if proto == Protocol::Udp => {
                // SAFETY: as above.
                unbalance_l4(ip, unsafe { &mut *udp }, vni, proto)
            }
            _ => Ok(()),
        };
    };
    // SAFETY: as above.
    unbalance_l4(ip, unsafe { &mut *l4_ptr }, vni, proto)
}

/// [`unbalance_xdp`] on the IPv4 header `ip` and the first bytes `l4` of
/// its TCP or UDP header.
#[inline(always)]
fn unbalance_l4<const N: usize>(
    ip: &mut Ipv4,
    l4: &mut [u8; N],
    vni: u32,
    proto: Protocol,
) -> Result<(), DropReason> {
    let flags = match proto {
        Protocol::Tcp if N > TCP_FLAGS => TcpFlags(l4[TCP_FLAGS]),
        Protocol::Tcp => return Ok(()),
        Protocol::Udp => TcpFlags::NONE,
    };
    let flow = CtKey {
        vni,
        src: ip.src,
        dst: ip.dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        proto: proto.number(),
        _pad: [0; 3],
    };
    let Some(vip) = reverse(&flow, flags, now_ms()) else {
        return Ok(());
    };
    let (old, new) = (Ipv4Addr::from(ip.src), Ipv4Addr::from(vip));
    let check = u16::from_be_bytes(ip.check);
    ip.check = checksum::update_ipv4_addr(check, old, new).to_be_bytes();
    let at = proto.checksum_offset();
    if at + 1 < N {
        let sum = u16::from_be_bytes([l4[at], l4[at + 1]]);
        // A UDP checksum of zero is none; a computed zero is sent as 0xffff.
        if !(proto == Protocol::Udp && sum == 0) {
            let mut updated = checksum::update_ipv4_addr(sum, old, new);
            if proto == Protocol::Udp && updated == 0 {
                updated = 0xffff;
            }
            l4[at..at + 2].copy_from_slice(&updated.to_be_bytes());
        }
    }
    ip.src = vip;
    Ok(())
}
