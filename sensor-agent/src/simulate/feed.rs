//! The simulator as a live capture source for agents running in-process (the demo): the
//! scenario is played in compressed time, `speed` simulated seconds per real second, and
//! every frame goes to the counter of the agent whose sensor heard it, stamped with the
//! real time it stands for. At the scenario's end the next day starts (seed + 1).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{Frame, Scenario, Simulation};
use crate::agent::Feed;
use crate::counter::Counter;

type Slots = Arc<Mutex<Vec<Option<Arc<Mutex<Counter>>>>>>;

/// A simulated crowd playing live to in-process agents.
#[derive(Debug, Clone)]
pub struct CrowdFeed {
    slots: Slots,
    stop: Arc<AtomicBool>,
}

impl CrowdFeed {
    /// Starts playing `scenario` now at `speed` (e.g. 60: a simulated hour per minute).
    pub fn start(scenario: Scenario, speed: f64) -> CrowdFeed {
        let feed = CrowdFeed {
            slots: Arc::new(Mutex::new(vec![None; scenario.sensors.len()])),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (slots, stop) = (feed.slots.clone(), feed.stop.clone());
        std::thread::spawn(move || play(scenario, speed.max(1.0), &slots, &stop));
        feed
    }

    /// The feed for the agent of sensor `index` (its counter registers when the agent starts).
    pub fn for_sensor(&self, index: usize) -> Feed {
        let slots = self.slots.clone();
        Box::new(move |counter| {
            if let Ok(mut s) = slots.lock()
                && let Some(slot) = s.get_mut(index)
            {
                *slot = Some(counter);
            }
        })
    }

    /// Stops the playback.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn play(mut scenario: Scenario, speed: f64, slots: &Slots, stop: &AtomicBool) {
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
            let Ok(slots) = slots.lock() else { return };
            for f in &frames {
                let Some(Some(counter)) = slots.get(f.sensor) else {
                    continue;
                };
                let offset = (f.t_us - sim_start) as f64 / speed;
                let at = real_start + SignedDuration::from_micros(offset as i64);
                if let Ok(mut c) = counter.lock() {
                    c.record(at, &Ok(f.heard()));
                }
            }
        }
        // The next day: the same programme, another crowd.
        scenario.seed = scenario.seed.wrapping_add(1);
    }
}
