//! The one parse of a frame's headers, and NAT on what it found, on
//! arbitrary bytes: never panics, and a translated frame parses to the view
//! the translation returned.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use shoal_dataplane::lb::nat::Nat;
use shoal_dataplane::wire::flow::{self, Frame};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, frame)) = data.split_first() else {
        return;
    };
    let Ok(Frame::Ipv4(view)) = flow::parse(frame) else {
        return;
    };
    let _ = view.hash();
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 0, choice, 7), u16::from(choice) * 257);
    let nat = if choice & 1 == 0 {
        Nat::dst(to)
    } else {
        Nat::src(to)
    };
    let mut frame = frame.to_vec();
    let after = nat.apply(&mut frame, &view, choice & 2 != 0);
    if view.key.is_some() {
        assert_eq!(
            flow::parse_ipv4(&frame),
            Some(after),
            "the view follows the bytes"
        );
    } else {
        assert_eq!(after, view, "a flow without ports is left alone");
    }
});
