//! Join tokens as a user pastes them: parsing arbitrary text never panics,
//! and a token that parses prints back to text that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_control::pki::JoinToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(token) = JoinToken::parse(text) else {
        return;
    };
    let again = JoinToken::parse(&token.to_string()).expect("a printed token parses");
    assert_eq!(again.to_string(), token.to_string());
});
