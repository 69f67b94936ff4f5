//! Every Wi-Fi frame a scenario's sensors hear, with the simulator's truth, as CSV: for
//! research on the device estimate (`sensor-agent/research/estimate.py cadence`) where the
//! pcapng files, which carry only what a radio hears, are not enough.
//!
//!     cargo run --release -p crowdflow-simulator --example frames_csv -- \
//!         tests/data/three-squares.toml /tmp/frames.csv
//!
//! Columns: `t_us` (unix microseconds), `sensor` (index in the scenario), `fingerprint` (the
//! phone model's index, the stand-in for its capability elements), `address` (hex), `rssi`
//! (dBm), `device` (the sender; never on the air), `in_zone` (1 when its carrier was in the
//! sensor's zone). The file holds simulated identities only, never a real capture's.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use crowdflow_contract::identity::Medium;
use crowdflow_simulator::{Frame, Scenario, Simulation};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(scenario), Some(out)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: frames_csv SCENARIO.toml OUT.csv");
    };
    let (scenario, out) = (PathBuf::from(scenario), PathBuf::from(out));
    let s = Scenario::load(&scenario)?;
    let mut sim = Simulation::new(s.clone());
    let mut frames: Vec<Frame> = Vec::new();
    sim.advance(s.end.as_microsecond(), &mut frames);
    let file =
        std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::new(file);
    writeln!(w, "t_us,sensor,fingerprint,address,rssi,device,in_zone")?;
    for f in frames.iter().filter(|f| f.medium == Medium::Wifi) {
        let in_zone = sim.device_zone(f.device, f.t_us) == Some(s.sensors[f.sensor].zone);
        let address: String = f.address.iter().map(|b| format!("{b:02x}")).collect();
        let fingerprint = f.phone.map_or(-1, i32::from);
        writeln!(
            w,
            "{},{},{fingerprint},{address},{},{},{}",
            f.t_us,
            f.sensor,
            f.rssi,
            f.device,
            u8::from(in_zone)
        )?;
    }
    w.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
