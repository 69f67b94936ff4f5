//! `crowdflow-agent run`: capture, count, and publish sketches over MQTT.
//!
//! One loop owns the MQTT connection, the outbox and the timers. Sketch messages go out one
//! at a time with QoS 1, oldest first, and leave the outbox only when the broker
//! acknowledged them, so an outage, a broker restart or an agent restart loses nothing within
//! the outbox bound (duplicates after a reconnect are harmless: the aggregator's union is
//! idempotent).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::log_limit::LogLimit;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::SensorId;
use crowdflow_contract::wire::{AgentStatus, OutboxHealth, SaltAnnouncement, SaltRecovery};
use jiff::Timestamp;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Outgoing, Packet, QoS};
use tracing::Instrument;

use crate::capture::live::HopPlan;
use crate::config::{AgentConfig, Broker, Source};
use crate::counter::Counter;
use crate::metrics::AgentMetrics;
use crate::outbox::{Outbox, OutboxError};
use crate::source;
use crate::window::Windows;

/// Largest MQTT packet in either direction (a dense lg_k=21 sketch is ~1.4 MB of base64).
const MAX_PACKET: usize = 2 * 1024 * 1024;
const STATUS_EVERY: Duration = Duration::from_secs(15);
const SALT_REQUEST_EVERY: Duration = Duration::from_secs(5);

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The shared counting state was poisoned by a panic in the capture thread.
    #[error("the capture thread crashed")]
    Poisoned,
}

enum Tag {
    Sketch(u64),
    Other,
}

struct Link {
    client: AsyncClient,
    sketch_topic: String,
    sensor_topic_status: String,
    salt_topic: String,
    salt_request_topic: String,
    salt_recover_topic: String,
    salt_return_topic: String,
    sensor: String,
    /// The salt authorities whose signed announcements and requests count (`[salt]`).
    trusted: TrustedKeys,
    /// Log lines about refused salt messages, which anyone on the broker can cause at will:
    /// a burst per reason a minute, so a flood does not wear out the Pi's SD card.
    refused: LogLimit,
    connected: bool,
    /// What each publish call was, in call order, until the event loop numbers it.
    pending: VecDeque<Tag>,
    /// Packet id -> outbox sequence of sketch publishes awaiting their PubAck.
    awaiting: HashMap<u16, u64>,
    in_flight: Option<u64>,
    /// Publish the status at the next tick (connected, or the salt state changed).
    status_due: bool,
    /// Sketch messages acknowledged since start.
    published: u64,
}

/// Runs the agent until `shutdown` completes.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let counter = shared_counter(
        &config.sensor_id,
        config.window,
        config.precision,
        config.source.kinds(),
        config.policy.min_rssi,
    );
    start_capture(&config, &counter);
    let span = sensor_span(&config.sensor_id);
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
    min_rssi: Option<i8>,
) -> Arc<Mutex<Counter>> {
    Arc::new(Mutex::new(Counter::new(
        sensor.clone(),
        Windows::new(window, precision, kinds).with_configured_gate(min_rssi),
    )))
}

/// Starts the capture threads of the configured source.
fn start_capture(config: &AgentConfig, counter: &Arc<Mutex<Counter>>) {
    match &config.source {
        Source::Pcap { files, repeat, .. } => {
            source::replay_as_live(files.clone(), *repeat, config.policy, counter.clone());
        }
        Source::Live { wifi, ble } => {
            if let Some(w) = wifi {
                let plan = HopPlan {
                    channels: w.channels.clone(),
                    dwell: w.dwell,
                };
                source::live_wifi(plan, w.interface.clone(), config.policy, counter.clone());
            }
            if let Some(dev) = ble {
                source::live_ble(*dev, config.policy, counter.clone());
            }
        }
    }
}

/// What the publishing loop needs of a sensor's settings.
#[derive(Debug)]
pub(crate) struct Publishing<'a> {
    pub(crate) sensor_id: &'a SensorId,
    pub(crate) broker: &'a Broker,
    pub(crate) trusted_keys: &'a TrustedKeys,
    pub(crate) outbox_dir: &'a Path,
    pub(crate) outbox_max_bytes: u64,
    pub(crate) metrics_listen: Option<SocketAddr>,
}

impl Publishing<'_> {
    fn of(config: &AgentConfig) -> Publishing<'_> {
        Publishing {
            sensor_id: &config.sensor_id,
            broker: &config.broker,
            trusted_keys: &config.trusted_keys,
            outbox_dir: &config.outbox_dir,
            outbox_max_bytes: config.outbox_max_bytes,
            metrics_listen: config.metrics_listen,
        }
    }
}

