//! Config files as both deployables read them: TOML parsed into a raw struct (unknown keys
//! refused with their line), then validated with errors that name the file and the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::sketch::Precision;
use crate::window::WindowLength;

/// A config problem, naming the file and, once parsed, the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a separate cause: reports that print the chain would
        /// say it twice).
        reason: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type or name.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// A field breaks a rule.
    #[error("{path}: `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, as a TOML path.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Reads a config file.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|reason| ConfigError::Read {
        path: path.to_owned(),
        reason,
    })
}

/// Parses config text into its raw struct (`path` only names the file in errors).
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// The error for `field` of the file at `path`.
pub fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        field: field.into(),
        message: message.into(),
    }
}

/// What is wrong with a password from a config file or the environment, if anything: empty,
/// or one of the placeholders the shipped examples carry (`change-me`, `change-me-neude-01`,
/// `changeme`, `...`), which would leave an account open to anyone who read the examples.
pub fn password_problem(password: &str) -> Option<String> {
    let p = password.trim().to_ascii_lowercase();
    if p.is_empty() {
        Some("is empty".into())
    } else if p.starts_with("change-me") || p.starts_with("changeme") || p == "..." {
        Some(format!("{password:?} is the example config's placeholder"))
    } else {
        None
    }
}

/// Where a broker listens, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection uses TLS (`mqtts://`).
    pub tls: bool,
}

/// Parses `mqtt://HOST[:PORT]` (port 1883 by default) or `mqtts://HOST[:PORT]` (TLS, 8883).
pub fn mqtt_url(url: &str) -> Result<BrokerAddress, &'static str> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else {
        return Err("must start with mqtt:// or mqtts:// (TLS)");
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| "port must be 1-65535")?),
        None => (rest, default_port),
    };
    if host.is_empty() || host.contains('/') || port == 0 {
        return Err("must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]");
    }
    Ok(BrokerAddress {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// TLS material for an `mqtts://` broker, read once at start: the CA certificate(s) that
/// sign the broker's certificate, and optionally a client certificate and its key (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates (PEM).
    pub ca: Vec<u8>,
    /// Client certificate chain and private key (PEM).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsFiles {
    // Never print a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca_bytes", &self.ca.len())
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

/// The TLS keys of a broker section (`ca_file`, `client_cert_file`, `client_key_file`),
/// checked against the URL's scheme and read. Errors name the key.
pub fn tls_files(
    address: &BrokerAddress,
    ca_file: Option<&Path>,
    client_cert_file: Option<&Path>,
    client_key_file: Option<&Path>,
) -> Result<Option<TlsFiles>, (&'static str, String)> {
    if !address.tls {
        if ca_file.or(client_cert_file).or(client_key_file).is_some() {
            return Err((
                "broker.ca_file",
                "TLS files are only used with an mqtts:// URL".into(),
            ));
        }
        return Ok(None);
    }
    let ca_file = ca_file.ok_or((
        "broker.ca_file",
        "mqtts:// needs the CA certificate (PEM) that signed the broker's certificate".to_owned(),
    ))?;
    let ca = pem_file("broker.ca_file", ca_file, "CERTIFICATE")?;
    let client = match (client_cert_file, client_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            pem_file("broker.client_cert_file", cert, "CERTIFICATE")?,
            pem_file("broker.client_key_file", key, "PRIVATE KEY")?,
        )),
        (Some(_), None) => {
            return Err((
                "broker.client_key_file",
                "a client certificate needs its key".into(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                "broker.client_cert_file",
                "a client key needs its certificate".into(),
            ));
        }
    };
    Ok(Some(TlsFiles { ca, client }))
}

fn pem_file(
    field: &'static str,
    path: &Path,
    label: &str,
) -> Result<Vec<u8>, (&'static str, String)> {
    let bytes =
        std::fs::read(path).map_err(|e| (field, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let marker = format!("{label}-----");
    if !text.contains("-----BEGIN ") || !text.contains(&marker) {
        return Err((
            field,
            format!("{} is not a PEM file with a {label}", path.display()),
        ));
    }
    Ok(bytes)
}

/// The `[counting]` section both configs carry: every sensor and the aggregator of one
/// deployment must use the same window length and sketch precision.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountingSection {
    #[serde(default = "default_window")]
    window_s: u64,
    #[serde(default = "default_lg_k")]
    lg_k: u8,
}

impl Default for CountingSection {
    fn default() -> Self {
        CountingSection {
            window_s: default_window(),
            lg_k: default_lg_k(),
        }
    }
}

fn default_window() -> u64 {
    u64::from(WindowLength::DEFAULT.seconds())
}

fn default_lg_k() -> u8 {
    Precision::DEFAULT.lg_k()
}

impl CountingSection {
    /// The validated window length and precision, or the faulty field and what is wrong.
    pub fn validate(&self) -> Result<(WindowLength, Precision), (&'static str, String)> {
        let window =
            WindowLength::new(self.window_s).map_err(|e| ("counting.window_s", e.to_string()))?;
        let precision = Precision::new(self.lg_k).map_err(|e| ("counting.lg_k", e.to_string()))?;
        Ok((window, precision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_urls_give_host_and_port() {
        let address = |host: &str, port, tls| BrokerAddress {
            host: host.into(),
            port,
            tls,
        };
        assert_eq!(
            mqtt_url("mqtt://broker.local"),
            Ok(address("broker.local", 1883, false))
        );
        assert_eq!(
            mqtt_url("mqtt://10.0.0.2:1884"),
            Ok(address("10.0.0.2", 1884, false))
        );
        assert_eq!(
            mqtt_url("mqtts://broker.local"),
            Ok(address("broker.local", 8883, true))
        );
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:99999",
            "mqtt://a/b",
            "mqtts://",
        ] {
            assert!(mqtt_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_files_are_checked_against_the_scheme_and_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let key = dir.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let plain = mqtt_url("mqtt://b").expect("url");
        let tls = mqtt_url("mqtts://b").expect("url");
        assert_eq!(tls_files(&plain, None, None, None), Ok(None));
        let field = |r: Result<Option<TlsFiles>, (&'static str, String)>| r.expect_err("error").0;
        assert_eq!(
            field(tls_files(&plain, Some(&ca), None, None)),
            "broker.ca_file"
        );
        assert_eq!(field(tls_files(&tls, None, None, None)), "broker.ca_file");
        assert_eq!(
            field(tls_files(&tls, Some(&key), None, None)),
            "broker.ca_file",
            "a key is not a CA certificate"
        );
        assert_eq!(
            field(tls_files(&tls, Some(&ca), Some(&ca), None)),
            "broker.client_key_file"
        );
        assert_eq!(
            field(tls_files(&tls, Some(&ca), Some(&ca), Some(&ca))),
            "broker.client_key_file",
            "a certificate is not a key"
        );
        let files = tls_files(&tls, Some(&ca), Some(&ca), Some(&key))
            .expect("valid")
            .expect("tls");
        assert!(files.client.is_some());
        assert!(
            !format!("{files:?}").contains("MIIB"),
            "Debug hides contents"
        );
        let missing =
            tls_files(&tls, Some(&dir.path().join("nope.pem")), None, None).expect_err("missing");
        assert!(missing.1.contains("nope.pem"), "{}", missing.1);
    }
}
