//! `[[zones]]`: named areas whose devices are counted together, with their area,
//! level-of-service thresholds and calibration.

use std::collections::BTreeMap;

use crowdflow_contract::identity::Kind;

use crate::zone::ZoneId;
use serde::Deserialize;

use super::{FieldError, field};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZone {
    id: String,
    name: String,
    area_m2: f64,
    capacity: Option<u64>,
    #[serde(default = "default_occupancy")]
    occupancy_window_min: u32,
    #[serde(default = "default_thresholds")]
    thresholds: Vec<f64>,
    #[serde(default)]
    calibration: BTreeMap<String, RawCalibration>,
    polygon: Option<serde_json::Value>,
    gate_width_m: Option<f64>,
    gate_thresholds: Option<Vec<f64>>,
}

/// Flow rates in persons per metre of width per minute at which a passage turns amber and
/// red: 66 is the Green Guide's maximum for stairways, 82 for level passages (Guide to
/// Safety at Sports Grounds, 6th ed., 2018, ch. 7; Fruin's level-of-service E/F boundary
/// lies near the same flows).
fn default_gate_thresholds() -> Vec<f64> {
    vec![66.0, 82.0]
}

/// A zone that is a passage people move through (a gate, a bridge, a tunnel): its
/// throughput is what matters, and its width.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Clear width in metres.
    pub width_m: f64,
    /// Throughputs (persons per metre per minute), ascending, at which it turns amber, red.
    pub thresholds: Vec<f64>,
}

/// A kind's calibration as written: a bare factor (a guess) or a table from `calibrate`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "persons per device (a number), or a table from `calibrate` with factor, floor, error and observations"
)]
pub(super) enum RawCalibration {
    Factor(f64),
    Fitted(RawFit),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFit {
    factor: f64,
    floor: Option<RawFloor>,
    error: Option<f64>,
    observations: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a number of devices or \"learned\"")]
pub(super) enum RawFloor {
    Devices(f64),
    Word(String),
}

/// The static devices of a zone (lab computers, routers' clients, shop beacons) that
/// are there whoever comes: subtracted before the factor applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Floor {
    /// Learned from the zone's own quiet periods (`floor = "learned"`, the default): a
    /// low quantile of its stored minute counts (see [`crate::people`]).
    Learned,
    /// A number of devices (from `calibrate`, or a site survey).
    Devices(f64),
}

/// How one kind's devices become people: `people = factor x (devices - floor)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Persons per device.
    pub factor: f64,
    /// Devices there whoever comes.
    pub floor: Floor,
    /// Relative half-width of the fit's 95 % prediction interval (from `calibrate`'s
    /// held-out residuals); `None` for a factor nobody fitted.
    pub error: Option<f64>,
    /// Head counts of this zone the fit was made from.
    pub observations: Option<u32>,
}

impl Calibration {
    /// Fitted on this zone's own head counts (`calibrate` writes `error` and
    /// `observations`; the config refuses observations without an error). Anything else (a
    /// guess, a factor taken from other zones with their error) is uncalibrated, and its
    /// interval is at least [`crate::people::UNCALIBRATED_ERROR`].
    pub fn is_fitted(&self) -> bool {
        self.error.is_some() && self.observations.is_some_and(|n| n > 0)
    }
}

