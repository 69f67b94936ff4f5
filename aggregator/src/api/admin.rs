//! The operators' views (admin role): every sensor's health, the running configuration
//! without secrets, and a calibration preview (`calibrate` on posted head counts).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::auth::Admin;
use crate::calibration::counts::RowError;
use crate::calibration::{self, CalibrationError, Report};
use crate::config::{BrokerMode, StorageConfig};
use crate::people;
use crate::store::Store;
use crate::zone::ZoneId;

/// A sensor's health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SensorStatus {
    /// Sensor id.
    pub id: String,
    /// Zone id.
    #[schema(value_type = String)]
    pub zone: ZoneId,
    /// End of its newest stored window.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_window_end: Option<Timestamp>,
    /// Silent for more than two windows.
    pub stale: bool,
    /// Frames in its stored windows.
    pub frames: u64,
    /// Refused messages by reason.
    pub rejects: BTreeMap<String, u64>,
}

/// Sensor health
///
/// Every configured sensor with its zone, the end of its latest stored window, frames and refused messages by reason (admin).
#[utoipa::path(get, path = "/api/v1/sensors", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every configured sensor's health", body = [SensorStatus]),
        (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(super) async fn sensors<S: Store>(
    State(state): State<AppState<S>>,
    _: Admin,
) -> Result<Json<Vec<SensorStatus>>, ApiError> {
    let seen: BTreeMap<_, _> = state.store.sensors_seen().await?.into_iter().collect();
    let health: BTreeMap<_, _> = state
        .store
        .sensor_health()
        .await?
        .into_iter()
        .map(|h| (h.sensor.clone(), h))
        .collect();
    let now = Timestamp::now();
    let grace = crate::live::silence_limit(&state.config);
    Ok(Json(
        state
            .config
            .sensors
            .values()
            .map(|s| {
                let last = seen.get(&s.id).copied();
                let h = health.get(&s.id);
                SensorStatus {
                    id: s.id.to_string(),
                    zone: s.zone.clone(),
                    last_window_end: last,
                    stale: last.is_none_or(|t| t < now - grace),
                    frames: h.map_or(0, |h| h.frames),
                    rejects: h.map(|h| h.rejects.clone()).unwrap_or_default(),
                }
            })
            .collect(),
    ))
}

/// The running configuration without secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigView {
    /// "embedded" or "external".
    pub broker: String,
    /// "sqlite" or "postgres".
    pub storage: String,
    /// Window length in seconds.
    pub window_s: u32,
    /// Sketch precision.
    pub lg_k: u8,
    /// Salt rotation, local time and zone.
    pub salt_rotation: String,
    /// Zones with thresholds and calibration.
    #[schema(value_type = Vec<Object>)]
    pub zones: serde_json::Value,
    /// Sensor ids by zone.
    pub sensors: BTreeMap<String, Vec<String>>,
    /// Token holders and roles (never the tokens or their hashes).
    pub tokens: Vec<TokenHolder>,
}

/// Who holds an API token, and its role.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenHolder {
    /// The holder's name from the config.
    pub name: String,
    /// viewer, planner or admin.
    pub role: String,
}

/// The running configuration
///
/// Zones with thresholds and people calibration (factor, floor, where the floor came from), sensors by zone, retention and limits; no secrets (admin).
#[utoipa::path(get, path = "/api/v1/config", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Configuration without secrets", body = ConfigView),
        (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(super) async fn config_view<S: Store>(
    State(state): State<AppState<S>>,
    _: Admin,
) -> Result<Json<ConfigView>, ApiError> {
    let c = &state.config;
    let zones = c
        .zones
        .values()
        .map(|z| {
            serde_json::json!({
                "id": z.id.as_str(), "name": z.name, "area_m2": z.area_m2, "capacity": z.capacity,
                "occupancy_window_min": z.occupancy_window_min, "thresholds": z.thresholds,
                "calibration": people::basis(z, state.live.floors()),
                "polygon": z.polygon,
            })
        })
        .collect();
    let mut sensors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in c.sensors.values() {
        sensors
            .entry(s.zone.to_string())
            .or_default()
            .push(s.id.to_string());
    }
    Ok(Json(ConfigView {
        broker: match c.broker.mode {
            BrokerMode::Embedded { .. } => "embedded",
            BrokerMode::External { .. } => "external",
        }
        .into(),
        storage: match c.storage {
            StorageConfig::Sqlite { .. } => "sqlite",
            StorageConfig::Postgres { .. } => "postgres",
        }
        .into(),
        window_s: c.window.seconds(),
        lg_k: c.precision.lg_k(),
        salt_rotation: format!(
            "{} {}",
            c.rotation.rotation_time().strftime("%H:%M"),
            c.rotation.time_zone()
        ),
        zones: serde_json::Value::Array(zones),
        sensors,
        tokens: c
            .tokens
            .iter()
            .map(|t| TokenHolder {
                name: t.name.clone(),
                role: t.role.as_str().to_owned(),
            })
            .collect(),
    }))
}

/// Posted COUNTS.csv above this many bytes is refused (413). 1 MiB holds about 15,000
/// counts, far more than a calibration uses ([`calibration::MAX_OBSERVATIONS`] per zone).
pub const MAX_COUNTS_BYTES: usize = 1 << 20;

/// A COUNTS.csv refused: every bad row with its line and field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CountsRefusal {
    /// What is wrong, every bad row listed (the first 20 in this text).
    pub error: String,
    /// `body`: the posted file is at fault.
    pub parameter: String,
    /// Every bad row: its 1-based line in the file, the field, the problem.
    pub rows: Vec<RowError>,
}

/// A preview of `crowdflow-aggregator calibrate`: the same fit of the posted head counts
/// against the stored minutes, and the TOML to paste. Nothing is changed: the config is a
/// file the operator edits.
#[utoipa::path(post, path = "/api/v1/calibration", tag = "admin", security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv",
        description = "COUNTS.csv: the header `zone,start,end,people`, then one head count a row (RFC 3339 start and end on whole minutes, people >= 0); at most 1 MiB"),
    responses(
        (status = 200, description = "Every zone's fit, or why it was refused (a zone with too few or unspread counts is refused without failing the others); `fitted` zones got the TOML in `toml`", body = Report),
        (status = 400, description = "Bad rows of the file, each named by line and field", body = CountsRefusal),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 413, description = "The body is above 1 MiB", body = ApiError),
        (status = 503, description = "Storage is unavailable", body = ApiError)))]
pub(super) async fn calibration<S: Store>(
    State(state): State<AppState<S>>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Report>, Response> {
    let body = body.map_err(|r| {
        let message = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "the body is above {} MiB: post at most that much COUNTS.csv",
                MAX_COUNTS_BYTES >> 20
            )
        } else {
            format!("the body could not be read: {}", r.body_text())
        };
        ApiError::new(r.status(), message).into_response()
    })?;
    match calibration::calibrate(
        &state.store,
        &state.config.zones,
        &state.config.rotation,
        &body,
    )
    .await
    {
        Ok(report) => Ok(Json(report)),
        Err(CalibrationError::Counts(e)) => Err((
            StatusCode::BAD_REQUEST,
            Json(CountsRefusal {
                error: e.to_string(),
                parameter: "body".into(),
                rows: e.rows,
            }),
        )
            .into_response()),
        Err(CalibrationError::Store(e)) => Err(ApiError::from(e).into_response()),
        Err(e @ CalibrationError::Aborted(_)) => {
            tracing::error!("calibration: {e}");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
        }
    }
}
