//! Publishing, the last stage: finished windows into the store-and-forward [`outbox`], and
//! from there over the MQTT [`link`] to the aggregator; the salt and the status ride the
//! same link.
//!
//! Sketch messages leave the outbox only when the broker acknowledged them, so an outage, a
//! broker restart or an agent restart loses nothing within the outbox bound (duplicates
//! after a reconnect are harmless: the aggregator's union is idempotent).

pub mod link;
pub mod outbox;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::Instrument as _;

use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::wire::{AgentStatus, OutboxHealth, SensorId};
use jiff::Timestamp;
use rumqttc::QoS;

use crate::config::{AgentConfig, Broker};
use crate::counting::Counter;
use crate::counting::devices::DeviceRule;
use crate::counting::installation;
use crate::metrics::AgentMetrics;
use link::{Link, Tag, connect, deliver, on_event};
use outbox::{Outbox, OutboxError};

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
    pub(crate) fn of(config: &AgentConfig) -> Publishing<'_> {
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

/// What the device estimate learned of the installation, on disk in the outbox directory
/// ([`installation`]): read back at start, written as windows close. A file that cannot be
/// read or written is logged, not fatal: the history is learned again.
struct Installation<'a> {
    dir: &'a Path,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
}

impl<'a> Installation<'a> {
    fn restore(dir: &'a Path, counter: &Mutex<Counter>) -> Result<Installation<'a>, RunError> {
        match installation::load(dir, Timestamp::now()) {
            Ok(Some((gate, cadence))) => {
                let mut c = lock(counter)?;
                c.add_installation(&gate, &cadence);
                tracing::info!(
                    gate_dbm = ?gate.learned(),
                    scan_cadence = ?cadence.learned(DeviceRule::Auto),
                    "the installation's signal history and scan cadence read back"
                );
            }
            Ok(None) => {}
            Err(e @ installation::InstallationError::Invalid { .. }) => {
                match installation::set_aside(dir) {
                    Ok(aside) => tracing::warn!("{e}; the file is kept as {}", aside.display()),
                    Err(moved) => tracing::warn!("{e}; it could not be kept aside: {moved}"),
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
        Ok(Installation {
            dir,
            failing: false,
        })
    }

    fn keep(&mut self, counter: &Mutex<Counter>, now: Timestamp) -> Result<(), RunError> {
        // Copied under the lock, written after it: the capture threads wait for no disk.
        let (gate, cadence) = {
            let c = lock(counter)?;
            let (gate, cadence) = c.installation();
            (gate.clone(), cadence.clone())
        };
        let written = installation::save(self.dir, &gate, &cadence, now);
        match written {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                tracing::warn!("{e}: a restart learns the device estimate's history again");
                self.failing = true;
            }
            Err(_) => {}
        }
        Ok(())
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
    let mut installation = Installation::restore(config.outbox_dir, &counter)?;
    let metrics = AgentMetrics::default();
    metrics.identify(config.sensor_id);
    if let Some(addr) = config.metrics_listen {
        let server = metrics.clone();
        tokio::spawn(
            async move {
                if let Err(e) = server.serve(addr).await {
                    tracing::error!("cannot serve metrics on {addr}: {e}");
                }
            }
            .in_current_span(),
        );
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
                        unreachable(&link, &e);
                    }
                    link.disconnected();
                }
            },
            _ = tick.tick() => {
                link.refused.flush(std::time::Instant::now());
                let now = Timestamp::now();
                let messages = lock(&counter)?.close_due(now);
                if !messages.is_empty() {
                    installation.keep(&counter, now)?;
                }
                for m in messages {
                    outbox.push(&m.encode())?;
                }
                deliver(&mut link, &outbox)?;
                {
                    let c = lock(&counter)?;
                    metrics.observe(&c, &health(&outbox), link.connected, c.counting(now), link.published);
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
    installation.keep(&counter, Timestamp::now())?;
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

pub(super) fn lock(counter: &Mutex<Counter>) -> Result<MutexGuard<'_, Counter>, RunError> {
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

/// Logs why the broker cannot be used while not connected (at start, after a loss): a
/// refused login says what to check; one line a minute per reason, then how many were not
/// logged (it retries every second).
fn unreachable(link: &Link, e: &rumqttc::ConnectionError) {
    use rumqttc::{ConnectReturnCode, ConnectionError};
    let now = std::time::Instant::now();
    match e {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => {
            if let Some(before) = link.broker_log.allow_counting("login_refused", now) {
                tracing::warn!(
                    attempts_not_logged = before,
                    "the broker refused our login ({}): check broker.username, the password (or CROWDFLOW_BROKER_PASSWORD), and that sensor_id is this account's sensor (the shipped brokers take an agent only under its own account); retrying every second",
                    crowdflow_contract::mqtt::connack_text(*code)
                );
            }
        }
        e => {
            if let Some(before) = link.broker_log.allow_counting("unreachable", now) {
                tracing::warn!(
                    attempts_not_logged = before,
                    "cannot use the broker: {}; retrying every second",
                    crowdflow_contract::mqtt::connection_error_text(e)
                );
            }
        }
    }
}