fn calibration(at: &str, raw: &RawCalibration) -> Result<Calibration, FieldError> {
    let (factor, floor, error, observations) = match raw {
        RawCalibration::Factor(f) => (*f, None, None, None),
        RawCalibration::Fitted(fit) => {
            (fit.factor, fit.floor.as_ref(), fit.error, fit.observations)
        }
    };
    let factor_at = match raw {
        RawCalibration::Factor(_) => at.to_owned(),
        RawCalibration::Fitted(_) => format!("{at}.factor"),
    };
    if !(factor.is_finite() && factor > 0.0 && factor <= 100.0) {
        return Err(field(
            factor_at,
            "must be above 0 and at most 100 persons per device",
        ));
    }
    let floor = match floor {
        None => Floor::Learned,
        Some(RawFloor::Word(w)) if w == "learned" => Floor::Learned,
        Some(RawFloor::Devices(d)) if d.is_finite() && (0.0..=1e6).contains(d) => {
            Floor::Devices(*d)
        }
        Some(_) => {
            return Err(field(
                format!("{at}.floor"),
                "a number of devices (0 to 1,000,000) or \"learned\"",
            ));
        }
    };
    if let Some(e) = error
        && !(e.is_finite() && e > 0.0 && e <= 10.0)
    {
        return Err(field(
            format!("{at}.error"),
            "the fit's relative 95 % error, above 0 and at most 10 (0.2 = +-20 %), as `calibrate` prints it",
        ));
    }
    let min = crate::calibration::MIN_OBSERVATIONS;
    if observations.is_some_and(|n| (n as usize) < min) {
        return Err(field(
            format!("{at}.observations"),
            format!(
                "`calibrate` fits a line on at least {min} head counts and writes how many; leave error and observations out for a guessed factor"
            ),
        ));
    }
    // Half a pasted line would be read as a guess (+-50 %) while the zone says "observations".
    // An error alone is allowed: a factor transferred from fitted zones carries theirs (the
    // demo's uncounted zones), and stays uncalibrated.
    if error.is_none() && observations.is_some() {
        return Err(field(
            format!("{at}.error"),
            "`calibrate` writes error and observations together: paste its whole line (a factor without an error is a guess)",
        ));
    }
    Ok(Calibration {
        factor,
        floor,
        error,
        observations,
    })
}

fn gate(
    i: usize,
    width: Option<f64>,
    thresholds: Option<Vec<f64>>,
) -> Result<Option<Gate>, FieldError> {
    let Some(width_m) = width else {
        return match thresholds {
            // Thresholds without a width would be silently unused.
            Some(_) => Err(field(
                format!("zones[{i}].gate_thresholds"),
                "apply to a passage: set gate_width_m too (its clear width in metres)",
            )),
            None => Ok(None),
        };
    };
    let thresholds = thresholds.unwrap_or_else(default_gate_thresholds);
    if !(width_m.is_finite() && width_m > 0.0 && width_m <= 1000.0) {
        return Err(field(
            format!("zones[{i}].gate_width_m"),
            "the passage's clear width in metres, above 0 and at most 1000",
        ));
    }
    if thresholds.is_empty()
        || thresholds.windows(2).any(|w| w[0] >= w[1])
        || thresholds.iter().any(|t| !(t.is_finite() && *t > 0.0))
    {
        return Err(field(
            format!("zones[{i}].gate_thresholds"),
            "persons per metre per minute, each above 0 and ascending, e.g. [66, 82]",
        ));
    }
    Ok(Some(Gate {
        width_m,
        thresholds,
    }))
}

fn default_occupancy() -> u32 {
    5
}
fn default_thresholds() -> Vec<f64> {
    vec![2.0, 3.5, 5.0]
}

/// One zone: a named area whose devices are counted together.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Identifier (same rules as sensor ids).
    pub id: ZoneId,
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
    /// How devices become people, by kind (the kinds that feed the people estimate).
    pub calibration: BTreeMap<Kind, Calibration>,
    /// Outline as GeoJSON, for the dashboard.
    pub polygon: Option<serde_json::Value>,
    /// Set when the zone is a passage (`gate_width_m`).
    pub gate: Option<Gate>,
}

impl Zone {
    /// What `validate` and the start-up warn about without refusing: a calibration that
    /// works, but likely not as the operator meant.
    pub fn cautions(&self) -> Vec<String> {
        let guessed_devices = self
            .calibration
            .get(&Kind::WifiDerandomized)
            .is_some_and(|c| !c.is_fitted());
        // docs/counting-devices.md, known limits: rooms of up to 29 people read 0.6-1.6
        // devices per person; the simulator's dense squares 0.97 of their devices, its
        // passage 0.55 (by default); no real dense crowd has been counted.
        guessed_devices
            .then(|| {
                format!(
                    "zone {}: a guessed factor on wifi_derandomized, whose device estimate \
                     was checked against head counts on rooms of up to 29 people only (dense \
                     crowds on the simulator: docs/counting-devices.md); fit it with \
                     `calibrate` on this zone's head counts, or guess on an address kind",
                    self.id
                )
            })
            .into_iter()
            .collect()
    }
}

