//! The aggregator's config file (TOML): parsed into a raw serde struct, then validated into
//! [`AggregatorConfig`] with errors that name the exact field and what to fix.
//!
//! One submodule per section of the file; each holds the section's raw form, its validated
//! form and the checks between them.

mod broker;
mod dashboard;
mod http;
mod privacy;
mod salt;
mod sensors;
mod storage;
mod tokens;
mod zones;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::config_file;
use crowdflow_contract::epoch::RotationSchedule;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::SensorId;
use serde::Deserialize;

pub use crate::auth::{ApiToken, Role, hash_token, new_secret};
use crate::store::Retention;
use crate::zone::ZoneId;
pub use broker::{BROKER_PASSWORD_ENV, BrokerConfig, BrokerMode};
pub use dashboard::{Dashboard, ReplayClock};
pub use http::HttpLimits;
pub use privacy::{OpenData, Privacy};
pub use sensors::Sensor;
pub use storage::StorageConfig;
pub use zones::{Calibration, Floor, Gate, Zone};

pub use crowdflow_contract::config_file::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    http: http::RawHttp,
    broker: broker::RawBroker,
    storage: storage::RawStorage,
    #[serde(default)]
    salt: salt::RawSalt,
    #[serde(default)]
    counting: config_file::CountingSection,
    #[serde(default)]
    retention: storage::RawRetention,
    #[serde(default)]
    zones: Vec<zones::RawZone>,
    #[serde(default)]
    sensors: Vec<sensors::RawSensor>,
    #[serde(default)]
    privacy: privacy::RawPrivacy,
    #[serde(default)]
    open_data: privacy::RawOpenData,
    #[serde(default)]
    tokens: Vec<tokens::RawToken>,
    #[serde(default)]
    dashboard: dashboard::RawDashboard,
}

/// A validated aggregator configuration.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// HTTP API address.
    pub http_listen: SocketAddr,
    /// The role of requests without a token (the demo; `None` in production: only public
    /// endpoints answer without one).
    pub anonymous_role: Option<Role>,
    /// How much of the HTTP server clients may hold (`[http]` timeouts and limits).
    pub http_limits: HttpLimits,
    /// Broker.
    pub broker: BrokerConfig,
    /// Storage.
    pub storage: StorageConfig,
    /// When salts rotate.
    pub rotation: RotationSchedule,
    /// How often salts are announced.
    pub announce_every_s: u64,
    /// How long a restarted authority asks agents for the running epoch's lost salt before
    /// drawing a new one; zero draws at once.
    pub recover_for_s: u64,
    /// This replica's authority id.
    pub authority_id: String,
    /// Where this replica's salt signing key is (created on first start if missing).
    pub signing_key_file: PathBuf,
    /// Public keys of the peer replicas whose announcements this one adopts.
    pub trusted_keys: TrustedKeys,
    /// Window length all sensors use.
    pub window: WindowLength,
    /// Sketch precision all sensors use.
    pub precision: Precision,
    /// How long data is kept.
    pub retention: Retention,
    /// Zones by id.
    pub zones: BTreeMap<ZoneId, Zone>,
    /// Sensors by id.
    pub sensors: BTreeMap<SensorId, Sensor>,
    /// API tokens.
    pub tokens: Vec<ApiToken>,
    /// The operator's words for the privacy statement.
    pub privacy: Privacy,
    /// Open-data export rules.
    pub open_data: OpenData,
    /// The dashboard's title and optional map background.
    pub dashboard: Dashboard,
}

type FieldError = (String, String);

fn field(name: impl Into<String>, message: impl Into<String>) -> FieldError {
    (name.into(), message.into())
}

impl AggregatorConfig {
    /// Reads and validates a config file; `password_env` overrides `broker.password`.
    pub fn load(
        path: &Path,
        password_env: Option<String>,
    ) -> Result<AggregatorConfig, ConfigError> {
        Self::parse(&config_file::read(path)?, path, password_env)
    }

