//! SWIM gossip datagrams on arbitrary bytes: the sealing layer and a member
//! never panic on what the network sends them, and count what they refuse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_control::NodeId;
use shoal_control::membership::{Member, Membership, MembershipConfig, Sealer};

fuzz_target!(|data: &[u8]| {
    let Ok(node) = NodeId::new("n1") else {
        return;
    };
    let me = Member::new(node, "198.18.0.1:7946".parse().expect("address"), 1);
    let mut membership = Membership::new(me, MembershipConfig::default(), 7);
    let from = "198.18.0.2:7946".parse().expect("address");
    let _ = membership.handle_datagram(data, from, 1_800_000_000_000);
    let mut sealer = Sealer::new([1; 16]);
    sealer.set_keys([(1, [7; 32])], 0);
    let _ = sealer.open(data, 1_800_000_000_000);
});
