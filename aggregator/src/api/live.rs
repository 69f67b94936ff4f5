//! The live view's answers (viewer role): zones with their numbers, alerts, and the stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ApiError, AppState, QueryParams, number, only, optional_timestamp, zone};
use crate::auth::{NamedViewer, Viewer};
use crate::config::ReplayClock;
use crate::live::{LiveEvent, ZoneLive, level_name};
use crate::metrics::Metrics;
use crate::store::{Alert, AlertKey, AlertKind, Store};
use crate::zone::ZoneId;

/// Live zones
///
/// Every zone's occupancy, people with their interval and basis, density, level of service, trend and staleness (viewer).
#[utoipa::path(get, path = "/api/v1/zones", tag = "live", security(("bearer" = [])),
    responses((status = 200, description = "Every zone with its live numbers (each count with lower/upper bounds)", body = [ZoneLive]),
        (status = 401, body = ApiError)))]
pub(super) async fn zones<S: Store>(
    State(state): State<AppState<S>>,
    _: Viewer,
) -> Result<Json<Vec<ZoneLive>>, ApiError> {
    Ok(Json(state.live.zones()))
}

/// One zone on the dashboard's plan.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanZone {
    /// Zone id.
    #[schema(value_type = String)]
    pub id: ZoneId,
    /// Display name.
    pub name: String,
    /// Area in m2.
    pub area_m2: f64,
    /// Capacity in persons, if configured.
    pub capacity: Option<u64>,
    /// Level-of-service thresholds, persons per m2, ascending.
    pub thresholds: Vec<f64>,
    /// The level names, from level 0 up (one more than thresholds).
    pub levels: Vec<String>,
    /// Outline as a GeoJSON Polygon (longitude, latitude), if configured.
    #[schema(value_type = Option<Object>)]
    pub polygon: Option<serde_json::Value>,
}

/// The optional map background.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tiles {
    /// XYZ tile URL with {z}, {x} and {y}.
    pub url: String,
    /// Attribution to show.
    pub attribution: Option<String>,
}

/// What the dashboard draws besides the numbers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// Page title.
    pub title: String,
    /// Every zone, in config order.
    pub zones: Vec<PlanZone>,
    /// Background tiles, when configured.
    pub tiles: Option<Tiles>,
    /// Seconds per counting window.
    pub window_s: u32,
    /// The clock of a replayed event (the demo's simulated day, a drill), when one is
    /// replayed: the header shows its time.
    pub replay_clock: Option<ReplayClock>,
    /// The replay's time now.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub replay_now: Option<Timestamp>,
    /// Minutes of a zone's stored people a forecast needs before it is made (too few give
    /// no errors to size its interval on): until then a zone's `forecast` is null.
    pub forecast_after_min: usize,
}

/// The plan
///
/// Zone outlines, thresholds, level names and the replay clock, for the dashboard (viewer).
#[utoipa::path(get, path = "/api/v1/plan", tag = "live", security(("bearer" = [])),
    responses((status = 200, description = "Zone outlines, thresholds and level names for the dashboard", body = Plan),
        (status = 401, body = ApiError)))]
pub(super) async fn plan<S: Store>(
    State(state): State<AppState<S>>,
    _: Viewer,
) -> Result<Json<Plan>, ApiError> {
    let c = &state.config;
    let zones = c
        .zones
        .values()
        .map(|z| PlanZone {
            id: z.id.clone(),
            name: z.name.clone(),
            area_m2: z.area_m2,
            capacity: z.capacity,
            thresholds: z.thresholds.clone(),
            levels: (0..=z.thresholds.len())
                .map(|i| level_name(i, z.thresholds.len() + 1))
                .collect(),
            polygon: z.polygon.clone(),
        })
        .collect();
    Ok(Json(Plan {
        title: c.dashboard.title.clone(),
        zones,
        tiles: c.dashboard.tile_url.clone().map(|url| Tiles {
            url,
            attribution: c.dashboard.tile_attribution.clone(),
        }),
        window_s: c.window.seconds(),
        replay_clock: c.dashboard.replay_clock.clone(),
        replay_now: c
            .dashboard
            .replay_clock
            .as_ref()
            .map(|r| r.at(Timestamp::now())),
        forecast_after_min: crate::forecast::MIN_HISTORY_MIN,
    }))
}

/// One live zone
///
/// A zone's live numbers, as in /zones (viewer).
#[utoipa::path(get, path = "/api/v1/zones/{id}", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path, example = "neude", description = "Zone id")),
    responses((status = 200, description = "One zone's live numbers", body = ZoneLive),
        (status = 404, body = ApiError), (status = 401, body = ApiError)))]
