//! Answers of sketch algebra over ranges: distinct visitors of a zone, flows between zones
//! (inclusion-exclusion of two ranges' unions), dwell (the share still there after a lag).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use crowdflow_contract::identity::Kind;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::api::{ApiError, AppState, QueryParams, number, only, zone, zone_list};
use crate::auth::Planner;
use crate::config::Zone;
use crate::people;
use crate::query::{self, Count, Overlap, PerSalt, Range};
use crate::store::{Store, StoreError};
use crate::zone::ZoneId;

use super::{begun, range, range_notes};

/// Most zones on each side of a flow matrix.
const MAX_FLOW_ZONES: usize = 30;

/// Distinct visitors of a zone over a range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Distinct {
    /// Zone id.
    #[schema(value_type = String)]
    pub zone: ZoneId,
    /// Start.
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    /// End (exclusive).
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
    /// Distinct addresses by kind: "wifi" (global addresses), "wifi_random" (randomized addresses),
    /// "ble", and "wifi_derandomized" (physical Wi-Fi devices: another view of the Wi-Fi frames,
    /// never added to the other two; a dense crowd read through its scans, a passage of a few of each
    /// phone model a lower bound: docs/counting-devices.md).
    pub devices: BTreeMap<String, Count>,
    /// Distinct addresses of the address kinds (wifi, wifi_random, ble), which add up; not
    /// physical devices (a phone randomizing its address is many).
    pub total: Count,
    /// Estimated people present on average over the range's stored minutes: not distinct
    /// visitors (over a span addresses rotate and people come and go, so devices over the
    /// range are not people); null without calibration or stored minutes.
    pub people: Option<Count>,
    /// What keeps the counts from saying what they seem to: a range without stored data
    /// (its zeros mean nothing known, not nobody), a range still filling.
    pub notes: Vec<String>,
}

/// Distinct addresses over a range
///
/// The union of the coarsest buckets that tile the range; across salt epochs the per-epoch sum, flagged upper_bound; people present on average (planner).
#[utoipa::path(get, path = "/api/v1/distinct", tag = "history", security(("bearer" = [])),
    params(
        ("zone" = String, Query, example = "neude", description = "Zone id"),
        ("from" = String, Query, format = DateTime, example = "2026-04-27T10:00:00Z", description = "RFC 3339 on a whole minute"),
        ("to" = String, Query, format = DateTime, example = "2026-04-27T11:00:00Z", description = "RFC 3339 on a whole minute (range up to 400 days)"),
    ),
    responses((status = 200, description = "Distinct addresses over the range: the union of the coarsest buckets that tile it; over several salt epochs the per-epoch sum, flagged upper_bound", body = Distinct),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(in crate::api) async fn distinct<S: Store>(
    State(state): State<AppState<S>>,
    QueryParams(params): QueryParams,
    _: Planner,
) -> Result<Json<Distinct>, ApiError> {
    only(&params, &["zone", "from", "to"])?;
    let id = params
        .get("zone")
        .ok_or_else(|| ApiError::bad("zone", "is required"))?;
    let z = zone(&state, "zone", id)?;
    let r = range(&params, "from", "to", SignedDuration::from_hours(24 * 400))?;
    let complete = Timestamp::now() - state.config.window.duration();
    begun("from", r, complete)?;
    // One read of the range's sketches (their counts, and whether anything was stored) and
    // one of its minute numbers (people), side by side: the sketches' unions and the
    // minutes' people are computed while the other waits for the store. The minutes go
    // first: a day's people (1,440 minutes) take longer than its few coarse sketches.
    let (minutes, stored) = futures_util::future::try_join(
        people::per_minute(&state.store, z, state.live.floors(), r.from, r.to),
        unions(&state, z, r),
    )
    .await?;
    let devices: BTreeMap<Kind, Count> = stored
        .iter()
        .map(|(kind, unions)| (*kind, query::count(unions)))
        .collect();
    let empty = nothing_stored(&stored);
    let minutes: Vec<Count> = minutes.into_iter().map(|(_, c)| c).collect();
    let notes = range_notes("the range", r, empty, complete);
    Ok(Json(Distinct {
        notes,
        zone: z.id.clone(),
        from: r.from,
        to: r.to,
        total: query::total(&devices),
        people: people::mean(&minutes),
        devices: query::by_name(&devices),
    }))
}

/// Whether a range's unions (per kind, per salt) hold nothing: no sketch stored in it.
fn nothing_stored(unions: &BTreeMap<Kind, PerSalt>) -> bool {
    unions.values().all(BTreeMap::is_empty)
}

async fn unions(
    state: &AppState<impl Store>,
    zone: &Zone,
    r: Range,
) -> Result<BTreeMap<Kind, PerSalt>, StoreError> {
    let sketches = query::covering(&state.store, &zone.id, &Kind::ALL, r.from, r.to).await?;
    Ok(Kind::ALL
        .into_iter()
        .zip(sketches)
        .map(|(kind, sketches)| (kind, query::per_salt(&sketches, state.config.precision)))
        .collect())
}

fn overlap_all_kinds(a: &BTreeMap<Kind, PerSalt>, b: &BTreeMap<Kind, PerSalt>) -> Overlap {
    let mut sum: Option<Overlap> = None;
    for kind in Kind::ADDRESSES {
        if let (Some(x), Some(y)) = (a.get(&kind), b.get(&kind)) {
            let o = query::overlap(x, y);
            sum = Some(match sum {
                None => o,
                Some(s) => s.plus(o),
            });
        }
    }
    sum.unwrap_or(Overlap::ZERO)
}

fn count_all_kinds(u: &BTreeMap<Kind, PerSalt>) -> Count {
    u.values().fold(Count::ZERO, |s, p| s.plus(query::count(p)))
}

/// An origin-destination matrix.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Flows {
    /// Zone ids: rows are origins (window 1), columns destinations (window 2).
    #[schema(value_type = Vec<String>)]
    pub zones: Vec<ZoneId>,
    /// Devices in each zone in window 1.
    pub origin_devices: Vec<Count>,
    /// Devices in each zone in window 2.
    pub destination_devices: Vec<Count>,
    /// `matrix[i][j]`: devices in zone i during window 1 and in zone j during window 2.
    pub matrix: Vec<Vec<Overlap>>,
    /// What keeps the matrix from saying what it seems to, in words: a window without
    /// stored data (its zeros are "nothing known", not "nobody"), a window still filling.
    pub notes: Vec<String>,
}

