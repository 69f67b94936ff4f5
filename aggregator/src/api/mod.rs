//! The HTTP interface (axum): `/api/v1` for crews, planners, operators and the public, and
//! `/metrics` for Prometheus. The OpenAPI document at `/api/v1/openapi.json` is generated
//! from the handlers and types below (utoipa), not written by hand.
//!
//! Roles by bearer token (`Authorization: Bearer T`, or `?token=T` where a browser cannot set
//! headers: the live stream and downloads): viewer < planner < admin, checked by the role
//! extractors of [`crate::auth`] in each handler's signature; the router lists the endpoints
//! by role. Public: health, the privacy statement, the sensor register, open data, the
//! OpenAPI document and metrics.

mod admin;
pub mod dashboard;
mod history;
mod live;
mod open_data;
mod public;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::OpenApi;

use crate::auth::{ApiToken, Role, TokenConfig};
use crate::config::{AggregatorConfig, Zone};
use crate::live::LiveBoard;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::zone::ZoneId;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState<S> {
    /// The validated config.
    pub config: Arc<AggregatorConfig>,
    /// Storage.
    pub store: S,
    /// The live board.
    pub live: LiveBoard,
    /// The aggregator's metrics.
    pub metrics: Metrics,
}

/// An error answer: JSON naming the parameter at fault where there is one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// What is wrong and how to fix it.
    pub error: String,
    /// The query or path parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            parameter: None,
        }
    }

    /// 400 for parameter `name`.
    pub fn bad(name: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: format!("`{name}` {message}"),
            parameter: Some(name.to_owned()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!("query failed in storage: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is unavailable; retry shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(&self)).into_response()
    }
}

/// Query parameters, read by name so that errors can name them.
type Params = HashMap<String, String>;

impl<S> TokenConfig for AppState<S> {
    fn tokens(&self) -> &[ApiToken] {
        &self.config.tokens
    }

    fn anonymous_role(&self) -> Option<Role> {
        self.config.anonymous_role
    }
}

fn timestamp(params: &Params, name: &str) -> Result<Timestamp, ApiError> {
    let raw = params
        .get(name)
        .ok_or_else(|| ApiError::bad(name, "is required (RFC 3339, e.g. 2026-04-27T10:00:00Z)"))?;
    raw.parse()
        .map_err(|_| ApiError::bad(name, "is not an RFC 3339 time such as 2026-04-27T10:00:00Z"))
}

fn optional_timestamp(params: &Params, name: &str) -> Result<Option<Timestamp>, ApiError> {
    params
        .contains_key(name)
        .then(|| timestamp(params, name))
        .transpose()
}

/// The zone `id` names; 404 naming parameter `name` when there is none (an id that breaks
/// the zone id rule names no zone either).
fn zone<'a, S>(state: &'a AppState<S>, name: &str, id: &str) -> Result<&'a Zone, ApiError> {
    ZoneId::new(id)
        .ok()
        .and_then(|z| state.config.zones.get(&z))
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            error: format!("`{name}`: no zone {id:?} (GET /api/v1/zones lists them)"),
            parameter: Some(name.to_owned()),
        })
}

/// Zones named by a comma-separated parameter, `min..=max` of them, no repeats.
fn zone_list<'a, S>(
    state: &'a AppState<S>,
    params: &Params,
    name: &str,
    min: usize,
    max: usize,
) -> Result<Vec<&'a Zone>, ApiError> {
    let raw = params
        .get(name)
        .ok_or_else(|| ApiError::bad(name, "is required: zone ids separated by commas"))?;
    let mut out: Vec<&Zone> = Vec::new();
    for id in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let z = zone(state, name, id)?;
        if out.iter().any(|o| o.id == z.id) {
            return Err(ApiError::bad(name, format!("names zone {id:?} twice")));
        }
        out.push(z);
    }
    if out.len() < min || out.len() > max {
        return Err(ApiError::bad(
            name,
            format!("must name {min} to {max} zones"),
        ));
    }
    Ok(out)
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    params: &Params,
    name: &str,
    default: T,
    min: T,
    max: T,
) -> Result<T, ApiError> {
    let Some(raw) = params.get(name) else {
        return Ok(default);
    };
    let v: T = raw
        .parse()
        .map_err(|_| ApiError::bad(name, format!("must be a number from {min} to {max}")))?;
    if v < min || v > max {
        return Err(ApiError::bad(name, format!("must be from {min} to {max}")));
    }
    Ok(v)
}

