//! `crowdflow-simulator`: writes a scenario's crowd as per-sensor pcapng captures with its truth.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use crowdflow_simulator::{Scenario, Simulation, write_files};

/// Simulate a crowd from a scenario file: per-sensor pcapng captures and the truth.
#[derive(Debug, Parser)]
#[command(name = "crowdflow-simulator", version, about)]
struct Cli {
    /// The scenario (TOML; e.g. deploy/demo/koningsdag-utrecht.toml).
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,
    /// Where to write <sensor>.pcapng, truth.csv, heard.csv and heard_minutes.csv.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crowdflow-simulator: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let s = Scenario::load(&cli.scenario)?;
    let (zones, sensors) = (s.zones.len(), s.sensors.len());
    eprintln!(
        "simulating {:?}: {zones} zones, {sensors} sensors, {} to {}",
        s.name, s.start, s.end
    );
    let written = write_files(Simulation::new(s), &cli.out)
        .with_context(|| format!("writing into {}", cli.out.display()))?;
    println!(
        "{} people carrying {} devices",
        written.size.0, written.size.1
    );
    for (id, h) in &written.heard {
        println!(
            "{id}: {} probe requests from {} addresses, {} advertisements from {} addresses",
            h.wifi_frames, h.wifi_addresses, h.ble_frames, h.ble_addresses
        );
    }
    for f in &written.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
