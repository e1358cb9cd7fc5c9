//! tc ingress on the node-side end of a task interface: every frame a task
//! sends, decided as the userspace VTEP decides it (`overlay::vtep::
//! from_port`). ARP is answered from the tables and sent back to the task;
//! a don't-fragment packet larger than the overlay MTU gets ICMP
//! "fragmentation needed" from the gateway; a frame for a station on this
//! node goes straight into that task's namespace (`bpf_redirect_peer`); one
//! for a station on another node is encapsulated in VXLAN and handed to the
//! underlay interface with its neighbour filled in (`bpf_redirect_neigh`).

use aya_ebpf::bindings::{
    BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
    BPF_F_ADJ_ROOM_FIXED_GSO, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
};
use aya_ebpf::helpers::generated::{bpf_get_hash_recalc, bpf_skb_change_tail};
use aya_ebpf::programs::TcContext;
use shoal_ebpf_common::{Config, DropReason, FdbEntry, FdbKey, Segment};

use crate::hdr::{self, ETH_LEN, ETH_P_ARP, ETH_P_IPV4, Eth, IPPROTO_ICMP, IPV4_MIN_LEN, Ipv4};
use crate::vip::{self, Balanced};
use crate::{CONFIG, FDB, PORTS, SEGMENTS, Verdict, arp};

/// Outer headers of VXLAN over IPv4 without options (Ethernet, IPv4, UDP,
/// VXLAN) and the inner Ethernet header: what precedes the inner IP header
/// once encapsulated.
const ENCAP_LEN: usize = 14 + 20 + 8 + 8 + 14;
/// Room the encapsulation adds behind the Ethernet header.
const ROOM: usize = ENCAP_LEN - ETH_LEN;
/// Header bytes pulled into the linear part before parsing.
const PULL: u32 = 128;

/// What the program does with a task's frame.
pub enum Out {
    /// Rewritten in place into an answer for the task (ARP, ICMP).
    Back(Answer),
    /// For a task on this node: into its namespace through this node-side
    /// interface's peer.
    Peer(u32),
    /// Encapsulated and redirected to the underlay; the helper's verdict.
    Sent(i64),
    Ignore,
    Drop(DropReason),
}

/// Which answer [`Out::Back`] carries, for the counters.
pub enum Answer {
    Arp,
    Icmp,
}

/// Decides what happens to the frame a task sent.
#[inline(always)]
pub fn handle(ctx: &TcContext) -> Out {
    // SAFETY: the context's sk_buff is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: a hash map value reference is valid for the program's run;
    // entries are replaced, never written in place.
    let Some(port) = (unsafe { PORTS.get(&ifindex) }) else {
        return Out::Drop(DropReason::NotLocal);
    };
    let vni = port.vni;
    // SAFETY: as above.
    let Some(segment) = (unsafe { SEGMENTS.get(&vni) }) else {
        return Out::Drop(DropReason::UnknownVni);
    };
    let len = ctx.len();
    if ctx.pull_data(if len < PULL { len } else { PULL }).is_err() {
        return Out::Drop(DropReason::MalformedFrame);
    }
    let Some(eth) = hdr::at::<Eth>(ctx, 0) else {
        return Out::Drop(DropReason::MalformedFrame);
    };
    // SAFETY: `at` checked that the header lies inside the frame.
    match unsafe { (*eth).ether_type } {
        ETH_P_ARP => match arp::on_segment(ctx, 0, vni, segment) {
            Verdict::Answer => Out::Back(Answer::Arp),
            Verdict::Drop(reason) => Out::Drop(reason),
            _ => Out::Ignore,
        },
        ETH_P_IPV4 => ipv4(ctx, vni, segment, len),
        _ => Out::Drop(DropReason::UnsupportedProtocol),
    }
}

