//! shoal's eBPF programs, one object sharing its maps:
//!
//! - XDP on the node's underlay interface: ARP for the addresses shoal owns
//!   answered in place ([`arp`]), VXLAN to local tasks decapsulated and
//!   redirected to their interfaces, ARP inside VXLAN answered, VXLAN from
//!   an address that is no node dropped unread ([`decap`]); everything else
//!   passes to the kernel.
//! - tc ingress on the node-side end of each task interface ([`task`]):
//!   ARP, ICMP "fragmentation needed", service VIPs balanced to a backend
//!   ([`vip`]), delivery to local tasks, VXLAN encapsulation to remote
//!   ones.
//!
//! Each counts every packet per CPU in its own slot of the counters.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// eBPF programs are the second home of `unsafe` (DESIGN.md): map values and
// packet bytes are raw pointers the verifier has checked.
#![allow(unsafe_code)]

mod arp;
mod decap;
mod hdr;
mod task;
mod vip;

use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT, xdp_action},
    helpers::generated::{bpf_redirect, bpf_redirect_peer, bpf_xdp_adjust_head},
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use shoal_ebpf_common::{
    BackendEntry, BackendKey, Config, Counters, CtEntry, CtKey, DropReason, FdbEntry, FdbKey,
    Ipv4Key, MAGLEV_SLOTS, MAX_BACKENDS, MAX_ENTRIES, MAX_FLOWS, MAX_NODES, MAX_SEGMENTS,
    MAX_VIP_TABLES, OwnedAddr, Port, Segment, VipEntry, VipKey, counters,
};

#[map(name = "SHOAL_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "SHOAL_OWNED")]
static OWNED: HashMap<Ipv4Key, OwnedAddr> = HashMap::with_max_entries(MAX_ENTRIES, 0);

#[map(name = "SHOAL_NODES")]
static NODES: HashMap<Ipv4Key, u8> = HashMap::with_max_entries(MAX_NODES, 0);

#[map(name = "SHOAL_SEGMENTS")]
static SEGMENTS: HashMap<u32, Segment> = HashMap::with_max_entries(MAX_SEGMENTS, 0);

#[map(name = "SHOAL_FDB")]
static FDB: HashMap<FdbKey, FdbEntry> = HashMap::with_max_entries(MAX_ENTRIES, 0);

#[map(name = "SHOAL_PORTS")]
static PORTS: HashMap<u32, Port> = HashMap::with_max_entries(MAX_ENTRIES, 0);

#[map(name = "SHOAL_VIPS")]
static VIPS: HashMap<VipKey, VipEntry> = HashMap::with_max_entries(MAX_ENTRIES, 0);

#[map(name = "SHOAL_BACKENDS")]
static BACKENDS: HashMap<BackendKey, BackendEntry> = HashMap::with_max_entries(MAX_BACKENDS, 0);

#[map(name = "SHOAL_MAGLEV")]
static MAGLEV: Array<[u8; 4]> = Array::with_max_entries(MAX_VIP_TABLES * MAGLEV_SLOTS, 0);