/// People are the sum over calibrated kinds, so two kinds must never count one phone twice:
/// `wifi_derandomized` is the physical devices behind the `wifi` and `wifi_random` addresses,
/// and a line fitted by `calibrate` already predicts all of a zone's people by itself.
fn check_kinds_add_up(calibration: &BTreeMap<Kind, Calibration>) -> Result<(), String> {
    let addresses: Vec<&str> = [Kind::Wifi, Kind::WifiRandom]
        .into_iter()
        .filter(|k| calibration.contains_key(k))
        .map(Kind::as_str)
        .collect();
    if calibration.contains_key(&Kind::WifiDerandomized) && !addresses.is_empty() {
        return Err(format!(
            "wifi_derandomized counts the phones behind the {} addresses, so people would count \
             them twice: keep either wifi_derandomized or the address kinds (calibrate's report \
             says which to keep)",
            addresses.join(" and ")
        ));
    }
    // A fitted line predicts all of the zone's people by itself: any other kind beside it
    // adds to them. Guessed factors may share a crowd between kinds.
    if let Some((fitted, _)) = calibration.iter().find(|(_, c)| c.is_fitted())
        && calibration.len() > 1
    {
        let others: Vec<&str> = calibration
            .keys()
            .filter(|k| *k != fitted)
            .map(|k| k.as_str())
            .collect();
        return Err(format!(
            "{fitted} was fitted by calibrate to give the zone's people by itself, and people \
             add the kinds, so {} would count people twice: keep only the fitted line",
            others.join(" and ")
        ));
    }
    Ok(())
}

pub(super) fn zones(raw: Vec<RawZone>) -> Result<BTreeMap<ZoneId, Zone>, FieldError> {
    let mut zones = BTreeMap::new();
    for (i, z) in raw.into_iter().enumerate() {
        // Refusals say which zone too: `zones[7]` alone has the reader count entries.
        let named = format!(" (zone {:?})", z.id);
        let zone = zone(i, z).map_err(|(f, m)| (f, m + &named))?;
        if zones.insert(zone.id.clone(), zone).is_some() {
            return Err(field(
                format!("zones[{i}].id"),
                format!("another zone has this id{named}"),
            ));
        }
    }
    Ok(zones)
}

/// The `i`th `[[zones]]` entry, checked.
fn zone(i: usize, z: RawZone) -> Result<Zone, FieldError> {
    let at = |f: &str| format!("zones[{i}].{f}");
    let id = ZoneId::new(&z.id).map_err(|_| field(at("id"), "use 1 to 64 of A-Z a-z 0-9 _ -"))?;
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
    for (kind, raw) in &z.calibration {
        let at = format!("zones[{i}].calibration.{kind}");
        let k = kind.parse::<Kind>().map_err(|_| {
            field(
                at.clone(),
                "not a kind (wifi, wifi_random, ble, wifi_derandomized)",
            )
        })?;
        calibration.insert(k, self::calibration(&at, raw)?);
    }
    check_kinds_add_up(&calibration).map_err(|e| field(at("calibration"), e))?;
    if let Some(p) = &z.polygon
        && p.get("type").and_then(|t| t.as_str()) != Some("Polygon")
    {
        return Err(field(
            at("polygon"),
            "must be a GeoJSON Polygon geometry ({\"type\": \"Polygon\", \"coordinates\": [...]})",
        ));
    }
    Ok(Zone {
        id,
        name: z.name,
        area_m2: z.area_m2,
        capacity: z.capacity,
        occupancy_window_min: z.occupancy_window_min,
        thresholds: z.thresholds,
        calibration,
        polygon: z.polygon,
        gate: gate(i, z.gate_width_m, z.gate_thresholds)?,
    })
}
