//! The aggregator's link to the MQTT broker: where the broker is (starting the embedded one
//! when configured), the session (persistent, manual acknowledgements, so a message is
//! acknowledged only after its batch is committed), and what the aggregator subscribes to.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crowdflow_contract::config_file::TlsFiles;
use crowdflow_contract::mqtt;
use crowdflow_contract::salt::SaltError;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, Publish, QoS};

use crate::broker::{Accounts, BrokerError, BrokerSettings, EmbeddedBroker};
use crate::config::{AggregatorConfig, BrokerMode};

/// Largest message accepted from the broker.
pub const MAX_PACKET: usize = 1 << 20;
/// Largest packet the embedded broker accepts: twice the largest envelope the aggregator
/// decodes ([`crowdflow_contract::wire::DEFAULT_MAX_BYTES`], 64 KiB), so a message somewhat
/// too large still reaches the aggregator and is refused there by name (`too_large`, counted
/// and logged); a client sending more is disconnected. It bounds what a queue of
/// [`crate::broker`] can hold.
pub const EMBEDDED_MAX_PACKET: usize = 2 * crowdflow_contract::wire::DEFAULT_MAX_BYTES;
/// Messages the broker may have in flight to us, unacknowledged (see
/// [`crate::batching::MAX_BATCH`]).
const INFLIGHT: u16 = 2000;
/// Requests the client queues for its event loop: two windows of acknowledgements
/// ([`INFLIGHT`]), with room for the aggregator's own publishes and subscriptions. The event
/// loop takes a request only when it has handed out every packet it has read, so under a
/// burst the queue fills however long it is: acknowledgements wait for room in
/// [`Acknowledger`], never dropped.
const REQUESTS: usize = 2 * INFLIGHT as usize + 256;

/// Why the link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The embedded broker did not start.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// No password could be drawn for the aggregator's own account.
    #[error("cannot draw a salt: {0}")]
    Secret(#[from] SaltError),
}

/// Where and as whom the aggregator connects.
#[derive(Debug)]
pub struct Endpoint {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS files for an `mqtts://` broker.
    pub tls: Option<TlsFiles>,
    /// User name and password, if the broker wants them.
    pub account: Option<(String, String)>,
    /// The MQTT client id the aggregator's persistent session lives under.
    pub client_id: String,
    /// The embedded broker, when configured: it runs as long as this is kept.
    pub embedded: Option<EmbeddedBroker>,
}

/// The configured broker, with the embedded one started first when configured.
/// The embedded broker's refusals and drops are counted into `metrics`; on an external broker with an
/// account the session's client id is keyed by `session_secret`.
pub async fn endpoint(
    config: &AggregatorConfig,
    metrics: &crate::metrics::Metrics,
    session_secret: &[u8],
) -> Result<Endpoint, LinkError> {
    let mut account = config
        .broker
        .username
        .clone()
        .zip(config.broker.password.clone());
    match &config.broker.mode {
        BrokerMode::Embedded {
            listen,
            max_connections,
            tls,
        } => {
            let mut accounts = None;
            if let Some(mut credentials) = config.broker_credentials() {
                let own = match &account {
                    Some(own) => own.clone(),
                    None => {
                        // Sensors need credentials, so the aggregator needs an account too:
                        // one with a random password that lives in this process only.
                        let own = (
                            config.broker.client_id.clone(),
                            crate::config::new_secret()?,
                        );
                        credentials.insert(own.0.clone(), own.1.clone());
                        account = Some(own.clone());
                        own
                    }
                };
                accounts = Some(Accounts {
                    credentials,
                    topics: config.broker.topics.clone(),
                    aggregator: own.0,
                    aggregator_client_id: config.broker.client_id.clone(),
                    refused: metrics.broker_refused.clone(),
                });
            } else {
                tracing::warn!(
                    "the embedded broker has no accounts: every local client may publish and read \
                     every topic (configure sensor passwords to enforce the ACL)"
                );
            }
            let settings = BrokerSettings {
                listen: *listen,
                accounts,
                max_payload: EMBEDDED_MAX_PACKET,
                max_connections: *max_connections,
                tls: tls.clone(),
                dropped: metrics.broker_dropped.clone(),
            };
            let broker = tokio::task::spawn_blocking(move || EmbeddedBroker::start(&settings))
                .await
                .map_err(|e| BrokerError::Thread(std::io::Error::other(e.to_string())))??;
            tracing::info!(
                listen = %broker.listen(),
                tls = tls.is_some(),
                "embedded MQTT broker listening"
            );
            let ip = match broker.local().ip() {
                ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                ip => ip,
            };
            Ok(Endpoint {
                host: ip.to_string(),
                port: broker.local().port(),
                tls: None,
                account,
                // The embedded broker binds this id to the aggregator's account itself.
                client_id: config.broker.client_id.clone(),
                embedded: Some(broker),
            })
        }
        BrokerMode::External { host, port, tls } => Ok(Endpoint {
            host: host.clone(),
            port: *port,
            tls: tls.clone(),
            // Mosquitto cannot bind a client id to an account: one keyed by a secret of the
            // aggregator's own (its signing key: a broker password change keeps the session).
            client_id: mqtt::session_client_id(
                &config.broker.client_id,
                account.as_ref().map(|_| session_secret),
            ),
            account,
            embedded: None,
        }),
    }
}

