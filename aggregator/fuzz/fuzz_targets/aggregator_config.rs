//! The aggregator's config parser on arbitrary text: an error naming the field, never a panic.
#![no_main]

use std::path::Path;

use crowdflow_aggregator::config::AggregatorConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = AggregatorConfig::parse(text, Path::new("fuzz.toml"), None);
    }
});
