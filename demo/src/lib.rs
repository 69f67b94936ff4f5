//! `crowdflow-demo`: the whole system on one machine, in the middle of an event. The
//! aggregator runs with its embedded broker and SQLite under the data directory; a simulated
//! crowd (Koningsdag in Utrecht unless another scenario is given) is heard by one in-process
//! agent per sensor, which counts and publishes over MQTT exactly as a Raspberry Pi would.
//!
//! The demo goes live at a simulated moment (`start`, 14:00 by default) in real time
//! (`speed` 1). First the event so far (the morning) is simulated at full speed and sent by
//! the sensors as catching-up sensors send their outboxes ([`history`]), so history holds
//! hours of data; then clicker counts of a few zones (the simulator's truth) go through the
//! aggregator's `calibrate` ([`clicker`]) and the aggregator restarts with the fitted
//! calibration, as an operator would; then the crowd plays live. The dashboard's header and
//! the plan show the simulated clock.
//!
//! Demo settings differ from production on purpose, and are written to DATA/aggregator.toml:
//! broker passwords drawn per run for the simulated sensors (so the broker's ACL applies as
//! in production; the file is readable by its owner only), a salt rotation placed so that
//! one salt covers the morning, and no tokens (anonymous requests get the planner role).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crowdflow_aggregator::config::{AggregatorConfig, new_secret};
use crowdflow_aggregator::salt::key_file::{self, KeyFileError};
use crowdflow_aggregator::service::{self, ServiceError};
use crowdflow_aggregator::store::{SqliteStore, StoreError};
use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::config_file::ConfigError;
use crowdflow_contract::salt::SaltError;
use crowdflow_contract::window::WindowLength;
use crowdflow_simulator::{Scenario, Simulation};
use jiff::{SignedDuration, Timestamp};

pub mod clicker;
pub mod clock;
mod feed;
pub mod history;
mod settings;
pub use clock::SimClock;
pub use feed::CrowdFeed;
pub use settings::{Day, SensorAccess, aggregator_text, in_process_agent};

/// The default crowd.
pub const KONINGSDAG: &str = include_str!("../../deploy/demo/koningsdag-utrecht.toml");

/// The agents' counting window in real time: the production default.
const WINDOW_S: u64 = 60;
/// ... and in fast-forward, so the compressed day shows movement.
const FAST_WINDOW_S: u64 = 10;
/// The zones' occupancy window in real time: the production default.
const OCCUPANCY_MIN: f64 = 5.0;
/// How long the live feed waits for every new agent to hold the salt (they get it within a
/// second or two of connecting; past this the feed starts, and the late agent's first
/// frames count as `no_salt`).
const SALT_WAIT: Duration = Duration::from_secs(20);

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// HTTP API and dashboard address.
    pub http: SocketAddr,
    /// Embedded broker port (on 127.0.0.1).
    pub mqtt_port: u16,
    /// Where every file goes.
    pub data: PathBuf,
    /// Scenario file; the built-in Koningsdag when absent.
    pub scenario: Option<PathBuf>,
    /// Simulated seconds per real second (1: real time).
    pub speed: f64,
    /// Simulated local time to go live at; the event before it is written into history
    /// first. `None`: 14:00 when the scenario holds it, else its start.
    pub start: Option<jiff::civil::Time>,
}

impl DemoOptions {
    fn window_s(&self) -> u64 {
        if self.speed > 1.0 {
            FAST_WINDOW_S
        } else {
            WINDOW_S
        }
    }

