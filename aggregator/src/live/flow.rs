//! Who comes and goes: a zone's arrivals and departures in persons a minute, its net rate,
//! and when it will be full.
//!
//! Addresses that rotate cannot say who arrived: a phone's new Wi-Fi address, a BLE
//! address's 15-minute rotation or a fingerprint slot reshuffled all read as one device
//! gone and one new, hundreds a minute in a busy zone. Only globally administered Wi-Fi
//! addresses stay the same for the whole visit. Arrivals are therefore measured on them, as
//! a sample (the ratio estimator of survey sampling): the devices of that kind heard in a
//! minute and in none of the [`NEW_AFTER_MIN`] minutes before, summed over the occupancy
//! window's minutes, times the zone's persons per such device heard a minute. Their interval is the Poisson
//! score interval of that count (a few a minute) widened by the sketch's and the people
//! figure's bounds.
//!
//! The net rate is the least-squares slope of the per-minute people over the last
//! [`NET_MIN`] complete minutes, with its t-interval: a rate of now, not of a quarter hour
//! ago. Departures are arrivals minus the net rate, so the three always agree.

use std::collections::BTreeMap;

use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::config::Zone;
use crate::query::{Count, Overlap, count, difference, per_salt};
use crate::store::ZoneSketch;

/// Minutes the net rate is fitted on: short enough to follow a surge within minutes, long
/// enough that one noisy minute does not set the sign.
pub const NET_MIN: i64 = 6;
/// Time to capacity is given up to this many minutes ahead; beyond, the rate of the last
/// minutes says nothing about whether a zone will fill (and "full in ~41879 min" is noise).
pub const CAPACITY_HORIZON_MIN: f64 = 60.0;
/// Fewest stable-address devices present to scale arrivals from: with fewer, the persons
/// each stands for vary too much between minutes.
pub const MIN_SAMPLE: f64 = 10.0;
/// Arrivals are flagged unreliable when more than this share of the devices heard in the
/// window arrived in it: the crowd present is then mostly the surge itself, and persons per
/// present device cannot be read from it (a simulated surge into an empty square, stays of
/// 3-7 minutes, read 3 times the true arrivals).
pub const TURNOVER_MAX: f64 = 0.5;
/// The device kind whose addresses stay the same for a whole visit.
pub const STABLE_KIND: Kind = Kind::Wifi;
/// A device is new to a zone when none of its sensors heard it in this many minutes before:
/// phones probe every minute or two when in use, but an idle one can go quiet for minutes,
/// and reading it back as an arrival would count a visitor twice.
pub const NEW_AFTER_MIN: i64 = 15;

/// Who came and went in the zone's last complete minute, and where that leads.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ZoneFlow {
    /// The minute measured (the last complete one).
    #[schema(value_type = String, format = DateTime)]
    pub minute: Timestamp,
    /// The device kind sampled for arrivals: `wifi` (global addresses, stable for a visit).
    pub kind: String,
    /// Devices of that kind present over the occupancy window's minutes up to `minute` (heard
    /// in the window, less those that arrived in it): the sample arrivals are scaled from.
    pub sample_devices: f64,
    /// Persons arriving a minute, over the occupancy window's minutes up to `minute`: the
    /// sample's devices new to the zone (heard in none of the [`NEW_AFTER_MIN`] minutes before)
    /// times the persons per sampled device present, with the Poisson interval of that
    /// count. Null when the sample holds fewer than [`MIN_SAMPLE`] devices (not measured:
    /// no number, not a zero); `unreliable` for the [`NEW_AFTER_MIN`] minutes after a salt
    /// change (the daily rotation), when devices cannot be linked across it, and when most of
    /// the window's devices arrived in it ([`TURNOVER_MAX`]).
    pub inflow: Option<Overlap>,
    /// Persons leaving a minute: arrivals minus the net rate (never below 0: arrivals are
    /// raised to the net rate where the sample read fewer, so in - out = net). Null when
    /// arrivals or the net rate are not known.
    pub outflow: Option<Overlap>,
    /// People in `minute` by the net rate's line (the occupancy window's mean lags a rising
    /// crowd by half the window): what time to capacity counts from.
    pub people_now: Option<f64>,
    /// Change of people present per minute: the slope over the last [`NET_MIN`] complete
    /// minutes (null with fewer than 3 of them).
    pub net_people_per_min: Option<f64>,
    /// The net rate's 95 % interval, persons per minute (the fit's, with the people's
    /// calibration error added in quadrature).
    pub net_lower: Option<f64>,
    /// The net rate's 95 % interval, persons per minute.
    pub net_upper: Option<f64>,
    /// Minutes until the zone holds its capacity at the net rate, from `people_now`: 0 when
    /// it does already;
    /// null when it is not surely filling (the interval's lower end at or below 0), has no
    /// capacity, or would take more than [`CAPACITY_HORIZON_MIN`].
    pub minutes_to_capacity: Option<f64>,
}

