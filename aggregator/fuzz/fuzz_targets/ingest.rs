//! Ingest validation on arbitrary MQTT messages: a leading 0, 1 or 2 byte sends the rest as
//! another configured sensor's, an unknown sensor's, or with itself as the topic; anything
//! else (the envelope fixtures as seeds) goes to sensor s1's topic. Every message is accepted
//! or rejected with a reason, never a panic.
#![no_main]

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use crowdflow_aggregator::config::AggregatorConfig;
use crowdflow_aggregator::ingest::Validator;
use crowdflow_aggregator::metrics::Metrics;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[broker]
mode = "embedded"
[storage]
kind = "sqlite"
path = "fuzz.db"
[[zones]]
id = "square"
name = "Square"
area_m2 = 1000.0
[[sensors]]
id = "s1"
zone = "square"
[[sensors]]
id = "s2"
zone = "square"
"#;

thread_local! {
    static INGEST: RefCell<Validator> = RefCell::new(ingest());
}

fn ingest() -> Validator {
    let config = AggregatorConfig::parse(CONFIG, Path::new("fuzz.toml"), None)
        .expect("the fuzz target's own config is valid");
    Validator::new(Arc::new(config), Metrics::default())
}

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.split_first() {
        Some((0, rest)) => ("crowdflow/v1/sketch/s2".to_owned(), rest),
        Some((1, rest)) => ("crowdflow/v1/sketch/unknown".to_owned(), rest),
        Some((2, rest)) => (String::from_utf8_lossy(rest).into_owned(), rest),
        _ => ("crowdflow/v1/sketch/s1".to_owned(), data),
    };
    let now = jiff::Timestamp::now();
    INGEST.with(|i| {
        let _ = i.borrow_mut().check(&topic, payload, now);
    });
});
