//! Scenario files (TOML): the place, the crowd's timeline and the device population of a
//! simulated event. Validated with errors that name the field, like every config.

use std::path::Path;

use crowdflow_contract::config_file::{self, ConfigError};
use jiff::Timestamp;
use jiff::civil::{Date, Time};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    scenario: RawHead,
    #[serde(default)]
    population: Population,
    zones: Vec<RawZone>,
    sensors: Vec<RawSensor>,
    arrivals: Vec<RawArrival>,
    #[serde(default)]
    moves: Vec<RawMove>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead {
    name: String,
    date: String,
    #[serde(default = "default_tz")]
    time_zone: String,
    start: String,
    end: String,
    #[serde(default)]
    seed: u64,
}

fn default_tz() -> String {
    "Europe/Amsterdam".into()
}

/// Who carries what, and how their devices behave. Shares are of people; the defaults follow
/// published probe-request studies loosely and are meant to be tuned per event.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Population {
    /// People whose phone probes with its global (hardware) MAC.
    pub global_mac: f64,
    /// People with an iOS-like phone: a new random MAC for every scan burst.
    pub ios_like: f64,
    /// People with an Android-like phone: a random MAC kept for `android_rotation_min`.
    pub android_like: f64,
    /// People with no active device.
    pub no_device: f64,
    /// Share of device carriers with a second device (a BLE wearable).
    pub second_device: f64,
    /// Share of phones that also advertise on BLE.
    pub ble_phone: f64,
    /// Share of scan bursts made with the screen on (bursts come more often then).
    pub screen_on: f64,
    /// Seconds between probe bursts with the screen on.
    pub burst_screen_on_s: f64,
    /// Seconds between probe bursts with the screen off.
    pub burst_screen_off_s: f64,
    /// Minutes an Android-like phone keeps a random MAC.
    pub android_rotation_min: f64,
    /// Minutes a BLE resolvable private address lasts.
    pub ble_rotation_min: f64,
    /// Seconds between BLE advertisements a sensor catches (its scan duty cycle).
    pub ble_interval_s: f64,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            global_mac: 0.10,
            ios_like: 0.45,
            android_like: 0.35,
            no_device: 0.10,
            second_device: 0.15,
            ble_phone: 0.60,
            screen_on: 0.25,
            burst_screen_on_s: 20.0,
            burst_screen_off_s: 90.0,
            android_rotation_min: 10.0,
            ble_rotation_min: 15.0,
            ble_interval_s: 10.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    id: String,
    name: String,
    x: f64,
    y: f64,
    radius_m: f64,
    #[serde(default)]
    gate_width_m: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSensor {
    id: String,
    zone: String,
    x: f64,
    y: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArrival {
    zone: String,
    from: String,
    to: String,
    people: u32,
    #[serde(default = "default_stay")]
    stay_min: [f64; 2],
}

fn default_stay() -> [f64; 2] {
    [30.0, 180.0]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMove {
    from_zone: String,
    to_zone: String,
    from: String,
    to: String,
    share: f64,
}

/// A zone: a disc on a local metric plane (metres east, north).
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Id (as in the aggregator's config).
    pub id: String,
    /// Name.
    pub name: String,
    /// Centre, metres east.
    pub x: f64,
    /// Centre, metres north.
    pub y: f64,
    /// Radius in metres.
    pub radius_m: f64,
    /// A passage people cross (a bridge, a gate): its width in metres, for the
    /// aggregator's throughput in persons per metre per minute.
    pub gate_width_m: Option<f64>,
}

/// A sensor at a position, counting for a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// Id (its agent's `sensor_id`).
    pub id: String,
    /// Index into [`Scenario::zones`].
    pub zone: usize,
    /// Metres east.
    pub x: f64,
    /// Metres north.
    pub y: f64,
}

/// People arriving in a zone, evenly over `[from, to)`, staying a uniform time in `stay_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Index into [`Scenario::zones`].
    pub zone: usize,
    /// First arrival.
    pub from: Timestamp,
    /// Last arrival.
    pub to: Timestamp,
    /// How many.
    pub people: u32,
    /// Shortest and longest stay, seconds.
    pub stay_s: [f64; 2],
}