    /// The occupancy window in real minutes: 5 simulated minutes, at least one real one.
    fn occupancy_min(&self) -> u32 {
        (OCCUPANCY_MIN / self.speed).round().max(1.0) as u32
    }
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A scenario or generated config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    Data {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The demo aggregator's salt signing key could not be made or read.
    #[error(transparent)]
    SigningKey(#[from] KeyFileError),
    /// The operating system's random source failed (sensor passwords).
    #[error("cannot draw the simulated sensors' broker passwords: {0}")]
    Entropy(#[from] SaltError),
    /// The aggregator stopped.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Another program holds a port the demo needs (its sensors would talk to that program).
    #[error("{what} {addr} is in use by another program: choose another with {option}")]
    PortInUse {
        /// Which port.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The option that moves it.
        option: &'static str,
    },
    /// `--start` lies outside the scenario.
    #[error(transparent)]
    Start(#[from] clock::StartOutside),
    /// The morning could not be written into history.
    #[error(transparent)]
    History(#[from] history::HistoryError),
    /// The clicker counts could not be written.
    #[error("clicker counts {path}: {source}")]
    Counts {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The aggregator did not start serving in time.
    #[error("the aggregator did not answer on http://{0}/api/v1/health within 30 s")]
    NotServing(SocketAddr),
    /// Fast-forwarded with too little of the event before the live moment to calibrate on.
    #[error(
        "at --speed {speed} a live minute holds {speed} simulated minutes, which the guessed persons-per-device factor does not fit (it would show crowds several times too large); the demo calibrates it on clicker counts of the event before going live, which needs {needed} simulated minutes of it, and {scenario:?} has {have} before {live}: go live at {earliest} or later (--start), {faster}or run in real time (--speed 1)"
    )]
    TooFast {
        /// The asked speed.
        speed: f64,
        /// Simulated minutes of morning needed.
        needed: i64,
        /// Simulated minutes the scenario has before the live moment.
        have: i64,
        /// The scenario's name.
        scenario: String,
        /// The live moment, local time.
        live: String,
        /// The earliest live moment that calibrates, local time (or "never").
        earliest: String,
        /// "at --speed N or slower, " when some speed above 1 calibrates.
        faster: String,
    },
}

/// Runs the demo until `shutdown` completes, then stops every part cleanly.
pub async fn run(o: DemoOptions, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let data_error = |source| DemoError::Data {
        path: o.data.clone(),
        source,
    };
    // Before anything is written: a second demo on the same ports leaves the first one's
    // files alone.
    let mqtt = SocketAddr::from(([127, 0, 0, 1], o.mqtt_port));
    ensure_free(o.http, "the HTTP address", "--http")?;
    ensure_free(mqtt, "the MQTT port", "--mqtt-port")?;
    let scenario = match &o.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::parse(KONINGSDAG, Path::new("koningsdag-utrecht.toml"))?,
    };
    let real_live = floor_minute(Timestamp::now());
    let live_at = on_the_real_minute(
        clock::live_at(&scenario, o.start)?,
        real_live,
        &scenario,
        &o,
    );
    fast_enough_to_calibrate(&scenario, live_at, &o)?;
    std::fs::create_dir_all(&o.data).map_err(data_error)?;
    fresh_day(&o.data).map_err(data_error)?;
    let mut day = Day {
        clock: SimClock {
            sim_live_us: live_at.as_microsecond(),
            real_live,
            speed: o.speed,
        },
        calibration: BTreeMap::new(),
        admin_token: Some(new_secret()?),
    };
    let mut access = SensorAccess::for_scenario(&scenario)?;
    let mut sim = Simulation::new(scenario.clone());
    println!(
        "\ncrowdflow demo: {:?}, {} zones, {} simulated sensors, live from {} ({}){}",
        scenario.name,
        scenario.zones.len(),
        scenario.sensors.len(),
        local_time(live_at, &scenario),
        scenario.time_zone,
        if o.speed > 1.0 {
            format!(" at {}x real time", o.speed)
        } else {
            " in real time".into()
        }
    );
    let (stop_agents, agents_stopped) = tokio::sync::watch::channel(false);
    let mut agents = Agents::default();
    if live_at > scenario.start {
        let store = start_store(&scenario, &o, &mut access, &day)?;
        let morning = Aggregator::start(&scenario, &o, &access, &day, store.clone()).await?;
        let written = write_morning(&mut sim, &day, &o, &access, &store).await;
        // The live agents start now and take the morning's salt: they hand it back when the
        // aggregator restarts with its calibration (salt recovery, as real sensors do), so
        // the afternoon is counted under the morning's salt and flows and distinct counts
        // link across going live.
        if written.is_ok() {
            agents = Agents::start(&scenario, &o, &access, &agents_stopped)?;
            agents.wait_for_salt(Timestamp::now()).await;
            println!(
                "  the aggregator now restarts with the calibration; the simulated sensors keep the morning's salt and hand it back (their \"broker connection lost\" warnings are this restart)"
            );
        }
        morning.stop().await?;
        written?;
        day.calibration = clicker::calibrate(
            &sim,
            &day.clock,
            &o.data,
            &store,
            &config_of(&scenario, &o, &access, &day)?,
        )
        .await?;
    }
    let store = start_store(&scenario, &o, &mut access, &day)?;
    let mut aggregator = Aggregator::start(&scenario, &o, &access, &day, store.clone()).await?;
    // The minutes that passed while the morning was written and fitted: sent as history
    // too, so the live view opens on no gap (and no zone looks silent).
    let caught_up = floor_minute(Timestamp::now());
    if day.clock.sim_us(caught_up) > sim.now() {
        let until = day.clock.sim_us(caught_up);
        let to = history::Destination {
            mqtt_port: o.mqtt_port,
            access: &access,
            store: &store,
            window: window(&o)?,
        };
        let caught = history::write(&mut sim, &day.clock, until, to, |_| {}).await;
        if let Err(e) = caught {
            let _ = aggregator.stop().await;
            return Err(e);
        }
    }
    if agents.running.is_empty() {
        agents = Agents::start(&scenario, &o, &access, &agents_stopped)?;
    }
    // A new agent counts only once it holds the salt: the feed starts then, with what was
    // heard since `caught_up` (late, each frame in its own window), so no minute is
    // stored short.
    agents.wait_for_salt(caught_up).await;
    let Agents { running, ears } = agents;
    let agents = running;
    let feed = CrowdFeed::resume(sim, day.clock, caught_up, ears);
    println!("  dashboard   http://{}/", o.http);
    println!("  live zones  http://{}/api/v1/zones", o.http);
    println!("  API docs    http://{}/api/v1/openapi.json", o.http);
    println!("  MQTT        127.0.0.1:{}", o.mqtt_port);
    if let Some(token) = &day.admin_token {
        println!(
            "  admin token {token}  (this run only: sensor health at /api/v1/sensors, the dashboard's Token button)"
        );
    }
    println!("  data        {}", o.data.display());
    println!("Live numbers appear within a minute. Ctrl-C stops everything.\n");
    // Until Ctrl-C, or until the aggregator fails (a port in use, say).
    let failed = tokio::select! {
        () = shutdown => None,
        result = &mut aggregator.task => Some(result),
    };
    tracing::info!("stopping the demo");
    feed.stop();
    let _ = stop_agents.send(true);
    if let Some(result) = failed {
        for a in &agents {
            a.abort();
        }
        return match result {
            Ok(Ok(())) => Ok(()),
            failed => Err(aggregator_failed(failed, &o.data)),
        };
    }
    // Agents stop first, then the aggregator with its broker: a broker that goes away under
    // connected clients logs every one of them as an error.
    for a in agents {
        match tokio::time::timeout(Duration::from_secs(10), a).await {
            Ok(Ok(Err(e))) => tracing::warn!("an agent stopped with: {e}"),
            Ok(_) => {}
            Err(_) => tracing::warn!("an agent did not stop within 10 s"),
        }
    }
    aggregator.stop().await
}

/// The default live moment moved to the real clock's minute of the hour (14:00 becomes
/// 14:16 at 17:16), in real time: the store keeps hours and days on the real clock, so
/// simulated and real hours then start together and the history view's hourly buckets are
/// whole hours of the event. A `--start` given, or a fast-forward, is kept as asked.
fn on_the_real_minute(
    live_at: Timestamp,
    real_live: Timestamp,
    scenario: &Scenario,
    o: &DemoOptions,
) -> Timestamp {
    if o.start.is_some() || o.speed != 1.0 || live_at <= scenario.start {
        return live_at;
    }
    let minute = |t: Timestamp| t.as_second().div_euclid(60).rem_euclid(60);
    let shift = (minute(real_live) - minute(live_at)).rem_euclid(60);
    let moved = live_at + SignedDuration::from_mins(shift);
    if moved < scenario.end { moved } else { live_at }
}

/// The config for `day`, written to DATA/aggregator.toml (owner only), validated.
fn config_of(
    scenario: &Scenario,
    o: &DemoOptions,
    access: &SensorAccess,
    day: &Day,
) -> Result<AggregatorConfig, DemoError> {
    let text = aggregator_text(scenario, o, access, day);
    let path = o.data.join("aggregator.toml");
    write_owner_only(&path, &text).map_err(|source| DemoError::Data {
        path: o.data.clone(),
        source,
    })?;
    Ok(AggregatorConfig::parse(&text, &path, None)?)
}

/// Writes the config for `day`, pins the aggregator's salt key for the simulated sensors (as
/// real ones pin theirs) and opens the store.
fn start_store(
    scenario: &Scenario,
    o: &DemoOptions,
    access: &mut SensorAccess,
    day: &Day,
) -> Result<SqliteStore, DemoError> {
    let config = config_of(scenario, o, access, day)?;
    let (key, _) = key_file::load_or_create(&config.signing_key_file)?;
    access.trusted = TrustedKeys::new(vec![key.public_key()]);
    drop(key);
    Ok(SqliteStore::open(
        &o.data.join("crowdflow.db"),
        config.precision,
    )?)
}

/// The event from its start to the live moment, into history, with progress on stdout.
async fn write_morning(
    sim: &mut Simulation,
    day: &Day,
    o: &DemoOptions,
    access: &SensorAccess,
    store: &SqliteStore,
) -> Result<(), DemoError> {
    let scenario = sim.scenario().clone();
    let until = day.clock.sim_live_us;
    let to = history::Destination {
        mqtt_port: o.mqtt_port,
        access,
        store,
        window: window(o)?,
    };
    let shown = std::sync::atomic::AtomicU32::new(0);
    let started = std::time::Instant::now();
    let written = history::write(sim, &day.clock, until, to, |done| {
        let tenth = (done * 10.0) as u32;
        if shown.fetch_max(tenth, std::sync::atomic::Ordering::Relaxed) < tenth {
            println!("  writing the event so far into history: {}0 %", tenth);
        }
    })
    .await?;
    println!(
        "  history from {} to {}: {} frames, {} windows sent by {} sensors in {:.0?}",
        local_time(scenario.start, &scenario),
        local_time(SimClock::sim_timestamp(until), &scenario),
        written.frames.values().sum::<u64>(),
        written.messages,
        written.frames.len(),
        started.elapsed()
    );
    Ok(())
}

/// Removes a previous run's database, outboxes and counts: this run writes its morning at
/// real times the previous one may have used, under another salt, and the two would add up
/// (and its calibration would fit both). The salt signing key stays.
fn fresh_day(data: &Path) -> std::io::Result<()> {
    let mut replaced = false;
    for name in [
        "crowdflow.db",
        "crowdflow.db-wal",
        "crowdflow.db-shm",
        "clicker-counts.csv",
    ] {
        match std::fs::remove_file(data.join(name)) {
            Ok(()) => replaced = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_dir_all(data.join("outbox")) {
        Ok(()) => replaced = true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if replaced {
        println!(
            "  a fresh demo day in {} (the previous run's database and outboxes are replaced)",
            data.display()
        );
    }
    Ok(())
}

/// The agents' window for `o`.
fn window(o: &DemoOptions) -> Result<WindowLength, DemoError> {
    WindowLength::new(o.window_s()).map_err(|e| DemoError::Data {
        path: o.data.clone(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Refuses a fast-forward whose morning is too short to calibrate on: at speed N the live
/// window holds N simulated minutes of passers-by and rotated addresses, and the guessed
/// factor (fitted for minutes) read the surge scenario at 60x as 5,700 people in a crowd
/// of 1,650. In real time the guess holds and no morning is needed.
fn fast_enough_to_calibrate(
    scenario: &Scenario,
    live_at: Timestamp,
    o: &DemoOptions,
) -> Result<(), DemoError> {
    if o.speed <= 1.0 {
        return Ok(());
    }
    let needed = clicker::morning_needed(o.speed);
    let have = live_at.duration_since(scenario.start);
    if have >= needed {
        return Ok(());
    }
    let earliest = scenario.start + needed;
    Err(DemoError::TooFast {
        speed: o.speed,
        needed: needed.as_mins(),
        have: have.as_mins(),
        scenario: scenario.name.clone(),
        live: local_time(live_at, scenario),
        earliest: if earliest < scenario.end {
            local_time(earliest, scenario)
        } else {
            "never (the scenario ends first)".into()
        },
        faster: match clicker::fastest_for(have) {
            Some(s) => format!("at --speed {s} or slower, "),
            None => String::new(),
        },
    })
}

fn local_time(t: Timestamp, scenario: &Scenario) -> String {
    let tz = jiff::tz::TimeZone::get(&scenario.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    t.to_zoned(tz).strftime("%H:%M").to_string()
}

fn floor_minute(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second().div_euclid(60) * 60).unwrap_or(t)
}

async fn until_true(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The in-process agents of the simulated sensors, publishing.
#[derive(Default)]
struct Agents {
    running: Vec<tokio::task::JoinHandle<Result<(), crowdflow_agent::publish::RunError>>>,
    ears: Vec<crowdflow_agent::in_process::Ears>,
}

impl Agents {
    /// One agent per sensor of `scenario`, publishing until `stopped` turns true.
    fn start(
        scenario: &Scenario,
        o: &DemoOptions,
        access: &SensorAccess,
        stopped: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Agents, DemoError> {
        let mut agents = Agents::default();
        for s in &scenario.sensors {
            let agent = in_process_agent(&s.id, o.mqtt_port, &o.data, access, o.window_s())?;
            let (heard, running) = agent.start(until_true(stopped.clone()));
            agents.ears.push(heard);
            agents.running.push(tokio::spawn(running));
        }
        Ok(agents)
    }

    /// Waits until every agent holds the salt for `at`, or [`SALT_WAIT`] has passed.
    async fn wait_for_salt(&self, at: Timestamp) {
        let salted = Instant::now();
        while !self.ears.iter().all(|e| e.counting(at)) && salted.elapsed() < SALT_WAIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The demo's aggregator, serving.
struct Aggregator {
    task: tokio::task::JoinHandle<Result<(), ServiceError>>,
    stop: tokio::sync::watch::Sender<bool>,
    data: PathBuf,
}

impl Aggregator {
    /// Starts the aggregator with the config for `day` and waits until it serves: the
    /// simulated sensors connect only then, never to a broker another program started in
    /// the meantime.
    async fn start(
        scenario: &Scenario,
        o: &DemoOptions,
        access: &SensorAccess,
        day: &Day,
        store: SqliteStore,
    ) -> Result<Aggregator, DemoError> {
        let config = Arc::new(config_of(scenario, o, access, day)?);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut task = tokio::spawn(service::run(config, store, until_true(stopped)));
        tokio::select! {
            serving = serving(o.http) => serving?,
            result = &mut task => return Err(aggregator_failed(result, &o.data)),
        }
        Ok(Aggregator {
            task,
            stop,
            data: o.data.clone(),
        })
    }

    /// Stops it and waits (up to 10 s) until its ports are closed.
    async fn stop(self) -> Result<(), DemoError> {
        let _ = self.stop.send(true);
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(e)) => Err(aggregator_failed(Err(e), &self.data)),
            Err(_) => {
                tracing::warn!("the aggregator did not stop within 10 s");
                Ok(())
            }
        }
    }
}

type ServiceResult = Result<Result<(), ServiceError>, tokio::task::JoinError>;

/// Why the aggregator's task ended early.
fn aggregator_failed(result: ServiceResult, data: &Path) -> DemoError {
    match result {
        Ok(Ok(())) => DemoError::Data {
            path: data.to_path_buf(),
            source: std::io::Error::other("the aggregator stopped by itself"),
        },
        Ok(Err(e)) => e.into(),
        Err(e) => DemoError::Data {
            path: data.to_path_buf(),
            source: std::io::Error::other(format!("the aggregator task failed: {e}")),
        },
    }
}

/// Refuses an address another program listens on (checked by binding it, then letting go).
fn ensure_free(
    addr: SocketAddr,
    what: &'static str,
    option: &'static str,
) -> Result<(), DemoError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|_| DemoError::PortInUse { what, addr, option })
}

/// Completes when `http` answers its health check (every 100 ms, for up to 30 s).
async fn serving(http: SocketAddr) -> Result<(), DemoError> {
    for _ in 0..300 {
        if tokio::task::spawn_blocking(move || healthy(http))
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DemoError::NotServing(http))
}

/// Writes `text` to `path` readable by its owner only: the demo's config holds the simulated
/// sensors' broker passwords.
fn write_owner_only(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

fn healthy(http: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&http, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request =
        format!("GET /api/v1/health HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_configs_validate() {
        let o = DemoOptions {
            http: "127.0.0.1:8080".parse().expect("addr"),
            mqtt_port: 1883,
            data: PathBuf::from("/tmp/crowdflow-demo"),
            scenario: None,
            speed: 1.0,
            start: None,
        };
        let scenario = Scenario::parse(KONINGSDAG, Path::new("k.toml")).expect("scenario");
        let access = SensorAccess::for_scenario(&scenario).expect("entropy");
        let live = clock::live_at(&scenario, None).expect("14:00 is in the day");
        let day = Day {
            clock: SimClock {
                sim_live_us: live.as_microsecond(),
                real_live: "2026-12-01T12:00:00Z".parse().expect("ts"),
                speed: 1.0,
            },
            calibration: [(
                "neude".to_owned(),
                "ble = { factor = 0.9, floor = 3.0, error = 0.12, observations = 20 }".to_owned(),
            )]
            .into(),
            admin_token: Some("demo-admin-token".into()),
        };
        let config = AggregatorConfig::parse(
            &aggregator_text(&scenario, &o, &access, &day),
            Path::new("a.toml"),
            None,
        )
        .expect("aggregator config");
        let neude = config
            .zones
            .values()
            .find(|z| z.id.as_str() == "neude")
            .expect("neude");
        assert_eq!(
            neude.calibration[&crowdflow_contract::identity::Kind::Ble].error,
            Some(0.12)
        );
        assert_eq!(
            neude.occupancy_window_min, 5,
            "real time: the production default"
        );
        let replay = config
            .dashboard
            .replay_clock
            .as_ref()
            .expect("the simulated clock");
        assert_eq!(
            replay.at(day.clock.real_live),
            live,
            "14:00 at the live moment"
        );
        assert_eq!(replay.time_zone, "Europe/Amsterdam");
        assert_eq!(config.tokens.len(), 1, "the run's admin token");
        assert!(
            config.sensors.values().all(|s| s.location.is_some()),
            "the register shows where each sensor is"
        );
        assert_eq!(config.zones.len(), 10);
        for z in config.zones.values() {
            let ring = z.polygon.as_ref().expect("every demo zone has an outline")["coordinates"]
                [0]
            .as_array()
            .expect("a ring")
            .clone();
            assert_eq!(ring.len(), 25, "closed 24-gon");
            assert_eq!(ring[0], ring[24]);
        }
        assert_eq!(config.sensors.len(), scenario.sensors.len());
        assert_eq!(
            config.anonymous_role,
            Some(crowdflow_aggregator::config::Role::Planner)
        );
        assert!(
            config
                .broker_credentials()
                .is_some_and(|c| c.len() == scenario.sensors.len()),
            "every simulated sensor has a broker password"
        );
        let agent = in_process_agent("neude-1", o.mqtt_port, &o.data, &access, o.window_s())
            .expect("agent config");
        assert_eq!(agent.broker.port, o.mqtt_port);
        assert_eq!(
            agent.broker.password,
            access.passwords.get("neude-1").cloned()
        );
        assert!(agent.outbox_dir.starts_with(&o.data));
    }

    #[test]
    fn a_port_another_program_holds_is_refused_by_name() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = held.local_addr().expect("addr");
        let refused = ensure_free(addr, "the MQTT port", "--mqtt-port").expect_err("held");
        assert_eq!(
            refused.to_string(),
            format!(
                "the MQTT port {addr} is in use by another program: choose another with --mqtt-port"
            )
        );
        drop(held);
        ensure_free(addr, "the MQTT port", "--mqtt-port").expect("free again");
    }
}
