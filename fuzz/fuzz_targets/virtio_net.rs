//! virtio-net header parsing on arbitrary bytes: never panics, and whatever
//! parses emits back to the very same bytes and parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_dataplane::wire::virtio_net::{Packet, Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(repr) = Repr::parse(&Packet::new_unchecked(data)) else {
        return;
    };
    let mut again = data.to_vec();
    repr.emit(&mut Packet::new_unchecked(&mut again[..]));
    assert_eq!(again, data, "emit changed a header that parsed");
    assert_eq!(Repr::parse(&Packet::new_unchecked(&again[..])), Ok(repr));
});