#[inline(always)]
fn ipv4(ctx: &TcContext, vni: u32, segment: &Segment, len: u32) -> Out {
    let Some(ip) = hdr::at::<Ipv4>(ctx, ETH_LEN) else {
        return Out::Drop(DropReason::MalformedFrame);
    };
    // SAFETY: `at` checked that the header lies inside the frame.
    let ip = unsafe { &*ip };
    let ihl = ip.header_len();
    let total = usize::from(u16::from_be_bytes(ip.total_len));
    if ip.version_ihl >> 4 != 4
        || ihl < IPV4_MIN_LEN
        || total < ihl
        || total > len as usize - ETH_LEN
    {
        return Out::Drop(DropReason::MalformedFrame);
    }
    // SAFETY: as in `handle`.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size } as usize;
    // A GSO super-frame leaves as segments of `gso_size` bytes of payload
    // each: those are what must fit the overlay's MTU, not its length.
    let on_the_wire = if gso_size == 0 {
        total
    } else {
        match l4_header_len(ctx, ip.protocol, ihl) {
            Some(l4) => ihl + l4 + gso_size,
            None => return Out::Drop(DropReason::BadOffload),
        }
    };
    if on_the_wire > usize::from(segment.mtu) {
        if !ip.dont_frag() {
            return Out::Drop(DropReason::TooBig);
        }
        return frag_needed(ctx, segment, ihl);
    }
    let mut dst = ip.dst;
    if !segment.contains(dst) {
        return Out::Drop(DropReason::NoRoute);
    }
    // A packet for a service VIP goes on to the backend picked for it (the
    // packet pointers are stale after the rewrite; only copies are used).
    let vips = CONFIG.get(0).is_some_and(|c| c.has_vips != 0);
    let balanced = vips
        && match vip::balance(ctx, vni, ip, ihl) {
            Balanced::NotVip => false,
            Balanced::To(backend) => {
                dst = backend;
                true
            }
            Balanced::Drop(reason) => return Out::Drop(reason),
        };
    // SAFETY: as in `handle`.
    let Some(entry) = (unsafe { FDB.get(&FdbKey { vni, ip: dst }) }) else {
        return Out::Drop(DropReason::UnknownDestination);
    };
    if balanced && ctx.store(0, &entry.mac, 0).is_err() {
        return Out::Drop(DropReason::MalformedFrame);
    }
    // A local backend's reply to a client here: the VIP as its source (`ip`
    // still points into the packet: nothing rewrote it when not balanced).
    if vips && entry.is_local() && !balanced {
        if let Err(reason) = vip::unbalance(ctx, vni, ip, ihl) {
            return Out::Drop(reason);
        }
    }
    if entry.is_local() {
        return Out::Peer(entry.ifindex);
    }
    match CONFIG.get(0) {
        Some(config) if config.vxlan_port != 0 => encap(ctx, config, vni, entry, len),
        _ => Out::Drop(DropReason::IoError),
    }
}

/// The TCP or UDP header length of a GSO frame (the segments repeat it),
/// or `None` for what the kernel cannot have segmented.
#[inline(always)]
fn l4_header_len(ctx: &TcContext, proto: u8, ihl: usize) -> Option<usize> {
    match proto {
        hdr::IPPROTO_TCP => {
            let doff = ctx.load::<u8>(ETH_LEN + (ihl & 0x3c) + 12).ok()?;
            Some(usize::from(doff >> 4) * 4)
        }
        hdr::IPPROTO_UDP => Some(8),
        _ => None,
    }
}

