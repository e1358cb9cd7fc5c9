//! Software GRO on arbitrary frames: never panics, emits every frame it was
//! given (merged or not) to the destination it was given for, each behind a
//! virtio-net header that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_dataplane::overlay::gro::Gro;
use shoal_dataplane::wire::virtio_net::{self, Packet, Repr};

fuzz_target!(|data: &[u8]| {
    let mut gro = Gro::default();
    let mut emitted = 0usize;
    let mut check = |to: u8, bytes: &[u8]| {
        assert!(to < 4);
        assert!(bytes.len() >= virtio_net::HEADER_LEN);
        assert!(Repr::parse(&Packet::new_unchecked(bytes)).is_ok());
        emitted += 1;
    };
    // Frames are length-prefixed: [destination][length][bytes]...
    let mut rest = data;
    let mut pushed = 0usize;
    while let [to, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(len);
        gro.push(to % 4, frame, &mut check);
        pushed += 1;
        rest = next;
    }
    gro.flush(&mut check);
    assert!(emitted <= pushed && (pushed == 0 || emitted > 0));
});
