//! The aggregator's config file (TOML): parsed into a raw serde struct, then validated into
//! [`AggregatorConfig`] with errors that name the exact field and what to fix.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crowdflow_contract::config_file;
use crowdflow_contract::epoch::RotationSchedule;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::{SensorId, Topics};
use serde::Deserialize;

use crate::store::Retention;

/// Environment variable overriding `broker.password` (the aggregator's own account).
pub const BROKER_PASSWORD_ENV: &str = "CROWDFLOW_BROKER_PASSWORD";

pub use crowdflow_contract::config_file::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    http: RawHttp,
    broker: RawBroker,
    storage: RawStorage,
    #[serde(default)]
    salt: RawSalt,
    #[serde(default)]
    counting: config_file::CountingSection,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    zones: Vec<RawZone>,
    #[serde(default)]
    sensors: Vec<RawSensor>,
    #[serde(default)]
    privacy: RawPrivacy,
    #[serde(default)]
    open_data: RawOpenData,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    dashboard: RawDashboard,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    title: Option<String>,
    tile_url: Option<String>,
    tile_attribution: Option<String>,
}

/// What the dashboard shows besides the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// Shown in the page header ("crowdflow" unless set).
    pub title: String,
    /// Optional background map: an XYZ tile URL with `{z}`, `{x}` and `{y}`. Event networks
    /// are often offline, so the plan never needs it.
    pub tile_url: Option<String>,
    /// Attribution the tile provider requires.
    pub tile_attribution: Option<String>,
}

impl Dashboard {
    /// The tile server's origin (`https://host:port`), which the page's CSP must allow.
    pub fn tile_origin(&self) -> Option<&str> {
        let url = self.tile_url.as_deref()?;
        let after_scheme = url.find("://")? + 3;
        let end = url[after_scheme..]
            .find('/')
            .map_or(url.len(), |i| after_scheme + i);
        Some(&url[..end])
    }
}

fn dashboard(raw: RawDashboard) -> Result<Dashboard, FieldError> {
    if let Some(url) = &raw.tile_url {
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let placeholders_ok = ["{z}", "{x}", "{y}"].iter().all(|p| url.contains(p));
        let safe = !url.contains(['"', '\'', ' ', ';']);
        if !(scheme_ok && placeholders_ok && safe) {
            return Err(field(
                "dashboard.tile_url",
                "must be an http(s) XYZ tile URL with {z}, {x} and {y}, e.g. https://tiles.example.org/{z}/{x}/{y}.png",
            ));
        }
    }
    Ok(Dashboard {
        title: raw.title.unwrap_or_else(|| "crowdflow".into()),
        tile_url: raw.tile_url,
        tile_attribution: raw.tile_attribution,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrivacy {
    operator: Option<String>,
    contact: Option<String>,
    purpose: Option<String>,
    legal_basis: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenData {
    #[serde(default = "default_k")]
    k: u64,
    #[serde(default = "default_rounding")]
    rounding: u64,
    #[serde(default = "default_licence")]
    licence: String,
}

impl Default for RawOpenData {
    fn default() -> Self {
        RawOpenData {
            k: default_k(),
            rounding: default_rounding(),
            licence: default_licence(),
        }
    }
}

fn default_k() -> u64 {
    10
}
fn default_rounding() -> u64 {
    10
}
fn default_licence() -> String {
    "CC BY 4.0".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    role: String,
    blake3: String,
}

/// What a bearer token may do; each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Live numbers and alerts (event safety crews).
    Viewer,
    /// History, flows, exports (traffic planners).
    Planner,
    /// Sensor and zone status, the config view (operators).
    Admin,
}

impl Role {
    /// Its name in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Planner => "planner",
            Role::Admin => "admin",
        }
    }
}

/// An API token: only its BLAKE3 hash is configured (`crowdflow-aggregator hash-token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Who holds it (for logs; never the token).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// BLAKE3 of the token.
    pub hash: blake3::Hash,
}

