//! The embedded MQTT broker (rmqtt): the no-set-up default for one machine.
//!
//! rmqtt keeps everything in memory, so it is the single-node and demo default; production
//! deployments point the aggregator at Mosquitto or EMQX (see deploy/). It was chosen over
//! rumqttd (#14) because it has hooks for authentication and per-topic authorization: with
//! credentials configured every client must present one of them, and [`acl`] holds each
//! account to the permissions of the shipped Mosquitto ACL. Without credentials (allowed on
//! loopback only) the broker cannot tell who is who, and every local client may do anything.

pub mod acl;
mod hooks;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use crowdflow_contract::wire::Topics;
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;

use crowdflow_contract::log_limit::LogLimit;

/// Why the broker did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The address could not be bound (in use, or not ours to bind).
    #[error("the embedded MQTT broker could not listen on {0} (is the port in use?)")]
    Bind(SocketAddr),
    /// The broker thread could not be started.
    #[error("cannot start the embedded MQTT broker: {0}")]
    Thread(#[from] std::io::Error),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Who may log in, and as what.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// username -> password: the sensors' accounts (user name = sensor id) and the
    /// aggregator's.
    pub credentials: HashMap<String, String>,
    /// The topic layout the ACL is written against.
    pub topics: Topics,
    /// The aggregator's user name.
    pub aggregator: String,
    /// The aggregator's client id (its persistent session is bound to its account).
    pub aggregator_client_id: String,
    /// Where refusals are counted, by reason (`crowdflow_broker_refused_total`).
    pub refused: prometheus::IntCounterVec,
}

/// What the embedded broker needs.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Where to listen for MQTT 3.1.1 and 5 clients.
    pub listen: SocketAddr,
    /// The accounts and their ACL; `None` lets anyone connect and do anything (loopback only,
    /// see `broker.listen` in the config).
    pub accounts: Option<Accounts>,
    /// Largest accepted packet, in bytes; a client sending a larger one is disconnected.
    pub max_payload: usize,
    /// Most MQTT sessions at once (`broker.max_connections`); beyond it a connection is
    /// refused, so sensors and HTTP cannot use up each other's file descriptors.
    pub max_connections: usize,
    /// TLS on `listen` (`broker.tls_cert_file`); the broker itself then listens on a
    /// loopback port of its own ([`tls`]).
    pub tls: Option<tls::ServerTls>,
    /// Where messages dropped undelivered are counted, by reason
    /// (`crowdflow_broker_dropped_total`).
    pub dropped: prometheus::IntCounterVec,
}

/// Messages queued per session beyond those in flight; when full, new messages for that
/// session are dropped (rmqtt's `MessageQueueFull`, counted in
/// `crowdflow_broker_dropped_total`), other sessions are not affected. The broker
/// acknowledges a sensor's sketch on arrival, so the queue must hold a burst: sensors back
/// from an outage send their outboxes at once, faster than the aggregator stores. With
/// 2,048 a burst of 40,000 sketches lost 32,000 (measured, `benches/ingest.rs`); 50,000 is
/// half an hour of a 400-sensor city (1,600 a minute), about 400 MB at 8.3 KB a dense
/// sketch, the bound of the shipped Mosquitto's 200,000 scaled to one process.
const QUEUE: usize = 50_000;
/// Unacknowledged QoS 1 messages per session: the aggregator's own window
/// ([`crate::link`]), which covers a whole batch ([`crate::batching::MAX_BATCH`]).
const INFLIGHT: u16 = 2000;
/// How long a connection may take to send CONNECT; it holds a descriptor meanwhile.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long the aggregator's persistent session (and what is queued for it) outlives its
/// connection: a restart takes seconds, an outage longer than this is a new start.
const SESSION_EXPIRY: Duration = Duration::from_secs(2 * 60 * 60);

/// A running embedded broker: it stops, closing its port and every connection, when this is
/// dropped (an aggregator stopped in-process frees its port for the next one).
#[derive(Debug)]
pub struct EmbeddedBroker {
    listen: SocketAddr,
    /// Where this process reaches the broker itself (behind TLS: its loopback port).
    local: SocketAddr,
    /// Dropped: the broker's runtime ends.
    _running: tokio::sync::oneshot::Sender<()>,
}

