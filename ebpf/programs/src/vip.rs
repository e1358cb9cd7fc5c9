//! Service VIPs east-west, in tc on the task's interface: a task's packet to
//! `VIP:port` gets its backend as the userspace engine picks it
//! (`lb::vip::VipFlows::balance`: conntrack for a known flow, Maglev over
//! the active backends for a new one) and its destination rewritten to the
//! backend (DNAT); the caller then delivers it as any packet to that
//! address. The flow hash, the state machine and its timeouts are the
//! userspace engine's own code, from `shoal_ebpf_common`.
//!
//! Where this differs from the userspace tracker: the conntrack maps are
//! LRU maps, so at capacity the kernel evicts the least recently used flow
//! of a CPU's list, whatever its state (userspace evicts the flow nearest
//! its timeout); an idle flow's timeout is checked when its next packet
//! comes, not swept.

use aya_ebpf::bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR};
use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use aya_ebpf::programs::TcContext;
use shoal_ebpf_common::conntrack::{Direction, FlowState};
use shoal_ebpf_common::flow::{Protocol, TcpFlags};
use shoal_ebpf_common::hash::flow_hash;
use shoal_ebpf_common::{
    BACKEND_ACTIVE, BACKEND_DRAINING, BackendKey, CtEntry, CtKey, DropReason, LB_FLOW_SEED,
    MAGLEV_SLOTS, NO_TABLE, VipKey,
};

use crate::hdr::{ETH_LEN, IPPROTO_TCP, IPPROTO_UDP, Ipv4};
use crate::{BACKENDS, CT, CT_REPLY, MAGLEV, VIPS};

/// Offsets inside the IPv4 header.
const IP_CHECK: usize = 10;
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
    let is_vip = VipKey {
        vni,
        vip,
        port: 0,
        proto: 0,
        _pad: 0,
    };
    // SAFETY: a hash map value reference is valid for the program's run.
    if unsafe { VIPS.get(&is_vip) }.is_none() {
        return Balanced::NotVip;
    }
    let proto = match ip.protocol {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        _ => return Balanced::Drop(DropReason::NoServicePort),
    };
    // Only a first (or only) fragment carries the ports, as in userspace.
    if u16::from_be_bytes(ip.frag) & 0x1fff != 0 {
        return Balanced::Drop(DropReason::NoServicePort);
    }
    let l4 = ETH_LEN + (ihl & 0x3c);
    let Ok(ports) = ctx.load::<[u8; 4]>(l4) else {
        return Balanced::Drop(DropReason::MalformedFrame);
    };
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    let flags = match proto {
        Protocol::Tcp => match ctx.load::<u8>(l4 + TCP_FLAGS) {
            Ok(f) => TcpFlags(f),
            Err(_) => return Balanced::Drop(DropReason::MalformedFrame),
        },
        Protocol::Udp => TcpFlags::NONE,
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
    // SAFETY: the helper takes no arguments and only reads the clock.
    let now = unsafe { bpf_ktime_get_ns() } / 1_000_000;
    let Some(backend) = select(table, &flow, proto, flags, now) else {
        return Balanced::Drop(DropReason::NoBackend);
    };
    if dnat(ctx, ip, l4, proto, backend).is_err() {
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
    if let Some(entry) = live(&CT, flow, now) {
        let state = FlowState::from_u8(entry.state);
        match state {
            // A new SYN on a closing tuple opens a new connection.
            Some(s) if opening && s.is_closing() => {}
            Some(s) => {
                let listed = BackendKey {
                    table,
                    addr: entry.addr,
                };
                // SAFETY: as in `balance`.
                match unsafe { BACKENDS.get(&listed) } {
                    Some(b) if b.state == BACKEND_ACTIVE || b.state == BACKEND_DRAINING => {
                        let next = s.next(flags, Direction::Original);
                        track(&CT, flow, entry.addr, next, now);
                        let reply = reply_of(flow, entry.addr);
                        if let Some(r) = live(&CT_REPLY, &reply, now)
                            && let Some(rs) = FlowState::from_u8(r.state)
                        {
                            track(
                                &CT_REPLY,
                                &reply,
                                r.addr,
                                rs.next(flags, Direction::Original),
                                now,
                            );
                        }
                        return Some(entry.addr);
                    }
                    _ => previous = Some(entry.addr),
                }
            }
            None => {}
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

/// The entry of `flow` in `map` if it has not timed out by `now`.
#[inline(always)]
fn live(
    map: &aya_ebpf::maps::LruHashMap<CtKey, CtEntry>,
    flow: &CtKey,
    now: u64,
) -> Option<CtEntry> {
    // SAFETY: as in `balance`; the entry is copied out at once.
    let entry = *unsafe { map.get(flow) }?;
    let timeout = FlowState::from_u8(entry.state)?.timeout_ms();
    if now > entry.last_seen_ms.saturating_add(timeout) {
        let _ = map.remove(flow);
        return None;
    }
    Some(entry)
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
    let entry = CtEntry {
        last_seen_ms: now,
        addr,
        state: state.to_u8(),
        _pad: [0; 3],
    };
    // A full LRU map evicts; an insert fails only on bad arguments.
    let _ = map.insert(flow, &entry, 0);
}

/// The reply flow of client flow `flow` served by `backend`.
#[inline(always)]
fn reply_of(flow: &CtKey, backend: [u8; 4]) -> CtKey {
    CtKey {
        vni: flow.vni,
        src: backend,
        dst: flow.src,
        sport: flow.dport,
        dport: flow.sport,
        proto: flow.proto,
        _pad: [0; 3],
    }
}

/// Rewrites the destination address to `backend`, updating the IPv4 and
/// the TCP/UDP checksums incrementally (a UDP checksum of zero, "none",
/// stays zero; a partial checksum of an offloaded packet is handled by the
/// helper).
#[inline(always)]
fn dnat(
    ctx: &TcContext,
    ip: &Ipv4,
    l4: usize,
    proto: Protocol,
    backend: [u8; 4],
) -> Result<(), i64> {
    let from = u64::from(u32::from_ne_bytes(ip.dst));
    let to = u64::from(u32::from_ne_bytes(backend));
    let mut l4_flags = u64::from(BPF_F_PSEUDO_HDR) | 4;
    if proto == Protocol::Udp {
        l4_flags |= u64::from(BPF_F_MARK_MANGLED_0);
    }
    ctx.l4_csum_replace(l4 + proto.checksum_offset(), from, to, l4_flags)?;
    ctx.l3_csum_replace(ETH_LEN + IP_CHECK, from, to, 4)?;
    ctx.store(ETH_LEN + IP_DST, &backend, 0)?;
    Ok(())
}