/// The operator's words for the privacy statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privacy {
    /// Who runs the counting (the controller).
    pub operator: Option<String>,
    /// Where to ask.
    pub contact: Option<String>,
    /// Why it counts.
    pub purpose: Option<String>,
    /// The legal basis, in the operator's words.
    pub legal_basis: Option<String>,
}

/// Open-data export rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenData {
    /// Counts below this are suppressed.
    pub k: u64,
    /// Counts are rounded to a multiple of this.
    pub rounding: u64,
    /// The licence named in the export.
    pub licence: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_http")]
    listen: String,
    anonymous_role: Option<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_http(),
            anonymous_role: None,
        }
    }
}

fn default_http() -> String {
    "127.0.0.1:8080".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    mode: String,
    listen: Option<String>,
    url: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    #[serde(default = "default_prefix")]
    topic_prefix: String,
    #[serde(default = "default_client_id")]
    client_id: String,
    #[serde(default = "default_group")]
    shared_group: String,
}

fn default_prefix() -> String {
    crowdflow_contract::wire::DEFAULT_PREFIX.into()
}

fn default_client_id() -> String {
    "crowdflow-aggregator-1".into()
}

fn default_group() -> String {
    "crowdflow-aggregators".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    kind: String,
    path: Option<PathBuf>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSalt {
    #[serde(default = "default_rotation")]
    rotation: String,
    #[serde(default = "default_tz")]
    time_zone: String,
    #[serde(default = "default_announce")]
    announce_every_s: u64,
    #[serde(default = "default_authority")]
    authority_id: String,
    #[serde(default = "default_recover")]
    recover_for_s: u64,
}

impl Default for RawSalt {
    fn default() -> Self {
        RawSalt {
            rotation: default_rotation(),
            time_zone: default_tz(),
            announce_every_s: default_announce(),
            authority_id: default_authority(),
            recover_for_s: default_recover(),
        }
    }
}

fn default_rotation() -> String {
    "04:00".into()
}
fn default_tz() -> String {
    "Europe/Amsterdam".into()
}
fn default_announce() -> u64 {
    60
}
fn default_recover() -> u64 {
    30
}
fn default_authority() -> String {
    "aggregator-1".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default = "default_minute_days")]
    minute_sketch_days: u32,
    #[serde(default = "default_hour_days")]
    hour_sketch_days: u32,
    /// Absent: kept.
    day_sketch_days: Option<u32>,
    /// Absent: kept.
    number_days: Option<u32>,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            minute_sketch_days: default_minute_days(),
            hour_sketch_days: default_hour_days(),
            day_sketch_days: None,
            number_days: None,
        }
    }
}
fn default_minute_days() -> u32 {
    30
}
fn default_hour_days() -> u32 {
    365
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    id: String,
    name: String,
    area_m2: f64,
    capacity: Option<u64>,
    #[serde(default = "default_occupancy")]
    occupancy_window_min: u32,
    #[serde(default = "default_thresholds")]
    thresholds: Vec<f64>,
    #[serde(default)]
    calibration: BTreeMap<String, f64>,
    polygon: Option<serde_json::Value>,
}

fn default_occupancy() -> u32 {
    5
}
fn default_thresholds() -> Vec<f64> {
    vec![2.0, 3.5, 5.0]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSensor {
    id: String,
    zone: String,
    password: Option<String>,
    #[serde(default = "default_senses")]
    senses: Vec<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    #[serde(default)]
    description: String,
}

fn default_senses() -> Vec<String> {
    vec!["wifi".into(), "ble".into()]
}

/// How the aggregator reaches MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMode {
    /// Run rumqttd in-process on `listen`.
    Embedded {
        /// Where sensors connect.
        listen: SocketAddr,
    },
    /// Connect to an external broker (Mosquitto, EMQX) at `host:port`.
    External {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// TLS material, for an `mqtts://` broker.
        tls: Option<config_file::TlsFiles>,
    },
}

