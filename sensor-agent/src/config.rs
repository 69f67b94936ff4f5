//! The agent's one config file (TOML), parsed in two steps: a raw serde struct, then
//! validation into [`AgentConfig`] with errors that name the exact field and what to fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::config_file;
use crowdflow_contract::identity::{Kind, Medium};
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::{SensorId, Topics};
use serde::Deserialize;

use crate::capture::file::media_of;
use crate::counting::devices::DeviceRule;
use crate::frame::{ClientFrames, FrameClass, FramePolicy};

/// The environment variable that overrides `broker.password` (keeps secrets out of files).
pub const PASSWORD_ENV: &str = "CROWDFLOW_BROKER_PASSWORD";

pub use crowdflow_contract::config_file::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    sensor_id: String,
    broker: RawBroker,
    salt: Option<RawSalt>,
    capture: RawCapture,
    #[serde(default)]
    counting: config_file::CountingSection,
    outbox: RawOutbox,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    url: String,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    #[serde(default = "default_prefix")]
    topic_prefix: String,
}

fn default_prefix() -> String {
    crowdflow_contract::wire::DEFAULT_PREFIX.to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSalt {
    #[serde(default)]
    trusted_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    source: String,
    interface: Option<String>,
    #[serde(default)]
    hci: u16,
    #[serde(default)]
    pcap: Vec<PathBuf>,
    #[serde(default)]
    pcap_loop: bool,
    /// For `source = "pcap"`; default: the media of the files' link types.
    senses: Option<Vec<String>>,
    #[serde(default = "default_channels")]
    channels: Vec<u16>,
    #[serde(default = "default_dwell")]
    dwell_ms: u64,
    #[serde(default = "default_frames")]
    frames: Vec<String>,
    min_rssi_dbm: Option<i16>,
    /// `auto` (default) or `scans`: how the physical-device estimate reads a capability group.
    device_count: Option<String>,
}

fn default_channels() -> Vec<u16> {
    vec![1, 6, 11, 1, 6, 11, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13]
}

fn default_dwell() -> u64 {
    250
}

fn default_frames() -> Vec<String> {
    vec!["probe_request".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    dir: PathBuf,
    #[serde(default = "default_outbox_mb")]
    max_mb: u64,
}

fn default_outbox_mb() -> u64 {
    64
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

/// `[salt] trusted_keys`: required, since a salt from anyone else must never count.
fn trusted_keys(raw: Option<RawSalt>) -> Result<TrustedKeys, (String, String)> {
    let texts = raw.map(|r| r.trusted_keys).unwrap_or_default();
    if texts.is_empty() {
        return Err((
            "salt.trusted_keys".into(),
            "name at least one salt authority key, e.g. [salt] trusted_keys = [\"ed25519:...\"]; \
             `crowdflow-aggregator salt-key show --config aggregator.toml` prints the line"
                .into(),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.contains(KEY_PLACEHOLDER)) {
        return Err((
            format!("salt.trusted_keys[{i}]"),
            format!(
                "\"{}\" is the example config's placeholder: put the aggregator's key here \
                 (`crowdflow-aggregator salt-key show --config aggregator.toml` prints it)",
                texts[i]
            ),
        ));
    }
    TrustedKeys::parse(&texts).map_err(|(i, e)| (format!("salt.trusted_keys[{i}]"), e.to_string()))
}

/// What the shipped example config holds instead of a key (deploy/agent/agent.example.toml).
const KEY_PLACEHOLDER: &str = "REPLACE-WITH-THE-AGGREGATOR-KEY";

/// Live Wi-Fi capture settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WifiCapture {
    /// Interface name, e.g. `wlan1`.
    pub interface: String,
    /// Channel plan, visited in order (repeat a channel to weight it).
    pub channels: Vec<u16>,
    /// Time on each channel.
    pub dwell: Duration,
}

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Radios: a monitor-mode Wi-Fi interface and/or a Bluetooth controller (`hciN`).
    Live {
        /// Wi-Fi capture, if enabled.
        wifi: Option<WifiCapture>,
        /// The Bluetooth controller index for passive LE scanning, if enabled.
        ble: Option<u16>,
    },
    /// Capture files replayed at their recorded pace, shifted to the present
    /// (demos, tests, and sensors that record elsewhere).
    Pcap {
        /// The files, in order.
        files: Vec<PathBuf>,
        /// Start again after the last file.
        repeat: bool,
        /// Which media the files stand for (sketches are published for these only).
        wifi: bool,
        /// BLE too.
        ble: bool,
    },
}

impl Source {
    /// The sketch kinds this source yields: published for every window, empty or not.
    pub fn kinds(&self) -> Vec<Kind> {
        let (wifi, ble) = match self {
            Source::Live { wifi, ble } => (wifi.is_some(), ble.is_some()),
            Source::Pcap { wifi, ble, .. } => (*wifi, *ble),
        };
        Kind::ALL
            .into_iter()
            .filter(|k| match k.medium() {
                Medium::Wifi => wifi,
                Medium::Ble => ble,
            })
            .collect()
    }
}

/// The broker connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Username, if the broker wants credentials.
    pub username: Option<String>,
    /// Password (from the file or the environment).
    pub password: Option<String>,
    /// The topic layout.
    pub topics: Topics,
    /// TLS material, for an `mqtts://` broker.
    pub tls: Option<config_file::TlsFiles>,
}

impl Broker {
    /// Connection options for this broker under `client_id`: address, credentials, TLS.
    pub fn mqtt_options(&self, client_id: String) -> rumqttc::MqttOptions {
        // Mosquitto cannot bind a client id to an account: one keyed by the password.
        let client_id = crowdflow_contract::mqtt::session_client_id(
            &client_id,
            self.password.as_deref().map(str::as_bytes),
        );
        let mut options = rumqttc::MqttOptions::new(client_id, self.host.clone(), self.port);
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            options.set_credentials(user.clone(), password.clone());
        }
        if let Some(tls) = &self.tls {
            crowdflow_contract::mqtt::use_tls(&mut options, tls);
        }
        options
    }
}

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This sensor.
    pub sensor_id: SensorId,
    /// Where to publish.
    pub broker: Broker,
    /// The salt authorities (aggregator replicas) whose signed announcements count.
    pub trusted_keys: TrustedKeys,
    /// Where frames come from.
    pub source: Source,
    /// Which frames count.
    pub policy: FramePolicy,
    /// Counting window.
    pub window: WindowLength,
    /// Sketch precision.
    pub precision: Precision,
    /// Outbox directory (sketches only).
    pub outbox_dir: PathBuf,
    /// Outbox bound in bytes.
    pub outbox_max_bytes: u64,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

impl AgentConfig {
    /// Reads and validates a config file; `password_env` overrides `broker.password`.
    pub fn load(path: &Path, password_env: Option<String>) -> Result<AgentConfig, ConfigError> {
        Self::parse(&config_file::read(path)?, path, password_env)
    }

    /// Validates config text (`path` only names the file in errors).
    pub fn parse(
        text: &str,
        path: &Path,
        password_env: Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = config_file::parse_toml(text, path)?;
        let invalid = |field: &str, message: String| config_file::invalid(path, field, message);
        let sensor_id = SensorId::new(&raw.sensor_id)
            .map_err(|_| invalid("sensor_id", "use 1 to 64 of A-Z a-z 0-9 _ -".into()))?;
        let broker = broker(raw.broker, password_env).map_err(|(f, m)| invalid(f, m))?;
        let trusted_keys = trusted_keys(raw.salt).map_err(|(f, m)| invalid(&f, m))?;
        let (source, policy) = capture(raw.capture).map_err(|(f, m)| invalid(&f, m))?;
        let (window, precision) = raw.counting.validate().map_err(|(f, m)| invalid(f, m))?;
        if raw.outbox.max_mb == 0 {
            return Err(invalid("outbox.max_mb", "must be at least 1".into()));
        }
        let metrics_listen = raw
            .metrics
            .listen
            .map(|s| s.parse::<SocketAddr>())
            .transpose()
            .map_err(|_| {
                invalid(
                    "metrics.listen",
                    "must be ADDRESS:PORT, e.g. 127.0.0.1:9464".into(),
                )
            })?;
        Ok(AgentConfig {
            sensor_id,
            broker,
            trusted_keys,
            source,
            policy,
            window,
            precision,
            outbox_dir: raw.outbox.dir,
            outbox_max_bytes: raw.outbox.max_mb.saturating_mul(1024 * 1024),
            metrics_listen,
        })
    }
}

type FieldError = (&'static str, String);

fn broker(raw: RawBroker, password_env: Option<String>) -> Result<Broker, FieldError> {
    let address = config_file::mqtt_url(&raw.url).map_err(|m| ("broker.url", m.to_owned()))?;
    let tls = config_file::tls_files(
        &address,
        raw.ca_file.as_deref(),
        raw.client_cert_file.as_deref(),
        raw.client_key_file.as_deref(),
    )?;
    if password_env.is_none()
        && let Some(problem) = raw
            .password
            .as_deref()
            .and_then(config_file::password_problem)
    {
        return Err((
            "broker.password",
            format!(
                "{problem}: put this sensor's broker password in {PASSWORD_ENV} (see docs/installing-a-sensor.md, step 2) or here"
            ),
        ));
    }
    if is_documentation_host(&address.host) {
        return Err((
            "broker.url",
            format!(
                "{} is the example config's placeholder host ({} is reserved for documentation, RFC 2606): put the address of your deployment's broker",
                address.host,
                documentation_domain(&address.host).unwrap_or("example.org")
            ),
        ));
    }
    if let Some(problem) = password_env
        .as_deref()
        .and_then(config_file::password_problem)
    {
        return Err((
            "broker.password",
            format!("{PASSWORD_ENV} {problem}: put this sensor's broker password there"),
        ));
    }
    let password = password_env.or(raw.password);
    if raw.username.is_some() != password.is_some() {
        return Err((
            "broker.username",
            format!(
                "username and password must be either both provided or both missing (password may come from {PASSWORD_ENV})"
            ),
        ));
    }
    let topics =
        Topics::new(&raw.topic_prefix).map_err(|e| ("broker.topic_prefix", e.to_string()))?;
    Ok(Broker {
        host: address.host,
        port: address.port,
        username: raw.username,
        password,
        topics,
        tls,
    })
}

/// The second-level domains RFC 2606 reserves for documentation, which the examples use.
const DOCUMENTATION_DOMAINS: [&str; 3] = ["example.org", "example.com", "example.net"];

fn documentation_domain(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    DOCUMENTATION_DOMAINS
        .into_iter()
        .find(|d| host == *d || host.ends_with(&format!(".{d}")))
}

fn is_documentation_host(host: &str) -> bool {
    documentation_domain(host).is_some()
}

fn capture(raw: RawCapture) -> Result<(Source, FramePolicy), (String, String)> {
    let mut classes = Vec::new();
    for (i, name) in raw.frames.iter().enumerate() {
        let class = FrameClass::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| {
                (
                    format!("capture.frames[{i}]"),
                    "unknown frame class (probe_request, association_request, data_to_ap, ps_poll)"
                        .into(),
                )
            })?;
        classes.push(class);
    }
    let min_rssi = raw
        .min_rssi_dbm
        .map(|v| i8::try_from(v).ok().filter(|v| (-120..=0).contains(v)))
        .map(|v| {
            v.ok_or((
                "capture.min_rssi_dbm".to_owned(),
                "must be between -120 and 0 dBm".to_owned(),
            ))
        })
        .transpose()?;
    let devices = match raw.device_count.as_deref().map(DeviceRule::named) {
        None => DeviceRule::Auto,
        Some(Some(rule)) => rule,
        Some(None) => {
            return Err((
                "capture.device_count".to_owned(),
                "must be \"auto\" (a room, or unsure) or \"scans\" (a passage, street or square \
                 where people pass)"
                    .to_owned(),
            ));
        }
    };
    let policy = FramePolicy {
        wifi: ClientFrames::only(&classes),
        min_rssi,
        devices,
        ..FramePolicy::default()
    };
    let (wants_wifi, wants_ble) = match raw.source.as_str() {
        "wifi" => (true, false),
        "ble" => (false, true),
        "wifi+ble" => (true, true),
        _ => (false, false),
    };
    let source = match raw.source.as_str() {
        "wifi" | "ble" | "wifi+ble" => {
            let wifi = wants_wifi.then(|| wifi_capture(&raw)).transpose()?;
            Source::Live {
                wifi,
                ble: wants_ble.then_some(raw.hci),
            }
        }
        "pcap" => {
            if raw.pcap.is_empty() {
                return Err((
                    "capture.pcap".into(),
                    "list at least one capture file for source = \"pcap\"".into(),
                ));
            }
            let (wifi, ble) = pcap_media(&raw)?;
            Source::Pcap {
                files: raw.pcap,
                repeat: raw.pcap_loop,
                wifi,
                ble,
            }
        }
        _ => {
            return Err((
                "capture.source".into(),
                "must be \"wifi\" (monitor-mode interface), \"ble\" (Bluetooth controller), \"wifi+ble\" or \"pcap\" (capture files)".into(),
            ));
        }
    };
    Ok((source, policy))
}

/// What a `source = "pcap"` agent counts: `senses` as listed, else the media of the files'
/// link types ([`media_of`]); both when no file can be read yet (they then fail at the start
/// with their own error).
fn pcap_media(raw: &RawCapture) -> Result<(bool, bool), (String, String)> {
    let Some(senses) = &raw.senses else {
        let found = raw.pcap.iter().filter_map(|p| media_of(p));
        return Ok(found
            .reduce(|a, b| (a.0 || b.0, a.1 || b.1))
            .unwrap_or((true, true)));
    };
    let mut media = (false, false);
    for (i, sense) in senses.iter().enumerate() {
        match sense.as_str() {
            "wifi" => media.0 = true,
            "ble" => media.1 = true,
            _ => {
                return Err((
                    format!("capture.senses[{i}]"),
                    "must be \"wifi\" or \"ble\"".into(),
                ));
            }
        }
    }
    if media == (false, false) {
        return Err((
            "capture.senses".into(),
            "list \"wifi\", \"ble\" or both".into(),
        ));
    }
    Ok(media)
}

fn wifi_capture(raw: &RawCapture) -> Result<WifiCapture, (String, String)> {
    let interface = raw.interface.clone().filter(|i| !i.is_empty()).ok_or((
        "capture.interface".to_owned(),
        "the monitor-mode interface is required for Wi-Fi capture (e.g. wlan1)".to_owned(),
    ))?;
    if !crate::capture::wifi_monitor::valid_name(&interface) {
        return Err((
            "capture.interface".into(),
            "must be an interface name such as wlan1".into(),
        ));
    }
    if let Some((i, _)) = raw
        .channels
        .iter()
        .enumerate()
        .find(|(_, c)| !valid_channel(**c))
    {
        return Err((
            format!("capture.channels[{i}]"),
            "not a 2.4 GHz (1-14) or 5 GHz (32-177) channel".into(),
        ));
    }
    if raw.channels.is_empty() {
        return Err((
            "capture.channels".into(),
            "list at least one channel".into(),
        ));
    }
    if !(50..=10_000).contains(&raw.dwell_ms) {
        return Err((
            "capture.dwell_ms".into(),
            "must be between 50 and 10000 ms".into(),
        ));
    }
    Ok(WifiCapture {
        interface,
        channels: raw.channels.clone(),
        dwell: Duration::from_millis(raw.dwell_ms),
    })
}

fn valid_channel(c: u16) -> bool {
    (1..=14).contains(&c) || (32..=177).contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
sensor_id = "neude-01"
[broker]
url = "mqtt://broker.local:1884"
username = "neude-01"
password = "s3cret"
[salt]
trusted_keys = ["ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]
[capture]
source = "wifi"
interface = "wlan1"
min_rssi_dbm = -80
frames = ["probe_request", "data_to_ap"]
device_count = "scans"
[outbox]
dir = "/var/lib/crowdflow-agent/outbox"
"#;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("agent.toml"), None)
    }

    #[test]
    fn a_complete_config_validates_with_defaults_filled_in() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.sensor_id.as_str(), "neude-01");
        assert_eq!(
            (c.broker.host.as_str(), c.broker.port),
            ("broker.local", 1884)
        );
        assert_eq!(c.window, WindowLength::DEFAULT);
        assert_eq!(c.precision, Precision::DEFAULT);
        assert_eq!(c.outbox_max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.policy.min_rssi, Some(-80));
        assert_eq!(c.policy.devices, DeviceRule::Scans);
        assert!(c.policy.wifi.allows(FrameClass::DataToAp));
        assert!(!c.policy.wifi.allows(FrameClass::PsPoll));
        assert!(
            matches!(c.source, Source::Live { wifi: Some(ref w), ble: None } if w.channels[..3] == [1, 6, 11])
        );
        let both = parse(&GOOD.replace("source = \"wifi\"", "source = \"wifi+ble\"\nhci = 1"))
            .expect("valid");
        assert!(matches!(
            both.source,
            Source::Live {
                wifi: Some(_),
                ble: Some(1)
            }
        ));
        let ble = parse(
            &GOOD
                .replace("source = \"wifi\"", "source = \"ble\"")
                .replace("interface = \"wlan1\"", ""),
        )
        .expect("valid");
        assert!(matches!(
            ble.source,
            Source::Live {
                wifi: None,
                ble: Some(0)
            }
        ));
    }

    #[test]
    fn a_pcap_source_counts_the_media_its_files_carry_unless_senses_says() {
        let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/captures");
        let wifi = captures.join("probing-patterns/iPhone11-B_anonymized.pcap");
        let ble = captures.join("hackrf-ble-boston/filtered_ble_sniff.pcap");
        let kinds = |senses: &str, files: &[&Path]| {
            let files: Vec<String> = files.iter().map(|f| format!("{:?}", f)).collect();
            let source = format!("source = \"pcap\"\n{senses}pcap = [{}]", files.join(", "));
            let text = GOOD
                .replace("source = \"wifi\"", &source)
                .replace("interface = \"wlan1\"\n", "");
            let media: Vec<Medium> = parse(&text)
                .expect("valid")
                .source
                .kinds()
                .iter()
                .map(|k| k.medium())
                .collect();
            (media.contains(&Medium::Wifi), media.contains(&Medium::Ble))
        };
        assert_eq!(kinds("", &[&wifi]), (true, false));
        assert_eq!(kinds("", &[&ble]), (false, true));
        assert_eq!(kinds("", &[&wifi, &ble]), (true, true));
        assert_eq!(kinds("senses = [\"ble\"]\n", &[&wifi]), (false, true));
        // Not there yet: it fails at the start with its own error, and counts both until then.
        assert_eq!(kinds("", &[Path::new("/nonexistent.pcap")]), (true, true));
    }

    #[test]
    fn the_environment_password_wins_over_the_file() {
        let c =
            AgentConfig::parse(GOOD, Path::new("a.toml"), Some("from-env".into())).expect("valid");
        assert_eq!(c.broker.password.as_deref(), Some("from-env"));
    }

    #[test]
    fn every_mistake_names_its_field() {
        let cases = [
            (
                "sensor_id = \"neude-01\"",
                "sensor_id = \"neude/01\"",
                "`sensor_id`",
            ),
            (
                "mqtt://broker.local:1884",
                "http://broker.local",
                "`broker.url`",
            ),
            (
                "mqtt://broker.local:1884",
                "mqtt://broker.local:99999",
                "`broker.url`",
            ),
            ("password = \"s3cret\"", "", "`broker.username`"),
            (
                "source = \"wifi\"",
                "source = \"radio\"",
                "`capture.source`",
            ),
            ("interface = \"wlan1\"", "", "`capture.interface`"),
            (
                "trusted_keys = [\"ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"]",
                "",
                "`salt.trusted_keys`",
            ),
            ("ed25519:11qY", "ed25519:!1qY", "`salt.trusted_keys[0]`"),
            (
                "min_rssi_dbm = -80",
                "min_rssi_dbm = 20",
                "`capture.min_rssi_dbm`",
            ),
            ("\"data_to_ap\"", "\"beacon\"", "`capture.frames[1]`"),
            (
                "device_count = \"scans\"",
                "device_count = \"people\"",
                "`capture.device_count`",
            ),
            (
                "[outbox]",
                "[counting]\nwindow_s = 7\n[outbox]",
                "`counting.window_s`",
            ),
            (
                "[outbox]",
                "[counting]\nlg_k = 30\n[outbox]",
                "`counting.lg_k`",
            ),
            (
                "[outbox]",
                "[metrics]\nlisten = \"localhost\"\n[outbox]",
                "`metrics.listen`",
            ),
            (
                "[capture]",
                "[capture]\nchannels = [1, 6, 200]",
                "`capture.channels[2]`",
            ),
        ];
        for (from, to, field) in cases {
            let text = GOOD.replacen(from, to, 1);
            let err = parse(&text).expect_err(to).to_string();
            assert!(err.contains(field), "{to}: {err}");
            assert!(err.starts_with("agent.toml"), "{err}");
        }
    }

    #[test]
    fn unknown_and_mistyped_keys_are_reported_with_their_line() {
        let err = parse(&GOOD.replace("dir =", "directory ="))
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("directory"), "{err}");
        assert!(err.contains("line"), "{err}");
        let err = parse(&GOOD.replace("-80", "\"loud\""))
            .expect_err("type")
            .to_string();
        assert!(err.contains("min_rssi_dbm"), "{err}");
    }

    /// The shipped example is refused while it holds its placeholders (what a fresh install
    /// prints first), and valid once an installer has filled them in.
    #[test]
    fn the_shipped_example_config_names_its_placeholders_and_is_valid_once_filled_in() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent/agent.example.toml");
        let err = AgentConfig::load(&path, None)
            .expect_err("placeholders")
            .to_string();
        assert!(
            err.contains("broker.password")
                && err.contains("\"change-me\" is the example config's placeholder"),
            "{err}"
        );
        let err = AgentConfig::load(&path, Some("from-env".into()))
            .expect_err("placeholder host")
            .to_string();
        assert!(
            err.contains("broker.url")
                && err.contains("crowdflow.example.org is the example config's placeholder host"),
            "{err}"
        );
        let text = std::fs::read_to_string(&path).expect("example");
        let filled = text
            .replace("crowdflow.example.org", "broker.neude.lan")
            .replace("change-me", "s3cret");
        let err = AgentConfig::parse(&filled, &path, None)
            .expect_err("placeholder key")
            .to_string();
        assert!(
            err.contains("salt.trusted_keys[0]") && err.contains("salt-key show"),
            "{err}"
        );
        let filled = filled.replace(
            "ed25519:REPLACE-WITH-THE-AGGREGATOR-KEY",
            "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        );
        AgentConfig::parse(&filled, &path, None).expect("valid once filled in");
    }

    #[test]
    fn placeholder_passwords_and_documentation_hosts_are_refused() {
        for password in ["change-me", "CHANGE-ME-neude", "changeme"] {
            let err = parse(&GOOD.replace("s3cret", password))
                .expect_err(password)
                .to_string();
            assert!(err.contains("`broker.password`"), "{err}");
        }
        for host in ["example.org", "mqtt.example.com", "b.example.net."] {
            let err = parse(&GOOD.replace("broker.local", host))
                .expect_err(host)
                .to_string();
            assert!(
                err.contains("`broker.url`") && err.contains("RFC 2606"),
                "{err}"
            );
        }
        // the environment's password replaces the file's placeholder
        assert!(
            AgentConfig::parse(
                &GOOD.replace("s3cret", "change-me"),
                Path::new("a.toml"),
                Some("real".into())
            )
            .is_ok()
        );
        assert!(parse(&GOOD.replace("broker.local", "example.org.nl")).is_ok());
    }
}
