//! Ingest validation: everything a sketch message must satisfy before it is stored.
//!
//! Beyond the contract's total decoder (syntax, sizes, window alignment and age, epoch
//! against the rotation schedule, decodable sketch of the deployment's precision): the topic
//! must name the sensor in the envelope (the broker's ACL says who may publish where), the
//! sensor must be configured and allowed that kind, and the salt fingerprint must be one the
//! authority issued for that epoch. A reject is counted by reason and logged without any
//! payload content.

use std::collections::HashSet;
use std::sync::Arc;

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::wire::{DecodeRules, SensorId, SketchMessage, WireError};
use jiff::Timestamp;

use crate::config::AggregatorConfig;
use crate::metrics::Metrics;
use crate::store::Accepted;

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    /// The contract's decoder refused it.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Published under another sensor's topic.
    #[error("topic names sensor {topic}, the envelope names {envelope}")]
    TopicMismatch {
        /// Sensor in the topic.
        topic: String,
        /// Sensor in the envelope.
        envelope: String,
    },
    /// Not a configured sensor.
    #[error("sensor {0} is not configured")]
    UnknownSensor(String),
    /// The sensor may not publish this kind.
    #[error("sensor {sensor} is not configured to sense {kind}")]
    KindNotAllowed {
        /// The sensor.
        sensor: String,
        /// The kind.
        kind: String,
    },
    /// The fingerprint is not one the authority issued for the epoch.
    #[error("salt fingerprint {fp} is not the one issued for epoch {epoch} (salt mismatch)")]
    UnknownSalt {
        /// The epoch.
        epoch: EpochId,
        /// The fingerprint.
        fp: SaltFingerprint,
    },
}

impl Reject {
    /// Every label [`Reject::reason`] gives.
    pub fn reasons() -> impl Iterator<Item = &'static str> {
        WireError::REASONS.into_iter().chain([
            "topic_mismatch",
            "unknown_sensor",
            "kind_not_allowed",
            "salt_mismatch",
        ])
    }

    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Wire(e) => e.reason(),
            Reject::TopicMismatch { .. } => "topic_mismatch",
            Reject::UnknownSensor(_) => "unknown_sensor",
            Reject::KindNotAllowed { .. } => "kind_not_allowed",
            Reject::UnknownSalt { .. } => "salt_mismatch",
        }
    }
}

/// The validator, with the fingerprints the authority issued.
#[derive(Debug)]
pub struct Validator {
    config: Arc<AggregatorConfig>,
    known: HashSet<(EpochId, SaltFingerprint)>,
    metrics: Metrics,
}

impl Validator {
    /// A validator for `config` that counts into `metrics`.
    pub fn new(config: Arc<AggregatorConfig>, metrics: Metrics) -> Validator {
        Validator {
            config,
            known: HashSet::new(),
            metrics,
        }
    }

    /// Accepts sketches under this fingerprint from now on.
    pub fn know(&mut self, epoch: EpochId, fp: SaltFingerprint) {
        self.known.insert((epoch, fp));
    }

    /// Validates one message from `topic`.
    pub fn check(
        &mut self,
        topic: &str,
        payload: &[u8],
        now: Timestamp,
    ) -> Result<Accepted, Reject> {
        let result = self.validate(topic, payload, now);
        match &result {
            Ok(a) => {
                self.metrics.accepted.inc();
                let end = a.window_start.as_second() + i64::from(a.window_s);
                let last = self
                    .metrics
                    .sensor_last_window
                    .with_label_values(&[a.sensor.as_str()]);
                if end > last.get() {
                    last.set(end);
                }
            }
            Err(reject) => self
                .metrics
                .rejects
                .with_label_values(&[reject.reason()])
                .inc(),
        }
        result
    }

    fn validate(&self, topic: &str, payload: &[u8], now: Timestamp) -> Result<Accepted, Reject> {
        let topic_sensor = self.config.broker.topics.sensor_of(topic)?;
        let mut rules = DecodeRules::new(self.config.precision, now);
        rules.schedule = Some(self.config.rotation.clone());
        let m = SketchMessage::decode(payload, &rules)?;
        if m.sensor_id != topic_sensor {
            return Err(Reject::TopicMismatch {
                topic: topic_sensor.to_string(),
                envelope: m.sensor_id.to_string(),
            });
        }
        let sensor = self
            .config
            .sensors
            .get(&m.sensor_id)
            .ok_or_else(|| Reject::UnknownSensor(m.sensor_id.to_string()))?;
        if !sensor.kinds.contains(&m.kind) {
            return Err(Reject::KindNotAllowed {
                sensor: m.sensor_id.to_string(),
                kind: m.kind.to_string(),
            });
        }
        if !self.known.contains(&(m.epoch, m.salt_fp)) {
            return Err(Reject::UnknownSalt {
                epoch: m.epoch,
                fp: m.salt_fp,
            });
        }
        Ok(Accepted {
            zone: sensor.zone.clone(),
            sensor: m.sensor_id,
            kind: m.kind,
            window_start: m.window.start(),
            window_s: m.window.length().seconds(),
            epoch: m.epoch,
            salt_fp: m.salt_fp,
            sketch: m.sketch,
            frames: m.frames,
        })
    }

