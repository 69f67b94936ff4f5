//! `crowdflow-agent`: the sensor agent's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crowdflow_agent::config::{AgentConfig, PASSWORD_ENV};
use crowdflow_agent::counting::devices::DeviceRule;
use crowdflow_agent::frame::{FcsRule, FramePolicy};
use crowdflow_agent::replay::{Pace, replay_windows};
use crowdflow_agent::{agent, selfcheck};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::window::WindowLength;

/// crowdflow sensor agent: counts devices by salted sketches, never by address.
#[derive(Debug, Parser)]
#[command(name = "crowdflow-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture, count and publish sketches until stopped (SIGINT/SIGTERM).
    Run {
        /// The agent's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check capture, clock, outbox, broker and salt delivery, and say what to fix.
    Selfcheck {
        /// The agent's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Seconds to wait for the broker and for the salt.
        #[arg(long, default_value_t = 10)]
        timeout_s: u64,
    },
    /// Check a config file and say what to fix.
    Validate {
        /// The agent's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Count capture files offline with a fresh random salt and print the counts.
    Replay {
        /// A pcap, pcapng or btsnoop file (radiotap, 802.11, PPI, BLE LL, nRF Sniffer, HCI);
        /// repeat for several; `-` reads standard input (e.g. `tcpdump -w - | ...`).
        #[arg(long = "pcap", required = true, value_name = "FILE")]
        pcaps: Vec<PathBuf>,
        /// Print one JSON object instead of the human summary.
        #[arg(long)]
        json: bool,
        /// Replay at the recorded speed instead of as fast as possible.
        #[arg(long)]
        recorded_speed: bool,
        /// Count Wi-Fi frames whatever their FCS says, as tshark does by default: for
        /// captures whose addresses were rewritten without recomputing the FCS.
        #[arg(long)]
        ignore_fcs: bool,
        /// Also count per UTC-aligned window of this length (e.g. `60s`, `15m`, `1h`; must
        /// divide a day), with the physical Wi-Fi device estimate of each window.
        #[arg(long, value_name = "DURATION", value_parser = parse_window)]
        window: Option<WindowLength>,
        /// Skip frames weaker than this (dBm), as the zone gate `capture.min_rssi_dbm` does
        /// live; it replaces the learned gate of the device estimate.
        #[arg(long, value_name = "DBM", allow_negative_numbers = true, value_parser = parse_min_rssi)]
        min_rssi: Option<i8>,
        /// How the device estimate reads a capability group, as `capture.device_count` does
        /// live: `auto` (through its scans in crowd minutes only) or `scans` (in every
        /// minute: a passage, street or square where people pass).
        #[arg(long, value_name = "RULE", default_value = "auto", value_parser = parse_device_count, requires = "window")]
        device_count: DeviceRule,
    },
}

const ZERO_WINDOW: &str = "a window of length 0 counts nothing: give e.g. 60s, 15m or 1h";

/// A window length such as `900s`, `15m` or `1h`. A bare number is refused: `15` read as
/// seconds where minutes were meant gives 60 times the windows without a word.
fn parse_window(text: &str) -> Result<WindowLength, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("give a length with a unit, e.g. 60s, 15m or 1h".to_owned());
    }
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let factor = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "" if !number.is_empty() && number.bytes().all(|b| b == b'0') => {
            return Err(ZERO_WINDOW.to_owned());
        }
        "" => return Err(format!("give a unit: {number}s or {number}m (s, m or h)")),
        _ => return Err("use seconds, minutes or hours, e.g. 60s, 15m, 1h".into()),
    };
    let seconds = match number.parse::<u64>() {
        Ok(n) if n.saturating_mul(factor) > 86_400 => {
            return Err("too long: a window is at most a day (86400s, 1440m, 24h)".to_owned());
        }
        Ok(0) => return Err(ZERO_WINDOW.to_owned()),
        Ok(n) => n * factor,
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
            return Err("too long: a window is at most a day (86400s, 1440m, 24h)".to_owned());
        }
        Err(_) => return Err("use a whole number with s, m or h, e.g. 15m".to_owned()),
    };
    WindowLength::new(seconds).map_err(|e| e.to_string())
}

/// `auto` or `scans`, as the config's `capture.device_count` takes.
fn parse_device_count(text: &str) -> Result<DeviceRule, String> {
    DeviceRule::named(text)
        .ok_or_else(|| "use auto (a room, or unsure) or scans (a passage, street or square)".into())
}

/// A signal gate in dBm, in the range the config's `capture.min_rssi_dbm` takes.
fn parse_min_rssi(text: &str) -> Result<i8, String> {
    text.trim()
        .parse::<i8>()
        .ok()
        .filter(|v| (-120..=0).contains(v))
        .ok_or_else(|| {
            format!("{text:?} is not a signal gate: give whole dBm between -120 and 0, e.g. -75")
        })
}

/// Prints a line to stderr; a stderr that cannot be written (closed, a full disk) leaves the
/// exit status to say what happened.
fn print_stderr(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints `text` to stdout. A reader that went away (`| head`) ends the output quietly, as
/// in other command-line tools; any other failure (a full disk) is an error naming stdout.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing the report to standard output"),
    }
}

