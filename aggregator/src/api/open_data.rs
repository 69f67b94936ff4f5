//! The public open-data export (no token): per zone and completed hour, counts rounded and
//! suppressed below k (design §2.6).

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::history::zone_series;
use super::{ApiError, AppState, QueryParams, csv_response, only, optional_timestamp, wants_csv};
use crate::query::{Count, Range};
use crate::store::{Resolution, Store};
use crate::zone::ZoneId;

/// One open-data row: a zone in an hour.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenDataRow {
    /// Zone id.
    #[schema(value_type = String)]
    pub zone: ZoneId,
    /// Hour start.
    #[schema(value_type = String, format = DateTime)]
    pub hour: Timestamp,
    /// Distinct addresses (Wi-Fi global and randomized, BLE), rounded; not physical devices (a
    /// phone randomizing its address is many); null when below k (suppressed).
    pub devices: Option<u64>,
    /// Estimated people present on average in the hour, rounded; null when below k or the
    /// zone has no calibration.
    pub people: Option<u64>,
    /// The people figure's 95 % interval, rounded outward to multiples of `rounding` (null
    /// with `people`): sketch and calibration error combined.
    pub people_lower: Option<u64>,
    /// See `people_lower`.
    pub people_upper: Option<u64>,
    /// The zone's people factor was fitted on head counts; false: a guess, with a wide
    /// interval.
    pub people_calibrated: Option<bool>,
    /// The fit's error is only a floor (fewer than 19 head counts): the interval is at least
    /// as wide as given. Null with `people_calibrated`.
    pub people_error_is_floor: Option<bool>,
}

/// The open-data export.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenDataExport {
    /// Licence of the data.
    pub licence: String,
    /// How to read it.
    pub notes: Vec<String>,
    /// Counts below this are suppressed.
    pub k: u64,
    /// Counts are rounded to a multiple of this.
    pub rounding: u64,
    /// Rows by zone and hour.
    pub rows: Vec<OpenDataRow>,
}

/// A published interval: outward to multiples of `rounding`, only around a published
/// estimate (a bound alone singles out no one, but an interval without its estimate helps
/// no one either).
fn publishable_bounds(c: &Count, k: u64, rounding: u64) -> Option<(u64, u64)> {
    publishable(c.estimate, k, rounding)?;
    let r = rounding as f64;
    let lower = (c.lower.max(0.0) / r).floor() * r;
    let upper = (c.upper / r).ceil() * r;
    upper.is_finite().then_some((lower as u64, upper as u64))
}

pub(super) fn publishable(v: f64, k: u64, rounding: u64) -> Option<u64> {
    if !v.is_finite() || v < k as f64 {
        return None;
    }
    let r = rounding as f64;
    Some(((v / r).round() * r) as u64)
}

/// Open data
///
/// Per zone and completed hour: devices and people rounded and suppressed below k, with notes on hours not yet complete (public).
#[utoipa::path(get, path = "/api/v1/open-data", tag = "public",
    params(
        ("from" = Option<String>, Query, format = DateTime, example = "2026-04-27T10:00:00Z", description = "RFC 3339 on a whole minute; default 24 hours before the last full hour"),
        ("to" = Option<String>, Query, format = DateTime, example = "2026-04-27T11:00:00Z", description = "RFC 3339; default the last full hour; at most 31 days after from"),
        ("format" = Option<String>, Query, pattern = "^(json|csv)$", description = "json (default) or csv"),
    ),
    responses((status = 200, description = "Per zone and completed hour: counts rounded and suppressed below k, never traceable to a person", content((OpenDataExport = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError)))]
