//! The simulator as the radios of in-process agents: the scenario is played by a
//! [`SimClock`] (real time, or `speed` simulated seconds per real second), and every frame
//! goes to the agent whose sensor heard it, stamped with the real time it stands for. At the
//! scenario's end the next day starts (seed + 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crowdflow_agent::in_process::Ears;
use crowdflow_simulator::{Frame, Scenario, Simulation};
use jiff::Timestamp;

use crate::clock::SimClock;

/// A simulated crowd playing live to in-process agents.
#[derive(Debug, Clone)]
pub struct CrowdFeed {
    stop: Arc<AtomicBool>,
}

impl CrowdFeed {
    /// Starts playing `scenario` from its start, now, at `speed` (e.g. 60: a simulated hour
    /// per minute) to `ears`, one per sensor of the scenario, in its order.
    pub fn start(scenario: Scenario, speed: f64, ears: Vec<Ears>) -> CrowdFeed {
        let clock = SimClock {
            sim_live_us: scenario.start.as_microsecond(),
            real_live: Timestamp::now(),
            speed: speed.max(1.0),
        };
        CrowdFeed::resume(Simulation::new(scenario), clock, ears)
    }

    /// Goes on playing `sim` live by `clock` to `ears`. Frames of simulated time whose real
    /// time has passed (while the morning was written, say) are not heard: a radio hears
    /// only the present.
    pub fn resume(sim: Simulation, clock: SimClock, ears: Vec<Ears>) -> CrowdFeed {
        let feed = CrowdFeed {
            stop: Arc::new(AtomicBool::new(false)),
        };
        let stop = feed.stop.clone();
        std::thread::spawn(move || play(sim, clock, &ears, &stop));
        feed
    }

    /// Stops the playback.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn play(mut sim: Simulation, mut clock: SimClock, ears: &[Ears], stop: &AtomicBool) {
    let mut frames: Vec<Frame> = Vec::new();
    let started = Timestamp::now();
    while !stop.load(Ordering::Relaxed) {
        let sim_end = sim.scenario().end.as_microsecond();
        while !stop.load(Ordering::Relaxed) && sim.now() < sim_end {
            std::thread::sleep(Duration::from_millis(100));
            let target = clock.sim_us(Timestamp::now());
            frames.clear();
            sim.advance(target.min(sim_end), &mut frames);
            for f in &frames {
                let at = clock.real(f.t_us);
                if let (Some(sensor), true) = (ears.get(f.sensor), at >= started) {
                    sensor.hear(at, f.heard());
                }
            }
        }
        // The next day: the same programme, another crowd, from now on.
        let mut scenario = sim.scenario().clone();
        scenario.seed = scenario.seed.wrapping_add(1);
        clock = SimClock {
            sim_live_us: scenario.start.as_microsecond(),
            real_live: Timestamp::now(),
            speed: clock.speed,
        };
        sim = Simulation::new(scenario);
    }
}
