//! `crowdflow-aggregator`: the aggregator's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crowdflow_aggregator::calibration::{self, Report};
use crowdflow_aggregator::config::{
    AggregatorConfig, BROKER_PASSWORD_ENV, StorageConfig, hash_token, new_secret,
};
use crowdflow_aggregator::salt::key_file;
use crowdflow_aggregator::store::{PostgresStore, SqliteStore};
use crowdflow_aggregator::{process, service};

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
    /// The salt signing key: `show` prints the public key agents pin (making the key file
    /// named by the config if there is none); `new FILE` makes a key file.
    SaltKey {
        #[command(subcommand)]
        action: SaltKeyAction,
    },
    /// Check a config file and say what to fix.
    Validate {
        /// The aggregator's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Fit people = factor x (devices - floor) per zone against head counts, judge it on
    /// held-out counts, and print a table per zone and the TOML to paste. Exits 1 when no
    /// zone could be fitted, 2 on a bad file.
    Calibrate {
        /// The aggregator's config file (its zones and storage).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Head counts: the header `zone,start,end,people`, then one count a row
        /// (RFC 3339 start and end on whole minutes, people >= 0).
        #[arg(long, value_name = "COUNTS.csv")]
        counts: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SaltKeyAction {
    /// Print the public key of the config's salt.signing_key_file (made if missing), as the
    /// line to put in each agent's `[salt]` section.
    Show {
        /// The aggregator's config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Make a new key file (never over an existing one) and print its public key.
    New {
        /// Where to write the key (PKCS#8 PEM, owner read/write only).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    process::init_logging();
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
            for caution in c.zones.values().flat_map(|z| z.cautions()) {
                println!("caution: {caution}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Calibrate { config, counts } => calibrate(&config, &counts),
        Command::SaltKey { action } => {
            let key = match action {
                SaltKeyAction::Show { config } => {
                    let c = load(&config)?;
                    key_file::load_or_create(&c.signing_key_file)?.0
                }
                SaltKeyAction::New { file } => key_file::create(&file)?,
            };
            println!("[salt]\ntrusted_keys = [\"{}\"]", key.public_key());
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
            for caution in c.zones.values().flat_map(|z| z.cautions()) {
                tracing::warn!("{caution}");
            }
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
                        service::run(c.clone(), store, process::shutdown_signal())
                            .await
                            .context("aggregator stopped")
                    }
                    StorageConfig::Postgres { url } => {
                        let store = PostgresStore::open(url, c.precision)
                            .await
                            .context("opening the PostgreSQL database (storage.url)")?;
                        service::run(c.clone(), store, process::shutdown_signal())
                            .await
                            .context("aggregator stopped")
                    }
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `calibrate`: the report on stdout; exit 1 when no zone was fitted.
fn calibrate(config: &Path, counts: &Path) -> anyhow::Result<ExitCode> {
    let c = load(config)?;
    let text = std::fs::read(counts).with_context(|| format!("reading {}", counts.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report: Report = runtime
        .block_on(async {
            match &c.storage {
                StorageConfig::Sqlite { path } => {
                    // Opening would make an empty store: say what is missing instead.
                    anyhow::ensure!(
                        path.exists(),
                        "{}: no store there (storage.path): calibrate reads the minutes the \
                         aggregator stored",
                        path.display()
                    );
                    let store = SqliteStore::open(path, c.precision)
                        .with_context(|| format!("opening {}", path.display()))?;
                    Ok(calibration::calibrate(&store, &c.zones, &c.rotation, &text).await?)
                }
                StorageConfig::Postgres { url } => {
                    let store = PostgresStore::open(url, c.precision)
                        .await
                        .context("opening the PostgreSQL database (storage.url)")?;
                    Ok(calibration::calibrate(&store, &c.zones, &c.rotation, &text).await?)
                }
            }
        })
        .with_context(|| format!("calibrating on {}", counts.display()))?;
    print!("{report}");
    Ok(if report.fitted == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