    /// Validates config text (`path` only names the file in errors).
    pub fn parse(
        text: &str,
        path: &Path,
        password_env: Option<String>,
    ) -> Result<AggregatorConfig, ConfigError> {
        let raw: Raw = config_file::parse_toml(text, path)?;
        validate(raw, path, password_env)
            .map_err(|(field, message)| config_file::invalid(path, field, message))
    }

    /// Broker credentials of every sensor (and the aggregator), for the embedded broker.
    pub fn broker_credentials(&self) -> Option<HashMap<String, String>> {
        let mut credentials: HashMap<String, String> = self
            .sensors
            .values()
            .filter_map(|s| s.password.clone().map(|p| (s.id.to_string(), p)))
            .collect();
        if let (Some(u), Some(p)) = (&self.broker.username, &self.broker.password) {
            credentials.insert(u.clone(), p.clone());
        }
        (!credentials.is_empty()).then_some(credentials)
    }
}

/// Validates section by section, in the order the errors are reported.
fn validate(
    raw: Raw,
    path: &Path,
    password_env: Option<String>,
) -> Result<AggregatorConfig, FieldError> {
    let http_listen = http::listen(&raw.http)?;
    let http_limits = http::limits(&raw.http)?;
    let broker = broker::broker(raw.broker, password_env)?;
    let storage = storage::storage(raw.storage)?;
    let rotation = salt::rotation(&raw.salt)?;
    let trusted_keys = salt::trusted_keys(&raw.salt)?;
    let signing_key_file = salt::signing_key_file(&raw.salt, path);
    let (window, precision) = raw.counting.validate().map_err(|(f, m)| field(f, m))?;
    let retention = storage::retention(&raw.retention)?;
    let zones = zones::zones(raw.zones)?;
    let sensors = sensors::sensors(raw.sensors, &zones)?;
    let tokens = tokens::tokens(&raw.tokens)?;
    open_broker_needs_accounts(&broker, &sensors)?;
    let anonymous_role = http::anonymous_role(&raw.http)?;
    let open_data = privacy::open_data(raw.open_data)?;
    let dashboard = dashboard::dashboard(raw.dashboard)?;
    Ok(AggregatorConfig {
        http_listen,
        http_limits,
        broker,
        storage,
        rotation,
        announce_every_s: raw.salt.announce_every_s,
        recover_for_s: raw.salt.recover_for_s,
        authority_id: raw.salt.authority_id,
        signing_key_file,
        trusted_keys,
        window,
        precision,
        retention,
        zones,
        sensors,
        tokens,
        privacy: raw.privacy.into(),
        open_data,
        dashboard,
        anonymous_role,
    })
}

