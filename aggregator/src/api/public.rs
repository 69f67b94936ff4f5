//! Public answers (no token): health, the caller's session, the privacy statement and the
//! sensor register.

use axum::Json;
use axum::extract::State;
use crowdflow_contract::identity::Kind;
use serde::Serialize;

use super::AppState;
use crate::auth::{Refusal, Role, Viewer};
use crate::store::Store;
use crate::zone::ZoneId;

/// What the caller's token (or no token) may see.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Session {
    /// "viewer", "planner" or "admin"; null when the caller may see only public data.
    pub role: Option<Role>,
    /// Why there is no role (no token, unknown token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The caller's role
///
/// Lets the dashboard ask for a token before a request is refused (public).
#[utoipa::path(get, path = "/api/v1/session", tag = "public", security((), ("bearer" = [])),
    responses((status = 200, description = "The caller's role: lets the dashboard ask for a token before it is refused", body = Session)))]
pub(super) async fn session(caller: Result<Viewer, Refusal>) -> Json<Session> {
    Json(match caller {
        Ok(Viewer(role)) => Session {
            role: Some(role),
            reason: None,
        },
        Err(refusal) => Session {
            role: None,
            reason: Some(refusal.to_string()),
        },
    })
}

/// Service health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// "ok", or "degraded" while the broker is unreachable.
    pub status: String,
    /// Connected to the MQTT broker.
    pub broker_connected: bool,
    /// This replica announces the salts.
    pub salt_authority: bool,
    /// Aggregator version.
    pub version: String,
}

/// Service health
///
/// Broker connection and salt authority of this replica (public).
#[utoipa::path(get, path = "/api/v1/health", tag = "public",
    responses((status = 200, description = "Health", body = Health)))]
pub(super) async fn health<S: Store>(State(state): State<AppState<S>>) -> Json<Health> {
    let connected = state.metrics.broker_connected.get() == 1;
    Json(Health {
        status: if connected { "ok" } else { "degraded" }.into(),
        broker_connected: connected,
        salt_authority: state.metrics.salt_leader.get() == 1,
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The privacy statement, generated from the running configuration.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PrivacyStatement {
    /// Who runs the counting.
    pub operator: String,
    /// Where to ask questions or exercise rights.
    pub contact: String,
    /// Why it counts.
    pub purpose: String,
    /// The legal basis, in the operator's words.
    pub legal_basis: String,
    /// What is collected.
    pub collected: Vec<String>,
    /// What is never collected or kept.
    pub not_collected: Vec<String>,
    /// How device addresses are made unlinkable.
    pub salt_policy: String,
    /// How long what is kept.
    pub retention: Vec<String>,
    /// How open data is protected.
    pub open_data: String,
    /// Number of sensors (see /api/v1/register for where they are).
    pub sensors: usize,
}

/// The privacy statement
///
/// Who operates the sensors, why, what is collected and what never is (public).
#[utoipa::path(get, path = "/api/v1/privacy", tag = "public",
    responses((status = 200, description = "Privacy statement", body = PrivacyStatement)))]
pub(super) async fn privacy<S: Store>(State(state): State<AppState<S>>) -> Json<PrivacyStatement> {
    let c = &state.config;
    let unstated = || "not stated by the operator".to_owned();
    let r = &c.retention;
    let keep = |d: Option<u32>| d.map_or("kept".to_owned(), |d| format!("{d} days"));
    Json(PrivacyStatement {
        operator: c.privacy.operator.clone().unwrap_or_else(unstated),
        contact: c.privacy.contact.clone().unwrap_or_else(unstated),
        purpose: c.privacy.purpose.clone().unwrap_or_else(|| {
            "counting how many people are in public zones and how crowds move, for crowd safety and planning".into()
        }),
        legal_basis: c.privacy.legal_basis.clone().unwrap_or_else(unstated),
        collected: vec![
            "per zone and minute: a HyperLogLog sketch of salted device hashes, from which only counts can be estimated".into(),
            "per zone and minute, from sensors that publish it: a sketch of physical Wi-Fi devices (kind wifi_derandomized), whose members are salted hashes of (capability fingerprint, slot) keys: a sensor reads the capability elements of a probe request (supported rates, HT, VHT and HE capabilities, which phones of one model share) in memory to group the random addresses of one phone within a minute, and drops them when the minute ends".into(),
            "per sensor: frames and devices counted per window, for health".into(),
        ],
        not_collected: vec![
            "device addresses (MAC or Bluetooth): hashed in the sensor's memory the moment a frame is read, never stored or sent".into(),
            "individual device hashes: they only update a sketch in the sensor's memory".into(),
            "frame contents (capability elements included: never stored or sent, nor their fingerprint), network names, signal traces or positions of devices".into(),
        ],
        salt_policy: format!(
            "Hashes are keyed with a random salt that changes every day at {} {}. The salt exists only in memory, is sent to sensors unretained, and is destroyed when its day ends; after that nobody, including the operator, can link a device to a count, and devices cannot be linked across days.",
            c.rotation.rotation_time().strftime("%H:%M"),
            c.rotation.time_zone()
        ),
        retention: vec![
            format!("minute sketches and per-sensor windows: {} days", r.minute_sketch_days),
            format!("hour sketches: {} days", r.hour_sketch_days),
            format!("day sketches: {}", keep(r.day_sketch_days)),
            format!("counts (estimates with bounds): {}", keep(r.number_days)),
        ],
        open_data: format!(
            "per zone and hour, counts rounded to multiples of {} and suppressed below {}; licence {}",
            c.open_data.rounding, c.open_data.k, c.open_data.licence
        ),
        sensors: c.sensors.len(),
    })
}

/// One sensor in the public register.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegisteredSensor {
    /// Sensor id.
    pub id: String,
    /// Zone id.
    #[schema(value_type = String)]
    pub zone: ZoneId,
    /// Zone name.
    pub zone_name: String,
    /// Latitude (WGS84), if published.
    pub latitude: Option<f64>,
    /// Longitude (WGS84), if published.
    pub longitude: Option<f64>,
    /// Description.
    pub description: String,
    /// What it senses: "wifi" (probe requests), "ble" (advertisements).
    pub senses: Vec<String>,
}

fn senses(kinds: &[Kind]) -> Vec<String> {
    let mut out = Vec::new();
    if kinds
        .iter()
        .any(|k| matches!(k, Kind::Wifi | Kind::WifiRandom))
    {
        out.push("wifi".to_owned());
    }
    if kinds.contains(&Kind::Ble) {
        out.push("ble".to_owned());
    }
    out
}

/// The sensor register
///
/// Where the sensors are and what they hear, as the privacy statement promises (public).
#[utoipa::path(get, path = "/api/v1/register", tag = "public",
    responses((status = 200, description = "Every sensor and what it senses", body = [RegisteredSensor])))]
pub(super) async fn register<S: Store>(
    State(state): State<AppState<S>>,
) -> Json<Vec<RegisteredSensor>> {
    let c = &state.config;
    Json(
        c.sensors
            .values()
            .map(|s| RegisteredSensor {
                id: s.id.to_string(),
                zone: s.zone.clone(),
                zone_name: c
                    .zones
                    .get(&s.zone)
                    .map(|z| z.name.clone())
                    .unwrap_or_default(),
                latitude: s.location.map(|l| l.0),
                longitude: s.location.map(|l| l.1),
                description: s.description.clone(),
                senses: senses(&s.kinds),
            })
            .collect(),
    )
}
