//! Series: counts and people per bucket (minute, hour, day) of a range, as JSON or CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use crowdflow_contract::identity::Kind;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::api::{
    ApiError, AppState, Params, QueryParams, csv_response, only, wants_csv, zone_list,
};
use crate::auth::Planner;
use crate::config::Zone;
use crate::people::{self, Floors};
use crate::query::{self, Count, Range};
use crate::store::{BucketQuery, Resolution, Store, StoreError};
use crate::zone::ZoneId;

use super::{begun, range, range_notes};

/// Most zones in one series request.
const MAX_SERIES_ZONES: usize = 50;
fn step(params: &Params) -> Result<(Resolution, SignedDuration), ApiError> {
    match params.get("step").map(String::as_str).unwrap_or("hour") {
        "minute" => Ok((Resolution::Minute, SignedDuration::from_hours(24 * 7))),
        "hour" => Ok((Resolution::Hour, SignedDuration::from_hours(24 * 400))),
        "day" => Ok((Resolution::Day, SignedDuration::from_hours(24 * 3660))),
        _ => Err(ApiError::bad(
            "step",
            "must be \"minute\", \"hour\" or \"day\"",
        )),
    }
}

/// One bucket of a series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    /// Bucket start.
    #[schema(value_type = String, format = DateTime)]
    pub t: Timestamp,
    /// Distinct addresses by kind: "wifi" (global addresses), "wifi_random" (randomized addresses),
    /// "ble", and "wifi_derandomized" (physical Wi-Fi devices: another view of the Wi-Fi frames,
    /// never added to the other two; a dense crowd read through its scans, a passage of a few of each
    /// phone model a lower bound: docs/counting-devices.md).
    pub devices: BTreeMap<String, Count>,
    /// Distinct addresses of the address kinds (wifi, wifi_random, ble), which add up; not
    /// physical devices (a phone randomizing its address is many).
    pub total: Count,
    /// Estimated people present, on average over the bucket's stored minutes (see
    /// `people_basis` of the live view); null when the zone has no calibration or no minute
    /// of the bucket is stored.
    pub people: Option<Count>,
    /// The bucket is still filling (it, or the last window in it, has not ended when the
    /// answer was made): its counts will grow, so a drop there is not a fall in the crowd.
    pub partial: bool,
}

/// One zone's series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ZoneSeries {
    /// Zone id.
    #[schema(value_type = String)]
    pub zone: ZoneId,
    /// Zone name.
    pub name: String,
    /// Whether its people come from a calibration fitted on head counts (`calibrate`), as
    /// `people_basis.calibrated` of the live view; false: a guessed factor, its interval the
    /// wide default; null: no people (no calibration).
    pub people_calibrated: Option<bool>,
    /// Whether the fit's error is only a floor (fitted on fewer than 19 head counts: the
    /// largest held-out residual, not a 95 % bound), as `people_basis.error_is_floor`; the
    /// people interval is then at least as wide as given. Null: no people.
    pub people_error_is_floor: Option<bool>,
    /// Buckets with data, in time order.
    pub points: Vec<SeriesPoint>,
}

/// Series of several zones.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Series {
    /// "minute", "hour" or "day".
    pub step: String,
    /// Start.
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    /// End (exclusive).
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
    /// Per zone.
    pub zones: Vec<ZoneSeries>,
    /// What keeps the series from saying what it seems to, in words: a range widened to
    /// whole buckets, zones with nothing stored in it (no points: nothing known, not
    /// nobody), a range still filling.
    pub notes: Vec<String>,
}

/// A zone's stored numbers by bucket and kind: several salts in one bucket are summed and
/// flagged as an upper bound.
type Buckets = BTreeMap<Timestamp, BTreeMap<Kind, Count>>;

