//! `crowdflow-agent run`: the stages wired together. Capture threads hear
//! ([`crate::capture`]), frames are decoded ([`crate::frame`]) and counted
//! ([`crate::counting`]), and one loop publishes the sketches ([`crate::publish`]).

use std::future::Future;
use std::sync::{Arc, Mutex};

use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::SensorId;
use tracing::Instrument;

use crate::capture::{ble_scan, paced, wifi_monitor};
use crate::config::{AgentConfig, Source};
use crate::counting::Counter;
use crate::counting::window::Windows;
use crate::frame::FramePolicy;
use crate::publish::{Publishing, RunError, publish};

/// Runs the agent until `shutdown` completes.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let counter = shared_counter(
        &config.sensor_id,
        config.window,
        config.precision,
        config.source.kinds(),
        &config.policy,
    );
    let span = sensor_span(&config.sensor_id);
    span.in_scope(|| {
        // Said at the start, not first when a salt lets the capture begin.
        for problem in crate::selfcheck::unreadable_capture_files(&config.source) {
            tracing::error!("capture file cannot be counted: {problem}");
        }
        start_capture(&config, &counter)
    });
    publish(Publishing::of(&config), counter, shutdown)
        .instrument(span)
        .await
}

/// Every log line of a sensor's agent names it (the demo runs 13 in one process).
pub(crate) fn sensor_span(sensor: &SensorId) -> tracing::Span {
    tracing::info_span!("agent", sensor = %sensor)
}

/// The counting state shared by the capture threads and the publishing loop.
pub(crate) fn shared_counter(
    sensor: &SensorId,
    window: WindowLength,
    precision: Precision,
    kinds: Vec<Kind>,
    policy: &FramePolicy,
) -> Arc<Mutex<Counter>> {
    Arc::new(Mutex::new(Counter::new(
        sensor.clone(),
        Windows::new(window, precision, kinds)
            .with_configured_gate(policy.min_rssi)
            .with_device_rule(policy.devices),
    )))
}

/// Starts the capture threads of the configured source.
fn start_capture(config: &AgentConfig, counter: &Arc<Mutex<Counter>>) {
    match &config.source {
        Source::Pcap { files, repeat, .. } => {
            paced::replay_as_live(files.clone(), *repeat, config.policy, counter.clone());
        }
        Source::Live { wifi, ble } => {
            if let Some(w) = wifi {
                let plan = wifi_monitor::HopPlan {
                    channels: w.channels.clone(),
                    dwell: w.dwell,
                };
                wifi_monitor::start(plan, w.interface.clone(), config.policy, counter.clone());
            }
            if let Some(dev) = ble {
                ble_scan::start(*dev, config.policy, counter.clone());
            }
        }
    }
}