/// A share of the people in one zone moving to another during `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// Index of the zone they leave.
    pub from_zone: usize,
    /// Index of the zone they go to.
    pub to_zone: usize,
    /// Start of the movement.
    pub from: Timestamp,
    /// End of the movement.
    pub to: Timestamp,
    /// Share of the people present who move (0..=1).
    pub share: f64,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// Simulation start.
    pub start: Timestamp,
    /// Simulation end.
    pub end: Timestamp,
    /// IANA time zone of the scenario's local times.
    pub time_zone: String,
    /// Seed: the same scenario and seed give the same frames and truth.
    pub seed: u64,
    /// Device population.
    pub population: Population,
    /// Zones.
    pub zones: Vec<Zone>,
    /// Sensors.
    pub sensors: Vec<Sensor>,
    /// Arrivals.
    pub arrivals: Vec<Arrival>,
    /// Movements.
    pub moves: Vec<Move>,
}

type FieldError = (String, String);

fn field(name: impl Into<String>, message: impl Into<String>) -> FieldError {
    (name.into(), message.into())
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ConfigError> {
        Scenario::parse(&config_file::read(path)?, path)
    }

    /// Validates scenario text (`path` names the file in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ConfigError> {
        let raw: Raw = config_file::parse_toml(text, path)?;
        validate(raw).map_err(|(f, m)| config_file::invalid(path, f, m))
    }
}

