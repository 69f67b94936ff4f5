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
}

/// Messages queued per session beyond those in flight; when full, new messages for that
/// session are dropped (rmqtt's `MessageQueueFull`), other sessions are not affected. 2048
/// sketches (8.3 KB each) are about 17 MB and over a minute of a 400-sensor city (1,600 a
/// minute) should the aggregator stall; at most 2048 x `max_payload` bytes (256 MiB at the
/// aggregator's 128 KiB).
const QUEUE: usize = 2048;
/// Unacknowledged QoS 1 messages per session: the aggregator's own window
/// ([`crate::link`]), which covers a whole batch ([`crate::batching::MAX_BATCH`]).
const INFLIGHT: u16 = 1000;
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
