//! The embed-mode tables file: arbitrary UTF-8 through the YAML/JSON parser
//! and the validator must never panic, only report errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_dataplane::tables::Tables;

fuzz_target!(|text: &str| {
    if let Ok(tables) = Tables::from_yaml_str(text) {
        let _ = tables.validate();
        let _ = tables.check_host(&|name| name.len() % 2 == 0);
    }
});
