//! Calibration as an operator does it: clicker counts of a few zones over the morning (here
//! the simulator's truth, as a perfect counter would give it) written as COUNTS.csv, put
//! through the aggregator's `calibrate`, and the fitted factor and floor pasted into the
//! config. Zones nobody counted get the counted zones' median factor, marked as transferred.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crowdflow_aggregator::calibration::{self, KindFit};
use crowdflow_aggregator::config::AggregatorConfig;
use crowdflow_aggregator::store::SqliteStore;
use crowdflow_contract::identity::Kind;
use crowdflow_simulator::Simulation;
use jiff::{SignedDuration, Timestamp};

use crate::DemoError;
use crate::clock::SimClock;

/// Simulated minutes a clicker count spans.
const COUNT_MIN: f64 = 15.0;
/// Every this many zones one has a counter (the first, the fourth, ...).
const COUNTED_EVERY: usize = 3;

/// Real minutes a clicker count spans at `speed`: at most [`COUNT_MIN`] simulated ones, at
/// least one real one (counts are on whole stored minutes). Fast-forwarded, a stored minute
/// holds `speed` simulated ones, and the fit is made on that same basis as the live numbers
/// it serves. Rounded down: at 10x two-minute counts left a two-hour morning 5 counts a
/// zone after its edges, one short of what `calibrate` asks.
fn count_min(speed: f64) -> i64 {
    (COUNT_MIN / speed).floor().max(1.0) as i64
}

/// Simulated time before the live moment that calibration at `speed` needs: room for
/// `calibrate`'s [`calibration::MIN_OBSERVATIONS`] whole counts, plus one for the counts'
/// alignment to whole real minutes.
pub fn morning_needed(speed: f64) -> SignedDuration {
    let counts = calibration::MIN_OBSERVATIONS as f64 + 1.0;
    SignedDuration::from_secs_f64(counts * count_min(speed) as f64 * speed * 60.0)
}

/// The fastest whole speed whose calibration `morning` (simulated) is long enough for.
pub fn fastest_for(morning: SignedDuration) -> Option<u32> {
    (2..=3600)
        .rev()
        .find(|s| morning_needed(f64::from(*s)) <= morning)
}

/// COUNTS.csv of the counted zones over the morning: one row per `count_min` real
/// minutes, people = the mean of the simulator's persons per simulated minute in it.
/// Returns the file's text and how many zones it counts.
pub fn counts(sim: &Simulation, clock: &SimClock) -> (String, usize) {
    let span = count_min(clock.speed);
    let scenario = sim.scenario();
    let truth = sim.truth();
    let counted = counted_zones(sim, &truth, clock);
    let mut persons: BTreeMap<(&str, i64), u32> = BTreeMap::new();
    for row in &truth {
        if let Some(zone) = counted.iter().find(|z| **z == row.zone) {
            persons.insert((zone, row.minute.as_second()), row.persons);
        }
    }
    let first = floor_to(clock.real(scenario.start.as_microsecond()), span * 60, true);
    let mut out = String::from("zone,start,end,people\n");
    for zone in &counted {
        let mut start = first;
        while start + SignedDuration::from_mins(span) <= clock.real_live {
            let end = start + SignedDuration::from_mins(span);
            let (from, to) = (clock.sim_us(start), clock.sim_us(end));
            let minutes: Vec<f64> = (from.div_euclid(60_000_000)..to.div_euclid(60_000_000))
                .map(|m| f64::from(persons.get(&(*zone, m * 60)).copied().unwrap_or(0)))
                .collect();
            if !minutes.is_empty() {
                let mean = minutes.iter().sum::<f64>() / minutes.len() as f64;
                let _ = writeln!(out, "{zone},{start},{end},{}", mean.round());
            }
            start = end;
        }
    }
    (out, counted.len())
}

/// The zones a counter stands at: every [`COUNTED_EVERY`]th of those someone visited before
/// the live moment. A counter at a zone that stayed empty all morning gives counts that
/// cannot be fitted (no spread): at 10x from 11:00 two of four counted zones were empty and
/// refused.
fn counted_zones<'a>(
    sim: &'a Simulation,
    truth: &[crowdflow_simulator::crowd::TruthRow],
    clock: &SimClock,
) -> Vec<&'a str> {
    let live = SimClock::sim_timestamp(clock.sim_live_us).as_second();
    sim.scenario()
        .zones
        .iter()
        .map(|z| z.id.as_str())
        .filter(|id| {
            truth.iter().any(|r| {
                r.zone == *id
                    && r.minute.as_second() < live
                    && f64::from(r.persons) >= calibration::fit::MIN_PERSONS
            })
        })
        .step_by(COUNTED_EVERY)
        .collect()
}