impl EmbeddedBroker {
    /// Starts the broker on its own thread (and Tokio runtime) and returns once it listens.
    pub fn start(settings: &BrokerSettings) -> Result<EmbeddedBroker, BrokerError> {
        let mut settings = settings.clone();
        let listen = settings.listen;
        let acceptor = settings.tls.as_ref().map(tls::acceptor).transpose()?;
        // Behind TLS the broker listens on a free loopback port of its own.
        let local = match acceptor {
            Some(_) => std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?,
            None => listen,
        };
        settings.listen = local;
        let (ready, bound) = std::sync::mpsc::channel();
        let (running, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("mqtt-broker")
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready.send(Err(BrokerError::Thread(e)));
                        return;
                    }
                };
                let broker = async move {
                    if let Some(acceptor) = acceptor {
                        let Ok(outer) = tokio::net::TcpListener::bind(listen).await else {
                            let _ = ready.send(Err(BrokerError::Bind(listen)));
                            return;
                        };
                        let max = settings.max_connections;
                        tokio::spawn(tls::terminate(outer, local, acceptor, max, HANDSHAKE));
                    }
                    serve(settings, ready).await;
                };
                // Until the handle is dropped; the runtime, its listeners and connections
                // go with it.
                runtime.block_on(async move {
                    tokio::select! {
                        () = broker => {}
                        _ = stopped => {}
                    }
                });
            })?;
        bound
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| BrokerError::Bind(listen))??;
        Ok(EmbeddedBroker {
            listen,
            local,
            _running: running,
        })
    }

    /// The address clients connect to.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Where this process connects to the broker itself (plain MQTT; behind TLS, the
    /// broker's loopback port).
    pub fn local(&self) -> SocketAddr {
        self.local
    }
}