/// The broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Embedded or external.
    pub mode: BrokerMode,
    /// The aggregator's own account on an external broker.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Topic layout.
    pub topics: Topics,
    /// MQTT client id (stable: the broker keeps the session for it).
    pub client_id: String,
    /// Shared-subscription group that replicas of this aggregator split messages in.
    pub shared_group: String,
}

/// Where data is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// One SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database (shared by replicas).
    Postgres {
        /// A libpq-style URL.
        url: String,
    },
}

/// One zone: a named area whose devices are counted together.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Identifier (same rules as sensor ids).
    pub id: SensorId,
    /// Display name.
    pub name: String,
    /// Area in square metres (for density).
    pub area_m2: f64,
    /// Capacity in persons, if known.
    pub capacity: Option<u64>,
    /// Minutes of the live occupancy window.
    pub occupancy_window_min: u32,
    /// Level-of-service thresholds in persons per m2, ascending.
    pub thresholds: Vec<f64>,
    /// Persons per device, by kind (an estimate; documented as such).
    pub calibration: BTreeMap<Kind, f64>,
    /// Outline as GeoJSON, for the dashboard.
    pub polygon: Option<serde_json::Value>,
}

/// One sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// Its id (also its broker username on the embedded broker).
    pub id: SensorId,
    /// The zone it counts for.
    pub zone: SensorId,
    /// Broker password on the embedded broker.
    pub password: Option<String>,
    /// Which kinds it may publish.
    pub kinds: Vec<Kind>,
    /// Location, for the public sensor register.
    pub location: Option<(f64, f64)>,
    /// Description, for the public sensor register.
    pub description: String,
}

/// A validated aggregator configuration.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// HTTP API address.
    pub http_listen: SocketAddr,
    /// The role of requests without a token (the demo; `None` in production: only public
    /// endpoints answer without one).
    pub anonymous_role: Option<Role>,
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
    /// Window length all sensors use.
    pub window: WindowLength,
    /// Sketch precision all sensors use.
    pub precision: Precision,
    /// How long data is kept.
    pub retention: Retention,
    /// Zones by id.
    pub zones: BTreeMap<SensorId, Zone>,
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

