//! The embedded MQTT broker (rumqttd): the no-set-up default for one machine.
//!
//! rumqttd keeps everything in memory and has reports of panics under heavy load, so it is the
//! single-node and demo default; production deployments point the aggregator at Mosquitto or
//! EMQX (see deploy/). With credentials configured, every client must present one of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Why the broker did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Nothing listens on the address after start (in use, or not ours to bind).
    #[error("the embedded MQTT broker could not listen on {0} (is the port in use?)")]
    Bind(SocketAddr),
    /// The broker thread could not be started.
    #[error("cannot start the embedded MQTT broker: {0}")]
    Thread(#[from] std::io::Error),
}

/// What the embedded broker needs.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Where to listen for MQTT 3.1.1 clients.
    pub listen: SocketAddr,
    /// username -> password; `None` lets anyone connect (demo only).
    pub credentials: Option<HashMap<String, String>>,
    /// Largest accepted payload.
    pub max_payload: usize,
    /// Most MQTT connections at once (`broker.max_connections`); beyond it a connection is
    /// refused, so sensors and HTTP cannot use up each other's file descriptors.
    pub max_connections: usize,
}

/// Bytes per segment of a topic filter's in-memory log.
const SEGMENT_BYTES: usize = 4 * 1024 * 1024;
/// Segments per topic filter's log.
const SEGMENTS: usize = 8;

/// A running embedded broker; it lives as long as the process.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    listen: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts the broker on its own threads and waits until it accepts connections.
    pub fn start(settings: &BrokerSettings) -> Result<EmbeddedBroker, BrokerError> {
        // rumqttd reports a failed bind only in its own thread, and the readiness probe below
        // would happily reach another broker on the port: make sure the port is ours first.
        drop(
            std::net::TcpListener::bind(settings.listen)
                .map_err(|_| BrokerError::Bind(settings.listen))?,
        );
        let mut broker = Broker::new(config(settings));
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!("embedded MQTT broker stopped: {e}");
                }
            })?;
        // Ready once the port is taken: probing by binding, not connecting, because rumqttd
        // logs every connection that closes without an MQTT handshake as an error.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpListener::bind(settings.listen).is_err() {
                return Ok(EmbeddedBroker {
                    listen: settings.listen,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(BrokerError::Bind(settings.listen))
    }

    /// The listening address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

fn config(settings: &BrokerSettings) -> Config {
    let server = ServerSettings {
        name: "crowdflow-v4".into(),
        listen: settings.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: settings.max_payload,
            max_inflight_count: 1000,
            auth: settings.credentials.clone(),
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: settings.max_connections,
            max_outgoing_packet_count: 200,
            // rumqttd keeps each topic filter's messages in an in-memory log of segments and
            // drops the oldest segment when full. 100 MB x 10 let one flood hold 1 GB per
            // filter for good (#14: RSS 57 -> 450 MB); 4 MB x 8 still holds over two minutes
            // of a 400-sensor city's sketches (8.3 KB each, four kinds a minute) should the
            // aggregator stall, and bounds a flood to 32 MB per filter.
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENTS,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Config::default()
    }
}
