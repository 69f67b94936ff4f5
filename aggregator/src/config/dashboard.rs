//! `[dashboard]`: the page title, an optional map background, and the clock of a replayed
//! event.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::{FieldError, field};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDashboard {
    title: Option<String>,
    tile_url: Option<String>,
    tile_attribution: Option<String>,
    replay_clock: Option<RawReplayClock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplayClock {
    real: String,
    shows: String,
    time_zone: String,
    #[serde(default = "one")]
    speed: f64,
}

fn one() -> f64 {
    1.0
}

/// The clock of an event being replayed (a drill on recorded data, the demo's simulated
/// day): at `real` the replay shows `shows`, and its time runs `speed` times as fast. The
/// dashboard's header and the API show the replay's time beside the data, which is stored
/// at real times.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReplayClock {
    /// A real moment.
    #[schema(value_type = String, format = DateTime)]
    pub real: Timestamp,
    /// The replay's time at `real`.
    #[schema(value_type = String, format = DateTime)]
    pub shows: Timestamp,
    /// IANA time zone the replay's time is shown in.
    pub time_zone: String,
    /// Replay seconds per real second.
    pub speed: f64,
}

impl ReplayClock {
    /// The replay's time at real time `now`.
    pub fn at(&self, now: Timestamp) -> Timestamp {
        let real = now.duration_since(self.real).as_secs_f64() * self.speed;
        self.shows
            .checked_add(jiff::SignedDuration::from_secs_f64(real))
            .unwrap_or(self.shows)
    }
}

/// What the dashboard shows besides the numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// Shown in the page header ("crowdflow" unless set).
    pub title: String,
    /// Optional background map: an XYZ tile URL with `{z}`, `{x}` and `{y}`. Event networks
    /// are often offline, so the plan never needs it.
    pub tile_url: Option<String>,
    /// Attribution the tile provider requires.
    pub tile_attribution: Option<String>,
    /// The clock of a replayed event, when one is replayed.
    pub replay_clock: Option<ReplayClock>,
}

impl Dashboard {
    /// The tile server's origin (`https://host:port`), which the page's CSP must allow.
    pub fn tile_origin(&self) -> Option<&str> {
        let url = self.tile_url.as_deref()?;
        let after_scheme = url.find("://")? + 3;
        let end = url[after_scheme..]
            .find('/')
            .map_or(url.len(), |i| after_scheme + i);
        Some(&url[..end])
    }
}

pub(super) fn dashboard(raw: RawDashboard) -> Result<Dashboard, FieldError> {
    if let Some(url) = &raw.tile_url {
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let placeholders_ok = ["{z}", "{x}", "{y}"].iter().all(|p| url.contains(p));
        let safe = !url.contains(['"', '\'', ' ', ';']);
        if !(scheme_ok && placeholders_ok && safe) {
            return Err(field(
                "dashboard.tile_url",
                "must be an http(s) XYZ tile URL with {z}, {x} and {y}, e.g. https://tiles.example.org/{z}/{x}/{y}.png",
            ));
        }
    }
    let replay_clock = raw.replay_clock.as_ref().map(replay_clock).transpose()?;
    Ok(Dashboard {
        title: raw.title.unwrap_or_else(|| "crowdflow".into()),
        tile_url: raw.tile_url,
        tile_attribution: raw.tile_attribution,
        replay_clock,
    })
}

fn replay_clock(raw: &RawReplayClock) -> Result<ReplayClock, FieldError> {
    let moment = |name: &str, text: &str| {
        text.parse::<Timestamp>().map_err(|_| {
            field(
                format!("dashboard.replay_clock.{name}"),
                "an RFC 3339 time, e.g. 2026-04-27T12:00:00Z",
            )
        })
    };
    TimeZone::get(&raw.time_zone).map_err(|_| {
        field(
            "dashboard.replay_clock.time_zone",
            "an IANA time zone, e.g. Europe/Amsterdam",
        )
    })?;
    if !(raw.speed.is_finite() && (1.0..=3600.0).contains(&raw.speed)) {
        return Err(field(
            "dashboard.replay_clock.speed",
            "replay seconds per real second, 1 to 3600",
        ));
    }
    Ok(ReplayClock {
        real: moment("real", &raw.real)?,
        shows: moment("shows", &raw.shows)?,
        time_zone: raw.time_zone.clone(),
        speed: raw.speed,
    })
}
