//! The one-gate scenario the restart and outage tests share: zone "gate" with one Wi-Fi
//! sensor "gate-1" that hears [`DEVICES`] devices once each, counted in [`WINDOW_S`] windows.
//! A fault may delay or repeat a window but must not change the count: exactly `DEVICES`.

use std::path::{Path, PathBuf};

use crate::capture::Probe;

/// Devices in a gate capture.
pub const DEVICES: u64 = 100;
/// Window length of the gate's agent and aggregator.
pub const WINDOW_S: u64 = 10;

/// One probe from each of [`DEVICES`] addresses (`prefix`, 0, the index), `spacing_us` apart
/// from the first second on. Each test has its own prefix, so no two tests' devices mix.
pub fn probes(prefix: [u8; 3], spacing_us: u64) -> Vec<Probe> {
    (0..DEVICES)
        .map(|i| Probe {
            t_us: 1_000_000 + i * spacing_us,
            address: [
                prefix[0],
                prefix[1],
                prefix[2],
                0x00,
                (i >> 8) as u8,
                i as u8,
            ],
        })
        .collect()
}

/// Writes gate-1's agent config to `dir/agent.toml`: it replays `pcap` to the broker on
/// `mqtt_port`, with its outbox in `dir/outbox`.
pub fn agent_config(dir: &Path, mqtt_port: u16, pcap: &Path) -> PathBuf {
    crate::replay_agent_config(dir, "gate-1", mqtt_port, pcap, WINDOW_S)
}

/// Writes an aggregator config to `path`: `head` (its own `[http]`, `[broker]`, `[storage]`
/// and `[salt]` sections), then the gate's window length, zone and sensor.
pub fn aggregator_config(path: &Path, head: &str) -> PathBuf {
    let text = format!(
        "{head}\n[counting]\nwindow_s = {WINDOW_S}\n\
         [[zones]]\nid = \"gate\"\nname = \"Gate\"\narea_m2 = 800.0\n\
         [[sensors]]\nid = \"gate-1\"\nzone = \"gate\"\nsenses = [\"wifi\"]\n"
    );
    std::fs::write(path, text).expect("aggregator config");
    path.to_path_buf()
}