/// Binds, reports the outcome on `ready`, then serves until the process ends.
async fn serve(settings: BrokerSettings, ready: std::sync::mpsc::Sender<Result<(), BrokerError>>) {
    // The load check refuses logins while the machine is busy, which on a small box hosting
    // the aggregator too would refuse sensors at random.
    let scx = ServerContext::new()
        .busy_check_enable(false)
        .mqtt_max_sessions(isize::try_from(settings.max_connections).unwrap_or(isize::MAX))
        .build()
        .await;
    if let Some(accounts) = &settings.accounts {
        install_guard(&scx, accounts).await;
    }
    install_drop_counter(&scx, &settings.dropped).await;
    let listener = match listener(&settings) {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!("embedded broker bind: {e}");
            let _ = ready.send(Err(BrokerError::Bind(settings.listen)));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    if let Err(e) = MqttServer::new(scx).listener(listener).build().run().await {
        tracing::error!("embedded MQTT broker stopped: {e}");
    }
}

/// The listener: plain TCP (TLS would need rmqtt's `tls` feature, which selects rustls with
/// aws-lc-rs; see ARCHITECTURE.md), with the bounds above.
fn listener(settings: &BrokerSettings) -> rmqtt::Result<rmqtt::net::Listener> {
    Builder::new()
        .name("crowdflow")
        .laddr(settings.listen)
        // Connections it accepted inherit the flag, so their TIME-WAITs do not stop a
        // restarted aggregator from binding the port again (a kill -9 left it unusable for a
        // minute).
        .reuseaddr(Some(true))
        .allow_anonymous(settings.accounts.is_none())
        .max_connections(settings.max_connections)
        .max_packet_size(u32::try_from(settings.max_payload).unwrap_or(u32::MAX))
        .max_inflight(NonZeroU16::new(INFLIGHT).unwrap_or(NonZeroU16::MIN))
        .max_mqueue_len(QUEUE)
        .handshake_timeout(HANDSHAKE)
        .session_expiry_interval(SESSION_EXPIRY)
        // Queued messages are kept until the session expires, not dropped after rmqtt's
        // default five minutes: the bound is the queue length.
        .message_expiry_interval(Duration::ZERO)
        .shared_subscription(false)
        .bind()?
        .tcp()
}

/// The reasons `crowdflow_broker_dropped_total` counts by.
pub const DROP_REASONS: [&str; 3] = ["queue_full", "expired", "other"];

/// Registers the count of dropped messages.
async fn install_drop_counter(scx: &ServerContext, dropped: &prometheus::IntCounterVec) {
    let register = scx.extends.hook_mgr().register();
    let counter = hooks::DropCounter {
        counted: dropped.clone(),
        log: LogLimit::per_minute("embedded broker drops"),
    };
    register.add(Type::MessageDropped, Box::new(counter)).await;
    register.start().await;
}

/// Registers the login, subscribe and publish checks.
async fn install_guard(scx: &ServerContext, accounts: &Accounts) {
    let guard = Arc::new(hooks::Guard {
        credentials: accounts.credentials.clone(),
        acl: acl::Acl::new(
            accounts.topics.clone(),
            &accounts.aggregator,
            &accounts.aggregator_client_id,
        ),
        log: LogLimit::per_minute("embedded broker refusals"),
        counted: accounts.refused.clone(),
    });
    let register = scx.extends.hook_mgr().register();
    for typ in [
        Type::ClientAuthenticate,
        Type::ClientSubscribeCheckAcl,
        Type::MessagePublishCheckAcl,
    ] {
        register
            .add(typ, Box::new(hooks::GuardHandler(guard.clone())))
            .await;
    }
    register.start().await;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use std::time::Instant;

    /// An embedded broker without accounts on a free local port, and its drop counter.
    pub(crate) async fn started() -> (EmbeddedBroker, u16, prometheus::IntCounterVec) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let dropped = crate::metrics::Metrics::default().broker_dropped;
        let settings = BrokerSettings {
            listen: ([127, 0, 0, 1], port).into(),
            accounts: None,
            max_payload: 1 << 17,
            max_connections: 10,
            tls: None,
            dropped: dropped.clone(),
        };
        let broker = tokio::task::spawn_blocking(move || EmbeddedBroker::start(&settings))
            .await
            .expect("thread")
            .expect("broker");
        (broker, port, dropped)
    }

    /// Publishes `count` 200-byte sketch messages (QoS 1) over `sensors` topics, from a client
    /// that keeps `inflight` unacknowledged.
    pub(crate) async fn publish_burst(port: u16, count: usize, sensors: usize, inflight: u16) {
        let mut options = MqttOptions::new("burst-publisher", "127.0.0.1", port);
        options.set_inflight(inflight);
        let (publisher, mut publisher_events) = AsyncClient::new(options, count);
        tokio::spawn(async move { while publisher_events.poll().await.is_ok() {} });
        for i in 0..count {
            publisher
                .publish(
                    format!("crowdflow/v1/sketch/s{}", i % sensors),
                    QoS::AtLeastOnce,
                    false,
                    vec![0u8; 200],
                )
                .await
                .expect("publish");
        }
    }

    /// A burst of sketches faster than the subscriber acknowledges them (the aggregator
    /// acknowledges after each commit) is queued whole, not dropped: the broker has already
    /// acknowledged each to its sensor, which let go of it. With a queue of 2,048 this lost
    /// most of a 40,000-message burst.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_beyond_the_window_is_queued_not_dropped() {
        const BURST: usize = 8_000;
        let (_broker, port, dropped) = started().await;
        // A slow subscriber: acknowledges half a window at a time, 100 ms later.
        let mut options = MqttOptions::new("slow-subscriber", "127.0.0.1", port);
        options.set_manual_acks(true).set_inflight(INFLIGHT);
        let (subscriber, mut events) = AsyncClient::new(options, 4 * INFLIGHT as usize);
        subscriber
            .subscribe("crowdflow/v1/sketch/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        while !matches!(events.poll().await, Ok(Event::Incoming(Packet::SubAck(_)))) {}
        let received = tokio::spawn(async move {
            let (mut received, mut unacked) = (0, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(30);
            while received < BURST && Instant::now() < deadline {
                let event = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
                let idle = event.is_err();
                if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) = event {
                    received += 1;
                    unacked.push(p);
                }
                if unacked.len() >= usize::from(INFLIGHT) / 2 || idle {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    for p in unacked.drain(..) {
                        subscriber.try_ack(&p).expect("ack");
                    }
                }
            }
            received
        });
        publish_burst(port, BURST, 50, 500).await;
        assert_eq!(
            received.await.expect("subscriber"),
            BURST,
            "every message delivered"
        );
        assert_eq!(dropped.with_label_values(&["queue_full"]).get(), 0);
    }
}
