//! The settings the demo writes: the aggregator's config for the scenario (zones placed on
//! the map around Utrecht's Dom tower, capacities, calibrations, the sensors' broker
//! accounts) and each simulated sensor's in-process agent.

use std::collections::BTreeMap;
use std::path::Path;

use crowdflow_agent::config::Broker;
use crowdflow_agent::in_process::InProcessAgent;
use crowdflow_aggregator::config::{hash_token, new_secret};
use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::config_file::ConfigError;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltError;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::{SensorId, Topics};
use crowdflow_simulator::Scenario;

use crate::{DemoOptions, SimClock};

/// The kinds the demo's sensors publish: every kind but the physical-device estimate
/// (`wifi_derandomized`). The estimate reads a dense crowd through its scans once a sensor
/// has learned its scan cadence (100 recurring random addresses), and by concurrency before,
/// about a quarter of the devices (docs/counting-devices.md). The demo's sensors start on the
/// event morning with nothing learned, so the first quarter hour of each zone's crowd reads
/// low: fed with the simulated phones' fingerprints (2026-12-04), the morning's calibration
/// picked the estimate at three zones (held-out median error 0.6-2.3 %) with a 95 % error of
/// 1.4-1.8 (a count of 170 predicted as 69), where `wifi_random` has 0.04-0.16: people
/// intervals of +-150 %. A sensor in service learns its cadence once (kept in memory, it is
/// learned again after a restart).
pub fn published_kinds() -> Vec<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|&k| k != Kind::WifiDerandomized)
        .collect()
}

/// Persons per BLE address heard in a minute, from the simulator's population (phones
/// advertising, wearables, address rotation): the guess a zone starts with before
/// `calibrate` fits it on clicker counts.
const BLE_GUESS: f64 = 1.3;
/// Outbox bound of each simulated sensor (the agents' default).
const OUTBOX_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Where the scenario's origin (metres east/north 0, 0) is put on the map: Utrecht's Dom
/// tower, the Koningsdag scenario's origin, as (latitude, longitude).
const ORIGIN: (f64, f64) = (52.090_74, 5.121_40);
/// Persons per m2 at which a demo zone is full: the "crowded" level of service.
const CAPACITY_DENSITY: f64 = 3.5;

/// (latitude, longitude) of the point `x` metres east and `y` metres north of [`ORIGIN`]
/// (an equirectangular approximation: exact to centimetres over a city centre).
fn lat_lon(x: f64, y: f64) -> (f64, f64) {
    const M_PER_DEG_LAT: f64 = 111_320.0;
    let m_per_deg_lon = M_PER_DEG_LAT * ORIGIN.0.to_radians().cos();
    (ORIGIN.0 + y / M_PER_DEG_LAT, ORIGIN.1 + x / m_per_deg_lon)
}

/// A zone's circle as a 24-sided GeoJSON polygon (inline TOML) for the dashboard's plan.
fn outline(x: f64, y: f64, radius_m: f64) -> String {
    let corners: Vec<String> = (0..=24)
        .map(|i| {
            let a = f64::from(i % 24) * std::f64::consts::TAU / 24.0;
            let (lat, lon) = lat_lon(x + radius_m * a.cos(), y + radius_m * a.sin());
            format!("[{lon:.6}, {lat:.6}]")
        })
        .collect();
    format!(
        "{{ type = \"Polygon\", coordinates = [[{}]] }}",
        corners.join(", ")
    )
}

/// What the demo's simulated sensors present, as real ones do: a broker password each (the
/// embedded broker wants credentials from everyone once sensors have them), and the demo
/// aggregator's salt key pinned.
#[derive(Debug, Clone, Default)]
pub struct SensorAccess {
    /// The salt authority keys the sensors trust.
    pub trusted: TrustedKeys,
    /// Broker password by sensor id, drawn for this run only.
    pub passwords: BTreeMap<String, String>,
}

impl SensorAccess {
    /// Fresh random passwords for every sensor of `scenario`; no key pinned yet.
    pub fn for_scenario(scenario: &Scenario) -> Result<SensorAccess, SaltError> {
        let passwords = scenario
            .sensors
            .iter()
            .map(|s| Ok((s.id.clone(), new_secret()?)))
            .collect::<Result<_, SaltError>>()?;
        Ok(SensorAccess {
            trusted: TrustedKeys::default(),
            passwords,
        })
    }
}

/// What the demo's aggregator config says about the day: its clock and each zone's
/// calibration (a TOML value, by zone id; zones not in it get the BLE guess).
#[derive(Debug, Clone)]
pub struct Day {
    /// Simulated time on the real clock.
    pub clock: SimClock,
    /// `[zones.calibration]` bodies by zone id, from `calibrate`.
    pub calibration: BTreeMap<String, String>,
    /// An admin token for this run (sensor health, the config view): its hash goes into the
    /// config, the token is printed once.
    pub admin_token: Option<String>,
}