/// A least-squares slope with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slope {
    /// The fitted value at offset 0 (the last minute): where the line is now.
    pub level: f64,
    /// Units per minute.
    pub rate: f64,
    /// Lower end of the 95 % interval.
    pub lower: f64,
    /// Upper end of the 95 % interval.
    pub upper: f64,
}

/// The slope of `points` (minute offset, value), with Student's t interval for `n - 2`
/// degrees of freedom; `None` with fewer than 3 points.
pub fn slope(points: &[(f64, f64)]) -> Option<Slope> {
    let n = points.len();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let my = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let rate = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    let sse: f64 = points
        .iter()
        .map(|p| (p.1 - (my + rate * (p.0 - mx))).powi(2))
        .sum();
    let se = (sse / (nf - 2.0) / sxx).sqrt();
    // Two-sided 95 % quantiles of Student's t for 1 to 8 degrees of freedom.
    const T95: [f64; 8] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306];
    let t = T95.get(n - 3).copied().unwrap_or(2.262);
    Some(Slope {
        level: my - rate * mx,
        rate,
        lower: rate - t * se,
        upper: rate + t * se,
    })
}

/// The Poisson score interval (95 %) around `n` events: `n + 1.92 -+ 1.96 sqrt(n + 0.96)`.
fn poisson_bounds(lower_n: f64, upper_n: f64) -> (f64, f64) {
    const Z: f64 = 1.96;
    let half = Z * Z / 2.0;
    let lower = (lower_n + half - Z * (lower_n + half / 2.0).sqrt()).max(0.0);
    let upper = upper_n + half + Z * (upper_n + half / 2.0).sqrt();
    (lower, upper)
}

