//! Segmentation of TSO/USO super-frames on arbitrary offload headers and
//! frames: never panics, and what it cuts fits the layout it reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_dataplane::overlay::gso;
use shoal_dataplane::wire::virtio_net::{self, Packet, Repr};

fuzz_target!(|data: &[u8]| {
    if data.len() < virtio_net::HEADER_LEN {
        return;
    }
    let (head, frame) = data.split_at(virtio_net::HEADER_LEN);
    let Ok(hdr) = Repr::parse(&Packet::new_unchecked(head)) else {
        return;
    };
    let mut out = Vec::new();
    if let Ok(segs) = gso::segment(&hdr, frame, &[0xaa; 8], &mut out) {
        assert!(segs.count >= 1 && segs.stride >= 8);
        assert!(out.len() <= segs.count * segs.stride);
        assert!(out.len() > (segs.count - 1) * segs.stride);
    }
    let mut frame = frame.to_vec();
    let _ = gso::complete_checksum(&hdr, &mut frame);
});
