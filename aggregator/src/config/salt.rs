//! `[salt]`: when salts rotate, how often they are announced, this replica's authority id,
//! its signing key and the peer replicas' keys it trusts.

use std::path::{Path, PathBuf};

use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::epoch::RotationSchedule;
use crowdflow_contract::wire::SensorId;
use serde::Deserialize;

use super::{FieldError, field};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSalt {
    #[serde(default = "default_rotation")]
    pub(super) rotation: String,
    #[serde(default = "default_tz")]
    pub(super) time_zone: String,
    #[serde(default = "default_announce")]
    pub(super) announce_every_s: u64,
    #[serde(default = "default_authority")]
    pub(super) authority_id: String,
    #[serde(default = "default_recover")]
    pub(super) recover_for_s: u64,
    #[serde(default = "default_key_file")]
    pub(super) signing_key_file: PathBuf,
    #[serde(default)]
    pub(super) trusted_keys: Vec<String>,
}

impl Default for RawSalt {
    fn default() -> Self {
        RawSalt {
            rotation: default_rotation(),
            time_zone: default_tz(),
            announce_every_s: default_announce(),
            authority_id: default_authority(),
            recover_for_s: default_recover(),
            signing_key_file: default_key_file(),
            trusted_keys: Vec::new(),
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
fn default_key_file() -> PathBuf {
    "salt-signing.key".into()
}
fn default_authority() -> String {
    "aggregator-1".into()
}

/// Checks the section; returns the rotation schedule (the other fields are used as given).
pub(super) fn rotation(raw: &RawSalt) -> Result<RotationSchedule, FieldError> {
    let rotation = RotationSchedule::parse(&raw.rotation, &raw.time_zone).map_err(|e| {
        let name = if matches!(e, crowdflow_contract::epoch::EpochError::TimeZone(_)) {
            "salt.time_zone"
        } else {
            "salt.rotation"
        };
        field(name, e.to_string())
    })?;
    if !(5..=3600).contains(&raw.announce_every_s) {
        return Err(field(
            "salt.announce_every_s",
            "must be between 5 and 3600 seconds",
        ));
    }
    if raw.recover_for_s > 600 {
        return Err(field(
            "salt.recover_for_s",
            "must be at most 600 seconds (0 draws a new salt at once)",
        ));
    }
    SensorId::new(&raw.authority_id)
        .map_err(|_| field("salt.authority_id", "use 1 to 64 of A-Z a-z 0-9 _ -"))?;
    Ok(rotation)
}

/// The signing key's file: a relative path is taken from the config file's directory, so
/// the default sits beside the config.
pub(super) fn signing_key_file(raw: &RawSalt, config_path: &Path) -> PathBuf {
    match config_path.parent() {
        Some(dir) if raw.signing_key_file.is_relative() => dir.join(&raw.signing_key_file),
        _ => raw.signing_key_file.clone(),
    }
}

/// The peer replicas' public keys.
pub(super) fn trusted_keys(raw: &RawSalt) -> Result<TrustedKeys, FieldError> {
    TrustedKeys::parse(&raw.trusted_keys)
        .map_err(|(i, e)| field(format!("salt.trusted_keys[{i}]"), e.to_string()))
}
