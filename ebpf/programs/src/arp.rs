//! The ARP responder on the underlay: a request for an address shoal owns
//! is turned into the reply in place and sent back out (XDP_TX), as the
//! userspace responder (`overlay/arp.rs`) answers it. Anything else is the
//! kernel's business.

use aya_ebpf::programs::XdpContext;
use shoal_ebpf_common::Ipv4Key;

use crate::hdr::{Arp, ETH_LEN, Eth};
use crate::{OWNED, Verdict};

const OPER_REQUEST: [u8; 2] = [0, 1];
const OPER_REPLY: [u8; 2] = [0, 2];

/// Answers an ARP frame; everything it does not answer passes.
#[inline(always)]
pub fn handle(ctx: &XdpContext) -> Verdict {
    let (Some(eth), Some(arp)) = (
        crate::hdr::at::<Eth>(ctx, 0),
        crate::hdr::at::<Arp>(ctx, ETH_LEN),
    ) else {
        return Verdict::Pass;
    };
    // SAFETY: `at` checked that both headers lie inside the frame, and the
    // frame is ours for the duration of the program.
    let (eth, arp) = unsafe { (&mut *eth, &mut *arp) };
    if arp.htype != [0, 1]
        || arp.ptype != [0x08, 0x00]
        || arp.hlen != 6
        || arp.plen != 4
        || arp.oper != OPER_REQUEST
        // A probe of the sender's own address (gratuitous ARP) asks nothing.
        || arp.spa == arp.tpa
    {
        return Verdict::Pass;
    }
    let Some(owned) = OWNED.get_ptr(Ipv4Key { addr: arp.tpa }) else {
        return Verdict::Pass;
    };
    // SAFETY: a hash map value pointer stays valid for the program's run;
    // OwnedAddr is plain bytes.
    let mac = unsafe { (*owned).mac };
    let (asker_mac, asker_ip, asked) = (arp.sha, arp.spa, arp.tpa);
    eth.dst = asker_mac;
    eth.src = mac;
    arp.oper = OPER_REPLY;
    arp.sha = mac;
    arp.spa = asked;
    arp.tha = asker_mac;
    arp.tpa = asker_ip;
    Verdict::Tx
}
