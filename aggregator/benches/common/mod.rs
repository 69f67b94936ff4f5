//! What the benchmarks share: for the history ones, the aggregator config of `zones`
//! calibrated zones with one sensor each, on SQLite at `db`, and the planner token the
//! requests carry; for the ingest ones, [`load`]. Each benchmark uses a part of it.
#![allow(dead_code)]

pub mod load;

use std::path::Path;
use std::sync::Arc;

use crowdflow_aggregator::config::{AggregatorConfig, hash_token};

/// The planner token of the benchmarks' requests.
pub const TOKEN: &str = "bench-planner";

/// The config: zone `z{i}` with sensor `s{i}` for i in 0..zones.
pub fn config(db: &Path, zones: u64) -> Arc<AggregatorConfig> {
    let mut text = format!(
        "[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:1883\"\n[storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [[tokens]]\nname = \"bench\"\nrole = \"planner\"\nblake3 = \"{}\"\n",
        db.display(),
        hash_token(TOKEN).to_hex()
    );
    for z in 0..zones {
        text += &format!(
            "[[zones]]\nid = \"z{z}\"\nname = \"Zone {z}\"\narea_m2 = 1000.0\ncalibration = {{ wifi_random = 0.35 }}\n\
             [[sensors]]\nid = \"s{z}\"\nzone = \"z{z}\"\n"
        );
    }
    Arc::new(AggregatorConfig::parse(&text, Path::new("bench.toml"), None).expect("config"))
}
