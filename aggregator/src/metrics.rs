//! The aggregator's Prometheus metrics (served at `/metrics` by the HTTP API).
//!
//! Every metric name lives here. Labels are reject reasons, sensor ids, purge targets and
//! refusal reasons: nothing in a label or value can identify a device (or an API client).

use std::time::Duration;

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// One zone's live numbers, as plain values for the zone gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneGauges<'a> {
    /// Zone id (label).
    pub zone: &'a str,
    /// Distinct devices by kind name (label).
    pub devices: Vec<(&'a str, f64)>,
    /// Estimated people, when calibrated.
    pub people: Option<f64>,
    /// People per m2, when calibrated.
    pub density: Option<f64>,
    /// Level-of-service index, when calibrated.
    pub level: Option<u8>,
    /// Every sensor of the zone silent for over two windows.
    pub stale: bool,
}

/// The aggregator's metrics; clones share the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Sketch messages accepted by ingest.
    pub accepted: IntCounter,
    /// Sketch messages refused, by reason.
    pub rejects: IntCounterVec,
    /// Batches committed to storage.
    pub batches: IntCounter,
    /// Seconds a batch commit took.
    pub commit_seconds: Histogram,
    /// Failed commits (retried).
    pub store_errors: IntCounter,
    /// Rows removed by the retention purge, by what.
    pub purged: IntCounterVec,
    /// 1 while connected to the broker.
    pub broker_connected: IntGauge,
    /// 1 while this replica is the salt authority (0 while it follows a peer).
    pub salt_leader: IntGauge,
    /// End (unix seconds) of the latest accepted window, by sensor.
    pub sensor_last_window: IntGaugeVec,
    /// Live distinct devices by zone and kind.
    pub zone_devices: GaugeVec,
    /// Live estimated people, density, level and staleness by zone.
    pub zone_people: GaugeVec,
    zone_density: GaugeVec,
    zone_level: GaugeVec,
    zone_stale: GaugeVec,
    /// Salt messages refused (announcements unsigned, under a foreign key, retained), by
    /// reason.
    pub salt_refused: IntCounterVec,
    /// What the embedded broker refused (logins, subscriptions, publishes), by reason.
    pub broker_refused: IntCounterVec,
    /// Messages the embedded broker dropped instead of delivering, by reason.
    pub broker_dropped: IntCounterVec,
    /// Requests refused for their credentials, by reason (`unknown_token`: a failed login;
    /// `token_in_query`: a token in the URL where a header can be sent).
    pub http_auth_failures: IntCounterVec,
    /// Open HTTP connections.
    pub http_connections: IntGauge,
    /// Connections closed at once because `http.max_connections` were open.
    pub http_connections_refused: IntCounter,
    /// Open live streams.
    pub http_streams: IntGauge,
    /// Stream requests answered 503 because `http.max_streams` were open.
    pub http_streams_refused: IntCounter,
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(
        r,
        GaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| unreachable!("{name}: {e}")),
    )
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    // Names are constants of this module; a clash is a programming error caught by tests.
    registry
        .register(Box::new(m.clone()))
        .unwrap_or_else(|e| unreachable!("metric registration: {e}"));
    m
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("{name}: {e}")),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), &[label])
            .unwrap_or_else(|e| unreachable!("{name}: {e}")),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        r,
        IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("{name}: {e}")),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new();
        Metrics {
            accepted: counter(
                &r,
                "crowdflow_ingest_accepted_total",
                "Sketch messages accepted.",
            ),
            rejects: counter_vec(
                &r,
                "crowdflow_ingest_rejects_total",
                "Sketch messages refused, by reason.",
                "reason",
            ),
            batches: counter(
                &r,
                "crowdflow_storage_batches_total",
                "Ingest batches committed.",
            ),
            commit_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "crowdflow_storage_commit_seconds",
                        "Time to commit one ingest batch.",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                )
                .unwrap_or_else(|e| unreachable!("commit histogram: {e}")),
            ),
            store_errors: counter(
                &r,
                "crowdflow_storage_errors_total",
                "Failed batch commits (the batch is retried, unacknowledged).",
            ),
            purged: counter_vec(
                &r,
                "crowdflow_retention_purged_total",
                "Rows removed by the retention purge.",
                "what",
            ),
            broker_connected: gauge(
                &r,
                "crowdflow_broker_connected",
                "1 while connected to the broker.",
            ),
            salt_leader: gauge(
                &r,
                "crowdflow_salt_authority_leader",
                "1 while this replica announces the salts.",
            ),
            sensor_last_window: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "crowdflow_sensor_last_window_end_seconds",
                        "End of the latest accepted window (unix seconds), by sensor.",
                    ),
                    &["sensor"],
                )
                .unwrap_or_else(|e| unreachable!("sensor gauge: {e}")),
            ),
            zone_devices: gauge_vec(
                &r,
                "crowdflow_zone_devices",
                "Distinct addresses in the zone's occupancy window, by kind (wifi_derandomized: physical Wi-Fi devices).",
                &["zone", "kind"],
            ),
            zone_people: gauge_vec(
                &r,
                "crowdflow_zone_people",
                "Estimated people in the zone (devices x calibration; an estimate).",
                &["zone"],
            ),
            zone_density: gauge_vec(
                &r,
                "crowdflow_zone_density",
                "Estimated people per m2.",
                &["zone"],
            ),
            zone_level: gauge_vec(
                &r,
                "crowdflow_zone_level",
                "Level of service index (0 free .. 3 critical with default thresholds).",
                &["zone"],
            ),
            zone_stale: gauge_vec(
                &r,
                "crowdflow_zone_stale",
                "1 while every sensor of the zone is silent for over two windows.",
                &["zone"],
            ),
            salt_refused: counter_vec(
                &r,
                "crowdflow_salt_messages_refused_total",
                "Salt messages refused (unsigned, under an untrusted key, retained), by reason.",
                "reason",
            ),
            broker_refused: counter_vec(
                &r,
                "crowdflow_broker_refused_total",
                "What the embedded broker refused (logins, subscriptions, publishes outside the ACL), by reason.",
                "reason",
            ),
            broker_dropped: counter_vec(
                &r,
                "crowdflow_broker_dropped_total",
                "Messages the embedded broker dropped instead of delivering (queue_full: the aggregator fell a whole queue behind), by reason.",
                "reason",
            ),
            http_auth_failures: counter_vec(
                &r,
                "crowdflow_http_auth_failures_total",
                "HTTP requests refused for their credentials, by reason.",
                "reason",
            ),
            http_connections: gauge(&r, "crowdflow_http_connections", "Open HTTP connections."),
            http_connections_refused: counter(
                &r,
                "crowdflow_http_connections_refused_total",
                "HTTP connections closed at once because http.max_connections were open.",
            ),
            http_streams: gauge(
                &r,
                "crowdflow_http_streams",
                "Open live streams (Server-Sent Events).",
            ),
            http_streams_refused: counter(
                &r,
                "crowdflow_http_streams_refused_total",
                "Live-stream requests refused (503) because http.max_streams were open.",
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// Records one commit.
    pub fn committed(&self, took: Duration) {
        self.batches.inc();
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// Sets the zone gauges from a live evaluation; a number the zone lacks (no calibration)
    /// keeps its gauge as it was.
    pub fn observe_zone(&self, z: &ZoneGauges<'_>) {
        for (kind, devices) in &z.devices {
            self.zone_devices
                .with_label_values(&[z.zone, kind])
                .set(*devices);
        }
        let zone = [z.zone];
        if let Some(people) = z.people {
            self.zone_people.with_label_values(&zone).set(people);
        }
        if let Some(density) = z.density {
            self.zone_density.with_label_values(&zone).set(density);
        }
        if let Some(level) = z.level {
            self.zone_level
                .with_label_values(&zone)
                .set(f64::from(level));
        }
        self.zone_stale
            .with_label_values(&zone)
            .set(if z.stale { 1.0 } else { 0.0 });
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_renders_with_its_help() {
        let m = Metrics::default();
        m.rejects.with_label_values(&["salt_mismatch"]).inc();
        m.sensor_last_window
            .with_label_values(&["neude-01"])
            .set(1_777_284_000);
        m.committed(Duration::from_millis(3));
        m.http_auth_failures
            .with_label_values(&["unknown_token"])
            .inc();
        m.http_connections_refused.inc();
        let text = m.render();
        for line in [
            "crowdflow_http_auth_failures_total{reason=\"unknown_token\"} 1",
            "crowdflow_http_connections_refused_total 1",
            "# HELP crowdflow_http_streams ",
            "crowdflow_ingest_rejects_total{reason=\"salt_mismatch\"} 1",
            "crowdflow_sensor_last_window_end_seconds{sensor=\"neude-01\"} 1777284000",
            "crowdflow_storage_batches_total 1",
            "crowdflow_storage_commit_seconds_count 1",
            "# HELP crowdflow_broker_connected",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn zone_gauges_are_set_from_plain_values() {
        let m = Metrics::default();
        m.observe_zone(&ZoneGauges {
            zone: "neude",
            devices: vec![("ble", 12.0), ("wifi", 30.0)],
            people: Some(50.5),
            density: None,
            level: Some(2),
            stale: true,
        });
        let text = m.render();
        for line in [
            "crowdflow_zone_devices{kind=\"ble\",zone=\"neude\"} 12",
            "crowdflow_zone_devices{kind=\"wifi\",zone=\"neude\"} 30",
            "crowdflow_zone_people{zone=\"neude\"} 50.5",
            "crowdflow_zone_level{zone=\"neude\"} 2",
            "crowdflow_zone_stale{zone=\"neude\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("crowdflow_zone_density{"),
            "no density without calibration"
        );
    }
}
