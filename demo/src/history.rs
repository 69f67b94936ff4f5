//! The event so far: the scenario from its start to the live moment, simulated at full speed,
//! counted in the agents' own windows under the salt the aggregator announces, and sent by
//! each sensor as a sensor catching up on its outbox sends it (its own credentials, QoS 1).
//! History then holds the morning when the live view opens.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crowdflow_agent::counting::AGENT_VERSION;
use crowdflow_agent::counting::window::{CLOSE_DELAY, Windows};
use crowdflow_agent::salt::SaltKeeper;
use crowdflow_aggregator::store::{SqliteStore, Store};
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::{SaltAnnouncement, SensorId, Topics};
use crowdflow_simulator::{Frame, Simulation};
use jiff::Timestamp;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use crate::SensorAccess;
use crate::clock::SimClock;
use crate::settings::published_kinds;

/// Simulated time played per step (bounds the frames held at once).
const STEP_US: i64 = 60_000_000;
/// How long the aggregator may take to announce its salt, and to store the morning.
const PATIENCE: Duration = Duration::from_secs(120);

/// Why the morning could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// No signed salt announcement arrived.
    #[error("the aggregator announced no salt the sensors trust within {0:?}")]
    NoSalt(Duration),
    /// The broker refused or dropped a simulated sensor.
    #[error("simulated sensor {sensor} could not publish its history: {reason}")]
    Publish {
        /// The sensor.
        sensor: String,
        /// Why.
        reason: String,
    },
    /// The aggregator did not store everything in time.
    #[error("the aggregator stored {stored} of {sent} history windows within {PATIENCE:?}")]
    NotStored {
        /// Sensors whose last window is stored.
        stored: usize,
        /// Sensors that sent.
        sent: usize,
    },
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Frames counted, per sensor.
    pub frames: BTreeMap<String, u64>,
    /// Sketch messages sent.
    pub messages: usize,
}

/// Where the history goes: the demo's broker (as its sensors) and the store it ends up in.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The embedded broker's port.
    pub mqtt_port: u16,
    /// The sensors' credentials and pinned key.
    pub access: &'a SensorAccess,
    /// The aggregator's store (to wait for the last windows).
    pub store: &'a SqliteStore,
    /// The agents' window.
    pub window: WindowLength,
}

/// Plays `sim` from where it is to `until_us` (simulated), stamping frames by `clock`, and
/// sends every closed window as its sensor; returns once the aggregator has stored them all.
/// `progress` gets the share done (0 to 1).
pub async fn write(
    sim: &mut Simulation,
    clock: &SimClock,
    until_us: i64,
    to: Destination<'_>,
    progress: impl Fn(f64),
) -> Result<Written, crate::DemoError> {
    let Destination {
        mqtt_port,
        access,
        store,
        window,
    } = to;
    let sensors: Vec<SensorId> = sim
        .scenario()
        .sensors
        .iter()
        .filter_map(|s| SensorId::new(&s.id).ok())
        .collect();
    let Some(first) = sensors.first() else {
        return Ok(Written::default());
    };
    let salts = announced_salt(mqtt_port, first, access).await?;
    let topics = Topics::default();
    let mut senders = Vec::with_capacity(sensors.len());
    for s in &sensors {
        senders.push(Sender::connect(mqtt_port, s, access));
    }
    let from_us = sim.now();
    let mut windows: Vec<Windows> = sensors
        .iter()
        .map(|_| {
            let mut w = Windows::new(window, Precision::default(), published_kinds());
            w.start(clock.real(from_us));
            w
        })
        .collect();
    let mut written = Written::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut t = from_us;
    while t < until_us {
        let next = (t + STEP_US).min(until_us);
        frames.clear();
        sim.advance(next, &mut frames);
        for f in &frames {
            // As the live feed: without the capability fingerprint (see feed.rs).
            if let (Some(w), Some(id)) = (windows.get_mut(f.sensor), sensors.get(f.sensor))
                && w.add(clock.real(f.t_us), &f.heard(), &salts).is_ok()
            {
                *written.frames.entry(id.to_string()).or_default() += 1;
            }
        }
        // The last step also closes the window that ends at the live moment.
        let close_at = if next == until_us {
            clock.real(next) + CLOSE_DELAY
        } else {
            clock.real(next)
        };
        for ((w, id), sender) in windows.iter_mut().zip(&sensors).zip(&mut senders) {
            for m in w.close_due(close_at, id, &salts, AGENT_VERSION) {
                sender.send(&topics.sketch(id), m.encode(), id).await?;
                written.messages += 1;
            }
        }
        progress((next - from_us) as f64 / (until_us - from_us).max(1) as f64);
        t = next;
    }
    for (sender, id) in senders.into_iter().zip(&sensors) {
        sender.finish(id).await?;
    }
    stored(store, &sensors, clock.real(until_us) - window.duration()).await?;
    Ok(written)
}

