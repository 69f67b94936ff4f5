//! The planners' answers (planner role): [`series`] of counts and people per bucket, and
//! the [`visitors`] answers of sketch algebra (distinct visitors, flows, dwell).

pub mod series;
pub mod visitors;

use jiff::{SignedDuration, Timestamp};

use super::{ApiError, Params, timestamp};
use crate::query::{Range, RangeError, floor_minute};

pub(super) use series::zone_series;

/// The range of the `from` and `to` parameters named, at most `max` long; a refusal names
/// the parameter at fault.
pub(super) fn range(
    params: &Params,
    from: &str,
    to: &str,
    max: SignedDuration,
) -> Result<Range, ApiError> {
    let (f, t) = (timestamp(params, from)?, timestamp(params, to)?);
    Range::new(f, t, max).map_err(|e| {
        let (name, other) = if e.at_start() { (from, to) } else { (to, from) };
        let why = match e {
            RangeError::StartNotWholeMinute | RangeError::EndNotWholeMinute => {
                format!("{e}, such as 2026-04-27T10:00:00Z (no seconds)")
            }
            RangeError::EndsBeforeStart => format!("must be after `{other}`"),
            RangeError::TooLong => format!(
                "{e} (with `{other}`: at most {} hours)",
                max.as_secs() / 3600
            ),
        };
        ApiError::bad(name, why)
    })
}

/// Refuses a range (named by its start, `name`) that begins after the last complete window
/// (`complete`): nothing was counted in it, and its zeros would read as nobody.
pub(super) fn begun(name: &str, r: Range, complete: Timestamp) -> Result<(), ApiError> {
    if r.from < complete {
        return Ok(());
    }
    Err(ApiError::bad(
        name,
        format!(
            "starts a range that has not begun (windows are complete up to {:.0}): nothing was counted in it yet",
            floor_minute(complete)
        ),
    ))
}

/// Notes on a range `name` (`r`): nothing stored (`empty`), or not ended by `complete`.
pub(super) fn range_notes(name: &str, r: Range, empty: bool, complete: Timestamp) -> Vec<String> {
    if empty {
        vec![format!(
            "{name} ({} to {}): no stored data for these zones, so its zeros mean nothing known, not nobody",
            r.from, r.to
        )]
    } else if r.to > complete {
        vec![format!(
            "{name} has not ended (windows are complete up to {complete:.0}): its counts will grow"
        )]
    } else {
        Vec::new()
    }
}
