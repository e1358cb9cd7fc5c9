//! VXLAN decapsulation to a local task: a datagram to the VXLAN port on
//! this node's underlay address is looked up by VNI and inner destination,
//! the key the userspace forwarding database uses (`overlay/fdb.rs`), and
//! its inner frame is sent to the task's interface with the outer headers
//! stripped. ARP inside VXLAN (a remote VTEP, such as the kernel's, asking
//! for an overlay address) is answered from the tables and sent back inside
//! VXLAN to the asker. Only the nodes in the tables may send VXLAN: a
//! datagram from any other underlay address is dropped before its VXLAN
//! header is read (`overlay::vtep::open`), so it reaches no task and draws
//! no answer, not even to an ARP request.
//!
//! Verdicts follow the userspace engine (`overlay::vtep::from_underlay`),
//! which owns the VXLAN port and so never lets the kernel see a datagram:
//! what it drops is dropped here under the same reason (XDP_DROP, counted).
//! Inner frames for addresses outside the segment are routing-mesh replies,
//! which this engine does not carry yet: they are dropped as `no_route`.

use aya_ebpf::programs::XdpContext;
use shoal_ebpf_common::{DropReason, FdbKey, Ipv4Key};

use crate::hdr::{
    self, ETH_LEN, ETH_P_ARP, ETH_P_IPV4, Eth, IPPROTO_UDP, IPV4_MIN_LEN, Ipv4, UDP_LEN, Udp,
    VXLAN_LEN, Vxlan,
};
use crate::{CONFIG, FDB, NODES, SEGMENTS, Verdict, arp, vip};

/// Decides what happens to an IPv4 frame from the underlay.
#[inline(always)]
pub fn handle(ctx: &XdpContext) -> Verdict {
    let Some(config) = CONFIG.get(0) else {
        return Verdict::Pass;
    };
    if config.vxlan_port == 0 {
        return Verdict::Pass;
    }
    let Some(ip_ptr) = hdr::at::<Ipv4>(ctx, ETH_LEN) else {
        return Verdict::Pass;
    };
    // SAFETY: `at` checked that the header lies inside the frame.
    let ip = unsafe { &*ip_ptr };
    let ihl = ip.header_len();
    // Fragments go to the kernel, which reassembles them for the socket.
    if ip.version_ihl >> 4 != 4
        || ihl < IPV4_MIN_LEN
        || ip.protocol != IPPROTO_UDP
        || ip.is_fragment()
        || ip.dst != config.underlay
    {
        return Verdict::Pass;
    }
    let udp_at = ETH_LEN + ihl;
    let Some(udp_ptr) = hdr::at::<Udp>(ctx, udp_at) else {
        return Verdict::Pass;
    };
    // SAFETY: `at` checked that the header lies inside the frame.
    let udp = unsafe { &*udp_ptr };
    if u16::from_be_bytes(udp.dst) != config.vxlan_port {
        return Verdict::Pass;
    }
    // From here on the datagram is ours, as it is the userspace engine's.
    // Outer checksums go unchecked: the inner frame carries its own, which
    // the task's stack checks, as a VTEP does.
    // Only a node in the tables may put frames on an overlay network: a
    // stranger's datagram goes unread, as in `vtep::open`.
    if NODES.get_ptr(Ipv4Key { addr: ip.src }).is_none() {
        return Verdict::Drop(DropReason::UnknownPeer);
    }
    let vxlan_at = udp_at + UDP_LEN;
    let Some(vxlan) = hdr::at::<Vxlan>(ctx, vxlan_at) else {
        return Verdict::Drop(DropReason::MalformedVxlan);
    };
    // SAFETY: `at` checked that the header lies inside the frame.
    let vxlan = unsafe { &*vxlan };
    if !vxlan.is_plain() {
        return Verdict::Drop(DropReason::MalformedVxlan);
    }
    let vni = vxlan.vni();
    // SAFETY: a hash map value reference is valid for the program's run;
    // entries are replaced, never written in place.
    let Some(segment) = (unsafe { SEGMENTS.get(vni) }) else {
        return Verdict::Drop(DropReason::UnknownVni);
    };
    let inner_at = vxlan_at + VXLAN_LEN;
    let Some(inner) = hdr::at::<Eth>(ctx, inner_at) else {
        return Verdict::Drop(DropReason::MalformedFrame);
    };
    // SAFETY: `at` checked that the header lies inside the frame.
    let inner_type = unsafe { (*inner).ether_type };
    if inner_type == ETH_P_ARP {
        let verdict = arp::on_segment(ctx, inner_at, vni, segment);
        if let Verdict::Answer = verdict {
            // Back to the asker: outer addresses swapped, to its VXLAN port.
            // Swapping the addresses leaves the IPv4 checksum as it was; the
            // UDP checksum is optional for VXLAN over IPv4 (RFC 7348).
            // The pointers checked above: fresh ones from the context would
            // be unchecked to the verifier.
            let eth = ip_ptr.cast::<u8>().wrapping_sub(ETH_LEN).cast::<Eth>();
            // SAFETY: `at` checked that the IPv4 and UDP headers lie inside
            // the frame, and the Ethernet header precedes the IPv4 one; the
            // frame is the program's for its run.
            let (eth, ip, udp) = unsafe { (&mut *eth, &mut *ip_ptr, &mut *udp_ptr) };
            core::mem::swap(&mut eth.src, &mut eth.dst);
            core::mem::swap(&mut ip.src, &mut ip.dst);
            udp.src = udp.dst;
            udp.dst = config.vxlan_port.to_be_bytes();
            udp.check = [0, 0];
        }
        return verdict;
    }
    if inner_type != ETH_P_IPV4 {
        return Verdict::Drop(DropReason::UnsupportedProtocol);
    }
    let Some(inner_ip) = hdr::at::<Ipv4>(ctx, inner_at + ETH_LEN) else {
        return Verdict::Drop(DropReason::MalformedFrame);
    };
    // SAFETY: `at` checked that the header lies inside the frame.
    let inner_ip = unsafe { &*inner_ip };
    // The userspace parser's checks: a header of at least 20 bytes inside a
    // total length that the frame holds.
    let inner_ihl = inner_ip.header_len();
    let total = usize::from(u16::from_be_bytes(inner_ip.total_len));
    let held = ctx.data_end() - ctx.data() - (inner_at + ETH_LEN);
    if inner_ihl < IPV4_MIN_LEN || total < inner_ihl || total > held {
        return Verdict::Drop(DropReason::MalformedFrame);
    }
    let dst = inner_ip.dst;
    if !segment.contains(dst) {
        return Verdict::Drop(DropReason::NoRoute);
    }
    // SAFETY: as for SEGMENTS above.
    let Some(entry) = (unsafe { FDB.get(FdbKey { vni, ip: dst }) }) else {
        return Verdict::Drop(DropReason::UnknownDestination);
    };
    if !entry.is_local() {
        return Verdict::Drop(DropReason::NotLocal);
    }
    let ifindex = entry.ifindex;
    // A remote backend's reply to a client here: the VIP as its source.
    if config.has_vips != 0
        && let Err(reason) = vip::unbalance_xdp(ctx, vni, inner_at + ETH_LEN)
    {
        return Verdict::Drop(reason);
    }
    Verdict::Decap {
        strip: inner_at,
        ifindex,
    }
}