/// Logs go to stderr at the level named by CROWDFLOW_LOG (error, warn, info, debug, trace;
/// default info). No level ever logs an address, a device hash or a salt.
fn init_logging() {
    let level = std::env::var("CROWDFLOW_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            print_stderr(&format!("crowdflow-agent: {e:#}"));
            ExitCode::from(2)
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    Ok(AgentConfig::load(path, std::env::var(PASSWORD_ENV).ok())?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { config } => {
            let c = load(&config)?;
            let unreadable = selfcheck::unreadable_capture_files(&c.source);
            if !unreadable.is_empty() {
                anyhow::bail!(
                    "{}: `capture.pcap`: {}",
                    config.display(),
                    unreadable.join("; ")
                );
            }
            println!(
                "{}: valid (sensor {}, broker {}:{}, window {} s, lg_k {})",
                config.display(),
                c.sensor_id,
                c.broker.host,
                c.broker.port,
                c.window.seconds(),
                c.precision.lg_k()
            );
            // What the aggregator's `senses` for this sensor must allow (a pcap source's
            // default comes from its files).
            let kinds: Vec<String> = c.source.kinds().iter().map(|k| k.to_string()).collect();
            println!("publishes: {}", kinds.join(", "));
            if c.source.kinds().contains(&Kind::WifiDerandomized) {
                println!("{}", device_gate(c.policy.min_rssi));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Selfcheck { config, timeout_s } => {
            // an installer's report: a config at fault is the first line to fix, not a crash
            let c = match load(&config) {
                Ok(c) => c,
                Err(e) => {
                    println!("FAIL config   {e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            println!(
                "ok   config   {} is valid (sensor {})",
                config.display(),
                c.sensor_id
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let checks = runtime.block_on(selfcheck::run(
                &c,
                std::time::Duration::from_secs(timeout_s),
            ));
            for check in &checks {
                println!("{check}");
            }
            Ok(if checks.iter().all(|c| c.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Run { config } => {
            let c = load(&config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime
                .block_on(agent::run(c, shutdown_signal()))
                .context("agent stopped")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            pcaps,
            json,
            recorded_speed,
            ignore_fcs,
            window,
            min_rssi,
            device_count,
        } => {
            let pace = if recorded_speed {
                Pace::Recorded
            } else {
                Pace::Fast
            };
            let policy = FramePolicy {
                fcs: if ignore_fcs {
                    FcsRule::Ignore
                } else {
                    FcsRule::Check
                },
                min_rssi,
                devices: device_count,
                ..FramePolicy::default()
            };
            interrupt_replay_on_signal();
            let report = replay_windows(&pcaps, &policy, pace, window).context("replay failed")?;
            if json {
                let mut text = serde_json::to_string(&report).context("encoding the report")?;
                text.push('\n');
                print_stdout(&text)?;
            } else if report.counted.values().any(|&n| n > 0) || report.errors.len() < pcaps.len() {
                // a table only when something was counted or a file read cleanly: a lone
                // unreadable file, or one of a link type not supported, gets its error and
                // no table of zeros (a Prism capture's 13 frames read as "0 devices")
                print_stdout(&report.render())?;
            }
            for w in &report.warnings {
                print_stderr(&format!("crowdflow-agent: warning: {w}"));
            }
            for e in &report.errors {
                print_stderr(&format!("crowdflow-agent: error: {e}"));
            }
            Ok(if report.interrupted {
                ExitCode::from(INTERRUPT_EXIT.load(std::sync::atomic::Ordering::Relaxed))
            } else if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// What `validate` says of the device estimate's signal gate: a fixed gate replaces the
/// learned one, which is what an installer copying a value from somewhere should know.
fn device_gate(fixed: Option<i8>) -> String {
    match fixed {
        Some(dbm) => format!(
            "device gate: fixed at {dbm} dBm by capture.min_rssi_dbm (it replaces the gate the device estimate learns from this sensor's signal levels; unset it unless the learned gate cuts the zone's own far side: docs/counting-devices.md)"
        ),
        None => "device gate: learned from this sensor's signal levels (after 500 frames with a signal reading)".to_owned(),
    }
}

/// The exit status of a replay a signal stopped: 128 + the signal's number, as the shell
/// reports a process a signal ended (130 for SIGINT, 143 for SIGTERM).
static INTERRUPT_EXIT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(130);

/// 128 + the number of the signal [`next_signal`] named.
fn exit_status(signal: &str) -> u8 {
    if signal == "SIGTERM" { 143 } else { 130 }
}

/// The first SIGINT or SIGTERM stops the replay at its next frame, which then prints what it
/// counted; a second one ends the process at once (exit 128 + the signal's number).
fn interrupt_replay_on_signal() {
    let watch = || -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let second = runtime.block_on(async {
            let first = next_signal().await;
            INTERRUPT_EXIT.store(exit_status(first), std::sync::atomic::Ordering::Relaxed);
            crowdflow_agent::replay::interrupt();
            next_signal().await
        });
        std::process::exit(i32::from(exit_status(second)));
    };
    let warn = |e: std::io::Error| {
        print_stderr(&format!(
            "crowdflow-agent: warning: Ctrl-C will end replay without its counts ({e})"
        ));
    };
    let started = std::thread::Builder::new()
        .name("replay-signals".to_owned())
        .spawn(move || watch().map_err(warn));
    if let Err(e) = started {
        warn(e);
    }
}

/// Completes on SIGINT or SIGTERM: the agent's open windows go to the outbox.
async fn shutdown_signal() {
    let signal = next_signal().await;
    tracing::info!(
        signal,
        "stopping: the open windows go to the outbox, sent at the next start"
    );
}

/// The next SIGINT or SIGTERM, by name.
async fn next_signal() -> &'static str {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        return tokio::select! {
            _ = ctrl_c => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
    }
    let _ = ctrl_c.await;
    "SIGINT"
}
