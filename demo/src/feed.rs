//! The simulator as the radios of in-process agents: the scenario is played by a
//! [`SimClock`] (real time, or `speed` simulated seconds per real second), and every frame
//! goes to the agent whose sensor heard it, stamped with the real time it stands for. At the
//! scenario's end the crowd is gone (the benchmark's feed starts the next day instead).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crowdflow_agent::frame::Heard;
use crowdflow_agent::in_process::Ears;
use crowdflow_simulator::{Frame, Scenario, Simulation};
use jiff::{SignedDuration, Timestamp};

use crate::clock::SimClock;

/// A simulated crowd playing live to in-process agents.
#[derive(Debug, Clone)]
pub struct CrowdFeed {
    stop: Arc<AtomicBool>,
}

impl CrowdFeed {
    /// Starts playing `scenario` from its start, now, at `speed` (e.g. 60: a simulated hour
    /// per minute) to `ears`, one per sensor of the scenario, in its order; day after day
    /// (seed + 1 each), for load that lasts (the scale benchmark's soak).
    pub fn start(scenario: Scenario, speed: f64, ears: Vec<Ears>) -> CrowdFeed {
        let feed = CrowdFeed {
            stop: Arc::new(AtomicBool::new(false)),
        };
        let stop = feed.stop.clone();
        std::thread::spawn(move || {
            let mut scenario = scenario;
            while !stop.load(Ordering::Relaxed) {
                let clock = SimClock {
                    sim_live_us: scenario.start.as_microsecond(),
                    real_live: Timestamp::now(),
                    speed: speed.max(1.0),
                };
                let sim = Simulation::new(scenario.clone());
                play(sim, clock, clock.real_live, &ears, &stop);
                scenario.seed = scenario.seed.wrapping_add(1);
            }
        });
        feed
    }

    /// Goes on playing `sim` live by `clock` to `ears`, from real time `from` on (the end of
    /// what was written as history; a minute boundary, so the agents' first window is whole).
    pub fn resume(sim: Simulation, clock: SimClock, from: Timestamp, ears: Vec<Ears>) -> CrowdFeed {
        let feed = CrowdFeed {
            stop: Arc::new(AtomicBool::new(false)),
        };
        let stop = feed.stop.clone();
        std::thread::spawn(move || {
            play(sim, clock, from, &ears, &stop);
            // The day is over (the replay clock goes on, so a next day from its morning
            // would contradict it): the sensors keep reporting an empty city.
            if !stop.load(Ordering::Relaxed) {
                tracing::info!("the simulated day has ended: restart the demo for another");
            }
        });
        feed
    }

    /// Stops the playback.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Simulated time played at once, at most: a feed that fell behind real time (a big crowd
/// fast-forwarded on a busy machine) catches up in steps of this, so the frames held at once
/// stay bounded. Played in one piece, a lag's frames grew the scale benchmark's process to
/// 8 GB.
const MAX_STEP_US: i64 = 1_000_000;

/// Real time behind which a lagging feed says so (once).
const LAG_WARNING: SignedDuration = SignedDuration::from_secs(10);

fn play(mut sim: Simulation, clock: SimClock, from: Timestamp, ears: &[Ears], stop: &AtomicBool) {
    let mut frames: Vec<Frame> = Vec::new();
    let sim_end = sim.scenario().end.as_microsecond();
    let mut warned = false;
    let mut heard: Vec<Vec<(Timestamp, Heard)>> = vec![Vec::new(); ears.len()];
    while !stop.load(Ordering::Relaxed) && sim.now() < sim_end {
        std::thread::sleep(Duration::from_millis(100));
        let target = clock.sim_us(Timestamp::now()).min(sim_end);
        while sim.now() < target && !stop.load(Ordering::Relaxed) {
            let step_from = clock.real(sim.now()).max(from);
            frames.clear();
            sim.advance((sim.now() + MAX_STEP_US).min(target), &mut frames);
            for f in &frames {
                let at = clock.real(f.t_us);
                // Without the capability fingerprint: the demo's sensors publish no
                // physical-device estimate (settings::published_kinds), so it would only be
                // grouped and dropped.
                if let (Some(sensor), true) = (heard.get_mut(f.sensor), at >= from) {
                    sensor.push((at, f.heard()));
                }
            }
            // Late frames (the feed starting after the agents published the windows since
            // `from` empty, or a busy machine) go into their own windows, not all into the
            // oldest open one: at 10x the first live minute read 0 people and the next
            // about double, with two false level alerts.
            for (sensor, frames) in ears.iter().zip(heard.iter_mut()) {
                if !frames.is_empty() {
                    sensor.hear_late(step_from, frames.drain(..));
                }
            }
        }
        let behind = Timestamp::now().duration_since(clock.real(sim.now()));
        if behind > LAG_WARNING && !warned {
            warned = true;
            tracing::warn!(
                behind_s = behind.as_secs(),
                "the simulated crowd plays behind real time: this machine cannot simulate it at this speed (a slower --speed keeps up)"
            );
        }
    }
}