async fn zone_buckets(
    store: &impl Store,
    zone: &Zone,
    resolution: Resolution,
    r: Range,
) -> Result<Buckets, StoreError> {
    let mut buckets = Buckets::new();
    for kind in Kind::ALL {
        let mut numbers = store
            .zone_numbers(BucketQuery {
                zone: &zone.id,
                kind,
                resolution,
                from: r.from,
                to: r.to,
            })
            .await?;
        // In bucket order (as the stores return them: then this costs one pass), a bucket's
        // salts are neighbours.
        numbers.sort_by_key(|n| n.bucket);
        let mut per_bucket: Vec<(Timestamp, Count)> = Vec::with_capacity(numbers.len());
        for n in numbers {
            let c = Count::from_estimate(n.devices);
            match per_bucket.last_mut() {
                Some((t, sum)) if *t == n.bucket => *sum = sum.and_other_salt(c),
                _ => per_bucket.push((n.bucket, c)),
            }
        }
        for (t, c) in per_bucket {
            buckets.entry(t).or_default().insert(kind, c);
        }
    }
    Ok(buckets)
}

/// People present per bucket: the mean of the bucket's stored minutes (people are a presence
/// figure, [`people::estimate`]); empty without calibration. By the minute they come from
/// `buckets`, the same stored numbers, read once.
async fn bucket_people(
    store: &impl Store,
    zone: &Zone,
    floors: &Floors,
    resolution: Resolution,
    buckets: &Buckets,
    r: Range,
) -> Result<BTreeMap<Timestamp, Count>, StoreError> {
    if resolution == Resolution::Minute {
        // A bucket of one minute: its mean is itself.
        return Ok(people::of_minutes(zone, floors, buckets));
    }
    let per_minute = people::per_minute(store, zone, floors, r.from, r.to).await?;
    let seconds = resolution.seconds();
    let mut minutes: BTreeMap<Timestamp, Vec<Count>> = BTreeMap::new();
    for (t, p) in per_minute {
        let start = t.as_second() - t.as_second().rem_euclid(seconds);
        let bucket = Timestamp::from_second(start).unwrap_or(t);
        minutes.entry(bucket).or_default().push(p);
    }
    Ok(minutes
        .into_iter()
        .filter_map(|(t, m)| people::mean(&m).map(|p| (t, p)))
        .collect())
}

/// Buckets ending after `filled_by` may still receive windows.
pub(in crate::api) async fn zone_series(
    store: &impl Store,
    zone: &Zone,
    floors: &Floors,
    resolution: Resolution,
    r: Range,
    filled_by: Timestamp,
) -> Result<ZoneSeries, StoreError> {
    let buckets = zone_buckets(store, zone, resolution, r).await?;
    let people = bucket_people(store, zone, floors, resolution, &buckets, r).await?;
    let basis = people::basis(zone, floors);
    Ok(ZoneSeries {
        zone: zone.id.clone(),
        name: zone.name.clone(),
        people_calibrated: basis.as_ref().map(|b| b.calibrated),
        people_error_is_floor: basis.as_ref().map(|b| b.error_is_floor),
        points: buckets
            .into_iter()
            .map(|(t, devices)| SeriesPoint {
                t,
                total: query::total(&devices),
                people: people.get(&t).copied(),
                devices: query::by_name(&devices),
                partial: t + SignedDuration::from_secs(resolution.seconds()) > filled_by,
            })
            .collect(),
    })
}

/// Counts of a series in columns: one array per field, numbers rounded to 0.1 device (as in
/// CSV; far below the sketches' error).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct CountColumns {
    /// Point estimates; null where the bucket has no such count.
    pub estimate: Vec<Option<f64>>,
    /// Lower bounds (95 %).
    pub lower: Vec<Option<f64>>,
    /// Upper bounds (95 %).
    pub upper: Vec<Option<f64>>,
    /// Positions (in `t`) of counts summed over several salt epochs: upper bounds of the
    /// distinct count.
    pub upper_bound: Vec<usize>,
}

