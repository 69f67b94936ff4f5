//! `crowdflow-demo`: the whole system on this machine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use crowdflow_aggregator::process;
use crowdflow_demo::DemoOptions;

/// The whole crowdflow system on this machine, in the middle of an event: the aggregator with
/// its embedded broker and SQLite, simulated sensors counting Koningsdag in Utrecht live from
/// 14:00 (the morning written into history first and calibrated on clicker counts), the API
/// and the dashboard. Ctrl-C stops it.
#[derive(Debug, Parser)]
#[command(name = "crowdflow-demo", version, about)]
struct Cli {
    /// Where the HTTP API and dashboard listen.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
    /// Port of the embedded MQTT broker (on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 11883)]
    mqtt_port: u16,
    /// Directory for every file the demo writes (database, outboxes, config).
    #[arg(long, value_name = "DIR", default_value = "crowdflow-demo")]
    data: PathBuf,
    /// Another scenario file (default: Koningsdag in Utrecht).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Simulated seconds per real second: 1 is real time. More fast-forwards: a stored
    /// minute then holds N simulated minutes, and the calibration is fitted on the morning's
    /// minutes, which hold as many, so people stay true as means over the occupancy window's
    /// real minutes (at least one).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Simulated local time to go live at (HH:MM); the event before it is written into
    /// history first. Default: 14:00 when the scenario holds it, else its start.
    #[arg(long, value_name = "HH:MM")]
    start: Option<jiff::civil::Time>,
}

fn main() -> ExitCode {
    process::init_logging();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crowdflow-demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    anyhow::ensure!(cli.speed >= 1.0, "--speed must be at least 1");
    let options = DemoOptions {
        http: cli.http,
        mqtt_port: cli.mqtt_port,
        data: cli.data,
        scenario: cli.scenario,
        speed: cli.speed,
        start: cli.start,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(crowdflow_demo::run(options, process::shutdown_signal()))
        .context("demo stopped")
}