/// `t` rounded down (or up) to a multiple of `seconds`.
fn floor_to(t: Timestamp, seconds: i64, up: bool) -> Timestamp {
    let s = t.as_second();
    let down = s.div_euclid(seconds) * seconds;
    let at = if up && down < s { down + seconds } else { down };
    Timestamp::from_second(at).unwrap_or(t)
}

/// Writes the clicker counts to DATA/clicker-counts.csv, fits them with the aggregator's
/// `calibrate` on `store` (the morning), prints its report, and returns the
/// `[zones.calibration]` body of every zone: fitted where counted, transferred elsewhere.
/// A fit the data cannot support leaves every zone on its guess (and says why).
pub async fn calibrate(
    sim: &Simulation,
    clock: &SimClock,
    data: &Path,
    store: &SqliteStore,
    config: &AggregatorConfig,
) -> Result<BTreeMap<String, String>, DemoError> {
    let (text, zones) = counts(sim, clock);
    let path = data.join("clicker-counts.csv");
    std::fs::write(&path, &text).map_err(|source| DemoError::Counts {
        path: path.clone(),
        source,
    })?;
    println!(
        "  clicker counts of {} zones: {}\n  calibrating (as `crowdflow-aggregator calibrate --config {} --counts {}` does):",
        zones,
        path.display(),
        data.join("aggregator.toml").display(),
        path.display()
    );
    let report =
        match calibration::calibrate(store, &config.zones, &config.rotation, text.as_bytes()).await
        {
            Ok(report) => report,
            Err(e) => {
                println!("  calibration refused, zones keep the guessed factor: {e}");
                return Ok(BTreeMap::new());
            }
        };
    for line in report.to_string().lines() {
        println!("    {line}");
    }
    let fitted: BTreeMap<String, (Kind, KindFit)> = report
        .zones
        .iter()
        .filter_map(|z| Some((z.zone.to_string(), (z.picked?, *z.picked_fit()?))))
        .collect();
    let mut out: BTreeMap<String, String> = fitted
        .iter()
        .map(|(zone, (kind, fit))| (zone.clone(), fit.toml(*kind)))
        .collect();
    if let Some(transfer) = transferred(fitted.values()) {
        for z in &sim.scenario().zones {
            out.entry(z.id.clone()).or_insert_with(|| transfer.clone());
        }
    }
    Ok(out)
}

/// The calibration of a zone nobody counted: the counted zones' median factor of their most
/// picked kind, their largest error, and a floor of its own (learned).
fn transferred<'a>(fits: impl Iterator<Item = &'a (Kind, KindFit)>) -> Option<String> {
    let fits: Vec<&(Kind, KindFit)> = fits.collect();
    let mut picks: BTreeMap<Kind, usize> = BTreeMap::new();
    for (kind, _) in &fits {
        *picks.entry(*kind).or_default() += 1;
    }
    let kind = picks.into_iter().max_by_key(|(_, n)| *n)?.0;
    let mut factors: Vec<f64> = fits
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, f)| f.factor)
        .collect();
    factors.sort_by(f64::total_cmp);
    let factor = factors[factors.len() / 2];
    let error = fits
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, f)| f.error)
        .fold(0.0, f64::max);
    Some(format!(
        "# transferred from the counted zones\n{kind} = {{ factor = {factor}, floor = \"learned\", error = {error:.2} }}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_morning_calibration_needs_grows_with_the_speed() {
        // 10x: counts of one real minute (10 simulated), seven of them.
        assert_eq!(morning_needed(10.0), SignedDuration::from_mins(70));
        // 60x: a real minute holds an hour: seven hours of morning.
        assert_eq!(morning_needed(60.0), SignedDuration::from_hours(7));
        // Koningsdag's five hours (09:00-14:00) calibrate up to 42x.
        assert_eq!(fastest_for(SignedDuration::from_hours(5)), Some(42));
        assert_eq!(fastest_for(SignedDuration::from_mins(10)), None);
    }
}