pub(super) async fn zone_detail<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    _: Viewer,
) -> Result<Json<ZoneLive>, ApiError> {
    let z = zone(&state, "id", &id)?;
    state
        .live
        .zones()
        .into_iter()
        .find(|l| l.id == z.id.as_str())
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the live board is still starting; retry in a few seconds",
            )
        })
}

/// Recent alerts
///
/// Level alerts (raised once per crossing, cleared with hysteresis), staleness and recovery, newest first (viewer).
#[utoipa::path(get, path = "/api/v1/alerts", tag = "live", security(("bearer" = [])),
    params(
        ("since" = Option<String>, Query, format = DateTime, example = "2026-04-27T00:00:00Z", description = "RFC 3339; default 24 hours ago"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"),
    ),
    responses((status = 200, description = "Alerts, newest first", body = [Alert]),
        (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub(super) async fn alerts<S: Store>(
    State(state): State<AppState<S>>,
    QueryParams(params): QueryParams,
    _: Viewer,
) -> Result<Json<Vec<Alert>>, ApiError> {
    only(&params, &["since", "limit"])?;
    let since = optional_timestamp(&params, "since")?
        .unwrap_or_else(|| Timestamp::now() - SignedDuration::from_hours(24));
    let limit = number(&params, "limit", 100u32, 1, 1000)?;
    Ok(Json(state.store.alerts(since, limit).await?))
}

/// A refused JSON body, naming the field at fault where serde names one (``missing field
/// `zone` ``, ``unknown field `extra` ``, or `at: input contains invalid characters`), else
/// `body`.
fn body_error(e: &JsonRejection) -> ApiError {
    let text = e.body_text();
    let quoted_after = |lead: &str| {
        text.split(lead)
            .nth(1)
            .and_then(|rest| rest.split('`').next())
    };
    let missing = quoted_after("missing field `").or_else(|| quoted_after("unknown field `"));
    let invalid = text
        .split("target type: ")
        .nth(1)
        .and_then(|rest| rest.split_once(": "))
        .map(|(path, _)| path)
        .filter(|p| p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    // Both echo what the client sent: bounded.
    let field: Option<String> = missing
        .or(invalid)
        .map(|f| f.chars().take(super::QUOTED_MAX).collect());
    let text: String = text.chars().take(300).collect();
    ApiError::bad(field.as_deref().unwrap_or("body"), text)
}

/// Acknowledge an alert
///
/// Marks an alert (named by its minute, zone, kind and level, as listed) acknowledged by the
/// caller (the token's name and role, "anonymous (planner)" without a token), for every
/// screen at once: the stream sends it again, acknowledged (viewer).
#[utoipa::path(post, path = "/api/v1/alerts/acknowledge", tag = "live", security(("bearer" = [])),
    request_body(content = AlertKey, example = json!({"at": "2026-04-27T12:00:00Z", "zone": "neude", "kind": "level", "level": 1})),
    responses((status = 200, description = "The alert, acknowledged", body = Alert),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, description = "No alert with that key (the error names `at` or `level`)", body = ApiError),
        (status = 409, description = "Acknowledged already (the error says when and by whom)", body = ApiError)))]
pub(super) async fn acknowledge<S: Store>(
    State(state): State<AppState<S>>,
    NamedViewer(caller): NamedViewer,
    body: Result<Json<AlertKey>, JsonRejection>,
) -> Result<Json<Alert>, ApiError> {
    let Json(key) = body.map_err(|e| body_error(&e))?;
    if matches!(key.kind, AlertKind::Level | AlertKind::Clear) && key.level.is_none() {
        return Err(ApiError::bad(
            "level",
            format!("is required for a {} alert (as listed)", key.kind),
        ));
    }
    zone(&state, "zone", &key.zone)?;
    let now = Timestamp::now();
    let acked = state
        .store
        .acknowledge_alert(key.clone(), &caller.to_string(), now)
        .await?;
    let same_minute: Vec<Alert> = state
        .store
        .alerts(key.at, 1000)
        .await?
        .into_iter()
        .filter(|a| a.at == key.at && a.zone.as_str() == key.zone && a.kind == key.kind)
        .collect();
    let Some(acknowledged) = same_minute.iter().find(|a| a.level == key.level).cloned() else {
        return Err(match same_minute.first() {
            Some(other) => ApiError::not_found(
                "level",
                format!(
                    "the {} alert of that time and zone has level {}",
                    key.kind,
                    other.level.map_or("none".into(), |l| l.to_string())
                ),
            ),
            None => ApiError::not_found(
                "at",
                format!("no {} alert of zone {} at that time", key.kind, key.zone),
            ),
        });
    };
    if !acked {
        return Err(ApiError::conflict(
            "at",
            format!(
                "already acknowledged{}{}",
                acknowledged
                    .acknowledged_at
                    .map_or(String::new(), |t| format!(" at {t:.0}")),
                acknowledged
                    .acknowledged_by
                    .as_deref()
                    .map_or(String::new(), |b| format!(" by {b}"))
            ),
        ));
    }
    state.live.announce(acknowledged.clone());
    Ok(Json(acknowledged))
}

/// How often an idle stream sends a `ping` event.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// `Retry-After` of a stream refused for want of a slot: the dashboard's longest reconnect
/// pause (`MAX_BACKOFF_MS` in `dashboard/src/stream.js`); a slot frees when a page closes,
/// which nothing predicts.
pub const STREAM_RETRY_AFTER_S: u32 = 30;

/// The free live-stream slots (`http.max_streams`): each subscriber holds one, and costs a
/// connection, a broadcast receiver and a snapshot on every lag.
#[derive(Debug, Clone)]
pub(super) struct StreamSlots {
    free: Arc<Semaphore>,
    open: prometheus::IntGauge,
}

/// One subscriber's slot, held by its event stream and freed when the stream is dropped
/// (the client went away).
#[derive(Debug)]
struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    open: prometheus::IntGauge,
}

