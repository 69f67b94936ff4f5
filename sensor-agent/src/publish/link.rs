//! The MQTT link: one connection per sensor, salt messages in (signed, never retained),
//! sketch messages out one at a time with QoS 1, each leaving the outbox only on its PubAck.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::log_limit::LogLimit;
use crowdflow_contract::wire::{AgentStatus, SaltAnnouncement, SaltAnswer, SaltRecovery};
use jiff::Timestamp;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Outgoing, Packet, QoS};

use super::outbox::Outbox;
use super::{Publishing, RunError, lock};
use crate::counting::Counter;

/// Largest MQTT packet in either direction (a dense lg_k=21 sketch is ~1.4 MB of base64).
const MAX_PACKET: usize = 2 * 1024 * 1024;
pub(super) enum Tag {
    Sketch(u64),
    Other,
}

pub(super) struct Link {
    pub(super) client: AsyncClient,
    pub(super) sketch_topic: String,
    pub(super) sensor_topic_status: String,
    pub(super) salt_topic: String,
    pub(super) salt_request_topic: String,
    pub(super) salt_recover_topic: String,
    pub(super) salt_return_topic: String,
    /// Where the aggregator says whether it knows this sensor.
    pub(super) salt_answer_topic: String,
    pub(super) sensor: String,
    /// The salt authorities whose signed announcements and requests count (`[salt]`).
    pub(super) trusted: TrustedKeys,
    /// Log lines about refused salt messages, which anyone on the broker can cause at will:
    /// a burst per reason a minute, so a flood does not wear out the Pi's SD card.
    pub(super) refused: LogLimit,
    /// Log lines about a broker that refuses or cannot be reached (retried every second).
    pub(super) broker_log: LogLimit,
    pub(super) connected: bool,
    /// What each publish call was, in call order, until the event loop numbers it.
    pub(super) pending: VecDeque<Tag>,
    /// Packet id -> outbox sequence of sketch publishes awaiting their PubAck.
    pub(super) awaiting: HashMap<u16, u64>,
    pub(super) in_flight: Option<u64>,
    /// Publish the status at the next tick (connected, or the salt state changed).
    pub(super) status_due: bool,
    /// Sketch messages acknowledged since start.
    pub(super) published: u64,
}

pub(super) fn connect(config: &Publishing<'_>) -> (Link, EventLoop) {
    let broker = config.broker;
    let topics = broker.topics.clone();
    let status_topic = topics.status(config.sensor_id);
    let mut options = broker.mqtt_options(format!("crowdflow-agent-{}", config.sensor_id));
    options
        .set_keep_alive(Duration::from_secs(15))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            status_topic.clone(),
            AgentStatus::offline(config.sensor_id.clone()).encode(),
            QoS::AtLeastOnce,
            true,
        ));
    let (client, events) = AsyncClient::new(options, 64);
    let link = Link {
        client,
        salt_topic: topics.salt(),
        salt_request_topic: topics.salt_request(config.sensor_id),
        salt_recover_topic: topics.salt_recover(),
        salt_return_topic: topics.salt_return(config.sensor_id),
        salt_answer_topic: topics.salt_answer(config.sensor_id),
        sensor: config.sensor_id.to_string(),
        trusted: config.trusted_keys.clone(),
        refused: LogLimit::per_minute("refused salt messages"),
        // One line a minute: the agent retries every second for as long as it takes.
        broker_log: LogLimit::new(
            "broker connection failures",
            1,
            crowdflow_contract::log_limit::WINDOW,
        ),
        sensor_topic_status: status_topic,
        sketch_topic: topics.sketch(config.sensor_id),
        connected: false,
        pending: VecDeque::new(),
        awaiting: HashMap::new(),
        in_flight: None,
        status_due: true,
        published: 0,
    };
    (link, events)
}

impl Link {
    pub(super) fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        tag: Tag,
    ) -> bool {
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                self.pending.push_back(tag);
                true
            }
            Err(_) => false, // request queue full: the next tick retries
        }
    }

    pub(super) fn disconnected(&mut self) {
        self.connected = false;
        self.pending.clear();
        self.awaiting.clear();
        self.in_flight = None;
    }
}

