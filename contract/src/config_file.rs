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
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
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

/// Host and port of an `mqtt://HOST[:PORT]` URL (port 1883 by default).
pub fn mqtt_url(url: &str) -> Result<(String, u16), &'static str> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or("must start with mqtt:// (TLS brokers are configured in the secured deployment)")?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| "port must be 1-65535")?),
        None => (rest, 1883),
    };
    if host.is_empty() || host.contains('/') || port == 0 {
        return Err("must be mqtt://HOST[:PORT]");
    }
    Ok((host.to_owned(), port))
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
        assert_eq!(
            mqtt_url("mqtt://broker.local"),
            Ok(("broker.local".into(), 1883))
        );
        assert_eq!(
            mqtt_url("mqtt://10.0.0.2:1884"),
            Ok(("10.0.0.2".into(), 1884))
        );
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:99999",
            "mqtt://a/b",
            "mqtts://x",
        ] {
            assert!(mqtt_url(bad).is_err(), "{bad}");
        }
    }
}
