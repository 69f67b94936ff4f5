//! `crowdflow-aggregator`: the aggregator's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crowdflow_aggregator::config::{
    AggregatorConfig, BROKER_PASSWORD_ENV, StorageConfig, hash_token, new_secret,
};
use crowdflow_aggregator::service;
use crowdflow_aggregator::store::{PostgresStore, SqliteStore};

/// crowdflow aggregator: salt authority, sketch ingest and storage.
#[derive(Debug, Parser)]
#[command(name = "crowdflow-aggregator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the aggregator until stopped (SIGINT/SIGTERM).
    Run {
        /// The aggregator's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Make an API token: prints the token once (give it to its holder) and the
    /// `[[tokens]]` entry for the config, which holds only its hash.
    NewToken {
        /// Who holds it, e.g. "control-room".
        #[arg(long)]
        name: String,
        /// viewer (live), planner (history, flows, exports) or admin (sensors, config).
        #[arg(long, value_parser = ["viewer", "planner", "admin"])]
        role: String,
    },
    /// Print the hash of a token read from standard input (for the config's `blake3`).
    HashToken,
    /// The whole system on this machine: embedded broker and SQLite, simulated sensors
    /// replaying a compressed Koningsdag, the API and dashboard. Ctrl-C stops it.
    Demo {
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
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
    },
    /// Check a config file and say what to fix.
    Validate {
        /// The aggregator's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Logs go to stderr at the level named by CROWDFLOW_LOG (default info); no level logs a
/// salt or payload contents.
fn init_logging() {
    let level = std::env::var("CROWDFLOW_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The embedded broker logs every connection at info; keep it to warnings.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target(
            "rumqttd",
            level.min(tracing_subscriber::filter::LevelFilter::WARN),
        );
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .with(QuietBroker)
        .init();
}

/// Drops what rumqttd 0.20 logs as errors when a client simply goes away: an ordinary
/// disconnect (a DISCONNECT packet, then the socket closing) comes out as two errors, and a
/// client process that exits with bytes still unread resets its socket, and a connection
/// closed before its CONNECT packet (a monitoring system's TCP check of the port) is one more.
/// Each made every agent restart, demo stop or health check look like a failure; a sensor
/// that really vanished is reported by its stale alert. Other errors at the same call sites
/// (a malformed packet, a refused connection) still show. Call sites are matched by file and line in the pinned
/// version; after an upgrade they simply stop matching.
struct QuietBroker;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietBroker {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !benign_broker_error(event)
    }
}

fn benign_broker_error(event: &tracing::Event<'_>) -> bool {
    let m = event.metadata();
    let at = |file: &str, lines: &[u32]| {
        m.file().is_some_and(|f| f.ends_with(file)) && m.line().is_some_and(|l| lines.contains(&l))
    };
    if !m.target().starts_with("rumqttd") {
        return false;
    }
    if at("src/router/routing.rs", &[416, 436, 539]) || at("src/server/broker.rs", &[581]) {
        return true;
    }
    let error = || {
        let mut error = ErrorField::default();
        event.record(&mut error);
        error.0
    };
    if at("src/server/broker.rs", &[512]) {
        return error().contains("connection closed by peer");
    }
    at("src/server/broker.rs", &[592]) && {
        let error = error();
        ["ConnectionReset", "BrokenPipe", "UnexpectedEof"]
            .iter()
            .any(|k| error.contains(k))
    }
}

/// The `error` field of an event, as its Debug text.
#[derive(Default)]
struct ErrorField(String);

impl tracing::field::Visit for ErrorField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "error" {
            self.0 = format!("{value:?}");
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crowdflow-aggregator: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &Path) -> anyhow::Result<AggregatorConfig> {
    Ok(AggregatorConfig::load(
        path,
        std::env::var(BROKER_PASSWORD_ENV).ok(),
    )?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { config } => {
            let c = load(&config)?;
            println!(
                "{}: valid ({} zones, {} sensors, salt rotates at {} {})",
                config.display(),
                c.zones.len(),
                c.sensors.len(),
                c.rotation.rotation_time(),
                c.rotation.time_zone()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::NewToken { name, role } => {
            let token = new_secret().context("making a token")?;
            println!("token (shown once; give it to {name}): {token}\n");
            println!(
                "[[tokens]]\nname = {name:?}\nrole = {role:?}\nblake3 = \"{}\"",
                hash_token(&token).to_hex()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            http,
            mqtt_port,
            data,
            scenario,
            speed,
        } => {
            anyhow::ensure!(speed >= 1.0, "--speed must be at least 1");
            let options = crowdflow_aggregator::demo::DemoOptions {
                http,
                mqtt_port,
                data,
                scenario,
                speed,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime
                .block_on(crowdflow_aggregator::demo::run(options, shutdown_signal()))
                .context("demo stopped")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::HashToken => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the token from standard input")?;
            let token = line.trim();
            anyhow::ensure!(!token.is_empty(), "no token on standard input");
            println!("{}", hash_token(token).to_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let c = Arc::new(load(&config)?);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                match &c.storage {
                    StorageConfig::Sqlite { path } => {
                        let store = SqliteStore::open(path, c.precision)
                            .with_context(|| format!("opening {}", path.display()))?;
                        service::run(c.clone(), store, shutdown_signal())
                            .await
                            .context("aggregator stopped")
                    }
                    StorageConfig::Postgres { url } => {
                        let store = PostgresStore::open(url, c.precision)
                            .await
                            .context("opening the PostgreSQL database (storage.url)")?;
                        service::run(c.clone(), store, shutdown_signal())
                            .await
                            .context("aggregator stopped")
                    }
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