/// Flows between zones
///
/// Devices in zone i during window 1 and in zone j during window 2, by inclusion-exclusion with bounds; unreliable cells flagged, notes on windows without data or still filling (planner).
#[utoipa::path(get, path = "/api/v1/flows", tag = "history", security(("bearer" = [])),
    params(
        ("zones" = String, Query, example = "neude,vredenburg", description = "Zone ids, comma-separated (2 to 30)"),
        ("from1" = String, Query, format = DateTime, example = "2026-04-27T10:00:00Z", description = "Window 1 start (RFC 3339, whole minute)"),
        ("to1" = String, Query, format = DateTime, example = "2026-04-27T10:30:00Z", description = "Window 1 end (at most 7 days after from1)"),
        ("from2" = String, Query, format = DateTime, example = "2026-04-27T10:30:00Z", description = "Window 2 start"),
        ("to2" = String, Query, format = DateTime, example = "2026-04-27T11:00:00Z", description = "Window 2 end"),
    ),
    responses((status = 200, description = "Flows by inclusion-exclusion with bounds; cells whose bounds are wider than the value are flagged unreliable; windows under different salts (epochs, or a salt an aggregator drew anew) cannot be linked: such cells are flagged crosses_epochs and unreliable", body = Flows),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(in crate::api) async fn flows<S: Store>(
    State(state): State<AppState<S>>,
    QueryParams(params): QueryParams,
    _: Planner,
) -> Result<Json<Flows>, ApiError> {
    only(&params, &["zones", "from1", "to1", "from2", "to2"])?;
    let zones = zone_list(&state, &params, "zones", 2, MAX_FLOW_ZONES)?;
    let week = SignedDuration::from_hours(24 * 7);
    let (w1, w2) = (
        range(&params, "from1", "to1", week)?,
        range(&params, "from2", "to2", week)?,
    );
    let complete = Timestamp::now() - state.config.window.duration();
    for (name, w) in [("from1", w1), ("from2", w2)] {
        begun(name, w, complete)?;
    }
    let mut origins = Vec::new();
    let mut destinations = Vec::new();
    for z in &zones {
        origins.push(unions(&state, z, w1).await?);
        destinations.push(unions(&state, z, w2).await?);
    }
    let mut matrix: Vec<Vec<Overlap>> = origins
        .iter()
        .map(|a| {
            destinations
                .iter()
                .map(|b| overlap_all_kinds(a, b))
                .collect()
        })
        .collect();
    let mut notes = Vec::new();
    let mut empty = [false; 2];
    for (i, (name, w, sides)) in [("window 1", w1, &origins), ("window 2", w2, &destinations)]
        .into_iter()
        .enumerate()
    {
        empty[i] = sides.iter().all(nothing_stored);
        notes.extend(range_notes(name, w, empty[i], complete));
    }
    if w2.from < w1.from {
        notes.push(
            "window 2 starts before window 1: a cell then counts devices in its column's zone first and its row's zone later"
                .into(),
        );
    }
    // Zeros of a window nothing was stored for are "nothing known", never a sure 0.
    if empty.iter().any(|e| *e) {
        for row in &mut matrix {
            for cell in row {
                cell.unreliable = true;
            }
        }
    }
    Ok(Json(Flows {
        notes,
        zones: zones.iter().map(|z| z.id.clone()).collect(),
        origin_devices: origins.iter().map(count_all_kinds).collect(),
        destination_devices: destinations.iter().map(count_all_kinds).collect(),
        matrix,
    }))
}

/// Who stayed: devices of a window still present `lag_min` later.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dwell {
    /// Zone id.
    #[schema(value_type = String)]
    pub zone: ZoneId,
    /// Minutes between the two windows.
    pub lag_min: i64,
    /// Devices in the first window.
    pub devices: Count,
    /// Of those, devices also in the shifted window.
    pub still_present: Overlap,
    /// still_present / devices; null when the first window has no devices (no share of
    /// nobody), with `note` saying so.
    pub share: Option<f64>,
    /// Lower bound of the share.
    pub share_lower: Option<f64>,
    /// Upper bound of the share.
    pub share_upper: Option<f64>,
    /// The overlap's bounds are wider than its value: do not read the share as precise.
    pub unreliable: bool,
    /// Why there is no share, when there is none.
    pub note: Option<String>,
}

