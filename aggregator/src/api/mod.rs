//! The HTTP interface (axum): `/api/v1` for crews, planners, operators and the public, and
//! `/metrics` for Prometheus. The OpenAPI document at `/api/v1/openapi.json` is generated
//! from the handlers and types below (utoipa), not written by hand.
//!
//! Roles by bearer token (`Authorization: Bearer T`, or `?token=T` only where a browser cannot
//! set headers: the live stream and CSV downloads, [`query_token_allowed`]): viewer < planner
//! < admin, checked by the role extractors of [`crate::auth`] in each handler's signature; the
//! router lists the endpoints by role. Public: health, the privacy statement, the sensor
//! register, open data, the OpenAPI document and metrics.
//!
//! Every answer passes `layers.rs` (token scope, security headers); the server ([`server`])
//! bounds connections, and the stream bounds its subscribers.

mod admin;
pub mod dashboard;
mod history;
mod layers;
mod live;
mod open_data;
mod public;
pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::DefaultBodyLimit;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Serialize;
use utoipa::OpenApi;

use crate::auth::{ApiToken, Refusal, Role, TokenConfig};
use crate::config::{AggregatorConfig, Zone};
use crate::live::LiveBoard;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::zone::ZoneId;
use crowdflow_contract::log_limit::LogLimit;

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
    /// Free live-stream slots (`http.max_streams`).
    streams: live::StreamSlots,
    /// Failed logins' log lines, rate-limited per reason.
    auth_log: Arc<LogLimit>,
}

impl<S> AppState<S> {
    /// The state the handlers share; the stream slots come from the config's
    /// `http.max_streams`.
    pub fn new(
        config: Arc<AggregatorConfig>,
        store: S,
        live: LiveBoard,
        metrics: Metrics,
    ) -> AppState<S> {
        AppState {
            streams: live::StreamSlots::new(config.http_limits.max_streams, &metrics),
            auth_log: Arc::new(LogLimit::per_minute("failed logins")),
            config,
            store,
            live,
            metrics,
        }
    }
}

/// An error answer: JSON naming the parameter at fault where there is one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// Seconds for the `Retry-After` header of a 503.
    #[serde(skip)]
    retry_after_s: Option<u32>,
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
            retry_after_s: None,
            error: error.into(),
            parameter: None,
        }
    }

    /// 503 with `Retry-After: retry_after_s`: too busy now, not broken.
    fn busy(error: impl Into<String>, retry_after_s: u32) -> ApiError {
        ApiError {
            retry_after_s: Some(retry_after_s),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error)
        }
    }

    /// 404 for what parameter `name` names.
    pub fn not_found(name: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            parameter: Some(name.to_owned()),
            ..ApiError::new(StatusCode::NOT_FOUND, format!("`{name}`: {message}"))
        }
    }

    /// 409: what `name` names is in a state that refuses the request (acknowledged already).
    pub fn conflict(name: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            parameter: Some(name.to_owned()),
            ..ApiError::new(StatusCode::CONFLICT, format!("`{name}`: {message}"))
        }
    }

    /// 400 for a parameter whose `name` the client chose (unknown, repeated): quoted and
    /// bounded, as everything an error echoes.
    fn bad_name(name: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            parameter: Some(name.chars().take(QUOTED_MAX).collect()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{} {message}", quoted(name)),
            )
        }
    }

    /// 400 for parameter `name`.
    pub fn bad(name: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            parameter: Some(name.to_owned()),
            ..ApiError::new(StatusCode::BAD_REQUEST, format!("`{name}` {message}"))
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
        let mut response = (self.status, axum::Json(&self)).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Query parameters, read by name so that errors can name them.
type Params = HashMap<String, String>;

/// The query parameters of a request ([`Params`]); one given twice is refused, naming it
/// (`zones=a&zones=b` would otherwise be answered for one of them).
pub(super) struct QueryParams(pub Params);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(
                |e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("the query string cannot be read: {}", e.body_text()),
                    )
                },
            )?;
        let mut params = Params::with_capacity(pairs.len());
        for (name, value) in pairs {
            if params.contains_key(&name) {
                return Err(ApiError::bad_name(
                    &name,
                    "is given twice: give it once (zones as one comma-separated list)",
                ));
            }
            params.insert(name, value);
        }
        Ok(QueryParams(params))
    }
}

impl<S> TokenConfig for AppState<S> {
    fn tokens(&self) -> &[ApiToken] {
        &self.config.tokens
    }

    fn anonymous_role(&self) -> Option<Role> {
        self.config.anonymous_role
    }

    fn query_token_allowed(&self, uri: &Uri) -> bool {
        query_token_allowed(uri)
    }

    /// Failed logins and tokens in URLs: counted in full, logged at most a few a minute per
    /// reason (an outsider can cause them at will), with the peer's address for the operator,
    /// never the token.
    fn refused(&self, refusal: &Refusal, parts: &Parts) {
        let Some(reason) = refusal.failure() else {
            return;
        };
        self.metrics
            .http_auth_failures
            .with_label_values(&[reason])
            .inc();
        if self.auth_log.allow(reason, Instant::now()) {
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip());
            // The path is the client's text: bounded, and quoted by Debug.
            let path: String = parts.uri.path().chars().take(80).collect();
            tracing::warn!(reason, ?peer, ?path, "HTTP request refused: {refusal}");
        }
    }
}

/// Where `?token=` is read, because a browser cannot send the header there: EventSource
/// (the live stream) sets no headers, and a download link (a CSV answer, the open-data
/// export) is fetched by browsers and spreadsheet tools without one.
pub fn query_token_allowed(uri: &Uri) -> bool {
    match uri.path() {
        "/api/v1/stream" | "/api/v1/open-data" => true,
        "/api/v1/series" => axum::extract::Query::<Params>::try_from_uri(uri)
            .is_ok_and(|q| q.get("format").is_some_and(|f| f == "csv")),
        _ => false,
    }
}

