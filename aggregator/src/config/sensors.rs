//! `[[sensors]]`: each sensor, its zone, what it senses, and where it is.

use std::collections::BTreeMap;

use crowdflow_contract::config_file;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::wire::SensorId;
use serde::Deserialize;

use super::Zone;
use super::{FieldError, field};
use crate::zone::ZoneId;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSensor {
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

/// One sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// Its id (also its broker username on the embedded broker).
    pub id: SensorId,
    /// The zone it counts for.
    pub zone: ZoneId,
    /// Broker password on the embedded broker.
    pub password: Option<String>,
    /// Which kinds it may publish.
    pub kinds: Vec<Kind>,
    /// Location, for the public sensor register.
    pub location: Option<(f64, f64)>,
    /// Description, for the public sensor register.
    pub description: String,
}

pub(super) fn sensors(
    raw: Vec<RawSensor>,
    zones: &BTreeMap<ZoneId, Zone>,
) -> Result<BTreeMap<SensorId, Sensor>, FieldError> {
    let mut sensors = BTreeMap::new();
    for (i, s) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("sensors[{i}].{f}");
        let id =
            SensorId::new(&s.id).map_err(|_| field(at("id"), "use 1 to 64 of A-Z a-z 0-9 _ -"))?;
        let zone = ZoneId::new(&s.zone)
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
        if let Some(problem) = s
            .password
            .as_deref()
            .and_then(config_file::password_problem)
        {
            return Err(field(
                at("password"),
                format!(
                    "{problem}: give each sensor a password of its own (`openssl rand -hex 16`; deploy/mosquitto/add-sensor.sh prints one for Mosquitto)"
                ),
            ));
        }
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