/// Arrivals, departures and the net rate of `zone` in `minute`, from the stable-address
/// sketches and the per-minute people `minutes` (oldest first, ending at `minute`).
pub fn zone_flow(
    zone: &Zone,
    sketches: &BTreeMap<Kind, Vec<ZoneSketch>>,
    minute: Timestamp,
    people: Count,
    minutes: &[(Timestamp, Count)],
    p: Precision,
) -> Option<ZoneFlow> {
    let stable = sketches.get(&STABLE_KIND)?;
    let window = i64::from(zone.occupancy_window_min.max(1));
    let within = |from: Timestamp, to: Timestamp| {
        per_salt(
            stable.iter().filter(|z| z.bucket >= from && z.bucket < to),
            p,
        )
    };
    // New devices of each of the window's minutes, summed: a few a minute are too few to
    // read one minute by.
    let mut new = Overlap::ZERO;
    let mut heard = false;
    for back in 0..window {
        let m = minute - SignedDuration::from_mins(back);
        let last = within(m, m + SignedDuration::from_mins(1));
        heard |= !last.is_empty();
        let d = difference(
            &within(m - SignedDuration::from_mins(NEW_AFTER_MIN), m),
            &last,
        );
        new = Overlap {
            estimate: new.estimate + d.estimate,
            lower: new.lower + d.lower,
            upper: new.upper + d.upper,
            unreliable: false,
            crosses_epochs: new.crosses_epochs || d.crosses_epochs,
        };
    }
    if !heard {
        return None;
    }
    let net = slope(
        &minutes
            .iter()
            .filter(|(m, _)| *m > minute - SignedDuration::from_mins(NET_MIN) && *m <= minute)
            .map(|(m, c)| {
                (
                    (m.as_second() - minute.as_second()) as f64 / 60.0,
                    c.estimate,
                )
            })
            .collect::<Vec<_>>(),
    );
    // The slope of people carries their calibration's error too: a factor off by 30 % gives
    // a rate off by 30 %. Added in quadrature to the fit's own interval.
    let relative = if people.estimate > 0.0 {
        (people.upper - people.lower) / 2.0 / people.estimate
    } else {
        0.0
    };
    let net = net.map(|n| {
        let mut half = ((n.upper - n.lower) / 2.0).hypot(n.rate.abs() * relative);
        // A line through identical minutes (an empty zone: 0, 0, 0) fits exactly, but a
        // change within the people's own interval over the fitted minutes would not have
        // shown: no zero-width rate.
        if half <= 0.0 {
            half = (people.upper - people.lower) / 2.0 / NET_MIN as f64;
        }
        Slope {
            lower: n.rate - half,
            upper: n.rate + half,
            ..n
        }
    });
    // The crowd's change over the window, relative to it: how much of the window the
    // arrivals and departures were there for.
    let growth = match net {
        Some(n) if people.estimate > 0.0 => n.rate * window as f64 / people.estimate,
        _ => 0.0,
    };
    let first = minute - SignedDuration::from_mins(window - 1);
    let heard_in_window = count(&within(first, minute + SignedDuration::from_mins(1)));
    let sample = present(&heard_in_window, &new, growth);
    let mut inflow = scaled_arrivals(&new, &sample, people, window as f64);
    if let Some(inflow) = inflow.as_mut() {
        // Most of the window's devices arrived in it (a surge into an empty zone, stays
        // shorter than the window): who was present, and so the persons each stands for,
        // is not known.
        if new.estimate > TURNOVER_MAX * heard_in_window.estimate {
            inflow.unreliable = true;
        }
        // Departures are never negative, so arrivals are at least the net growth: a sample
        // that read fewer arrivals than the crowd grew by is raised to it, and in - out = net.
        if let Some(n) = net {
            inflow.estimate = inflow.estimate.max(n.rate);
            inflow.lower = inflow.lower.max(n.lower);
            inflow.upper = inflow.upper.max(inflow.estimate);
        }
    }
    let outflow = inflow.zip(net).map(|(inflow, n)| Overlap {
        estimate: (inflow.estimate - n.rate).max(0.0),
        lower: (inflow.lower - n.upper).max(0.0),
        upper: (inflow.upper - n.lower).max(0.0),
        unreliable: inflow.unreliable,
        crosses_epochs: inflow.crosses_epochs,
    });
    // The line's value now, kept inside the last minute's own interval: after a peak a line
    // fitted over minutes of rise and fall stays high, and read "at capacity" for a zone at
    // 79 % of it.
    let last = minutes.iter().find(|(m, _)| *m == minute).map(|(_, c)| *c);
    let people_now = net.map(|n| {
        last.map_or(n.level, |c| n.level.clamp(c.lower, c.upper))
            .max(0.0)
    });
    Some(ZoneFlow {
        minute,
        kind: STABLE_KIND.as_str().to_owned(),
        sample_devices: sample.estimate,
        inflow,
        outflow,
        people_now,
        net_people_per_min: net.map(|n| n.rate),
        net_lower: net.map(|n| n.lower),
        net_upper: net.map(|n| n.upper),
        minutes_to_capacity: to_capacity(zone.capacity, people_now.unwrap_or(people.estimate), net),
    })
}

/// The sampled devices present over the window, on average: those heard in it (`heard`, the
/// window's union) less half of those that arrived and half of those that left in it (each
/// was there for about half the window). Departures are not seen yet (a device is gone only
/// after minutes of silence) but follow from the crowd's relative change over the window,
/// `growth` (net rate x window / people): departed = arrived - growth x present. Kept
/// between `heard - new` and `heard`.
///
/// Not the devices heard in a minute: a phone probes every 20 to 90 s and not every burst is
/// caught, so a minute hears only part of the phones present, and persons per device heard
/// a minute scaled arrivals 1.4 times too high on the three-squares simulation. Over the
/// window nearly every present phone is heard at least once.
fn present(heard: &Count, new: &Overlap, growth: f64) -> Count {
    // present = heard - (new + departed) / 2 with departed = new - growth x present.
    let solve = |heard: f64, new: f64| {
        let p = (heard - new) / (1.0 - growth / 2.0).max(f64::EPSILON);
        p.clamp((heard - new).max(0.0), heard.max(0.0))
    };
    Count {
        estimate: solve(heard.estimate, new.estimate),
        lower: solve(heard.lower, new.upper),
        upper: solve(heard.upper, new.lower),
        upper_bound: heard.upper_bound,
    }
}

/// Persons arriving a minute: `new` sampled devices over `minutes` times the persons per
/// sampled device present; `None` when the sample is too small to scale from
/// ([`MIN_SAMPLE`]).
fn scaled_arrivals(new: &Overlap, sample: &Count, people: Count, minutes: f64) -> Option<Overlap> {
    if sample.estimate < MIN_SAMPLE || sample.lower <= 0.0 {
        return None;
    }
    let ratio = people.estimate / sample.estimate / minutes;
    let (lower_n, upper_n) = poisson_bounds(new.lower, new.upper);
    let lower = lower_n * people.lower / sample.upper / minutes;
    let upper = upper_n * people.upper / sample.lower / minutes;
    let estimate = new.estimate * ratio;
    Some(Overlap {
        estimate,
        lower: lower.min(estimate),
        upper: upper.max(estimate),
        // Across a salt change the same device has two hashes: every device of the new
        // salt reads as new until the lookback holds only it.
        unreliable: new.crosses_epochs,
        crosses_epochs: new.crosses_epochs,
    })
}

