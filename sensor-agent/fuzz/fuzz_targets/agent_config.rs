//! The agent's config parser on arbitrary text: an error naming the field, never a panic.
#![no_main]

use std::path::Path;

use crowdflow_agent::config::AgentConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = AgentConfig::parse(text, Path::new("fuzz.toml"), None);
    }
});
