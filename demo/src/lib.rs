//! `crowdflow-demo`: the whole system on one machine. The aggregator runs with its
//! embedded broker and SQLite under the data directory; one in-process agent per sensor of a
//! simulated crowd (Koningsdag in Utrecht unless another scenario is given) counts and
//! publishes over MQTT exactly as a Raspberry Pi would, fed by the simulator in compressed
//! time (`speed` simulated seconds per real second; default 60, an hour per minute).
//!
//! Demo settings differ from production on purpose, and are written to DATA/aggregator.toml:
//! 10 s windows and a 1 minute occupancy window (an hour of simulated crowd), broker
//! passwords drawn per run for the simulated sensors (so the broker's ACL applies as in
//! production; the file is readable by its owner only), and no tokens (anonymous requests get
//! the planner role).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crowdflow_agent::config::Broker;
use crowdflow_agent::in_process::InProcessAgent;
use crowdflow_aggregator::config::{AggregatorConfig, new_secret};
use crowdflow_aggregator::salt::key_file::{self, KeyFileError};
use crowdflow_aggregator::service::{self, ServiceError};
use crowdflow_aggregator::store::{SqliteStore, StoreError};
use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::config_file::ConfigError;
use crowdflow_contract::salt::SaltError;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::{SensorId, Topics};
use crowdflow_simulator::Scenario;

mod feed;
pub use feed::CrowdFeed;

/// The default crowd.
pub const KONINGSDAG: &str = include_str!("../../deploy/demo/koningsdag-utrecht.toml");

/// The agents' counting window: 10 s, so the compressed day shows movement.
const WINDOW_S: u64 = 10;
/// Outbox bound of each simulated sensor (the agents' default).
const OUTBOX_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Persons per BLE address heard in a 1-minute window, from the simulator's population
/// (phones advertising, wearables, address rotation): the demo's calibration.
const BLE_CALIBRATION: f64 = 1.3;

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
    /// Simulated seconds per real second.
    pub speed: f64,
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
    /// The aggregator did not start serving in time.
    #[error("the aggregator did not answer on http://{0}/api/v1/health within 30 s")]
    NotServing(SocketAddr),
}

/// Where the scenario's origin (metres east/north 0, 0) is put on the map: Utrecht's Dom
/// tower, the Koningsdag scenario's origin, as (latitude, longitude).
const ORIGIN: (f64, f64) = (52.090_74, 5.121_40);
/// Persons per m2 at which a demo zone is full: the "crowded" level of service.
const CAPACITY_DENSITY: f64 = 3.5;

/// A zone's circle as a 24-sided GeoJSON polygon (inline TOML) for the dashboard's plan.
fn outline(x: f64, y: f64, radius_m: f64) -> String {
    const M_PER_DEG_LAT: f64 = 111_320.0;
    let m_per_deg_lon = M_PER_DEG_LAT * ORIGIN.0.to_radians().cos();
    let corners: Vec<String> = (0..=24)
        .map(|i| {
            let a = f64::from(i % 24) * std::f64::consts::TAU / 24.0;
            let lon = ORIGIN.1 + (x + radius_m * a.cos()) / m_per_deg_lon;
            let lat = ORIGIN.0 + (y + radius_m * a.sin()) / M_PER_DEG_LAT;
            format!("[{lon:.6}, {lat:.6}]")
        })
        .collect();
    format!(
        "{{ type = \"Polygon\", coordinates = [[{}]] }}",
        corners.join(", ")
    )
}

/// What the demo's simulated sensors present, as real ones do: a broker password each (the
/// embedded broker wants credentials from everyone once sensors have them), and the demo
/// aggregator's salt key pinned.
#[derive(Debug, Clone, Default)]
pub struct SensorAccess {
    /// The salt authority keys the sensors trust.
    pub trusted: TrustedKeys,
    /// Broker password by sensor id, drawn for this run only.
    pub passwords: BTreeMap<String, String>,
}

impl SensorAccess {
    /// Fresh random passwords for every sensor of `scenario`; no key pinned yet.
    pub fn for_scenario(scenario: &Scenario) -> Result<SensorAccess, SaltError> {
        let passwords = scenario
            .sensors
            .iter()
            .map(|s| Ok((s.id.clone(), new_secret()?)))
            .collect::<Result<_, SaltError>>()?;
        Ok(SensorAccess {
            trusted: TrustedKeys::default(),
            passwords,
        })
    }
}

/// The aggregator config the demo writes for `scenario` (also the scale benchmark's), with
/// the sensors' broker passwords from `access`.
pub fn aggregator_text(scenario: &Scenario, o: &DemoOptions, access: &SensorAccess) -> String {
    let mut t = format!(
        "# Generated by `crowdflow-demo` for scenario {:?}.\n[http]\nlisten = \"{}\"\nanonymous_role = \"planner\"\n\
         [broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{}\"\n[storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [salt]\nannounce_every_s = 10\nrecover_for_s = 0\n[counting]\nwindow_s = {WINDOW_S}\n\
         [privacy]\noperator = \"crowdflow demo (simulated crowd, no real devices)\"\npurpose = \"demonstration\"\n",
        scenario.name,
        o.http,
        o.mqtt_port,
        o.data.join("crowdflow.db").display()
    );
    t += &format!("[dashboard]\ntitle = \"{} (simulated)\"\n", scenario.name);
    for z in &scenario.zones {
        let area = std::f64::consts::PI * z.radius_m * z.radius_m;
        t += &format!(
            "[[zones]]\nid = \"{}\"\nname = \"{}\"\narea_m2 = {area:.0}\ncapacity = {:.0}\noccupancy_window_min = 1\ncalibration = {{ ble = {BLE_CALIBRATION} }}\npolygon = {}\n",
            z.id,
            z.name,
            area * CAPACITY_DENSITY,
            outline(z.x, z.y, z.radius_m)
        );
    }
    for s in &scenario.sensors {
        t += &format!(
            "[[sensors]]\nid = \"{}\"\nzone = \"{}\"\ndescription = \"simulated sensor\"\n",
            s.id, scenario.zones[s.zone].id
        );
        if let Some(password) = access.passwords.get(&s.id) {
            t += &format!("password = \"{password}\"\n");
        }
    }
    t
}

