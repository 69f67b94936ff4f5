//! The agent's Prometheus metrics, served on the optional `metrics.listen` address.
//!
//! Every metric name lives here. Labels are kinds, skip reasons and this sensor's id (on
//! `crowdflow_agent_info`): nothing in a label or value can identify a device.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::wire::OutboxHealth;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::counting::Counter;
use crate::frame::Skip;

/// The agent's metrics.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    registry: Registry,
    counted: IntCounterVec,
    skipped: IntCounterVec,
    no_salt: IntCounter,
    published: IntCounter,
    outbox_messages: IntGauge,
    outbox_bytes: IntGauge,
    outbox_overflowed: IntCounter,
    broker_connected: IntGauge,
    salt_counting: IntGauge,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| unreachable!("{name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("{name}: {e}"));
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("{name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("{name}: {e}"));
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("{name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("{name}: {e}"));
    metric
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let r = Registry::new();
        AgentMetrics {
            counted: counter_vec(
                &r,
                "crowdflow_agent_frames_counted_total",
                "Frames counted, by address kind (wifi, wifi_random, ble: each frame once; the device estimate's kind stands on the Wi-Fi frames).",
                "kind",
            ),
            skipped: counter_vec(
                &r,
                "crowdflow_agent_frames_skipped_total",
                "Frames not counted, by reason.",
                "reason",
            ),
            no_salt: counter(
                &r,
                "crowdflow_agent_frames_without_salt_total",
                "Frames not counted because no salt covered their time.",
            ),
            published: counter(
                &r,
                "crowdflow_agent_sketches_published_total",
                "Sketch messages acknowledged by the broker.",
            ),
            outbox_messages: gauge(
                &r,
                "crowdflow_agent_outbox_messages",
                "Sketch messages waiting in the outbox.",
            ),
            outbox_bytes: gauge(
                &r,
                "crowdflow_agent_outbox_bytes",
                "Bytes waiting in the outbox.",
            ),
            outbox_overflowed: counter(
                &r,
                "crowdflow_agent_outbox_overflowed_total",
                "Sketch messages dropped at the outbox bound.",
            ),
            broker_connected: gauge(
                &r,
                "crowdflow_agent_broker_connected",
                "1 while connected to the broker.",
            ),
            salt_counting: gauge(
                &r,
                "crowdflow_agent_salt_valid",
                "1 while a salt covers the current time (the agent counts).",
            ),
            registry: r,
        }
    }
}

/// Raises a counter to `total` (counters only go up; totals come from the counting state).
fn raise(metric: &IntCounter, total: u64) {
    let now = metric.get();
    if total > now {
        metric.inc_by(total - now);
    }
}

/// Name of the info metric: 1, labelled with the sensor id (what `selfcheck` reads to tell
/// this sensor's running agent from another's on the metrics address).
pub const INFO: &str = "crowdflow_agent_info";

impl AgentMetrics {
    /// Labels the metrics with the sensor they are of ([`INFO`]).
    pub fn identify(&self, sensor: &crowdflow_contract::wire::SensorId) {
        let info = prometheus::IntGaugeVec::new(
            Opts::new(INFO, "1, labelled with this agent's sensor id."),
            &["sensor"],
        )
        .unwrap_or_else(|e| unreachable!("{INFO}: {e}"));
        if self.registry.register(Box::new(info.clone())).is_ok() {
            info.with_label_values(&[sensor.as_str()]).set(1);
        }
    }

    /// Brings the metrics up to date with the agent's state.
    pub fn observe(
        &self,
        counter: &Counter,
        outbox: &OutboxHealth,
        connected: bool,
        counting: bool,
        published: u64,
    ) {
        // Frames are counted by the address they carry; a series for the device estimate's
        // kind would read 0 forever (its members are concurrency slots, not frames).
        for kind in Kind::ADDRESSES {
            raise(
                &self.counted.with_label_values(&[kind.as_str()]),
                counter.counted(kind),
            );
        }
        for reason in Skip::ALL {
            let n = counter.skipped(reason);
            if n > 0 {
                raise(&self.skipped.with_label_values(&[reason.as_str()]), n);
            }
        }
        raise(&self.no_salt, counter.without_salt());
        raise(&self.published, published);
        raise(&self.outbox_overflowed, outbox.overflowed);
        self.outbox_messages
            .set(i64::try_from(outbox.depth).unwrap_or(i64::MAX));
        self.outbox_bytes
            .set(i64::try_from(outbox.bytes).unwrap_or(i64::MAX));
        self.broker_connected.set(i64::from(connected));
        self.salt_counting.set(i64::from(counting));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }

    /// Serves `/metrics` on `addr` until the runtime stops.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let metrics = Arc::new(self);
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app).await
    }
}