/// The salt the aggregator announces, as a sensor accepts it: signed by a trusted key.
async fn announced_salt(
    mqtt_port: u16,
    sensor: &SensorId,
    access: &SensorAccess,
) -> Result<SaltKeeper, crate::DemoError> {
    let options = options(mqtt_port, sensor, access, "salt");
    let (client, mut events) = AsyncClient::new(options, 16);
    let topic = Topics::default().salt();
    let wait = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(topic.clone(), QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok((announcement, _)) =
                        SaltAnnouncement::decode_signed(&p.payload, &access.trusted)
                    {
                        let mut keeper = SaltKeeper::default();
                        keeper.accept(announcement, Timestamp::now());
                        return keeper;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    };
    let keeper = tokio::time::timeout(PATIENCE, wait)
        .await
        .map_err(|_| HistoryError::NoSalt(PATIENCE))?;
    let _ = client.disconnect().await;
    Ok(keeper)
}

fn options(mqtt_port: u16, sensor: &SensorId, access: &SensorAccess, what: &str) -> MqttOptions {
    // Not the agent's client id (`crowdflow-agent-<sensor>`): the live agent may connect
    // while a history sender is still finishing.
    let mut options = MqttOptions::new(
        format!("crowdflow-demo-{what}-{sensor}"),
        "127.0.0.1",
        mqtt_port,
    );
    options
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(100)
        .set_keep_alive(Duration::from_secs(30));
    if let Some(password) = access.passwords.get(sensor.as_str()) {
        options.set_credentials(sensor.as_str(), password);
    }
    options
}

/// One simulated sensor's connection for its history: publishes, and counts the broker's
/// acknowledgements so that nothing is left unsent when it disconnects.
struct Sender {
    client: AsyncClient,
    loop_task: tokio::task::JoinHandle<String>,
    sent: usize,
    acked: Arc<AtomicUsize>,
}

impl Sender {
    fn connect(mqtt_port: u16, sensor: &SensorId, access: &SensorAccess) -> Sender {
        let (client, events) = AsyncClient::new(options(mqtt_port, sensor, access, "history"), 64);
        let acked = Arc::new(AtomicUsize::new(0));
        let loop_task = tokio::spawn(acknowledged(events, acked.clone()));
        Sender {
            client,
            loop_task,
            sent: 0,
            acked,
        }
    }

    async fn send(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        sensor: &SensorId,
    ) -> Result<(), crate::DemoError> {
        if self.loop_task.is_finished() {
            let reason = "the broker closed the connection".to_owned();
            return Err(publish_error(sensor, reason));
        }
        self.sent += 1;
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| publish_error(sensor, e.to_string()))
    }

    /// Waits for every acknowledgement, then disconnects.
    async fn finish(self, sensor: &SensorId) -> Result<(), crate::DemoError> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.acked.load(Ordering::SeqCst) < self.sent {
            if self.loop_task.is_finished() {
                return Err(self.failed(sensor).await);
            }
            if tokio::time::Instant::now() > deadline {
                let acked = self.acked.load(Ordering::SeqCst);
                let reason = format!("{acked} of {} messages acknowledged in time", self.sent);
                return Err(publish_error(sensor, reason));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.loop_task).await;
        Ok(())
    }

    async fn failed(self, sensor: &SensorId) -> crate::DemoError {
        let reason = self.loop_task.await.unwrap_or_else(|e| e.to_string());
        publish_error(sensor, reason)
    }
}

fn publish_error(sensor: &SensorId, reason: String) -> crate::DemoError {
    HistoryError::Publish {
        sensor: sensor.to_string(),
        reason,
    }
    .into()
}

/// Polls the connection, counting acknowledgements, until it closes or keeps failing;
/// returns why it ended.
async fn acknowledged(mut events: EventLoop, acked: Arc<AtomicUsize>) -> String {
    let mut failures = 0;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return "disconnected".into(),
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures > 20 {
                    return e.to_string();
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Waits until every sensor's window starting at `last` is stored.
async fn stored(
    store: &SqliteStore,
    sensors: &[SensorId],
    last: Timestamp,
) -> Result<(), crate::DemoError> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let health = store.sensor_health().await?;
        let done = sensors
            .iter()
            .filter(|s| {
                health
                    .iter()
                    .any(|h| &h.sensor == *s && h.last_window.is_some_and(|w| w >= last))
            })
            .count();
        if done == sensors.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(HistoryError::NotStored {
                stored: done,
                sent: sensors.len(),
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