/// Who stayed
///
/// The share of a window's devices still present lag_min minutes later; refused while the later window has not ended (planner).
#[utoipa::path(get, path = "/api/v1/dwell", tag = "history", security(("bearer" = [])),
    params(
        ("zone" = String, Query, example = "neude", description = "Zone id"),
        ("from" = String, Query, format = DateTime, example = "2026-04-27T10:00:00Z", description = "Window start (RFC 3339, whole minute)"),
        ("to" = String, Query, format = DateTime, example = "2026-04-27T11:00:00Z", description = "Window end (at most 24 hours after from)"),
        ("lag_min" = Option<i64>, Query, minimum = 1, maximum = 1440, example = 15, description = "Minutes later (1 to 1440, default 15)"),
    ),
    responses((status = 200, description = "Share of the window's devices still present lag_min later", body = Dwell),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(in crate::api) async fn dwell<S: Store>(
    State(state): State<AppState<S>>,
    QueryParams(params): QueryParams,
    _: Planner,
) -> Result<Json<Dwell>, ApiError> {
    only(&params, &["zone", "from", "to", "lag_min"])?;
    let id = params
        .get("zone")
        .ok_or_else(|| ApiError::bad("zone", "is required"))?;
    let z = zone(&state, "zone", id)?;
    let r = range(&params, "from", "to", SignedDuration::from_hours(24))?;
    let lag = number(&params, "lag_min", 15i64, 1, 1440)?;
    let shift = SignedDuration::from_mins(lag);
    let later = Range {
        from: r.from + shift,
        to: r.to + shift,
    };
    // A window still filling would read as devices that left: no confident 0 % for it.
    let complete = Timestamp::now() - state.config.window.duration();
    if r.to > complete {
        return Err(ApiError::bad(
            "to",
            format!(
                "the window has not ended yet (windows are complete up to {complete:.0}): choose an earlier `to`"
            ),
        ));
    }
    if later.to > complete {
        return Err(ApiError::bad(
            "lag_min",
            format!(
                "the later window ends at {}, after the last complete window ({complete:.0}): choose a shorter lag_min or an earlier range",
                later.to
            ),
        ));
    }
    let (a, b) = (unions(&state, z, r).await?, unions(&state, z, later).await?);
    let (first_empty, later_empty) = (nothing_stored(&a), nothing_stored(&b));
    let devices = count_all_kinds(&a);
    let still = overlap_all_kinds(&a, &b);
    let ratio = |n: f64, d: f64| (d > 0.0).then(|| (n / d).clamp(0.0, 1.0));
    let share = ratio(still.estimate, devices.estimate);
    Ok(Json(Dwell {
        zone: z.id.clone(),
        lag_min: lag,
        devices,
        still_present: still,
        share,
        // An empty lower bound of devices leaves the share unbounded above.
        share_lower: share.map(|_| ratio(still.lower, devices.upper).unwrap_or(0.0)),
        share_upper: share.map(|_| ratio(still.upper, devices.lower).unwrap_or(1.0)),
        // Nothing stored in a window is nothing known, not nobody: no figure stands on it.
        unreliable: still.unreliable || first_empty || later_empty,
        note: if first_empty || later_empty {
            let (which, w) = if first_empty {
                ("first", r)
            } else {
                ("later", later)
            };
            Some(format!(
                "no stored data in the {which} window ({} to {}): its zeros mean nothing known, not nobody",
                w.from, w.to
            ))
        } else {
            share
                .is_none()
                .then(|| "no devices in the first window: nothing to follow".to_owned())
        },
    }))
}
