//! Compose files for `shoal stack deploy`: planning arbitrary text never
//! panics, and a refused file always says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_control::stack::plan;

fuzz_target!(|text: &str| {
    if let Err(e) = plan("fuzz.yml", text, "fuzz") {
        assert!(!e.0.is_empty(), "a refusal lists its problems");
    }
});