impl StreamSlots {
    pub(super) fn new(max: usize, metrics: &Metrics) -> StreamSlots {
        StreamSlots {
            free: Arc::new(Semaphore::new(max)),
            open: metrics.http_streams.clone(),
        }
    }

    fn take(&self) -> Option<StreamSlot> {
        let permit = self.free.clone().try_acquire_owned().ok()?;
        self.open.inc();
        Some(StreamSlot {
            _permit: permit,
            open: self.open.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

fn event(e: &LiveEvent) -> Event {
    let (name, data) = match e {
        LiveEvent::Zone(z) => ("zone", serde_json::to_string(z)),
        LiveEvent::Alert(a) => ("alert", serde_json::to_string(a)),
    };
    Event::default()
        .event(name)
        .data(data.unwrap_or_else(|_| "{}".into()))
}

fn snapshot(zones: &[ZoneLive]) -> Event {
    Event::default()
        .event("snapshot")
        .data(serde_json::to_string(zones).unwrap_or_else(|_| "[]".into()))
}

/// Live stream
///
/// Server-sent events: a snapshot of every zone, then zones as they change and alerts as they are raised (viewer).
#[utoipa::path(get, path = "/api/v1/stream", tag = "live", security(("bearer" = [])),
    params(("token" = Option<String>, Query, description = "The viewer token, for browsers' EventSource (which cannot set headers); other endpoints refuse a token in the URL")),
    responses((status = 200, description = "Server-Sent Events: `snapshot` (all zones, first and after any gap), then `zone` (a zone's numbers changed) and `alert` events, and `ping` every 5 s when idle; data is JSON", content_type = "text/event-stream"),
        (status = 401, body = ApiError),
        (status = 503, description = "As many streams as http.max_streams are open; retry after the Retry-After seconds", body = ApiError,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))))]
pub(super) async fn stream<S: Store>(
    State(state): State<AppState<S>>,
    _: Viewer,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Some(slot) = state.streams.take() else {
        state.metrics.http_streams_refused.inc();
        return Err(ApiError::busy(
            format!(
                "too many live streams are open (http.max_streams = {}); retry in {STREAM_RETRY_AFTER_S} s",
                state.config.http_limits.max_streams
            ),
            STREAM_RETRY_AFTER_S,
        ));
    };
    let rx = state.live.subscribe();
    let first = snapshot(&state.live.zones());
    let live = state.live.clone();
    // The slot lives in the stream's state: dropped with it when the client goes away.
    let events = futures_util::stream::unfold(
        (Some(first), rx, (live, slot)),
        |(pending, mut rx, (live, slot))| async move {
            if let Some(first) = pending {
                return Some((Ok(first), (None, rx, (live, slot))));
            }
            let next = match rx.recv().await {
                Ok(e) => event(&e),
                // Fell behind: a fresh snapshot replaces what was missed.
                Err(RecvError::Lagged(_)) => snapshot(&live.zones()),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(next), (None, rx, (live, slot))))
        },
    );
    // A named keep-alive event (not a comment) so that the dashboard can tell a quiet stream
    // from a dead one.
    let ping = Event::default().event("ping").data("{}");
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(PING_EVERY).event(ping)))
}
