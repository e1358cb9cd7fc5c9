//! ARP responders, as the userspace one (`overlay/arp.rs`): requests are
//! turned into their replies in place. On the underlay, requests for the
//! addresses shoal owns are answered; on an overlay segment (from a task,
//! or inside VXLAN from a remote VTEP), requests for the gateway and for
//! every station the tables know.

use shoal_ebpf_common::{FdbKey, Ipv4Key, Segment, VipKey};

use crate::hdr::{Arp, ETH_LEN, Eth, Frame};
use crate::{FDB, OWNED, VIPS, Verdict};

const OPER_REQUEST: [u8; 2] = [0, 1];
const OPER_REPLY: [u8; 2] = [0, 2];

/// What an ARP packet on a segment asks of the responder.
pub enum Asked {
    /// A request for this address, not the sender probing its own.
    Request(*mut Eth, *mut Arp, [u8; 4]),
    /// Not a request (a reply, a gratuitous announcement): nothing to do.
    Nothing,
    /// Not IPv4-over-Ethernet ARP, or cut short.
    Malformed,
}

/// Reads the ARP packet whose Ethernet header is at `eth_at`.
#[inline(always)]
pub fn parse<F: Frame>(ctx: &F, eth_at: usize) -> Asked {
    let (Some(eth), Some(arp)) = (
        crate::hdr::at::<Eth>(ctx, eth_at),
        crate::hdr::at::<Arp>(ctx, eth_at + ETH_LEN),
    ) else {
        return Asked::Malformed;
    };
    // SAFETY: `at` checked that the header lies inside the frame.
    let a = unsafe { &*arp };
    if a.htype != [0, 1] || a.ptype != [0x08, 0x00] || a.hlen != 6 || a.plen != 4 {
        return Asked::Malformed;
    }
    // A probe of the sender's own address (gratuitous ARP) asks nothing.
    if a.oper != OPER_REQUEST || a.spa == a.tpa {
        return Asked::Nothing;
    }
    Asked::Request(eth, arp, a.tpa)
}

/// Turns the request into its reply from `mac`, addressed to the asker.
#[inline(always)]
pub fn reply(eth: *mut Eth, arp: *mut Arp, mac: [u8; 6]) {
    // SAFETY: the pointers come from `parse`, which bounds-checked them, and
    // the frame is the program's for its run.
    let (eth, arp) = unsafe { (&mut *eth, &mut *arp) };
    let (asker_mac, asker_ip, asked) = (arp.sha, arp.spa, arp.tpa);
    eth.dst = asker_mac;
    eth.src = mac;
    arp.oper = OPER_REPLY;
    arp.sha = mac;
    arp.spa = asked;
    arp.tha = asker_mac;
    arp.tpa = asker_ip;
}

/// The MAC that answers for `ip` on the segment `vni`: the gateway's (for
/// the gateway and for service VIPs, whose traffic the programs take in),
/// or the station's the tables name.
#[inline(always)]
pub fn answer(vni: u32, segment: &Segment, ip: [u8; 4]) -> Option<[u8; 6]> {
    if ip == segment.gateway || VIPS.get_ptr(VipKey::address(vni, ip)).is_some() {
        return Some(segment.gateway_mac);
    }
    let entry = FDB.get_ptr(FdbKey { vni, ip })?;
    // SAFETY: a hash map value pointer stays valid for the program's run;
    // FdbEntry is plain bytes.
    Some(unsafe { (*entry).mac })
}

/// On a segment: answers a request for a known address in place; drops one
/// for an unknown address as the userspace responder does.
#[inline(always)]
pub fn on_segment<F: Frame>(ctx: &F, eth_at: usize, vni: u32, segment: &Segment) -> Verdict {
    match parse(ctx, eth_at) {
        Asked::Request(eth, arp, asked) => match answer(vni, segment, asked) {
            Some(mac) => {
                reply(eth, arp, mac);
                Verdict::Answer
            }
            None => Verdict::Drop(shoal_ebpf_common::DropReason::UnknownDestination),
        },
        Asked::Nothing => Verdict::Ignore,
        Asked::Malformed => Verdict::Drop(shoal_ebpf_common::DropReason::MalformedFrame),
    }
}

/// On the underlay: answers a request for an owned address; everything
/// else is the kernel's business.
#[inline(always)]
pub fn on_underlay<F: Frame>(ctx: &F) -> Verdict {
    let Asked::Request(eth, arp, asked) = parse(ctx, 0) else {
        return Verdict::Pass;
    };
    let Some(owned) = OWNED.get_ptr(Ipv4Key { addr: asked }) else {
        return Verdict::Pass;
    };
    // SAFETY: a hash map value pointer stays valid for the program's run;
    // OwnedAddr is plain bytes.
    reply(eth, arp, unsafe { (*owned).mac });
    Verdict::Answer
}
