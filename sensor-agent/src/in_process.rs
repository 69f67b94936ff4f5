//! The agent inside another program: the program hears for it (a simulated crowd in the
//! demo, or a radio the agent has no driver for), and the agent counts, keeps the salt and
//! publishes exactly as `run` does. Typed settings, no config file.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::SensorId;
use jiff::Timestamp;

use tracing::Instrument;

use crate::agent::{sensor_span, shared_counter};
use crate::config::Broker;
use crate::counting::Counter;
use crate::frame::{Heard, Sighting};
use crate::publish::{Publishing, RunError, publish};

/// Settings of an in-process agent: what a config file would say, less the capture.
#[derive(Debug, Clone)]
pub struct InProcessAgent {
    /// This sensor.
    pub sensor_id: SensorId,
    /// Where to publish.
    pub broker: Broker,
    /// The salt authorities whose signed announcements count.
    pub trusted_keys: TrustedKeys,
    /// Counting window.
    pub window: WindowLength,
    /// Sketch precision.
    pub precision: Precision,
    /// Outbox directory (sketches only).
    pub outbox_dir: PathBuf,
    /// Outbox bound in bytes.
    pub outbox_max_bytes: u64,
    /// The sketch kinds published for every window ([`Kind::ALL`] as a live sensor with both
    /// radios; the demo leaves out the physical-device estimate).
    pub kinds: Vec<Kind>,
}

/// Where the embedding program hands in what the sensor heard.
#[derive(Debug, Clone)]
pub struct Ears {
    counter: Arc<Mutex<Counter>>,
}

impl Ears {
    /// Counts one decoded frame heard at `at` (dropped, and counted as such, without a salt).
    pub fn hear(&self, at: Timestamp, heard: Heard) {
        if let Ok(mut c) = self.counter.lock() {
            c.record(at, &Ok(heard));
        }
    }

    /// Counts frames heard late, from `from` on, each in its own window (the embedding
    /// program caught up on what the radio heard while it was busy): windows already
    /// published empty are opened again and published again with these frames, all under
    /// one lock so that none is closed half-filled.
    pub fn hear_late(&self, from: Timestamp, frames: impl IntoIterator<Item = (Timestamp, Heard)>) {
        if let Ok(mut c) = self.counter.lock() {
            c.reopen(from);
            for (at, heard) in frames {
                c.record(at, &Ok(heard));
            }
        }
    }

    /// Counts one decoded frame with its capability fingerprint (a probe request's).
    pub fn hear_sighting(&self, at: Timestamp, sighting: Sighting) {
        if let Ok(mut c) = self.counter.lock() {
            c.record_sighting(at, &Ok(sighting));
        }
    }

    /// Whether the agent holds a salt for `at`, so what it hears then is counted (a new
    /// agent has none until the aggregator's announcement arrives).
    pub fn counting(&self, at: Timestamp) -> bool {
        self.counter.lock().is_ok_and(|c| c.counting(at))
    }
}

impl InProcessAgent {
    /// Starts counting every kind now; the returned future publishes until `shutdown`
    /// completes (spawn it on a runtime).
    pub fn start(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> (Ears, impl Future<Output = Result<(), RunError>>) {
        let counter = shared_counter(
            &self.sensor_id,
            self.window,
            self.precision,
            self.kinds.clone(),
            &crate::frame::FramePolicy::default(),
        );
        let ears = Ears {
            counter: counter.clone(),
        };
        let span = sensor_span(&self.sensor_id);
        let running = async move {
            let publishing = Publishing {
                sensor_id: &self.sensor_id,
                broker: &self.broker,
                trusted_keys: &self.trusted_keys,
                outbox_dir: &self.outbox_dir,
                outbox_max_bytes: self.outbox_max_bytes,
                metrics_listen: None,
            };
            publish(publishing, counter, shutdown).await
        }
        .instrument(span);
        (ears, running)
    }
}