/// Acknowledges stored messages, in the order they were stored, from a task of its own that
/// waits for room in the client's request queue.
///
/// An acknowledgement dropped on a full queue (`try_ack`) is never sent again in the session,
/// and the broker keeps that message in flight to us: in a 40,000-message burst through
/// Mosquitto 33,000 were dropped, Mosquitto then walked its list of 33,000 unacknowledged
/// messages at every acknowledgement, and delivered 160 messages a second to every client
/// (publish to stored: 11 s at the median). Waiting in the service loop instead would
/// deadlock it: the event loop drains requests only while the service takes its events.
#[derive(Debug)]
pub struct Acknowledger {
    queue: tokio::sync::mpsc::UnboundedSender<Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Acknowledger {
    /// Starts acknowledging through `client`.
    pub fn start(client: AsyncClient) -> Acknowledger {
        let (queue, mut stored) = tokio::sync::mpsc::unbounded_channel::<Publish>();
        let task = tokio::spawn(async move {
            while let Some(message) = stored.recv().await {
                if client.ack(&message).await.is_err() {
                    // The event loop is gone: the service is stopping.
                    break;
                }
            }
        });
        Acknowledger { queue, task }
    }

    /// Acknowledges `message` once the messages handed over before it have been.
    pub fn ack(&self, message: Publish) {
        // The task ends only when the client's event loop is gone: nothing left to tell.
        let _ = self.queue.send(message);
    }

    /// Hands every acknowledgement to the client, waiting at most `limit`.
    pub async fn finish(self, limit: Duration) {
        drop(self.queue);
        let _ = tokio::time::timeout(limit, self.task).await;
    }
}

/// A client for `endpoint` with a persistent session and manual acknowledgements.
pub fn connect(endpoint: Endpoint) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(endpoint.client_id, endpoint.host, endpoint.port);
    options
        .set_keep_alive(Duration::from_secs(15))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(INFLIGHT);
    if let Some((user, password)) = endpoint.account {
        options.set_credentials(user, password);
    }
    if let Some(tls) = &endpoint.tls {
        mqtt::use_tls(&mut options, tls);
    }
    AsyncClient::new(options, REQUESTS)
}

/// What the aggregator subscribes to on each connection: sketches (QoS 1; shared among
/// replicas on an external broker, so each message is stored by one of them), salt requests,
/// announcements (its peers') and returned salts (QoS 0).
pub fn subscriptions(config: &AggregatorConfig) -> [(String, QoS); 4] {
    let topics = &config.broker.topics;
    let sketches = match config.broker.mode {
        BrokerMode::External { .. } => format!(
            "$share/{}/{}",
            config.broker.shared_group,
            topics.sketch_filter()
        ),
        BrokerMode::Embedded { .. } => topics.sketch_filter(),
    };
    [
        (sketches, QoS::AtLeastOnce),
        (topics.salt_request_filter(), QoS::AtMostOnce),
        (topics.salt(), QoS::AtMostOnce),
        (topics.salt_return_filter(), QoS::AtMostOnce),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{Event, Outgoing, Packet};

    /// Every stored message is acknowledged, however full the client's request queue is
    /// when its batch is: `try_ack` on a queue of 8 dropped most of a 300-message burst.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_is_acknowledged_whole_through_a_full_request_queue() {
        const BURST: usize = 300;
        let (_broker, port, _) = crate::broker::tests::started().await;
        let mut options = MqttOptions::new("acknowledging-subscriber", "127.0.0.1", port);
        options.set_manual_acks(true);
        let (subscriber, events) = AsyncClient::new(options, 8);
        let (mut events, pump) = mqtt::pump(events);
        subscriber
            .subscribe("crowdflow/v1/sketch/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        while !matches!(
            events.recv().await,
            Some(Ok(Event::Incoming(Packet::SubAck(_))))
        ) {}
        crate::broker::tests::publish_burst(port, BURST, 20, BURST as u16).await;
        // As the service does: a batch's messages are acknowledged together, after its commit.
        let acks = Acknowledger::start(subscriber.clone());
        let (mut batch, mut acknowledged) = (Vec::new(), 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while acknowledged < BURST && tokio::time::Instant::now() < deadline {
            let event = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
            let idle = event.is_err();
            match event {
                Ok(Some(Ok(Event::Incoming(Packet::Publish(p))))) => batch.push(p),
                Ok(Some(Ok(Event::Outgoing(Outgoing::PubAck(_))))) => acknowledged += 1,
                Ok(None) => break,
                _ => {}
            }
            if batch.len() >= 50 || idle {
                for p in batch.drain(..) {
                    acks.ack(p);
                }
            }
        }
        pump.abort();
        assert_eq!(acknowledged, BURST, "every message acknowledged");
    }
}