/// Closes windows into the outbox and delivers them, keeps the salt and the status, until
/// `shutdown` completes.
pub(crate) async fn publish(
    config: Publishing<'_>,
    counter: Arc<Mutex<Counter>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let mut outbox =
        Outbox::open_for(config.outbox_dir, config.outbox_max_bytes, config.sensor_id)?;
    let metrics = AgentMetrics::default();
    if let Some(addr) = config.metrics_listen {
        let server = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = server.serve(addr).await {
                tracing::error!("cannot serve metrics on {addr}: {e}");
            }
        });
    }
    let (mut link, events) = connect(&config);
    let (mut events, pump) = crowdflow_contract::mqtt::pump(events);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_status = tokio::time::Instant::now() - STATUS_EVERY;
    let mut last_salt_request = tokio::time::Instant::now() - SALT_REQUEST_EVERY;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(event) = events.recv() => match event {
                Ok(event) => on_event(event, &mut link, &counter, &mut outbox)?,
                Err(e) => {
                    if link.connected {
                        tracing::warn!("broker connection lost: {e}");
                    } else {
                        tracing::debug!("broker unreachable: {e}");
                    }
                    link.disconnected();
                }
            },
            _ = tick.tick() => {
                link.refused.flush(std::time::Instant::now());
                let now = Timestamp::now();
                let messages = lock(&counter)?.close_due(now);
                for m in messages {
                    outbox.push(&m.encode())?;
                }
                deliver(&mut link, &outbox)?;
                {
                    let c = lock(&counter)?;
                    metrics.observe(&c, &outbox, link.connected, c.counting(now), link.published);
                }
                if link.connected && (link.status_due || last_status.elapsed() >= STATUS_EVERY) {
                    let status = lock(&counter)?.status(now, health(&outbox));
                    link.publish(&link.sensor_topic_status.clone(), QoS::AtLeastOnce, true, status.encode(), Tag::Other);
                    last_status = tokio::time::Instant::now();
                    link.status_due = false;
                }
                if link.connected && !lock(&counter)?.counting(now) && last_salt_request.elapsed() >= SALT_REQUEST_EVERY {
                    link.publish(&link.salt_request_topic.clone(), QoS::AtMostOnce, false, Vec::new(), Tag::Other);
                    last_salt_request = tokio::time::Instant::now();
                }
            },
            () = &mut shutdown => break,
        }
    }
    // What was heard in the open windows goes to the outbox, not to waste: the next start
    // delivers it.
    for m in lock(&counter)?.close_all() {
        outbox.push(&m.encode())?;
    }
    let offline = AgentStatus::offline(config.sensor_id.clone()).encode();
    let _ = link.client.try_publish(
        link.sensor_topic_status.clone(),
        QoS::AtLeastOnce,
        true,
        offline,
    );
    let _ = link.client.try_disconnect();
    // Let the event loop flush the last status and the disconnect.
    let flush = crowdflow_contract::mqtt::flush_until_disconnect(&mut events);
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    pump.abort();
    Ok(())
}

fn lock(counter: &Mutex<Counter>) -> Result<MutexGuard<'_, Counter>, RunError> {
    counter.lock().map_err(|_| RunError::Poisoned)
}

fn health(outbox: &Outbox) -> OutboxHealth {
    OutboxHealth {
        depth: outbox.depth(),
        bytes: outbox.bytes(),
        capacity_bytes: outbox.max_bytes(),
        overflowed: outbox.overflowed(),
    }
}

fn connect(config: &Publishing<'_>) -> (Link, EventLoop) {
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
        sensor: config.sensor_id.to_string(),
        trusted: config.trusted_keys.clone(),
        refused: LogLimit::per_minute("refused salt messages"),
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
    fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: Vec<u8>, tag: Tag) -> bool {
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                self.pending.push_back(tag);
                true
            }
            Err(_) => false, // request queue full: the next tick retries
        }
    }

    fn disconnected(&mut self) {
        self.connected = false;
        self.pending.clear();
        self.awaiting.clear();
        self.in_flight = None;
    }
}

fn on_event(
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
            for topic in [link.salt_topic.clone(), link.salt_recover_topic.clone()] {
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
fn deliver(link: &mut Link, outbox: &Outbox) -> Result<(), RunError> {
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