impl CountColumns {
    fn push(&mut self, at: usize, count: Option<&Count>) {
        let tenth = |v: f64| (v * 10.0).round() / 10.0;
        self.estimate.push(count.map(|c| tenth(c.estimate)));
        self.lower.push(count.map(|c| tenth(c.lower)));
        self.upper.push(count.map(|c| tenth(c.upper)));
        if count.is_some_and(|c| c.upper_bound) {
            self.upper_bound.push(at);
        }
    }
}

/// One zone's series in columns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ZoneColumns {
    /// Zone id.
    pub zone: String,
    /// Zone name.
    pub name: String,
    /// Bucket starts of the buckets with data, as steps after `from`, in time order.
    pub t: Vec<i64>,
    /// Distinct addresses by kind: "wifi" (global addresses), "wifi_random" (randomized addresses),
    /// "ble", and "wifi_derandomized" (physical Wi-Fi devices: another view of the Wi-Fi frames,
    /// never added to the other two; a dense crowd read through its scans, a passage of a few of each
    /// phone model a lower bound: docs/counting-devices.md);
    /// kinds with data in the range.
    pub devices: BTreeMap<String, CountColumns>,
    /// Distinct addresses of the address kinds (wifi, wifi_random, ble), which add up; not
    /// physical devices (a phone randomizing its address is many).
    pub total: CountColumns,
    /// Estimated people present, on average over each bucket's stored minutes (null when
    /// the zone has no calibration).
    pub people: Option<CountColumns>,
    /// Whether those people come from a calibration fitted on head counts (`calibrate`), as
    /// `people_basis.calibrated` of the live view; false: a guessed factor; null: no people.
    pub people_calibrated: Option<bool>,
    /// Whether the fit's error is only a floor (fewer than 19 head counts), as
    /// `people_basis.error_is_floor`: the people bounds are then at least as wide as given.
    pub people_error_is_floor: Option<bool>,
    /// Positions (in `t`) of buckets still filling (see `SeriesPoint::partial`).
    pub partial: Vec<usize>,
}

impl ZoneColumns {
    /// The columns of `buckets` and `people`: the same numbers [`zone_series`] makes
    /// points of.
    fn new(
        zone: &Zone,
        buckets: &Buckets,
        people: &BTreeMap<Timestamp, Count>,
        floors: &Floors,
        step: Step,
    ) -> ZoneColumns {
        let mut devices: BTreeMap<Kind, CountColumns> = buckets
            .values()
            .flat_map(|b| b.keys())
            .map(|k| (*k, CountColumns::default()))
            .collect();
        let people_at = people;
        let basis = people::basis(zone, floors);
        let mut out = ZoneColumns {
            zone: zone.id.to_string(),
            name: zone.name.clone(),
            t: Vec::with_capacity(buckets.len()),
            devices: BTreeMap::new(),
            total: CountColumns::default(),
            people: (!zone.calibration.is_empty()).then(CountColumns::default),
            people_calibrated: basis.as_ref().map(|b| b.calibrated),
            people_error_is_floor: basis.as_ref().map(|b| b.error_is_floor),
            partial: Vec::new(),
        };
        for (i, (t, counts)) in buckets.iter().enumerate() {
            out.t
                .push((t.as_second() - step.from.as_second()).div_euclid(step.seconds));
            for (kind, column) in devices.iter_mut() {
                column.push(i, counts.get(kind));
            }
            out.total.push(i, Some(&query::total(counts)));
            if let Some(people) = out.people.as_mut() {
                people.push(i, people_at.get(t));
            }
            if *t + SignedDuration::from_secs(step.seconds) > step.filled_by {
                out.partial.push(i);
            }
        }
        out.devices = devices
            .into_iter()
            .map(|(k, c)| (k.as_str().to_owned(), c))
            .collect();
        out
    }
}

/// Where a series' buckets are: start, length (seconds), and the time before which they
/// are complete.
#[derive(Debug, Clone, Copy)]
struct Step {
    from: Timestamp,
    seconds: i64,
    filled_by: Timestamp,
}

