//! `[broker]`: the embedded broker or an external one, and the aggregator's account on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crowdflow_contract::config_file;
use crowdflow_contract::wire::Topics;
use serde::Deserialize;

use super::{FieldError, field};
use crate::broker::tls::ServerTls;

/// Environment variable overriding `broker.password` (the aggregator's own account).
pub const BROKER_PASSWORD_ENV: &str = "CROWDFLOW_BROKER_PASSWORD";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBroker {
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
    #[serde(default)]
    plaintext_on_network: bool,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

/// Room for a city's sensors (hundreds) with headroom, well under the 65,536 descriptors the
/// shipped unit allows (LimitNOFILE), which HTTP connections share.
fn default_max_connections() -> usize {
    2_000
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

/// How the aggregator reaches MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMode {
    /// Run the embedded broker (rmqtt, with the shipped ACL) in-process on `listen`.
    Embedded {
        /// Where sensors connect.
        listen: SocketAddr,
        /// Most MQTT connections at once.
        max_connections: usize,
        /// TLS (`mqtts`) on `listen`, from `tls_cert_file` and `tls_key_file`.
        tls: Option<ServerTls>,
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

/// TLS for the embedded broker: both files or neither, read now so that a missing file is
/// named at start.
fn server_tls(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<ServerTls>, FieldError> {
    let read = |name: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| field(name, format!("cannot read {}: {e}", path.display())))
    };
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(ServerTls {
            cert_file: cert.to_owned(),
            cert_chain: read("broker.tls_cert_file", cert)?,
            key: read("broker.tls_key_file", key)?,
        })),
        _ => Err(field(
            "broker.tls_cert_file",
            "tls_cert_file and tls_key_file go together (the broker's certificate chain and its key, PEM)",
        )),
    }
}

/// The embedded broker's address. Without TLS it speaks plaintext MQTT, so sensor passwords and the
/// salt would cross the network readable: beyond loopback only when the config says so.
fn embedded_listen(
    listen: Option<&str>,
    plaintext_on_network: bool,
) -> Result<SocketAddr, FieldError> {
    let addr: SocketAddr = listen
        .unwrap_or("127.0.0.1:1883")
        .parse()
        .map_err(|_| field("broker.listen", "must be ADDRESS:PORT, e.g. 127.0.0.1:1883"))?;
    if !addr.ip().is_loopback() && !plaintext_on_network {
        return Err(field(
            "broker.listen",
            format!(
                "{addr} is reachable from the network, and the embedded broker speaks plaintext MQTT \
                 (sensor passwords and the day's salt would cross it readable): use Mosquitto with \
                 TLS (mode = \"external\", deploy/mosquitto) or this broker's tls_cert_file and tls_key_file, or set broker.plaintext_on_network = true \
                 on a network you trust"
            ),
        ));
    }
    Ok(addr)
}

pub(super) fn broker(
    raw: RawBroker,
    password_env: Option<String>,
) -> Result<BrokerConfig, FieldError> {
    let mode = match raw.mode.as_str() {
        "embedded" => BrokerMode::Embedded {
            listen: embedded_listen(
                raw.listen.as_deref(),
                raw.plaintext_on_network || raw.tls_cert_file.is_some(),
            )?,
            tls: server_tls(raw.tls_cert_file.as_deref(), raw.tls_key_file.as_deref())?,
            max_connections: match raw.max_connections {
                n @ 1..=60_000 => n,
                _ => {
                    return Err(field(
                        "broker.max_connections",
                        "must be between 1 and 60000 (each connection holds a file descriptor)",
                    ));
                }
            },
        },
        "external" => {
            if raw.tls_cert_file.or(raw.tls_key_file).is_some() {
                return Err(field(
                    "broker.tls_cert_file",
                    "is for the embedded broker; an external broker's TLS is its own (use an mqtts:// url with ca_file)",
                ));
            }
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
    if let Some(problem) = password.as_deref().and_then(config_file::password_problem) {
        return Err(field(
            "broker.password",
            format!(
                "{problem}: give the aggregator's account a password of its own (here or in {BROKER_PASSWORD_ENV})"
            ),
        ));
    }
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