/// Characters of what a client sent that an error echoes.
const QUOTED_MAX: usize = 64;

/// What a client sent, to quote in an error: at most [`QUOTED_MAX`] characters, then how
/// long it was.
fn quoted(text: &str) -> String {
    let shown: String = text.chars().take(QUOTED_MAX).collect();
    match text.chars().count() {
        n if n > QUOTED_MAX => format!("{shown:?}... ({n} characters)"),
        _ => format!("{shown:?}"),
    }
}

/// Refuses a parameter the endpoint does not take (a misspelt `form=` would otherwise be
/// answered as if absent), naming it and those it takes. `token` is the auth layer's to
/// accept or refuse.
fn only(params: &Params, known: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "token" && !known.contains(k))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(name) => Err(ApiError::bad_name(
            name,
            format!(
                "is not a parameter of this endpoint (it takes: {})",
                known.join(", ")
            ),
        )),
    }
}

fn timestamp(params: &Params, name: &str) -> Result<Timestamp, ApiError> {
    let raw = params
        .get(name)
        .ok_or_else(|| ApiError::bad(name, "is required (RFC 3339, e.g. 2026-04-27T10:00:00Z)"))?;
    raw.parse()
        .map_err(|_| ApiError::bad(name, timestamp_problem(raw)))
}

/// What is wrong with a time that did not parse, in the caller's terms (the time library's
/// own message names its internals).
fn timestamp_problem(raw: &str) -> String {
    const EXAMPLE: &str = "an RFC 3339 time such as 2026-04-27T10:00:00Z";
    if !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        if raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return format!("is a number: give {EXAMPLE}, not Unix seconds");
        }
        if !raw.contains('T') && !raw.contains(':') && raw.len() == 10 {
            return format!("is a date: give {EXAMPLE} (a time and a UTC offset with it)");
        }
    }
    if jiff::fmt::temporal::Pieces::parse(raw).is_ok_and(|p| p.offset().is_some()) {
        return "is outside the times this service handles (up to 9999-12-30T22:00:00Z)".to_owned();
    }
    format!("is not {EXAMPLE} (date, time and UTC offset)")
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
        .ok_or_else(|| {
            ApiError::not_found(
                name,
                format!("no zone {} (GET /api/v1/zones lists them)", quoted(id)),
            )
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
    for id in raw.split(',') {
        if id.trim().is_empty() {
            return Err(ApiError::bad(
                name,
                "has an empty entry: zone ids separated by single commas",
            ));
        }
        if id.trim() != id {
            return Err(ApiError::bad(
                name,
                format!("has spaces around zone id {}", quoted(id.trim())),
            ));
        }
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
        description = "Live zone counts, history, flows and open data from privacy-preserving crowd counting. Every count carries its 95 % bounds; estimated people are devices times a per-zone calibration factor and are estimates. Send tokens as `Authorization: Bearer TOKEN`; a token in the URL (`?token=`) is accepted only by /api/v1/stream and CSV downloads and refused (401) elsewhere.",
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
        live::acknowledge,
        live::stream,
        history::series::series,
        history::visitors::distinct,
        history::visitors::flows,
        history::visitors::dwell,
        admin::sensors,
        admin::config_view,
        admin::calibration,
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

/// The router, testable without a server: the endpoints grouped by the role they need, and
/// what every request passes through (`layers.rs`).
pub fn router<S: Store>(state: AppState<S>) -> Router {
    let csp = layers::csp(&state.config.dashboard);
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
        .layer(from_fn_with_state(state.clone(), layers::token_scope::<S>))
        .layer(from_fn_with_state(csp, layers::security_headers))
        .with_state(state)
}

/// No token needed: the dashboard's files, metrics, the OpenAPI document, health, the
/// caller's session, the privacy statement, the sensor register and open data.
fn public_routes<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
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
        .route("/api/v1/alerts/acknowledge", post(live::acknowledge::<S>))
        .route("/api/v1/stream", get(live::stream::<S>))
}

/// Planner role (traffic planners): history.
fn planner_routes<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/api/v1/series", get(history::series::series::<S>))
        .route("/api/v1/distinct", get(history::visitors::distinct::<S>))
        .route("/api/v1/flows", get(history::visitors::flows::<S>))
        .route("/api/v1/dwell", get(history::visitors::dwell::<S>))
}

/// Admin role (operators): sensor health, the config view and the calibration preview.
fn admin_routes<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/api/v1/sensors", get(admin::sensors::<S>))
        .route("/api/v1/config", get(admin::config_view::<S>))
        .route(
            "/api/v1/calibration",
            post(admin::calibration::<S>).layer(DefaultBodyLimit::max(admin::MAX_COUNTS_BYTES)),
        )
}

/// Binds `addr` (so a taken port fails the start, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the router on `listener` until the runtime stops, within the config's
/// `[http]` limits ([`server`]).
pub async fn serve<S: Store>(listener: tokio::net::TcpListener, state: AppState<S>) {
    let limits = state.config.http_limits;
    let metrics = state.metrics.clone();
    let auth_log = state.auth_log.clone();
    // The failed-login summaries show within a minute of a flood, not at the next one.
    let flush = tokio::spawn(async move {
        let mut tick = tokio::time::interval(crowdflow_contract::log_limit::WINDOW);
        loop {
            tick.tick().await;
            auth_log.flush(Instant::now());
        }
    });
    server::run(listener, router(state), limits, metrics).await;
    flush.abort();
}

#[cfg(test)]
mod tests;
