//! SWIM gossip datagrams on arbitrary bytes: a member never panics on what
//! the network sends it, and counts what it refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_control::NodeId;
use shoal_control::membership::{Member, Membership, MembershipConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(node) = NodeId::new("n1") else {
        return;
    };
    let me = Member::new(node, "198.18.0.1:7946".parse().expect("address"), 1);
    let mut membership = Membership::new(me, MembershipConfig::default(), 7);
    let _ = membership.handle_datagram(data);
});
