//! What a sensor has learned of its installation, kept across restarts: the device
//! estimate's signal history ([`RssiGate`]: frames per dBm) and scan cadence
//! ([`ScanCadence`]: two sums). Without it, a restarted agent read a dense crowd by
//! concurrency, about a quarter of its devices, until it had heard 100 recurring addresses
//! again (the first quarter hour of a zone's arrivals, in the demo's morning).
//!
//! The file (`installation.json` in the outbox directory) holds counts only: no address, hash,
//! fingerprint or salt. It is aged by the time it lay on disk, as the history ages in memory
//! (half-life [`GATE_HALF_LIFE`](super::devices::GATE_HALF_LIFE)).

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::devices::{RssiGate, ScanCadence};

/// The file's name in the agent's outbox directory (the outbox reads only numbered files).
pub const FILE: &str = "installation.json";

/// The file's format version.
const VERSION: u8 = 1;

/// The most scans of one address in a minute: its scans are at least a second apart.
const MAX_SCANS_PER_MINUTE: f64 = 60.0;

/// The learned history, as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    v: u8,
    /// When it was written.
    at: Timestamp,
    /// Wi-Fi frames per 1 dB bin, -128 to 127 dBm.
    rssi_bins: Vec<f64>,
    /// Recurring random addresses seen, and their scans.
    cadence: [f64; 2],
}

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InstallationError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not what this agent writes.
    #[error(
        "{path}: not a learned installation history ({reason}); it is ignored and learned again"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The history in `dir`, aged to `now`; `None` when there is none yet.
pub fn load(
    dir: &Path,
    now: Timestamp,
) -> Result<Option<(RssiGate, ScanCadence)>, InstallationError> {
    let path = dir.join(FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(InstallationError::Io { path, source }),
    };
    let invalid = |reason: String| InstallationError::Invalid {
        path: path.clone(),
        reason,
    };
    let stored: Stored = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    if stored.v != VERSION {
        return Err(invalid(format!("version {}, expected {VERSION}", stored.v)));
    }
    let counts = stored.rssi_bins.iter().chain(&stored.cadence);
    if counts.clone().any(|c| !c.is_finite() || *c < 0.0) {
        return Err(invalid("a count is negative or not a number".into()));
    }
    // Every recurring address was heard in 2 to 60 scans of a minute (scans are 1 s apart
    // at least), and ageing scales both sums alike.
    let [addresses, scans] = stored.cadence;
    if !(2.0 * addresses * (1.0 - 1e-9)..=MAX_SCANS_PER_MINUTE * addresses * (1.0 + 1e-9))
        .contains(&scans)
    {
        return Err(invalid(format!(
            "{scans} scans of {addresses} recurring addresses: each has 2 to {MAX_SCANS_PER_MINUTE}"
        )));
    }
    let mut gate = RssiGate::from_bins(&stored.rssi_bins).ok_or_else(|| {
        invalid(format!(
            "{} signal bins, expected 256",
            stored.rssi_bins.len()
        ))
    })?;
    let mut cadence = ScanCadence::from_sums(stored.cadence[0], stored.cadence[1]);
    // A clock set back leaves it as it was.
    let lay = now
        .duration_since(stored.at)
        .max(jiff::SignedDuration::ZERO);
    gate.decay(lay);
    cadence.decay(lay);
    Ok(Some((gate, cadence)))
}

/// Moves a refused history in `dir` aside, as `installation.json.rejected` (replacing an
/// older one), so that a hand-edit's slip costs a restart's learning, not the history: the
/// next write would replace the file. Returns where it went.
pub fn set_aside(dir: &Path) -> Result<PathBuf, InstallationError> {
    let path = dir.join(FILE);
    let aside = dir.join(format!("{FILE}.rejected"));
    std::fs::rename(&path, &aside)
        .map(|()| aside)
        .map_err(|source| InstallationError::Io { path, source })
}