pub(super) async fn open_data<S: Store>(
    State(state): State<AppState<S>>,
    QueryParams(params): QueryParams,
) -> Result<Response, ApiError> {
    only(&params, &["from", "to", "format"])?;
    let csv = wants_csv(&params)?;
    let hour =
        |t: Timestamp| Timestamp::from_second(t.as_second().div_euclid(3600) * 3600).unwrap_or(t);
    let last_hour = hour(Timestamp::now());
    let asked_to = optional_timestamp(&params, "to")?;
    let asked_from = optional_timestamp(&params, "from")?;
    if let (Some(f), Some(t)) = (asked_from, asked_to)
        && t <= f
    {
        return Err(ApiError::bad("to", format!("must be after `from` ({f})")));
    }
    // Rows are whole hours: a range is read from the start of `from`'s hour to the start of
    // `to`'s, and never past the last hour that has ended.
    let to = hour(asked_to.unwrap_or(last_hour)).min(last_hour);
    let from = hour(asked_from.unwrap_or(to - SignedDuration::from_hours(24)));
    let mut range_notes = Vec::new();
    if asked_from.is_some_and(|f| f != from) || asked_to.is_some_and(|t| t != to && t < last_hour) {
        range_notes.push(format!(
            "Rows are whole hours: the range was read as {from} to {to}."
        ));
    }
    if from >= to {
        // The range lies in the hour under way (or later): nothing of it has ended.
        range_notes.push(format!(
            "Nothing from {from} has ended yet: the hour from {last_hour} is listed once it ends."
        ));
        return Ok(export_response(
            &state,
            csv,
            last_hour,
            Vec::new(),
            range_notes,
        ));
    }
    let r = Range::new(from, to, SignedDuration::from_hours(24 * 31)).map_err(|e| {
        ApiError::bad(
            "from",
            format!(
                "{e} (`to` is capped at the last full hour, {last_hour}; ranges of at most 31 days)"
            ),
        )
    })?;
    let od = &state.config.open_data;
    let mut rows = Vec::new();
    for z in state.config.zones.values() {
        // Capped at the last full hour: no bucket is partial.
        let series = zone_series(
            &state.store,
            z,
            state.live.floors(),
            Resolution::Hour,
            r,
            to,
        )
        .await?;
        for p in series.points {
            let bounds = p
                .people
                .and_then(|c| publishable_bounds(&c, od.k, od.rounding));
            rows.push(OpenDataRow {
                zone: z.id.clone(),
                hour: p.t,
                devices: publishable(p.total.estimate, od.k, od.rounding),
                people: p
                    .people
                    .and_then(|c| publishable(c.estimate, od.k, od.rounding)),
                people_lower: bounds.map(|b| b.0),
                people_upper: bounds.map(|b| b.1),
                people_calibrated: series.people_calibrated,
                people_error_is_floor: series.people_error_is_floor,
            });
        }
    }
    let mut notes = range_notes;
    if rows.is_empty() {
        notes.push(format!(
            "No stored data from {} to {}: nothing was counted in these hours yet (a new installation lists its first hour once that hour has ended).",
            r.from, r.to
        ));
    }
    Ok(export_response(&state, csv, last_hour, rows, notes))
}

/// The export of `rows` with the standing notes (`last_hour`: the hour under way) and
/// `notes`, as JSON or CSV.
fn export_response<S: Store>(
    state: &AppState<S>,
    csv: bool,
    last_hour: Timestamp,
    rows: Vec<OpenDataRow>,
    notes: Vec<String>,
) -> Response {
    let od = &state.config.open_data;
    let notes = [
        vec![format!(
            "Only hours that have ended are listed: the hour from {last_hour} appears once it ends."
        )],
        notes,
    ]
    .concat();
    let export = OpenDataExport {
        licence: od.licence.clone(),
        notes: [vec![
            "devices: distinct addresses (Wi-Fi and Bluetooth) heard per zone and hour (a phone that randomizes its address counts once per address, so they are not people; people is the calibrated estimate), estimated from HyperLogLog sketches of daily-salted hashes; no device address was ever stored.".into(),
            format!("Counts are rounded to multiples of {} and left empty below {} so that no row can single out a person.", od.rounding, od.k),
            "People are present on average in the hour, estimated as factor x (devices - floor) per minute; the interval combines the sketch's error with the calibration's (people_calibrated false: a guessed factor, +-50 %; people_error_is_floor true: fitted on fewer than 19 head counts, so the interval is at least as wide as given); empty where the zone has no calibration entry.".into(),
        ], notes]
        .concat(),
        k: od.k,
        rounding: od.rounding,
        rows,
    };
    if csv {
        let mut out = format!("# crowdflow open data; licence: {}\n", export.licence);
        for n in &export.notes {
            let _ = writeln!(out, "# {n}");
        }
        out.push_str(
            "zone,hour_start,devices,people,people_lower,people_upper,people_calibrated,people_error_is_floor\n",
        );
        let cell = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let flag = |f: Option<bool>| f.map(|f| f.to_string()).unwrap_or_default();
        for row in &export.rows {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{}",
                row.zone,
                row.hour,
                cell(row.devices),
                cell(row.people),
                cell(row.people_lower),
                cell(row.people_upper),
                flag(row.people_calibrated),
                flag(row.people_error_is_floor)
            );
        }
        csv_response("crowdflow-open-data.csv", out)
    } else {
        Json(export).into_response()
    }
}