#[map(name = "SHOAL_CT")]
static CT: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map(name = "SHOAL_CT_REPLY")]
static CT_REPLY: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map(name = "SHOAL_COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(counters::SLOTS, 0);

/// What the underlay program decided for a frame.
pub enum Verdict {
    Pass,
    /// The frame was rewritten in place into an ARP answer.
    Answer,
    /// Nothing to do and nothing wrong (an ARP reply, a gratuitous ARP).
    Ignore,
    Drop(DropReason),
    /// Strip the first `strip` bytes and send the rest to `ifindex`.
    Decap {
        strip: usize,
        ifindex: u32,
    },
}

#[xdp]
pub fn shoal_xdp_underlay(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let verdict = match hdr::at::<hdr::Eth>(&ctx, 0) {
        // SAFETY: `at` checked that the header lies inside the frame.
        Some(eth) => match unsafe { (*eth).ether_type } {
            hdr::ETH_P_ARP => arp::on_underlay(&ctx),
            hdr::ETH_P_IPV4 => decap::handle(&ctx),
            _ => Verdict::Pass,
        },
        None => Verdict::Pass,
    };
    let Some(c) = counters(counters::UNDERLAY) else {
        return xdp_action::XDP_PASS;
    };
    c.packets += 1;
    c.bytes += len;
    match verdict {
        Verdict::Pass => {
            c.passed += 1;
            xdp_action::XDP_PASS
        }
        Verdict::Answer => {
            // Back out of the interface it came in by. A redirect to it
            // rather than XDP_TX: a veth delivers XDP_TX only to a peer
            // that runs XDP itself, and a redirect to any peer with NAPI
            // (GRO on), as a task's end has; for a NIC both are a transmit.
            // SAFETY: the context is valid for the program's run; the
            // helper only records the target for the kernel.
            let action = unsafe { bpf_redirect((*ctx.ctx).ingress_ifindex, 0) } as u32;
            if action != xdp_action::XDP_REDIRECT {
                return dropped(c, DropReason::IoError, xdp_action::XDP_DROP);
            }
            c.answered += 1;
            c.arp_replies += 1;
            action
        }
        Verdict::Ignore => xdp_action::XDP_DROP,
        Verdict::Drop(reason) => dropped(c, reason, xdp_action::XDP_DROP),
        Verdict::Decap { strip, ifindex } => {
            // SAFETY: the helper moves the frame's start within the buffer
            // the kernel owns and checks the bounds itself.
            if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) } != 0 {
                return dropped(c, DropReason::MalformedFrame, xdp_action::XDP_DROP);
            }
            // SAFETY: the helper only records the target for the kernel.
            let action = unsafe { bpf_redirect(ifindex, 0) } as u32;
            if action != xdp_action::XDP_REDIRECT {
                return dropped(c, DropReason::IoError, xdp_action::XDP_DROP);
            }
            c.redirected += 1;
            c.vxlan_packets += 1;
            c.vxlan_bytes += len - strip as u64 + hdr::VXLAN_LEN as u64;
            action
        }
    }
}

#[classifier]
pub fn shoal_tc_task(ctx: TcContext) -> i32 {
    let len = u64::from(ctx.len());
    let out = task::handle(&ctx);
    let Some(c) = counters(counters::TASK) else {
        return TC_ACT_SHOT;
    };
    c.packets += 1;
    c.bytes += len;
    let redirected = |c: &mut Counters, ret: i64| {
        if ret == i64::from(TC_ACT_REDIRECT) {
            c.redirected += 1;
            TC_ACT_REDIRECT as i32
        } else {
            dropped(c, DropReason::IoError, TC_ACT_SHOT as u32) as i32
        }
    };
    match out {
        task::Out::Back(answer) => {
            match answer {
                task::Answer::Arp => c.arp_replies += 1,
                task::Answer::Icmp => c.icmp_errors += 1,
            }
            c.answered += 1;
            // Out of the node-side end: into the task that asked.
            // SAFETY: the helper only records the target for the kernel.
            let ret = unsafe { bpf_redirect((*ctx.skb.skb).ifindex, 0) };
            redirected(c, ret)
        }
        task::Out::Peer(ifindex) => {
            // SAFETY: as above.
            let ret = unsafe { bpf_redirect_peer(ifindex, 0) };
            redirected(c, ret)
        }
        task::Out::Sent(ret) => {
            if ret == i64::from(TC_ACT_REDIRECT) {
                c.vxlan_packets += 1;
                c.vxlan_bytes += len + hdr::VXLAN_LEN as u64;
            }
            redirected(c, ret)
        }
        task::Out::Ignore => TC_ACT_SHOT as i32,
        task::Out::Drop(reason) => dropped(c, reason, TC_ACT_SHOT as u32) as i32,
    }
}

/// This CPU's counters in `slot`.
#[inline(always)]
fn counters(slot: u32) -> Option<&'static mut Counters> {
    let c = COUNTERS.get_ptr_mut(slot)?;
    // SAFETY: a per-CPU array value is this CPU's alone while the program
    // runs, and the programs are not preempted on their CPU.
    Some(unsafe { &mut *c })
}

/// Counts a drop for `reason` and returns `action`.
#[inline(always)]
fn dropped(c: &mut Counters, reason: DropReason, action: u32) -> u32 {
    if let Some(d) = c.drops.get_mut(reason.index()) {
        *d += 1;
    }
    action
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // A reachable panic (an index, an overflow) becomes a loop without exit,
    // which the verifier refuses at load with its log: visible, where
    // `unreachable_unchecked` would let LLVM delete the check in front of it.
    #[allow(clippy::empty_loop)]
    loop {}
}

/// On the host the programs only type-check (clippy, `cargo check`); the
/// loadable object is built for `bpfel-unknown-none` by the dataplane's
/// build script.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
