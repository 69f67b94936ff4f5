//! The aggregator's link to the MQTT broker: where the broker is (starting the embedded one
//! when configured), the session (persistent, manual acknowledgements, so a message is
//! acknowledged only after its batch is committed), and what the aggregator subscribes to.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crowdflow_contract::config_file::TlsFiles;
use crowdflow_contract::mqtt;
use crowdflow_contract::salt::SaltError;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, QoS};

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
const INFLIGHT: u16 = 1000;
/// Requests the client queues for its event loop. Acknowledgements (at most one per message
/// in flight to us, [`INFLIGHT`]) never find it full, with room left for the aggregator's own
/// publishes and subscriptions: `try_ack` on a full queue drops the acknowledgement, and the
/// broker, short of that slot of its window until the session ends, delivers ever fewer at a
/// time (1,024 was just above one window, too close once two batches' acks queue up).
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
