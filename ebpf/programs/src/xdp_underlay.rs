//! XDP on the node's underlay interface: ARP for the addresses shoal owns
//! answered in place ([`arp`]), VXLAN to local tasks decapsulated and
//! redirected to their interfaces ([`decap`]), every packet counted per CPU;
//! everything else passes to the kernel.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// eBPF programs are the second home of `unsafe` (DESIGN.md): map values and
// packet bytes are raw pointers the verifier has checked.
#![allow(unsafe_code)]

mod arp;
mod decap;
mod hdr;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_redirect, bpf_xdp_adjust_head},
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use shoal_ebpf_common::{
    Config, Counters, DropReason, FdbEntry, FdbKey, Ipv4Key, MAX_ENTRIES, MAX_SEGMENTS, OwnedAddr,
    Segment,
};

#[map(name = "SHOAL_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "SHOAL_OWNED")]
static OWNED: HashMap<Ipv4Key, OwnedAddr> = HashMap::with_max_entries(MAX_ENTRIES, 0);

#[map(name = "SHOAL_SEGMENTS")]
static SEGMENTS: HashMap<u32, Segment> = HashMap::with_max_entries(MAX_SEGMENTS, 0);

#[map(name = "SHOAL_FDB")]
static FDB: HashMap<FdbKey, FdbEntry> = HashMap::with_max_entries(MAX_ENTRIES, 0);

#[map(name = "SHOAL_COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// What the program decided for a frame.
pub enum Verdict {
    Pass,
    /// The frame was rewritten in place into an answer.
    Tx,
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
            hdr::ETH_P_ARP => arp::handle(&ctx),
            hdr::ETH_P_IPV4 => decap::handle(&ctx),
            _ => Verdict::Pass,
        },
        None => Verdict::Pass,
    };
    let action = act(&ctx, verdict);
    count(len, action);
    action.0
}

/// The XDP action and, for a drop, its reason.
#[derive(Clone, Copy)]
struct Action(u32, Option<DropReason>);

#[inline(always)]
fn act(ctx: &XdpContext, verdict: Verdict) -> Action {
    match verdict {
        Verdict::Pass => Action(xdp_action::XDP_PASS, None),
        Verdict::Tx => Action(xdp_action::XDP_TX, None),
        Verdict::Drop(reason) => Action(xdp_action::XDP_DROP, Some(reason)),
        Verdict::Decap { strip, ifindex } => {
            // SAFETY: the helper moves the frame's start within the buffer
            // the kernel owns and checks the bounds itself.
            if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) } != 0 {
                return Action(xdp_action::XDP_DROP, Some(DropReason::MalformedFrame));
            }
            // SAFETY: the helper only records the target for the kernel.
            let action = unsafe { bpf_redirect(ifindex, 0) } as u32;
            if action == xdp_action::XDP_REDIRECT {
                Action(action, None)
            } else {
                Action(xdp_action::XDP_DROP, Some(DropReason::IoError))
            }
        }
    }
}

#[inline(always)]
fn count(len: u64, action: Action) {
    let Some(c) = COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU array value is this CPU's alone while the program
    // runs, and XDP programs are not preempted on their CPU.
    let c = unsafe { &mut *c };
    c.packets += 1;
    c.bytes += len;
    match action {
        Action(xdp_action::XDP_PASS, _) => c.passed += 1,
        Action(xdp_action::XDP_TX, _) => c.answered += 1,
        Action(xdp_action::XDP_REDIRECT, _) => c.redirected += 1,
        Action(_, Some(reason)) => {
            if let Some(d) = c.drops.get_mut(reason.index()) {
                *d += 1;
            }
        }
        Action(..) => {}
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program with a reachable panic path.
    unsafe { core::hint::unreachable_unchecked() }
}

/// On the host the programs only type-check (clippy, `cargo check`); the
/// loadable object is built for `bpfel-unknown-none` by the dataplane's
/// build script.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
