//! A stand-in for the aggregator's salt authority and ingest: answers salt requests with one
//! salt and collects everything published on the broker, across broker restarts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crowdflow_contract::salt::{Salt, SaltFingerprint};
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::wire::{
    AgentStatus, DecodeRules, EpochSalt, SaltAnnouncement, SketchMessage, Topics,
};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// The epoch named by `now`'s UTC day: what the stand-in authorities of the scenarios announce.
pub fn utc_day(now: Timestamp) -> crowdflow_contract::epoch::EpochId {
    now.to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
        .parse()
        .expect("epoch")
}

/// What the authority saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every topic and payload, for privacy scans.
    pub wire: Vec<u8>,
    /// Decoded sketch messages, in arrival order.
    pub sketches: Vec<SketchMessage>,
    /// Decoded status messages, in arrival order.
    pub statuses: Vec<AgentStatus>,
}

/// The running authority; its task stops with the runtime.
#[derive(Debug, Clone)]
pub struct Authority {
    pub seen: Arc<Mutex<Seen>>,
    pub fingerprint: SaltFingerprint,
}

impl Authority {
    /// Connects to the broker on `port` (reconnecting forever) and serves one salt.
    pub fn spawn(port: u16) -> Authority {
        let salt = Salt::generate().expect("entropy");
        let fingerprint = salt.fingerprint();
        let now = Timestamp::now();
        let announcement = SaltAnnouncement {
            authority: "test-authority".into(),
            issued_at: now,
            salts: vec![EpochSalt {
                epoch: utc_day(now),
                starts: now - SignedDuration::from_hours(1),
                ends: now + SignedDuration::from_hours(2),
                salt,
            }],
        };
        let payload = announcement.sign(crate::key::authority_key()).to_vec();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = seen.clone();
        tokio::spawn(async move {
            let topics = Topics::default();
            let mut options = MqttOptions::new("test-authority", "127.0.0.1", port);
            options
                .set_max_packet_size(1 << 22, 1 << 22)
                .set_keep_alive(Duration::from_secs(5));
            let (client, mut events) = AsyncClient::new(options, 64);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe("#", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Ok(mut seen) = sink.lock() else { return };
                        seen.wire.extend_from_slice(p.topic.as_bytes());
                        seen.wire.extend_from_slice(&p.payload);
                        if p.topic.contains("/salt/request/") {
                            let _ = client.try_publish(
                                topics.salt(),
                                QoS::AtMostOnce,
                                false,
                                payload.clone(),
                            );
                        } else if p.topic.contains("/status/") {
                            if let Ok(status) = AgentStatus::decode(&p.payload) {
                                seen.statuses.push(status);
                            }
                        } else if p.topic.contains("/sketch/") {
                            let rules = DecodeRules::new(Precision::DEFAULT, Timestamp::now());
                            let m = SketchMessage::decode(&p.payload, &rules)
                                .expect("agent envelopes decode");
                            seen.sketches.push(m);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Authority { seen, fingerprint }
    }

    /// Frames in the sketches seen so far.
    pub fn frames(&self) -> u64 {
        self.seen
            .lock()
            .map(|s| s.sketches.iter().map(|m| m.frames).sum())
            .unwrap_or(0)
    }

    /// Waits until `done` holds for what was seen, or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.seen.lock().map(|s| done(&s)).unwrap_or(false) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}
