//! The simulator as the radios of in-process agents: the scenario is played in compressed
//! time, `speed` simulated seconds per real second, and every frame goes to the agent whose
//! sensor heard it, stamped with the real time it stands for. At the scenario's end the next
//! day starts (seed + 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crowdflow_agent::in_process::Ears;
use crowdflow_simulator::{Frame, Scenario, Simulation};
use jiff::{SignedDuration, Timestamp};

/// A simulated crowd playing live to in-process agents.
#[derive(Debug, Clone)]
pub struct CrowdFeed {
    stop: Arc<AtomicBool>,
}

impl CrowdFeed {
    /// Starts playing `scenario` now at `speed` (e.g. 60: a simulated hour per minute) to
    /// `ears`, one per sensor of the scenario, in its order.
    pub fn start(scenario: Scenario, speed: f64, ears: Vec<Ears>) -> CrowdFeed {
        let feed = CrowdFeed {
            stop: Arc::new(AtomicBool::new(false)),
        };
        let stop = feed.stop.clone();
        std::thread::spawn(move || play(scenario, speed.max(1.0), &ears, &stop));
        feed
    }

    /// Stops the playback.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn play(mut scenario: Scenario, speed: f64, ears: &[Ears], stop: &AtomicBool) {
    let mut frames: Vec<Frame> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let real_start = Timestamp::now();
        let sim_start = scenario.start.as_microsecond();
        let sim_end = scenario.end.as_microsecond();
        let mut sim = Simulation::new(scenario.clone());
        while !stop.load(Ordering::Relaxed) && sim.now() < sim_end {
            std::thread::sleep(Duration::from_millis(100));
            let elapsed = Timestamp::now().duration_since(real_start).as_secs_f64();
            let target = sim_start + (elapsed * speed * 1e6) as i64;
            frames.clear();
            sim.advance(target.min(sim_end), &mut frames);
            for f in &frames {
                let Some(sensor) = ears.get(f.sensor) else {
                    continue;
                };
                let offset = (f.t_us - sim_start) as f64 / speed;
                sensor.hear(
                    real_start + SignedDuration::from_micros(offset as i64),
                    f.heard(),
                );
            }
        }
        // The next day: the same programme, another crowd.
        scenario.seed = scenario.seed.wrapping_add(1);
    }
}
