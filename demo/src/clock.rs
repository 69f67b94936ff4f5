//! The simulated day on the real clock: at real time `real_live` the simulation is at
//! `sim_live`, and it runs `speed` simulated seconds per real second. Everything before
//! `sim_live` (the morning) is written into history at real times before `real_live`;
//! everything after is heard live.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crowdflow_simulator::Scenario;

/// The simulated time the demo goes live at when the scenario holds it: early afternoon,
/// when a Koningsdag crowd is near its peak.
pub const DEFAULT_LIVE_AT: Time = Time::constant(14, 0, 0, 0);

/// Maps simulated time (unix microseconds of the scenario's day) to real time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimClock {
    /// Simulated time that is played live at `real_live`.
    pub sim_live_us: i64,
    /// The real moment of `sim_live_us`.
    pub real_live: Timestamp,
    /// Simulated seconds per real second.
    pub speed: f64,
}

impl SimClock {
    /// The real time simulated time `sim_us` is stamped with.
    pub fn real(&self, sim_us: i64) -> Timestamp {
        let offset = (sim_us - self.sim_live_us) as f64 / self.speed;
        self.real_live
            .checked_add(SignedDuration::from_micros(offset as i64))
            .unwrap_or(self.real_live)
    }

    /// The simulated time at real time `real`.
    pub fn sim_us(&self, real: Timestamp) -> i64 {
        let elapsed = real.duration_since(self.real_live).as_micros() as f64;
        self.sim_live_us + (elapsed * self.speed) as i64
    }

    /// The simulated moment `sim_us` as a timestamp.
    pub fn sim_timestamp(sim_us: i64) -> Timestamp {
        Timestamp::from_microsecond(sim_us).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Why `--start` cannot be used with the scenario.
#[derive(Debug, thiserror::Error)]
#[error(
    "--start {at}: the scenario {name:?} runs {from} to {to} ({time_zone}); choose a time in between"
)]
pub struct StartOutside {
    at: Time,
    name: String,
    from: Time,
    to: Time,
    time_zone: String,
}

/// The simulated moment to go live at: `start` (local time on the scenario's day), or
/// [`DEFAULT_LIVE_AT`] when the scenario holds it, else the scenario's start (no morning).
pub fn live_at(scenario: &Scenario, start: Option<Time>) -> Result<Timestamp, StartOutside> {
    let tz = TimeZone::get(&scenario.time_zone).unwrap_or(TimeZone::UTC);
    let local = |t: Timestamp| t.to_zoned(tz.clone());
    let day = local(scenario.start).date();
    let on_day = |time: Time| {
        day.to_datetime(time)
            .to_zoned(tz.clone())
            .map(|z| z.timestamp())
            .ok()
    };
    let inside = |t: &Timestamp| *t >= scenario.start && *t < scenario.end;
    match start {
        Some(at) => on_day(at).filter(inside).ok_or_else(|| StartOutside {
            at,
            name: scenario.name.clone(),
            from: local(scenario.start).time(),
            to: local(scenario.end).time(),
            time_zone: scenario.time_zone.clone(),
        }),
        None => Ok(on_day(DEFAULT_LIVE_AT)
            .filter(inside)
            .unwrap_or(scenario.start)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_and_real_time_map_both_ways() {
        let clock = SimClock {
            sim_live_us: 1_000_000_000,
            real_live: "2026-12-01T12:00:00Z".parse().expect("ts"),
            speed: 60.0,
        };
        assert_eq!(
            clock.real(1_000_000_000 - 3_600_000_000),
            "2026-12-01T11:59:00Z".parse::<Timestamp>().expect("ts"),
            "an hour before live, at 60x: a minute before"
        );
        let real = "2026-12-01T12:00:30Z".parse().expect("ts");
        assert_eq!(clock.sim_us(real), 1_000_000_000 + 1_800_000_000);
    }
}