pub(super) fn on_event(
    event: Event,
    link: &mut Link,
    counter: &Mutex<Counter>,
    outbox: &mut Outbox,
) -> Result<(), RunError> {
    match event {
        Event::Incoming(Packet::ConnAck(_)) => {
            link.disconnected();
            link.connected = true;
            link.status_due = true;
            tracing::info!("connected to the broker");
            for topic in [
                link.salt_topic.clone(),
                link.salt_recover_topic.clone(),
                link.salt_answer_topic.clone(),
            ] {
                let _ = link.client.try_subscribe(topic, QoS::AtMostOnce);
            }
            link.publish(
                &link.salt_request_topic.clone(),
                QoS::AtMostOnce,
                false,
                Vec::new(),
                Tag::Other,
            );
        }
        // An empty message is how an operator clears a retained one: nothing to refuse.
        Event::Incoming(Packet::Publish(p))
            if p.payload.is_empty()
                && (p.topic == link.salt_topic || p.topic == link.salt_recover_topic) =>
        {
            tracing::debug!(topic = %p.topic, "an empty salt message (a retained one cleared)");
        }
        // A retained salt message was planted or is stale: the authority never retains.
        Event::Incoming(Packet::Publish(p))
            if p.retain && (p.topic == link.salt_topic || p.topic == link.salt_recover_topic) =>
        {
            refused(&link.refused, "retained", || {
                tracing::warn!(topic = %p.topic, "ignoring a retained salt message (the authority never retains)");
            });
        }
        Event::Incoming(Packet::Publish(p)) if p.topic == link.salt_topic => {
            match SaltAnnouncement::decode_signed(&p.payload, &link.trusted) {
                Ok((announcement, _)) => {
                    let accepted = lock(counter)?.accept_salts(announcement, Timestamp::now());
                    link.status_due |= accepted.new_epochs + accepted.replaced > 0;
                }
                Err(e) => refused(&link.refused, e.reason(), || {
                    tracing::warn!("ignoring a salt announcement: {e}");
                }),
            }
        }
        // Only the aggregator may publish here (both shipped ACLs): an unknown sensor's
        // sketches are all rejected, which the installer must hear from the sensor too.
        Event::Incoming(Packet::Publish(p)) if p.topic == link.salt_answer_topic => {
            if let Ok((answer, _)) =
                SaltAnswer::decode_signed(&p.payload, &link.trusted, Timestamp::now())
                && !answer.known
            {
                refused(&link.refused, "unknown_sensor", || {
                    tracing::error!(
                        authority = %answer.authority,
                        "the aggregator does not know this sensor: every sketch is rejected as unknown_sensor; add [[sensors]] id = \"{}\" (with its zone) to the aggregator's config and restart it, or correct sensor_id",
                        link.sensor
                    );
                });
            }
        }
        Event::Incoming(Packet::Publish(p)) if p.topic == link.salt_recover_topic => {
            match SaltRecovery::decode_signed(&p.payload, &link.trusted, Timestamp::now()) {
                Ok(request) => {
                    let answer =
                        lock(counter)?.salt_answer(&request, &link.sensor, Timestamp::now());
                    if let Some(payload) = answer {
                        tracing::info!(epoch = %request.epoch, fp = %request.fp, "returning the salt a restarted authority asked for");
                        // QoS 0, never retained, like announcements: no broker stores it.
                        let topic = link.salt_return_topic.clone();
                        link.publish(&topic, QoS::AtMostOnce, false, payload.to_vec(), Tag::Other);
                    }
                }
                Err(e) => refused(&link.refused, e.reason(), || {
                    tracing::warn!("ignoring a salt recovery request: {e}");
                }),
            }
        }
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            if let Some(Tag::Sketch(seq)) = link.pending.pop_front() {
                link.awaiting.insert(pkid, seq);
            }
        }
        Event::Incoming(Packet::PubAck(ack)) => {
            if let Some(seq) = link.awaiting.remove(&ack.pkid) {
                outbox.ack(seq)?;
                link.published += 1;
                tracing::trace!(seq, pkid = ack.pkid, "sketch acknowledged");
                if link.in_flight == Some(seq) {
                    link.in_flight = None;
                }
                deliver(link, outbox)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Logs a refused salt message with `line`, unless this reason's burst is used up.
fn refused(limit: &LogLimit, reason: &'static str, line: impl FnOnce()) {
    if limit.allow(reason, std::time::Instant::now()) {
        line();
    }
}

/// Sends the oldest queued sketch if the link is up and nothing is in flight.
pub(super) fn deliver(link: &mut Link, outbox: &Outbox) -> Result<(), RunError> {
    if !link.connected || link.in_flight.is_some() {
        return Ok(());
    }
    if let Some(queued) = outbox.peek()? {
        let topic = link.sketch_topic.clone();
        if link.publish(
            &topic,
            QoS::AtLeastOnce,
            false,
            queued.payload,
            Tag::Sketch(queued.seq),
        ) {
            link.in_flight = Some(queued.seq);
        }
    }
    Ok(())
}