/// Series of several zones in columns (`format=columns`): the numbers of [`Series`], about
/// 20 bytes per count a bucket (estimate and both bounds, to 0.1): 63 bytes a point with one
/// device kind and its total (the peers benchmark; 389 bucket by bucket), about 110 with four
/// kinds, the total and people (the demo; 650-700 bucket by bucket).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesColumns {
    /// "minute", "hour" or "day".
    pub step: String,
    /// Bucket length in seconds: a bucket starts at `from + t * step_s`.
    pub step_s: i64,
    /// Start.
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    /// End (exclusive).
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
    /// Per zone.
    pub zones: Vec<ZoneColumns>,
    /// As in [`Series::notes`].
    pub notes: Vec<String>,
}

/// A series answer: bucket by bucket (the default) or in columns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SeriesAnswer {
    /// `format=json`.
    Points(Series),
    /// `format=columns`.
    Columns(SeriesColumns),
}

/// `r` widened to whole buckets of `resolution`, with a note when it was: a stored hour or
/// day is one sketch of the whole bucket, so a bucket cut by the range would set the devices
/// of all of it beside the people of the part inside.
fn whole_buckets(r: Range, resolution: Resolution) -> (Range, Option<String>) {
    let s = resolution.seconds();
    let at = |second: i64, fallback: Timestamp| Timestamp::from_second(second).unwrap_or(fallback);
    let to = r.to.as_second();
    let widened = Range {
        from: at(resolution.bucket(r.from), r.from),
        to: at(to + (s - to.rem_euclid(s)) % s, r.to),
    };
    let note = (widened != r).then(|| {
        format!(
            "the range is widened to whole {step}s ({} to {}): a stored {step} counts its devices whole, so {a} {step} cut by the range would set the devices of all of it beside the people of its part",
            widened.from,
            widened.to,
            step = resolution.as_str(),
            a = if resolution == Resolution::Hour { "an" } else { "a" },
        )
    });
    (widened, note)
}

/// The notes of a series over `r`: the widening, the zones with nothing stored (all of
/// them in one note), a range still filling.
fn series_notes(
    widened: Option<String>,
    r: Range,
    empty: &[&Zone],
    zones: usize,
    filled_by: Timestamp,
) -> Vec<String> {
    let mut notes: Vec<String> = widened.into_iter().collect();
    if !empty.is_empty() && empty.len() < zones {
        let ids: Vec<&str> = empty.iter().map(|z| z.id.as_str()).collect();
        notes.push(format!(
            "nothing stored for {} from {} to {}: no points there mean nothing known, not nobody",
            ids.join(", "),
            r.from,
            r.to
        ));
    }
    notes.extend(range_notes("the range", r, empty.len() == zones, filled_by));
    notes
}

/// Series as CSV: every count with its 95 % bounds (an empty cell: no such count).
fn series_csv(s: &Series) -> String {
    let mut out = String::from("zone,time");
    let names = Kind::ALL.map(Kind::as_str);
    for name in names.iter().chain(&["total", "people"]) {
        let _ = write!(out, ",{name},{name}_lower,{name}_upper");
    }
    // New columns go at the end: readers that index columns keep working.
    out.push_str(",people_calibrated,upper_bound,partial,people_error_is_floor\n");
    let cells = |c: Option<&Count>| {
        c.map_or_else(
            || ",,,".to_owned(),
            |c| format!(",{:.1},{:.1},{:.1}", c.estimate, c.lower, c.upper),
        )
    };
    for z in &s.zones {
        for p in &z.points {
            let _ = write!(out, "{},{}", z.zone, p.t);
            for name in names {
                out.push_str(&cells(p.devices.get(name)));
            }
            out.push_str(&cells(Some(&p.total)));
            out.push_str(&cells(p.people.as_ref()));
            let flag = |f: Option<bool>| f.map_or(String::new(), |f| f.to_string());
            let _ = writeln!(
                out,
                ",{},{},{},{}",
                flag(z.people_calibrated),
                p.total.upper_bound,
                p.partial,
                flag(z.people_error_is_floor)
            );
        }
    }
    out
}

