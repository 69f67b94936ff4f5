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
    calibration: BTreeMap<String, f64>,
    polygon: Option<serde_json::Value>,
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
    /// Persons per device, by kind (an estimate; documented as such).
    pub calibration: BTreeMap<Kind, f64>,
    /// Outline as GeoJSON, for the dashboard.
    pub polygon: Option<serde_json::Value>,
}

pub(super) fn zones(raw: Vec<RawZone>) -> Result<BTreeMap<ZoneId, Zone>, FieldError> {
    let mut zones = BTreeMap::new();
    for (i, z) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("zones[{i}].{f}");
        let id =
            ZoneId::new(&z.id).map_err(|_| field(at("id"), "use 1 to 64 of A-Z a-z 0-9 _ -"))?;
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