fn validate(raw: Raw) -> Result<Scenario, FieldError> {
    let date: Date = raw
        .scenario
        .date
        .parse()
        .map_err(|_| field("scenario.date", "must be YYYY-MM-DD"))?;
    let tz = jiff::tz::TimeZone::get(&raw.scenario.time_zone).map_err(|_| {
        field(
            "scenario.time_zone",
            "must be an IANA time zone, e.g. Europe/Amsterdam",
        )
    })?;
    let at = |name: &str, value: &str| -> Result<Timestamp, FieldError> {
        let time: Time = value
            .parse()
            .map_err(|_| field(name, "must be a local time HH:MM"))?;
        date.to_datetime(time)
            .to_zoned(tz.clone())
            .map(|z| z.timestamp())
            .map_err(|_| field(name, "is not a valid local time on that date"))
    };
    let start = at("scenario.start", &raw.scenario.start)?;
    let end = at("scenario.end", &raw.scenario.end)?;
    if end <= start {
        return Err(field("scenario.end", "must be after scenario.start"));
    }
    check_population(&raw.population)?;
    let mut zones: Vec<Zone> = Vec::new();
    for (i, z) in raw.zones.into_iter().enumerate() {
        if crowdflow_contract::wire::SensorId::new(&z.id).is_err() {
            return Err(field(
                format!("zones[{i}].id"),
                "use 1 to 64 of A-Z a-z 0-9 _ -",
            ));
        }
        if zones.iter().any(|o| o.id == z.id) {
            return Err(field(format!("zones[{i}].id"), "another zone has this id"));
        }
        if !(z.radius_m.is_finite() && z.radius_m > 0.0 && z.x.is_finite() && z.y.is_finite()) {
            return Err(field(
                format!("zones[{i}].radius_m"),
                "position and a positive radius in metres are required",
            ));
        }
        if z.gate_width_m
            .is_some_and(|w| !(w.is_finite() && w > 0.0 && w <= 1000.0))
        {
            return Err(field(
                format!("zones[{i}].gate_width_m"),
                "a passage's width in metres, above 0 and at most 1000",
            ));
        }
        zones.push(Zone {
            id: z.id,
            name: z.name,
            x: z.x,
            y: z.y,
            radius_m: z.radius_m,
            gate_width_m: z.gate_width_m,
        });
    }
    if zones.is_empty() {
        return Err(field("zones", "at least one zone is required"));
    }
    let zone_index = |name: String, id: &str| -> Result<usize, FieldError> {
        zones
            .iter()
            .position(|z| z.id == id)
            .ok_or_else(|| field(name, format!("no zone {id:?}")))
    };
    let mut sensors: Vec<Sensor> = Vec::new();
    for (i, s) in raw.sensors.into_iter().enumerate() {
        if crowdflow_contract::wire::SensorId::new(&s.id).is_err() {
            return Err(field(
                format!("sensors[{i}].id"),
                "use 1 to 64 of A-Z a-z 0-9 _ -",
            ));
        }
        if sensors.iter().any(|o| o.id == s.id) {
            return Err(field(
                format!("sensors[{i}].id"),
                "another sensor has this id",
            ));
        }
        if !(s.x.is_finite() && s.y.is_finite()) {
            return Err(field(
                format!("sensors[{i}].x"),
                "a position in metres is required",
            ));
        }
        sensors.push(Sensor {
            zone: zone_index(format!("sensors[{i}].zone"), &s.zone)?,
            id: s.id,
            x: s.x,
            y: s.y,
        });
    }
    let mut arrivals = Vec::new();
    for (i, a) in raw.arrivals.into_iter().enumerate() {
        let (from, to) = (
            at(&format!("arrivals[{i}].from"), &a.from)?,
            at(&format!("arrivals[{i}].to"), &a.to)?,
        );
        if to < from || from < start || to > end {
            return Err(field(
                format!("arrivals[{i}].to"),
                "arrivals must lie within the scenario, from <= to",
            ));
        }
        if !(a.stay_min[0] > 0.0 && a.stay_min[0] <= a.stay_min[1]) {
            return Err(field(
                format!("arrivals[{i}].stay_min"),
                "must be [shortest, longest] minutes, shortest > 0",
            ));
        }
        arrivals.push(Arrival {
            zone: zone_index(format!("arrivals[{i}].zone"), &a.zone)?,
            from,
            to,
            people: a.people,
            stay_s: [a.stay_min[0] * 60.0, a.stay_min[1] * 60.0],
        });
    }
    let mut moves = Vec::new();
    for (i, m) in raw.moves.into_iter().enumerate() {
        let (from, to) = (
            at(&format!("moves[{i}].from"), &m.from)?,
            at(&format!("moves[{i}].to"), &m.to)?,
        );
        if to < from || from < start || to > end {
            return Err(field(
                format!("moves[{i}].to"),
                "moves must lie within the scenario, from <= to",
            ));
        }
        if !(0.0..=1.0).contains(&m.share) {
            return Err(field(
                format!("moves[{i}].share"),
                "must be between 0 and 1",
            ));
        }
        moves.push(Move {
            from_zone: zone_index(format!("moves[{i}].from_zone"), &m.from_zone)?,
            to_zone: zone_index(format!("moves[{i}].to_zone"), &m.to_zone)?,
            from,
            to,
            share: m.share,
        });
    }
    Ok(Scenario {
        name: raw.scenario.name,
        start,
        end,
        time_zone: raw.scenario.time_zone,
        seed: raw.scenario.seed,
        population: raw.population,
        zones,
        sensors,
        arrivals,
        moves,
    })
}

fn check_population(p: &Population) -> Result<(), FieldError> {
    let shares = [
        ("population.global_mac", p.global_mac),
        ("population.ios_like", p.ios_like),
        ("population.android_like", p.android_like),
        ("population.no_device", p.no_device),
        ("population.second_device", p.second_device),
        ("population.ble_phone", p.ble_phone),
        ("population.screen_on", p.screen_on),
    ];
    for (name, v) in shares {
        if !(0.0..=1.0).contains(&v) {
            return Err(field(name, "must be a share between 0 and 1"));
        }
    }
    let sum = p.global_mac + p.ios_like + p.android_like + p.no_device;
    if (sum - 1.0).abs() > 1e-6 {
        return Err(field(
            "population.no_device",
            format!("global_mac + ios_like + android_like + no_device must be 1 (is {sum})"),
        ));
    }
    for (name, v) in [
        ("population.burst_screen_on_s", p.burst_screen_on_s),
        ("population.burst_screen_off_s", p.burst_screen_off_s),
        ("population.android_rotation_min", p.android_rotation_min),
        ("population.ble_rotation_min", p.ble_rotation_min),
        ("population.ble_interval_s", p.ble_interval_s),
    ] {
        if !(v.is_finite() && v >= 1.0) {
            return Err(field(name, "must be at least 1"));
        }
    }
    Ok(())
}