/// Whether the caller asked for CSV (`format=csv`); anything but json/csv is refused.
fn wants_csv(params: &Params) -> Result<bool, ApiError> {
    match params.get("format").map(String::as_str) {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::bad("format", "must be \"json\" or \"csv\"")),
    }
}

fn csv_response(filename: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crowdflow aggregator API",
        description = "Live zone counts, history, flows and open data from privacy-preserving crowd counting. Every count carries its 95 % bounds; estimated people are devices times a per-zone calibration factor and are estimates.",
    ),
    paths(
        public::health,
        public::session,
        public::privacy,
        public::register,
        open_data::open_data,
        live::zones,
        live::zone_detail,
        live::plan,
        live::alerts,
        live::stream,
        history::series,
        history::distinct,
        history::flows,
        history::dwell,
        admin::sensors,
        admin::config_view,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "public", description = "No token needed"),
        (name = "live", description = "viewer role: event safety crews"),
        (name = "history", description = "planner role: traffic planners"),
        (name = "admin", description = "admin role: operators"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> impl IntoResponse {
    axum::Json(openapi())
}

async fn metrics<S>(
    axum::extract::State(state): axum::extract::State<AppState<S>>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The router, testable without a server: the endpoints grouped by the role they need.
pub fn router<S: Store>(state: AppState<S>) -> Router {
    Router::new()
        .merge(public_routes())
        .merge(viewer_routes())
        .merge(planner_routes())
        .merge(admin_routes())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint (see /api/v1/openapi.json)",
            )
        })
        .with_state(state)
}

/// No token needed: the dashboard's files, metrics, the OpenAPI document, health, the
/// caller's session, the privacy statement, the sensor register and open data.
fn public_routes<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/", get(dashboard::index::<S>))
        .route("/assets/{file}", get(dashboard::asset::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/health", get(public::health::<S>))
        .route("/api/v1/session", get(public::session))
        .route("/api/v1/privacy", get(public::privacy::<S>))
        .route("/api/v1/register", get(public::register::<S>))
        .route("/api/v1/open-data", get(open_data::open_data::<S>))
}

/// Viewer role (event safety crews): live numbers, the plan, alerts and the stream.
fn viewer_routes<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/api/v1/zones", get(live::zones::<S>))
        .route("/api/v1/zones/{id}", get(live::zone_detail::<S>))
        .route("/api/v1/plan", get(live::plan::<S>))
        .route("/api/v1/alerts", get(live::alerts::<S>))
        .route("/api/v1/stream", get(live::stream::<S>))
}

/// Planner role (traffic planners): history.
fn planner_routes<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/api/v1/series", get(history::series::<S>))
        .route("/api/v1/distinct", get(history::distinct::<S>))
        .route("/api/v1/flows", get(history::flows::<S>))
        .route("/api/v1/dwell", get(history::dwell::<S>))
}

/// Admin role (operators): sensor health and the config view.
fn admin_routes<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/api/v1/sensors", get(admin::sensors::<S>))
        .route("/api/v1/config", get(admin::config_view::<S>))
}

/// Binds `addr` (so a taken port fails the start, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the router on `listener` until the runtime stops.
pub async fn serve<S: Store>(
    listener: tokio::net::TcpListener,
    state: AppState<S>,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

#[cfg(test)]
mod tests;