    /// The configured sensor a topic names, if any: its rejects count in its health (rejects
    /// under unknown names are only counted globally, so garbage cannot grow storage).
    pub fn known_sensor(&self, topic: &str) -> Option<SensorId> {
        let sensor = self.config.broker.topics.sensor_of(topic).ok()?;
        self.config.sensors.contains_key(&sensor).then_some(sensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crowdflow_contract::identity::Kind;
    use crowdflow_contract::sketch::{Precision, Sketch};
    use crowdflow_contract::window::{Window, WindowLength};
    use std::path::Path;

    fn config() -> Arc<AggregatorConfig> {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/aggregator/aggregator.example.toml"),
        )
        .expect("example")
        .replace("\"change-me-", "\"s3cret-");
        Arc::new(AggregatorConfig::parse(&text, Path::new("a.toml"), None).expect("valid"))
    }

    const NOW: &str = "2026-04-27T12:00:30Z";

    fn message(sensor: &str, kind: Kind) -> SketchMessage {
        let mut sketch = Sketch::new(Precision::DEFAULT);
        sketch.insert_bytes(b"device");
        SketchMessage {
            sensor_id: SensorId::new(sensor).expect("id"),
            kind,
            window: Window::containing(
                "2026-04-27T11:59:00Z".parse().expect("ts"),
                WindowLength::DEFAULT,
            ),
            epoch: "2026-04-27".parse().expect("epoch"),
            salt_fp: "0123456789abcdef".parse().expect("fp"),
            sketch,
            frames: 3,
            agent_version: "test".into(),
        }
    }

    fn ingest() -> Validator {
        let mut i = Validator::new(config(), Metrics::default());
        i.know(
            "2026-04-27".parse().expect("epoch"),
            "0123456789abcdef".parse().expect("fp"),
        );
        i
    }

    #[test]
    fn a_valid_message_is_mapped_to_its_sensors_zone() {
        let mut i = ingest();
        let a = i
            .check(
                "crowdflow/v1/sketch/neude-01",
                &message("neude-01", Kind::Wifi).encode(),
                NOW.parse().expect("ts"),
            )
            .expect("valid");
        assert_eq!(a.zone.as_str(), "neude");
        assert_eq!(a.frames, 3);
        assert_eq!(i.metrics.accepted.get(), 1);
        assert!(
            i.metrics.render().contains(
                "crowdflow_sensor_last_window_end_seconds{sensor=\"neude-01\"} 1777291200"
            )
        );
    }

    #[test]
    fn a_wifi_sensor_may_send_its_physical_device_sketch() {
        let mut i = ingest();
        let a = i
            .check(
                "crowdflow/v1/sketch/neude-01",
                &message("neude-01", Kind::WifiDerandomized).encode(),
                NOW.parse().expect("ts"),
            )
            .expect("valid");
        assert_eq!(a.zone.as_str(), "neude");
    }

    #[test]
    fn every_rule_rejects_with_its_own_reason() {
        let mut i = ingest();
        let now: Timestamp = NOW.parse().expect("ts");
        let mut wrong_salt = message("neude-01", Kind::Wifi);
        wrong_salt.salt_fp = "fedcba9876543210".parse().expect("fp");
        let mut wrong_epoch = message("neude-01", Kind::Wifi);
        wrong_epoch.epoch = "2026-04-20".parse().expect("epoch");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "crowdflow/v1/sketch/neude-02",
                message("neude-01", Kind::Wifi).encode(),
                "topic_mismatch",
            ),
            (
                "crowdflow/v1/sketch/ghost",
                message("ghost", Kind::Wifi).encode(),
                "unknown_sensor",
            ),
            (
                "crowdflow/v1/sketch/neude-02",
                message("neude-02", Kind::Ble).encode(),
                "kind_not_allowed",
            ),
            (
                "crowdflow/v1/sketch/neude-01",
                wrong_salt.encode(),
                "salt_mismatch",
            ),
            (
                "crowdflow/v1/sketch/neude-01",
                wrong_epoch.encode(),
                "bad_epoch",
            ),
            (
                "crowdflow/v1/sketch/neude-01",
                b"{not json".to_vec(),
                "bad_json",
            ),
            (
                "elsewhere/sketch/neude-01",
                message("neude-01", Kind::Wifi).encode(),
                "bad_topic",
            ),
        ];
        for (topic, payload, reason) in cases {
            let reject = i.check(topic, &payload, now).expect_err(reason);
            assert_eq!(reject.reason(), reason, "{reject}");
            let counted = i.metrics.rejects.with_label_values(&[reason]).get();
            assert_eq!(counted, 1, "{reason} counted once");
        }
    }
}