/// The aggregator config the demo writes for `scenario` (also the scale benchmark's), with
/// the sensors' broker passwords from `access`.
pub fn aggregator_text(
    scenario: &Scenario,
    o: &DemoOptions,
    access: &SensorAccess,
    day: &Day,
) -> String {
    let mut t = format!(
        "# Generated by `crowdflow-demo` for scenario {:?}.\n[http]\nlisten = \"{}\"\nanonymous_role = \"planner\"\n\
         [broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{}\"\n[storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [salt]\nannounce_every_s = 10\nrecover_for_s = 30\nrotation = \"{}\"\ntime_zone = \"UTC\"\n\
         [counting]\nwindow_s = {}\n\
         [privacy]\noperator = \"crowdflow demo (simulated crowd, no real devices)\"\npurpose = \"demonstration\"\n",
        scenario.name,
        o.http,
        o.mqtt_port,
        o.data.join("crowdflow.db").display(),
        rotation(scenario, &day.clock),
        o.window_s(),
    );
    t += &format!(
        "[dashboard]\ntitle = \"{} (simulated)\"\n[dashboard.replay_clock]\nreal = \"{}\"\nshows = \"{}\"\ntime_zone = \"{}\"\nspeed = {}\n",
        scenario.name,
        day.clock.real_live,
        SimClock::sim_timestamp(day.clock.sim_live_us),
        scenario.time_zone,
        day.clock.speed,
    );
    for z in &scenario.zones {
        let area = std::f64::consts::PI * z.radius_m * z.radius_m;
        let calibration = day
            .calibration
            .get(&z.id)
            .cloned()
            .unwrap_or_else(|| format!("ble = {BLE_GUESS}"));
        // A passage (`gate_width_m` in the scenario) is a gate: its throughput is shown.
        let gate = z
            .gate_width_m
            .map_or(String::new(), |w| format!("gate_width_m = {w}\n"));
        t += &format!(
            "[[zones]]\nid = \"{}\"\nname = \"{}\"\narea_m2 = {area:.0}\ncapacity = {:.0}\noccupancy_window_min = {}\npolygon = {}\n{gate}[zones.calibration]\n{calibration}\n",
            z.id,
            z.name,
            area * CAPACITY_DENSITY,
            o.occupancy_min(),
            outline(z.x, z.y, z.radius_m)
        );
    }
    if let Some(token) = &day.admin_token {
        t += &format!(
            "[[tokens]]\nname = \"demo admin\"\nrole = \"admin\"\nblake3 = \"{}\"\n",
            hash_token(token).to_hex()
        );
    }
    for s in &scenario.sensors {
        let (lat, lon) = lat_lon(s.x, s.y);
        t += &format!(
            "[[sensors]]\nid = \"{}\"\nzone = \"{}\"\ndescription = \"simulated sensor\"\nlatitude = {lat:.6}\nlongitude = {lon:.6}\n",
            s.id, scenario.zones[s.zone].id
        );
        if let Some(password) = access.passwords.get(&s.id) {
            t += &format!("password = \"{password}\"\n");
        }
    }
    t
}

/// A daily salt rotation (UTC) an hour before the scenario's first real time: one salt then
/// covers the whole morning and a day of live play.
fn rotation(scenario: &Scenario, clock: &SimClock) -> String {
    let first = clock.real(scenario.start.as_microsecond()) - jiff::SignedDuration::from_hours(1);
    let hour = first.to_zoned(jiff::tz::TimeZone::UTC).hour();
    format!("{hour:02}:00")
}

/// The in-process agent of simulated `sensor`, publishing to the demo's embedded broker.
/// It logs in and pins the salt key as `access` says.
pub fn in_process_agent(
    sensor: &str,
    mqtt_port: u16,
    data: &Path,
    access: &SensorAccess,
    window_s: u64,
) -> Result<InProcessAgent, ConfigError> {
    let invalid = |field: &str, message: String| {
        crowdflow_contract::config_file::invalid(Path::new("demo agent"), field, message)
    };
    let sensor_id = SensorId::new(sensor)
        .map_err(|_| invalid("sensor_id", format!("{sensor:?} is not a sensor id")))?;
    let window =
        WindowLength::new(window_s).map_err(|e| invalid("counting.window_s", e.to_string()))?;
    Ok(InProcessAgent {
        broker: Broker {
            host: "127.0.0.1".into(),
            port: mqtt_port,
            username: Some(sensor.to_owned()),
            password: access.passwords.get(sensor).cloned(),
            topics: Topics::default(),
            tls: None,
        },
        trusted_keys: access.trusted.clone(),
        window,
        precision: Precision::default(),
        outbox_dir: data.join("outbox").join(sensor),
        outbox_max_bytes: OUTBOX_MAX_BYTES,
        kinds: published_kinds(),
        sensor_id,
    })
}