/// The in-process agent of simulated `sensor`, publishing to the demo's embedded broker.
/// It logs in and pins the salt key as `access` says.
pub fn in_process_agent(
    sensor: &str,
    mqtt_port: u16,
    data: &Path,
    access: &SensorAccess,
) -> Result<InProcessAgent, ConfigError> {
    let invalid = |field: &str, message: String| {
        crowdflow_contract::config_file::invalid(Path::new("demo agent"), field, message)
    };
    let sensor_id = SensorId::new(sensor)
        .map_err(|_| invalid("sensor_id", format!("{sensor:?} is not a sensor id")))?;
    let window =
        WindowLength::new(WINDOW_S).map_err(|e| invalid("counting.window_s", e.to_string()))?;
    Ok(InProcessAgent {
        broker: Broker {
            host: "127.0.0.1".into(),
            port: mqtt_port,
            username: Some(sensor.to_owned()),
            password: access.passwords.get(sensor).cloned(),
            topics: Topics::default(),
            tls: None,
        },
        trusted_keys: access.trusted.clone(),
        window,
        precision: Precision::default(),
        outbox_dir: data.join("outbox").join(sensor),
        outbox_max_bytes: OUTBOX_MAX_BYTES,
        sensor_id,
    })
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
    std::fs::create_dir_all(&o.data).map_err(data_error)?;
    let scenario = match &o.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::parse(KONINGSDAG, Path::new("koningsdag-utrecht.toml"))?,
    };
    let mut access = SensorAccess::for_scenario(&scenario)?;
    let text = aggregator_text(&scenario, &o, &access);
    let config_path = o.data.join("aggregator.toml");
    write_owner_only(&config_path, &text).map_err(data_error)?;
    let config = Arc::new(AggregatorConfig::parse(&text, &config_path, None)?);
    // The simulated sensors pin the demo aggregator's key like real ones pin theirs.
    let (key, _) = key_file::load_or_create(&config.signing_key_file)?;
    access.trusted = TrustedKeys::new(vec![key.public_key()]);
    drop(key);
    let store = SqliteStore::open(&o.data.join("crowdflow.db"), config.precision)?;
    // Agents stop first, then the aggregator with its broker: a broker that goes away under
    // connected clients logs every one of them as an error.
    let (stop_agents, agents_stopped) = tokio::sync::watch::channel(false);
    let (stop_aggregator, aggregator_stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut aggregator = tokio::spawn(service::run(
        config,
        store,
        until_stopped(aggregator_stopped),
    ));
    // The simulated sensors start only once this aggregator serves: never towards a broker
    // that another program started in the meantime.
    tokio::select! {
        serving = serving(o.http) => serving?,
        result = &mut aggregator => return Err(aggregator_failed(result, &o.data)),
    }
    let mut agents = Vec::new();
    let mut ears = Vec::new();
    for s in &scenario.sensors {
        let agent = in_process_agent(&s.id, o.mqtt_port, &o.data, &access)?;
        let (heard, running) = agent.start(until_stopped(agents_stopped.clone()));
        ears.push(heard);
        agents.push(tokio::spawn(running));
    }
    let feed = CrowdFeed::start(scenario.clone(), o.speed, ears);
    println!(
        "\ncrowdflow demo: {:?}, {} zones, {} simulated sensors, {}x real time",
        scenario.name,
        scenario.zones.len(),
        scenario.sensors.len(),
        o.speed
    );
    println!("  dashboard   http://{}/", o.http);
    println!("  live zones  http://{}/api/v1/zones", o.http);
    println!("  API docs    http://{}/api/v1/openapi.json", o.http);
    println!("  MQTT        127.0.0.1:{}", o.mqtt_port);
    println!("  data        {}", o.data.display());
    println!("Numbers appear within a minute. Ctrl-C stops everything.\n");
    // Until Ctrl-C, or until the aggregator fails (a port in use, say).
    let failed = tokio::select! {
        () = shutdown => None,
        result = &mut aggregator => Some(result),
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
    for a in agents {
        match tokio::time::timeout(Duration::from_secs(10), a).await {
            Ok(Ok(Err(e))) => tracing::warn!("an agent stopped with: {e}"),
            Ok(_) => {}
            Err(_) => tracing::warn!("an agent did not stop within 10 s"),
        }
    }
    let _ = stop_aggregator.send(true);
    match tokio::time::timeout(Duration::from_secs(10), aggregator).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => tracing::error!("the aggregator task failed: {e}"),
        Err(_) => tracing::warn!("the aggregator did not stop within 10 s"),
    }
    Ok(())
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
            speed: 60.0,
        };
        let scenario = Scenario::parse(KONINGSDAG, Path::new("k.toml")).expect("scenario");
        let access = SensorAccess::for_scenario(&scenario).expect("entropy");
        let config = AggregatorConfig::parse(
            &aggregator_text(&scenario, &o, &access),
            Path::new("a.toml"),
            None,
        )
        .expect("aggregator config");
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
        let agent =
            in_process_agent("neude-1", o.mqtt_port, &o.data, &access).expect("agent config");
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