/// Writes the history to `dir` (a new file renamed over the old: a crash leaves one whole).
pub fn save(
    dir: &Path,
    gate: &RssiGate,
    cadence: &ScanCadence,
    now: Timestamp,
) -> Result<(), InstallationError> {
    let path = dir.join(FILE);
    let (addresses, scans) = cadence.sums();
    let stored = Stored {
        v: VERSION,
        at: now,
        rssi_bins: gate.bins().to_vec(),
        cadence: [addresses, scans],
    };
    let text = serde_json::to_vec(&stored).map_err(|e| InstallationError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // The outbox removes leftover `.tmp` files at start.
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |source| InstallationError::Io {
        path: path.clone(),
        source,
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::devices::{DeviceRule, GATE_HALF_LIFE};

    fn learned() -> (RssiGate, ScanCadence) {
        let mut gate = RssiGate::default();
        for _ in 0..3000 {
            gate.observe(-55);
            gate.observe(-92);
        }
        let mut cadence = ScanCadence::default();
        for _ in 0..300 {
            cadence.observe(3);
        }
        (gate, cadence)
    }

    #[test]
    fn a_saved_history_loads_as_it_was_aged_by_the_time_it_lay() {
        let dir = tempfile::tempdir().expect("tmp");
        let now: Timestamp = "2026-12-04T12:00:00Z".parse().expect("ts");
        assert!(load(dir.path(), now).expect("none yet").is_none());
        let (gate, cadence) = learned();
        save(dir.path(), &gate, &cadence, now).expect("saved");
        let (g, c) = load(dir.path(), now).expect("read").expect("some");
        assert_eq!(g.learned(), gate.learned());
        assert!(g.learned().is_some());
        assert_eq!(
            c.learned(DeviceRule::Auto),
            cadence.learned(DeviceRule::Auto)
        );
        // A day later, half of it: 150 addresses, still a cadence; two days, 75: none.
        let day = now + GATE_HALF_LIFE;
        let (_, c) = load(dir.path(), day).expect("read").expect("some");
        assert!(c.learned(DeviceRule::Auto).is_some());
        let (_, c) = load(dir.path(), day + GATE_HALF_LIFE)
            .expect("read")
            .expect("some");
        assert_eq!(c.learned(DeviceRule::Auto), None);
        // Nothing but counts on disk.
        let text = std::fs::read_to_string(dir.path().join(FILE)).expect("file");
        assert!(text.starts_with("{\"v\":1,\"at\":\"2026-12-04T12:00:00Z\",\"rssi_bins\":["));
    }

    #[test]
    fn a_damaged_file_is_refused_naming_it_and_what_is_wrong() {
        let dir = tempfile::tempdir().expect("tmp");
        let now: Timestamp = "2026-12-04T12:00:00Z".parse().expect("ts");
        let (gate, cadence) = learned();
        save(dir.path(), &gate, &cadence, now).expect("saved");
        let path = dir.path().join(FILE);
        let good = std::fs::read_to_string(&path).expect("file");
        for (bad, says) in [
            (good[..good.len() / 2].to_owned(), "EOF"),
            (good.replace("\"v\":1", "\"v\":9"), "version 9"),
            (good.replacen(",0.0", ",-1.0", 1), "negative"),
            (good.replacen(",0.0", "", 1), "255 signal bins"),
            (
                good.replace("\"cadence\":[300.0,900.0]", "\"cadence\":[200.0,100.0]"),
                "each has 2 to 60",
            ),
            (
                good.replace("\"cadence\":[300.0,900.0]", "\"cadence\":[200.0,1e300]"),
                "each has 2 to 60",
            ),
        ] {
            std::fs::write(&path, &bad).expect("write");
            let e = load(dir.path(), now).expect_err("refused").to_string();
            assert!(e.contains(FILE) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_refused_file_is_kept_aside_and_the_next_start_learns_afresh() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(FILE);
        std::fs::write(&path, "{\"v\":1, hand-edited").expect("write");
        let aside = set_aside(dir.path()).expect("moved");
        assert_eq!(
            std::fs::read_to_string(&aside).expect("kept"),
            "{\"v\":1, hand-edited"
        );
        assert!(aside.ends_with("installation.json.rejected"));
        let now: Timestamp = "2026-12-04T12:00:00Z".parse().expect("ts");
        assert!(load(dir.path(), now).expect("no file").is_none());
    }
}