/// Counts per bucket over a range
///
/// Distinct addresses by kind with 95 % bounds, people present on average with the interval of sketch and calibration error, per zone and minute, hour or day (planner).
#[utoipa::path(get, path = "/api/v1/series", tag = "history", security(("bearer" = [])),
    params(
        ("zones" = String, Query, example = "neude", description = "Zone ids, comma-separated (1 to 50)"),
        ("step" = Option<String>, Query, pattern = "^(minute|hour|day)$", example = "hour", description = "minute (range up to 7 days), hour (400 days, default) or day (10 years)"),
        ("from" = String, Query, format = DateTime, example = "2026-04-27T10:00:00Z", description = "RFC 3339 on a whole minute"),
        ("to" = String, Query, format = DateTime, example = "2026-04-27T11:00:00Z", description = "RFC 3339 on a whole minute, after from"),
        ("format" = Option<String>, Query, pattern = "^(json|columns|csv)$", description = "json (default: bucket by bucket), columns (JSON with one array per field, numbers rounded to 0.1 as in CSV: about 20 bytes per count and bucket with both bounds, a third of the bucket-by-bucket size) or csv"),
        ("token" = Option<String>, Query, description = "The planner token, only with format=csv (a download link cannot set headers); refused otherwise"),
    ),
    responses((status = 200, description = "Distinct addresses per bucket, per zone (from stored numbers); a bucket spanning two salt epochs is flagged upper_bound", content((SeriesAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(in crate::api) async fn series<S: Store>(
    State(state): State<AppState<S>>,
    QueryParams(params): QueryParams,
    _: Planner,
) -> Result<Response, ApiError> {
    only(&params, &["zones", "step", "from", "to", "format"])?;
    let zones = zone_list(&state, &params, "zones", 1, MAX_SERIES_ZONES)?;
    let (resolution, max) = step(&params)?;
    let (r, widened) = whole_buckets(range(&params, "from", "to", max)?, resolution);
    let columns = params.get("format").is_some_and(|f| f == "columns");
    let csv = !columns
        && wants_csv(&params)
            .map_err(|_| ApiError::bad("format", "must be \"json\", \"columns\" or \"csv\""))?;
    let filled_by = Timestamp::now() - state.config.window.duration();
    begun("from", r, filled_by)?;
    let floors = state.live.floors();
    if columns {
        let step = Step {
            from: r.from,
            seconds: resolution.seconds(),
            filled_by,
        };
        let (mut out, mut empty) = (Vec::with_capacity(zones.len()), Vec::new());
        for z in &zones {
            let buckets = zone_buckets(&state.store, z, resolution, r).await?;
            let people = bucket_people(&state.store, z, floors, resolution, &buckets, r).await?;
            if buckets.is_empty() {
                empty.push(*z);
            }
            out.push(ZoneColumns::new(z, &buckets, &people, floors, step));
        }
        return Ok(Json(SeriesAnswer::Columns(SeriesColumns {
            step: resolution.as_str().into(),
            step_s: step.seconds,
            from: r.from,
            to: r.to,
            zones: out,
            notes: series_notes(widened, r, &empty, zones.len(), filled_by),
        }))
        .into_response());
    }
    let (mut out, mut empty) = (Vec::with_capacity(zones.len()), Vec::new());
    for z in &zones {
        let series = zone_series(&state.store, z, floors, resolution, r, filled_by).await?;
        if series.points.is_empty() {
            empty.push(*z);
        }
        out.push(series);
    }
    let s = Series {
        step: resolution.as_str().into(),
        from: r.from,
        to: r.to,
        zones: out,
        notes: series_notes(widened, r, &empty, zones.len(), filled_by),
    };
    Ok(if csv {
        csv_response("series.csv", series_csv(&s))
    } else {
        Json(SeriesAnswer::Points(s)).into_response()
    })
}