/// An embedded broker reachable from the network must know who is who: without a sensor
/// password it enforces no ACL (any client could read every sketch and publish as any sensor).
fn open_broker_needs_accounts(
    broker: &BrokerConfig,
    sensors: &BTreeMap<SensorId, Sensor>,
) -> Result<(), FieldError> {
    match broker.mode {
        BrokerMode::Embedded { listen, .. }
            if !listen.ip().is_loopback() && sensors.values().all(|s| s.password.is_none()) =>
        {
            Err(field(
                "broker.listen",
                format!(
                    "{listen} is reachable from the network, but no sensor has a password, so the \
                     embedded broker could not hold anyone to the ACL: give each [[sensors]] a \
                     password, or listen on 127.0.0.1"
                ),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example with its placeholder passwords filled in, as an operator would.
    fn example() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/aggregator/aggregator.example.toml"),
        )
        .expect("example config")
        .replace("\"change-me-", "\"s3cret-")
    }

    fn parse(text: &str) -> Result<AggregatorConfig, ConfigError> {
        AggregatorConfig::parse(text, Path::new("aggregator.toml"), None)
    }

    #[test]
    fn the_shipped_example_validates() {
        let c = parse(&example()).expect("valid");
        assert_eq!(c.zones.len(), 3);
        assert_eq!(c.sensors.len(), 3);
        assert_eq!(c.rotation.time_zone(), "Europe/Amsterdam");
        assert!(matches!(c.broker.mode, BrokerMode::Embedded { .. }));
        let creds = c.broker_credentials().expect("sensor passwords");
        assert!(creds.contains_key("neude-01"));
    }

    #[test]
    fn every_mistake_names_its_field() {
        let cases = [
            ("mode = \"embedded\"", "mode = \"cloud\"", "`broker.mode`"),
            ("kind = \"sqlite\"", "kind = \"mysql\"", "`storage.kind`"),
            (
                "time_zone = \"Europe/Amsterdam\"",
                "time_zone = \"Mars/Base\"",
                "`salt.time_zone`",
            ),
            (
                "rotation = \"04:00\"",
                "rotation = \"4am\"",
                "`salt.rotation`",
            ),
            ("area_m2 = 12000.0", "area_m2 = -1.0", "`zones[0].area_m2`"),
            (
                "thresholds = [2.0, 3.5, 5.0]",
                "thresholds = [3.5, 2.0]",
                "`zones[0].thresholds`",
            ),
            // Thresholds of a passage on a zone that is none would be silently unused.
            (
                "thresholds = [2.0, 3.5, 5.0]",
                "thresholds = [2.0, 3.5, 5.0]\ngate_thresholds = [66, 82]",
                "`zones[0].gate_thresholds`",
            ),
            (
                "thresholds = [2.0, 3.5, 5.0]",
                "thresholds = [2.0, 3.5, 5.0]\ngate_width_m = 4.0\ngate_thresholds = [0, 10]",
                "each above 0",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { bluetooth = 0.9 }",
                "`zones[0].calibration.bluetooth`",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { wifi_derandomized = { factor = 0.9, floor = \"lots\" } }",
                "`zones[0].calibration.wifi_derandomized.floor`",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { wifi_derandomized = { factor = 0.9, error = 0.0 } }",
                "`zones[0].calibration.wifi_derandomized.error`",
            ),
            // calibrate fits on 6 head counts or more, and writes error and observations
            // together: observations without an error would be read as a guess.
            (
                "calibration = { ble = 1.3 }",
                "calibration = { ble = { factor = 1.1, error = 0.2, observations = 0 } }",
                "`zones[0].calibration.ble.observations`: `calibrate` fits a line on at least 6",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { ble = { factor = 1.1, error = 0.2, observations = 5 } }",
                "`zones[0].calibration.ble.observations`: `calibrate` fits a line on at least 6",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { ble = { factor = 1.1, floor = 0.0, observations = 30 } }",
                "`zones[0].calibration.ble.error`: `calibrate` writes error and observations together",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { wifi_derandomized = { factor = 900.0 } }",
                "`zones[0].calibration.wifi_derandomized.factor`",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { wifi_derandomized = { factor = 0.9, flor = 3 } }",
                "a table from `calibrate`",
            ),
            // People add the calibrated kinds: the phones and their addresses would count twice.
            (
                "calibration = { ble = 1.3 }",
                "calibration = { wifi_derandomized = 0.9, wifi_random = 0.1 }",
                "`zones[0].calibration`: wifi_derandomized counts the phones behind the wifi_random",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { ble = { factor = 1.1, floor = 0.0, error = 0.2, observations = 12 }, wifi = { factor = 0.5, floor = 0.0, error = 0.3, observations = 12 } }",
                "`zones[0].calibration`: wifi was fitted by calibrate to give the zone's people by itself, and people add the kinds, so ble would",
            ),
            (
                "calibration = { ble = 1.3 }",
                "calibration = { ble = { factor = 1.1, floor = 0.0, error = 0.2, observations = 42 }, wifi_random = 0.2 }",
                "so wifi_random would count people twice",
            ),
            (
                "zone = \"neude\"",
                "zone = \"nowhere\"",
                "`sensors[0].zone`",
            ),
            (
                "listen = \"127.0.0.1:8080\"",
                "listen = \"localhost\"",
                "`http.listen`",
            ),
            (
                "max_connections = 256",
                "max_connections = 1",
                "`http.max_connections`",
            ),
            (
                "max_streams = 128",
                "max_streams = 256",
                "`http.max_streams`",
            ),
            (
                "header_read_timeout_s = 10",
                "header_read_timeout_s = 0",
                "`http.header_read_timeout_s`",
            ),
            (
                "idle_timeout_s = 5",
                "idle_timeout_s = 11",
                "`http.idle_timeout_s`",
            ),
            ("window_s = 60", "window_s = 61", "`counting.window_s`"),
            (
                "minute_sketch_days = 30",
                "minute_sketch_days = 0",
                "`retention.minute_sketch_days`",
            ),
            (
                "hour_sketch_days = 365",
                "hour_sketch_days = 7",
                "`retention.hour_sketch_days`",
            ),
            (
                "hour_sketch_days = 365",
                "hour_sketch_days = 365\nnumber_days = 400",
                "`retention.number_days`",
            ),
            (
                "title = \"crowdflow\"",
                "tile_url = \"https://tiles.example.org/{z}/{x}.png\"",
                "`dashboard.tile_url`",
            ),
            (
                "plaintext_on_network = true",
                "plaintext_on_network = false",
                "`broker.listen`",
            ),
            (
                "# trusted_keys = [\"ed25519:...\"]",
                "trusted_keys = [\"ed25519:...\"]",
                "`salt.trusted_keys[0]`",
            ),
        ];
        let text = example();
        for (from, to, expect) in cases {
            assert!(text.contains(from), "example lacks {from}");
            let err = parse(&text.replacen(from, to, 1))
                .expect_err(to)
                .to_string();
            assert!(err.contains(expect), "{to}: {err}");
        }
    }

    #[test]
    fn the_examples_placeholder_and_empty_passwords_are_refused_by_field() {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/aggregator/aggregator.example.toml"),
        )
        .expect("example config");
        let err = parse(&shipped).expect_err("placeholders").to_string();
        assert!(
            err.contains("`sensors[0].password`")
                && err.contains("\"change-me-neude-01\" is the example config's placeholder"),
            "{err}"
        );
        let empty = example().replacen("\"s3cret-neude-01\"", "\"\"", 1);
        let err = parse(&empty).expect_err("empty").to_string();
        assert!(err.contains("`sensors[0].password`: is empty"), "{err}");
    }

    #[test]
    fn an_embedded_broker_on_the_network_needs_sensor_passwords() {
        let mut text = example();
        for sensor in ["neude-01", "neude-02", "vredenburg-01"] {
            text = text.replace(&format!("password = \"s3cret-{sensor}\""), "");
        }
        let err = parse(&text).expect_err("open broker").to_string();
        assert!(
            err.contains("`broker.listen`") && err.contains("no sensor has a password"),
            "{err}"
        );
        let local = text.replace("listen = \"0.0.0.0:1883\"", "listen = \"127.0.0.1:1883\"");
        parse(&local).expect("on loopback, no accounts are needed");
    }

    #[test]
    fn the_signing_key_sits_beside_the_config_unless_given_absolute() {
        let text = example().replace(
            "signing_key_file = \"/var/lib/crowdflow/salt-signing.key\"",
            "",
        );
        let c = AggregatorConfig::parse(&text, Path::new("/etc/crowdflow/aggregator.toml"), None)
            .expect("valid");
        assert_eq!(
            c.signing_key_file,
            Path::new("/etc/crowdflow/salt-signing.key")
        );
        let c = parse(&example()).expect("valid");
        assert_eq!(
            c.signing_key_file,
            Path::new("/var/lib/crowdflow/salt-signing.key")
        );
        assert!(c.trusted_keys.is_empty());
    }

    #[test]
    fn a_tile_url_names_the_origin_the_page_may_load_from() {
        let c = parse(&example().replace("# tile_url = ", "tile_url = ")).expect("valid");
        assert_eq!(
            c.dashboard.tile_origin(),
            Some("https://tile.openstreetmap.org")
        );
        assert_eq!(
            parse(&example()).expect("valid").dashboard.tile_origin(),
            None
        );
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let err = parse(&example().replace("area_m2 = 12000.0", "area = 12000.0"))
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("area") && err.contains("line"), "{err}");
    }
}