/// Wraps the frame in VXLAN to the node holding `entry` and hands it to the
/// underlay. The kernel's encapsulation offload (`bpf_skb_adjust_room` with
/// the ENCAP flags) keeps a GSO super-frame whole, to be segmented with
/// its outer headers where it leaves.
#[inline(always)]
fn encap(ctx: &TcContext, config: &Config, vni: u32, entry: &FdbEntry, len: u32) -> Out {
    // The outer IPv4 total length must hold the whole datagram.
    let outer_len = len as usize + ROOM - ETH_LEN;
    if outer_len > 0xffff {
        return Out::Drop(DropReason::TooBig);
    }
    // Fixed-size loads: the verifier refuses a length it cannot bound.
    let Ok(inner_eth) = ctx.load::<[u8; ETH_LEN]>(0) else {
        return Out::Drop(DropReason::MalformedFrame);
    };
    // SAFETY: the helper reads (and caches) the sk_buff's flow hash.
    let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
    let flags = u64::from(
        BPF_F_ADJ_ROOM_FIXED_GSO
            | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
            | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
            | BPF_F_ADJ_ROOM_ENCAP_L2_ETH,
    ) | ((ETH_LEN as u64) << 56);
    if ctx
        .adjust_room(ROOM as i32, BPF_ADJ_ROOM_MAC, flags)
        .is_err()
    {
        return Out::Drop(DropReason::IoError);
    }
    let mut h = [0u8; ENCAP_LEN];
    // Outer Ethernet: the neighbour helper fills in both addresses.
    h[12..14].copy_from_slice(&ETH_P_IPV4);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(outer_len as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = hdr::IPPROTO_UDP;
    ip[12..16].copy_from_slice(&config.underlay);
    ip[16..20].copy_from_slice(&entry.node);
    let sum = hdr::checksum(&ip);
    ip[10..12].copy_from_slice(&sum);
    h[14..34].copy_from_slice(&ip);
    // The source port spreads flows over the underlay's paths (RFC 7348):
    // the dynamic range, from the inner flow's hash.
    let sport = 0xc000 | (hash as u16 & 0x3fff);
    h[34..36].copy_from_slice(&sport.to_be_bytes());
    h[36..38].copy_from_slice(&config.vxlan_port.to_be_bytes());
    h[38..40].copy_from_slice(&((outer_len - 20) as u16).to_be_bytes());
    // UDP checksum 0: optional for VXLAN over IPv4.
    h[42] = 0x08;
    let v = vni.to_be_bytes();
    h[46..49].copy_from_slice(&v[1..4]);
    h[50..64].copy_from_slice(&inner_eth);
    h[50..56].copy_from_slice(&entry.mac);
    if ctx.store(0, &h, 0).is_err() {
        return Out::Drop(DropReason::IoError);
    }
    // SAFETY: the helper only records the target; a null parameter block
    // asks it to look the next hop up in the FIB.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_redirect_neigh(
            config.underlay_ifindex,
            core::ptr::null_mut(),
            0,
            0,
        )
    };
    Out::Sent(ret)
}

/// Turns an oversize don't-fragment packet into ICMP "fragmentation
/// needed" from the gateway to its sender (RFC 1191), quoting its IP header
/// and the first 8 bytes of its payload, as `overlay/icmp.rs` does.
#[inline(always)]
fn frag_needed(ctx: &TcContext, segment: &Segment, ihl: usize) -> Out {
    // Quoting IP options is left out: such packets are dropped.
    if ihl != IPV4_MIN_LEN {
        return Out::Drop(DropReason::TooBig);
    }
    let (Ok(eth), Ok(quoted)) = (ctx.load::<[u8; ETH_LEN]>(0), ctx.load::<[u8; 28]>(ETH_LEN))
    else {
        return Out::Drop(DropReason::MalformedFrame);
    };
    const ICMP_LEN: usize = 8 + 28;
    const TOTAL: usize = 20 + ICMP_LEN;
    let mut icmp = [0u8; ICMP_LEN];
    icmp[0] = 3; // destination unreachable
    icmp[1] = 4; // fragmentation needed and DF set
    icmp[6..8].copy_from_slice(&segment.mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&quoted);
    let sum = hdr::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(TOTAL as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = IPPROTO_ICMP;
    ip[12..16].copy_from_slice(&segment.gateway);
    ip[16..20].copy_from_slice(&quoted[12..16]);
    let sum = hdr::checksum(&ip);
    ip[10..12].copy_from_slice(&sum);
    let mut out = [0u8; ETH_LEN + TOTAL];
    out[0..6].copy_from_slice(&eth[6..12]);
    out[6..12].copy_from_slice(&segment.gateway_mac);
    out[12..14].copy_from_slice(&ETH_P_IPV4);
    out[14..34].copy_from_slice(&ip);
    out[34..].copy_from_slice(&icmp);
    // SAFETY: the helper resizes the sk_buff the kernel owns; it checks the
    // length itself.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, out.len() as u32, 0) } != 0 {
        return Out::Drop(DropReason::IoError);
    }
    if ctx.store(0, &out, 0).is_err() {
        return Out::Drop(DropReason::IoError);
    }
    Out::Back(Answer::Icmp)
}