/// Minutes to `capacity` at `net`, when the zone is surely filling and it is near enough.
fn to_capacity(capacity: Option<u64>, people: f64, net: Option<Slope>) -> Option<f64> {
    let room = capacity? as f64 - people;
    if room <= 0.0 {
        return Some(0.0);
    }
    let net = net?;
    if net.lower <= 0.0 {
        return None;
    }
    let minutes = room / net.rate;
    (minutes <= CAPACITY_HORIZON_MIN).then_some(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_of_a_line_is_its_rate_and_level_with_a_narrow_interval() {
        let points: Vec<(f64, f64)> = (0..6)
            .map(|i| (f64::from(i), 100.0 + 75.0 * f64::from(i)))
            .collect();
        let s = slope(&points).expect("slope");
        assert!(
            (s.rate - 75.0).abs() < 1e-9 && (s.upper - s.lower) < 1e-6,
            "{s:?}"
        );
        // Offsets run up to 0, the last minute: the level is where the crowd is now, not
        // the window's mean (2.5 minutes behind a surge).
        let recent: Vec<(f64, f64)> = (-5..=0)
            .map(|i| (f64::from(i), 700.0 + 75.0 * f64::from(i)))
            .collect();
        let s = slope(&recent).expect("slope");
        assert!((s.level - 700.0).abs() < 1e-9, "{s:?}");
        let noisy = [(0.0, 10.0), (1.0, 30.0), (2.0, 5.0), (3.0, 25.0)];
        let s = slope(&noisy).expect("slope");
        assert!(s.lower < 0.0 && s.upper > 0.0, "no sure sign: {s:?}");
        assert!(slope(&[(0.0, 1.0), (1.0, 2.0)]).is_none());
    }

    #[test]
    fn time_to_capacity_needs_a_sure_rate_within_the_hour() {
        let rate = |rate: f64, lower: f64| {
            Some(Slope {
                level: 0.0,
                rate,
                lower,
                upper: 2.0 * rate - lower,
            })
        };
        assert_eq!(
            to_capacity(Some(704), 360.0, rate(75.0, 60.0)),
            Some(344.0 / 75.0)
        );
        assert_eq!(to_capacity(Some(704), 800.0, None), Some(0.0));
        assert_eq!(
            to_capacity(Some(704), 360.0, rate(5.0, -1.0)),
            None,
            "not surely filling"
        );
        assert_eq!(
            to_capacity(Some(10_000), 360.0, rate(2.0, 1.0)),
            None,
            "beyond the hour"
        );
        assert_eq!(to_capacity(None, 360.0, rate(75.0, 60.0)), None);
    }

    #[test]
    fn present_devices_count_arrivals_and_departures_as_half_there() {
        let heard = Count {
            estimate: 100.0,
            lower: 100.0,
            upper: 100.0,
            upper_bound: false,
        };
        let new = |n: f64| Overlap {
            estimate: n,
            lower: n,
            upper: n,
            unreliable: false,
            crosses_epochs: false,
        };
        // A steady crowd: as many left as arrived, both half there.
        assert_eq!(present(&heard, &new(10.0), 0.0).estimate, 90.0);
        // Filling, nobody left: 40 arrivals half there, 80 present on average (growth 40/80).
        assert!((present(&heard, &new(40.0), 0.5).estimate - 80.0).abs() < 1e-9);
        // Never more than heard, never fewer than heard less the arrivals.
        assert_eq!(present(&heard, &new(40.0), 5.0).estimate, 100.0);
        assert_eq!(present(&heard, &new(40.0), -5.0).estimate, 60.0);
    }

    #[test]
    fn poisson_bounds_cover_small_counts() {
        let (l, u) = poisson_bounds(0.0, 0.0);
        assert!(l == 0.0 && (3.0..4.5).contains(&u), "{l} {u}");
        let (l, u) = poisson_bounds(100.0, 100.0);
        assert!(
            (80.0..83.0).contains(&l) && (121.0..124.0).contains(&u),
            "{l} {u}"
        );
    }
}