/// A fresh random secret (192 bits, hex) from the OS: API tokens, and the aggregator's own
/// password on its embedded broker.
pub fn new_secret() -> Result<String, crowdflow_contract::salt::SaltError> {
    use rand::TryRng;
    let mut bytes = [0u8; 24];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| crowdflow_contract::salt::SaltError::Entropy(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The hash a config stores for `token`.
pub fn hash_token(token: &str) -> blake3::Hash {
    blake3::hash(token.as_bytes())
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
        validate(raw, password_env)
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

fn validate(raw: Raw, password_env: Option<String>) -> Result<AggregatorConfig, FieldError> {
    let http_listen = raw
        .http
        .listen
        .parse()
        .map_err(|_| field("http.listen", "must be ADDRESS:PORT, e.g. 127.0.0.1:8080"))?;
    let broker = broker(raw.broker, password_env)?;
    let storage = match raw.storage.kind.as_str() {
        "sqlite" => StorageConfig::Sqlite {
            path: raw.storage.path.ok_or_else(|| {
                field(
                    "storage.path",
                    "the SQLite database file is required for kind = \"sqlite\"",
                )
            })?,
        },
        "postgres" => StorageConfig::Postgres {
            url: raw
                .storage
                .url
                .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
                .ok_or_else(|| {
                    field(
                        "storage.url",
                        "a postgres://USER@HOST:PORT/DB URL is required for kind = \"postgres\"",
                    )
                })?,
        },
        _ => return Err(field("storage.kind", "must be \"sqlite\" or \"postgres\"")),
    };
    let rotation =
        RotationSchedule::parse(&raw.salt.rotation, &raw.salt.time_zone).map_err(|e| {
            let name = if matches!(e, crowdflow_contract::epoch::EpochError::TimeZone(_)) {
                "salt.time_zone"
            } else {
                "salt.rotation"
            };
            field(name, e.to_string())
        })?;
    if !(5..=3600).contains(&raw.salt.announce_every_s) {
        return Err(field(
            "salt.announce_every_s",
            "must be between 5 and 3600 seconds",
        ));
    }
    if raw.salt.recover_for_s > 600 {
        return Err(field(
            "salt.recover_for_s",
            "must be at most 600 seconds (0 draws a new salt at once)",
        ));
    }
    SensorId::new(&raw.salt.authority_id)
        .map_err(|_| field("salt.authority_id", "use 1 to 64 of A-Z a-z 0-9 _ -"))?;
    let (window, precision) = raw.counting.validate().map_err(|(f, m)| field(f, m))?;
    let retention = retention(&raw.retention)?;
    let zones = zones(raw.zones)?;
    let sensors = sensors(raw.sensors, &zones)?;
    let tokens = tokens(&raw.tokens)?;
    let anonymous_role = raw
        .http
        .anonymous_role
        .as_deref()
        .map(|r| {
            role(r).ok_or_else(|| {
                field(
                    "http.anonymous_role",
                    "must be \"viewer\", \"planner\" or \"admin\"",
                )
            })
        })
        .transpose()?;
    if raw.open_data.k == 0 || raw.open_data.rounding == 0 {
        return Err(field(
            "open_data.k",
            "k and rounding must be at least 1 (k = 10 suppresses counts below 10)",
        ));
    }
    let open_data = OpenData {
        k: raw.open_data.k,
        rounding: raw.open_data.rounding,
        licence: raw.open_data.licence,
    };
    let dashboard = dashboard(raw.dashboard)?;
    let privacy = Privacy {
        operator: raw.privacy.operator,
        contact: raw.privacy.contact,
        purpose: raw.privacy.purpose,
        legal_basis: raw.privacy.legal_basis,
    };
    Ok(AggregatorConfig {
        http_listen,
        broker,
        storage,
        rotation,
        announce_every_s: raw.salt.announce_every_s,
        recover_for_s: raw.salt.recover_for_s,
        authority_id: raw.salt.authority_id,
        window,
        precision,
        retention,
        zones,
        sensors,
        tokens,
        privacy,
        open_data,
        dashboard,
        anonymous_role,
    })
}

fn role(name: &str) -> Option<Role> {
    match name {
        "viewer" => Some(Role::Viewer),
        "planner" => Some(Role::Planner),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

fn tokens(raw: &[RawToken]) -> Result<Vec<ApiToken>, FieldError> {
    let mut out: Vec<ApiToken> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let at = |f: &str| format!("tokens[{i}].{f}");
        let role = role(&t.role)
            .ok_or_else(|| field(at("role"), "must be \"viewer\", \"planner\" or \"admin\""))?;
        let hash = blake3::Hash::from_hex(t.blake3.trim()).map_err(|_| {
            field(
                at("blake3"),
                "must be 64 hex digits: the output of `crowdflow-aggregator hash-token` (never the token itself)",
            )
        })?;
        if out.iter().any(|o| o.hash == hash) {
            return Err(field(at("blake3"), "another token has this hash"));
        }
        out.push(ApiToken {
            name: t.name.clone(),
            role,
            hash,
        });
    }
    Ok(out)
}

/// Coarser data must live at least as long as finer data (queries fall back to it).
fn retention(raw: &RawRetention) -> Result<Retention, FieldError> {
    if raw.minute_sketch_days == 0 {
        return Err(field(
            "retention.minute_sketch_days",
            "keep minute sketches at least one day",
        ));
    }
    if raw.hour_sketch_days < raw.minute_sketch_days {
        return Err(field(
            "retention.hour_sketch_days",
            "keep hour sketches at least as long as minute sketches",
        ));
    }
    if raw
        .day_sketch_days
        .is_some_and(|d| d < raw.hour_sketch_days)
    {
        return Err(field(
            "retention.day_sketch_days",
            "keep day sketches at least as long as hour sketches (or omit it to keep them)",
        ));
    }
    let longest_sketch = raw.day_sketch_days.unwrap_or(u32::MAX);
    if raw.number_days.is_some_and(|d| d < longest_sketch) {
        return Err(field(
            "retention.number_days",
            "keep numbers at least as long as every sketch (or omit it to keep them)",
        ));
    }
    Ok(Retention {
        minute_sketch_days: raw.minute_sketch_days,
        hour_sketch_days: raw.hour_sketch_days,
        day_sketch_days: raw.day_sketch_days,
        number_days: raw.number_days,
    })
}

fn broker(raw: RawBroker, password_env: Option<String>) -> Result<BrokerConfig, FieldError> {
    let mode = match raw.mode.as_str() {
        "embedded" => BrokerMode::Embedded {
            listen: raw
                .listen
                .as_deref()
                .unwrap_or("0.0.0.0:1883")
                .parse()
                .map_err(|_| field("broker.listen", "must be ADDRESS:PORT, e.g. 0.0.0.0:1883"))?,
        },
        "external" => {
            let url = raw.url.ok_or_else(|| {
                field(
                    "broker.url",
                    "mqtt://HOST[:PORT] or mqtts://HOST[:PORT] is required for mode = \"external\"",
                )
            })?;
            let address = config_file::mqtt_url(&url).map_err(|m| field("broker.url", m))?;
            let tls = config_file::tls_files(
                &address,
                raw.ca_file.as_deref(),
                raw.client_cert_file.as_deref(),
                raw.client_key_file.as_deref(),
            )
            .map_err(|(f, m)| field(f, m))?;
            BrokerMode::External {
                host: address.host,
                port: address.port,
                tls,
            }
        }
        _ => {
            return Err(field(
                "broker.mode",
                "must be \"embedded\" (built-in broker) or \"external\" (Mosquitto, EMQX)",
            ));
        }
    };
    let password = password_env.or(raw.password);
    if raw.username.is_some() != password.is_some() {
        return Err(field(
            "broker.username",
            format!(
                "username and password must be either both provided or both missing (password may come from {BROKER_PASSWORD_ENV})"
            ),
        ));
    }
    let topics =
        Topics::new(&raw.topic_prefix).map_err(|e| field("broker.topic_prefix", e.to_string()))?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    };
    if !plain(&raw.client_id) {
        return Err(field("broker.client_id", "use 1 to 64 of A-Z a-z 0-9 _ -"));
    }
    if !plain(&raw.shared_group) {
        return Err(field(
            "broker.shared_group",
            "use 1 to 64 of A-Z a-z 0-9 _ -",
        ));
    }
    Ok(BrokerConfig {
        mode,
        username: raw.username,
        password,
        topics,
        client_id: raw.client_id,
        shared_group: raw.shared_group,
    })
}

fn zones(raw: Vec<RawZone>) -> Result<BTreeMap<SensorId, Zone>, FieldError> {
    let mut zones = BTreeMap::new();
    for (i, z) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("zones[{i}].{f}");
        let id =
            SensorId::new(&z.id).map_err(|_| field(at("id"), "use 1 to 64 of A-Z a-z 0-9 _ -"))?;
        if z.name.trim().is_empty() {
            return Err(field(at("name"), "give the zone a name people recognise"));
        }
        if !(z.area_m2.is_finite() && z.area_m2 > 0.0) {
            return Err(field(
                at("area_m2"),
                "must be a positive number of square metres",
            ));
        }
        if !(1..=1440).contains(&z.occupancy_window_min) {
            return Err(field(
                at("occupancy_window_min"),
                "must be between 1 and 1440 minutes",
            ));
        }
        if z.thresholds.is_empty()
            || z.thresholds.windows(2).any(|w| w[0] >= w[1])
            || z.thresholds.iter().any(|t| !(t.is_finite() && *t > 0.0))
        {
            return Err(field(
                at("thresholds"),
                "list ascending positive densities in persons/m2, e.g. [2.0, 3.5, 5.0]",
            ));
        }
        let mut calibration = BTreeMap::new();
        for (kind, factor) in &z.calibration {
            let k = kind.parse::<Kind>().map_err(|_| {
                field(
                    format!("zones[{i}].calibration.{kind}"),
                    "not a kind (wifi, wifi_random, ble, wifi_derandomized)",
                )
            })?;
            if !(factor.is_finite() && *factor >= 0.0 && *factor <= 100.0) {
                return Err(field(
                    format!("zones[{i}].calibration.{kind}"),
                    "must be between 0 and 100 persons per device",
                ));
            }
            calibration.insert(k, *factor);
        }
        if let Some(p) = &z.polygon
            && p.get("type").and_then(|t| t.as_str()) != Some("Polygon")
        {
            return Err(field(
                at("polygon"),
                "must be a GeoJSON Polygon geometry ({\"type\": \"Polygon\", \"coordinates\": [...]})",
            ));
        }
        let zone = Zone {
            id: id.clone(),
            name: z.name,
            area_m2: z.area_m2,
            capacity: z.capacity,
            occupancy_window_min: z.occupancy_window_min,
            thresholds: z.thresholds,
            calibration,
            polygon: z.polygon,
        };
        if zones.insert(id, zone).is_some() {
            return Err(field(at("id"), "another zone has this id"));
        }
    }
    Ok(zones)
}

fn sensors(
    raw: Vec<RawSensor>,
    zones: &BTreeMap<SensorId, Zone>,
) -> Result<BTreeMap<SensorId, Sensor>, FieldError> {
    let mut sensors = BTreeMap::new();
    for (i, s) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("sensors[{i}].{f}");
        let id =
            SensorId::new(&s.id).map_err(|_| field(at("id"), "use 1 to 64 of A-Z a-z 0-9 _ -"))?;
        let zone = SensorId::new(&s.zone)
            .ok()
            .filter(|z| zones.contains_key(z))
            .ok_or_else(|| field(at("zone"), "must be the id of a zone in [[zones]]"))?;
        let mut kinds = Vec::new();
        for (j, sense) in s.senses.iter().enumerate() {
            match sense.as_str() {
                "wifi" => kinds.extend([Kind::Wifi, Kind::WifiRandom, Kind::WifiDerandomized]),
                "ble" => kinds.push(Kind::Ble),
                _ => {
                    return Err(field(
                        format!("sensors[{i}].senses[{j}]"),
                        "must be \"wifi\" or \"ble\"",
                    ));
                }
            }
        }
        let location = match (s.latitude, s.longitude) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat, lon))
            }
            (None, None) => None,
            _ => {
                return Err(field(
                    at("latitude"),
                    "give both latitude (-90..90) and longitude (-180..180), or neither",
                ));
            }
        };
        let sensor = Sensor {
            id: id.clone(),
            zone,
            password: s.password,
            kinds,
            location,
            description: s.description,
        };
        if sensors.insert(id, sensor).is_some() {
            return Err(field(at("id"), "another sensor has this id"));
        }
    }
    Ok(sensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/aggregator/aggregator.example.toml"),
        )
        .expect("example config")
    }

    fn parse(text: &str) -> Result<AggregatorConfig, ConfigError> {
        AggregatorConfig::parse(text, Path::new("aggregator.toml"), None)
    }

    #[test]
    fn the_shipped_example_validates() {
        let c = parse(&example()).expect("valid");
        assert_eq!(c.zones.len(), 2);
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
            (
                "wifi_random = 0.35",
                "bluetooth = 0.35",
                "`zones[0].calibration.bluetooth`",
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
