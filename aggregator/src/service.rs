//! `crowdflow-aggregator run`: wires the HTTP API, the broker link, ingest batching, the
//! salt protocol and the retention purge into one event loop.
//!
//! The jobs live in their own modules: [`crate::link`] (broker start-up and session),
//! [`crate::batching`] (acknowledgement after commit), [`crate::salt`] (authority,
//! leadership, recovery, as state machines returning [`Action`]s), [`crate::purge`]. This
//! module routes each message by its topic's kind ([`TopicKind`]) and carries out what
//! those modules ask.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crowdflow_contract::mqtt;
use crowdflow_contract::wire::{SaltAnswer, SensorId, TopicKind};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};

use crate::api::{self, AppState};
use crate::batching::{Batcher, Taken};
use crate::broker::BrokerError;
use crate::config::{AggregatorConfig, BrokerMode};
use crate::ingest::{Reject, Validator};
use crate::link::{self, Acknowledger, LinkError};
use crate::live::LiveBoard;
use crate::metrics::Metrics;
use crate::purge::{self, PurgeSchedule};
use crate::salt::{
    Action, Drawn, Leadership, Recovery, SaltAuthority, SaltProtocol, Signing, key_file,
};
use crate::store::{Rejected, Store, StoreError};
use crowdflow_contract::log_limit::{self, LogLimit};
use tracing::Instrument;

/// How far back stored salt fingerprints are loaded at start (sketches of ended epochs
/// still arrive from agents' outboxes).
const KNOWN_EPOCHS_BACK: SignedDuration = SignedDuration::from_hours(24 * 8);

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The embedded broker did not start.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Storage failed at start.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP address could not be bound.
    #[error("cannot listen for HTTP on {addr} (http.listen): {source}")]
    Http {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No salt could be drawn.
    #[error(transparent)]
    SigningKey(#[from] crate::salt::key_file::KeyFileError),
    /// The salt could not be drawn.
    #[error("cannot draw a salt: {0}")]
    Salt(#[from] crowdflow_contract::salt::SaltError),
    /// `http.max_connections` would let HTTP take the file descriptors the broker needs.
    #[error(transparent)]
    OpenFiles(#[from] api::server::OpenFileLimit),
}

impl From<LinkError> for ServiceError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Broker(e) => ServiceError::Broker(e),
            LinkError::Secret(e) => ServiceError::Salt(e),
        }
    }
}

/// The running service: what each incoming message and tick is handed to.
struct State<S> {
    config: Arc<AggregatorConfig>,
    store: S,
    ingest: Validator,
    metrics: Metrics,
    client: AsyncClient,
    /// Acknowledges committed messages without ever dropping one.
    acks: Acknowledger,
    batch: Batcher<Publish>,
    /// The batch being committed while the next one gathers (at most one, so batches are
    /// stored and acknowledged in arrival order).
    committing: Option<tokio::task::JoinHandle<Attempt>>,
    salts: SaltProtocol,
    purge: PurgeSchedule,
    /// Told after each commit, to push the new numbers at once.
    live: LiveBoard,
    /// Reject log lines, at most a few per reason and minute (the metrics count them all).
    reject_log: LogLimit,
    /// When each sensor was last answered whether it is known (four answers a second each at most).
    answered: HashMap<SensorId, Instant>,
}

/// A finished commit: its outcome, its batch (acknowledged, or put back on failure) and
/// when it started.
struct Attempt {
    result: Result<(), StoreError>,
    taken: Taken<Publish>,
    started: Instant,
}

/// The commit under way, once it ends (never, when none is).
async fn commit_ended(committing: &mut Option<tokio::task::JoinHandle<Attempt>>) -> Attempt {
    let Some(handle) = committing.as_mut() else {
        return std::future::pending().await;
    };
    let ended = handle.await;
    *committing = None;
    match ended {
        Ok(attempt) => attempt,
        // The commit task never panics (the store turns its own panics into errors); were
        // it to, its messages stay unacknowledged and the broker redelivers them.
        Err(e) => {
            tracing::error!("a commit task failed: {e}");
            std::future::pending().await
        }
    }
}

/// A sensor is told whether it is known at most this often (requests come from anyone the
/// broker lets in; answers must not become a flood).
const ANSWER_EVERY: Duration = Duration::from_millis(250);
/// Sensors remembered for [`ANSWER_EVERY`]; past this the memory starts over.
const ANSWERED_MAX: usize = 10_000;

/// Runs the aggregator until `shutdown` completes; its log lines carry
/// `aggregator{authority=...}` (the demo logs its agents beside it).
pub async fn run<S: Store>(
    config: Arc<AggregatorConfig>,
    store: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let span = tracing::info_span!("aggregator", authority = %config.authority_id);
    serve(config, store, shutdown).instrument(span).await
}

async fn serve<S: Store>(
    config: Arc<AggregatorConfig>,
    store: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let signing = signing(&config)?;
    let metrics = Metrics::default();
    labelled_at_zero(&metrics);
    let live = LiveBoard::default();
    // Both stop with this function: a service stopped in-process frees its ports.
    let http = AbortOnDrop(serve_http(&config, &store, &live, &metrics).await?);
    // Tasks log in the aggregator's span too (alerts, purges, the HTTP server).
    let evaluations = tokio::spawn(
        live.clone()
            .run(store.clone(), config.clone(), metrics.clone())
            .in_current_span(),
    );
    let session_secret = signing
        .key
        .derive_secret("crowdflow 2026-12 aggregator MQTT session");
    let mut endpoint = link::endpoint(&config, &metrics, session_secret.as_slice()).await?;
    let embedded = endpoint.embedded.take();
    let broker = format!("{}:{}", endpoint.host, endpoint.port);
    let mut ingest = Validator::new(config.clone(), metrics.clone());
    let salts = salt_protocol(&config, &store, &mut ingest, signing).await?;
    let (client, events) = link::connect(endpoint);
    let mut state = State {
        config,
        store,
        ingest,
        metrics,
        acks: Acknowledger::start(client.clone()),
        client,
        batch: Batcher::default(),
        committing: None,
        salts,
        purge: PurgeSchedule::starting(Instant::now()),
        live,
        reject_log: LogLimit::per_minute("sketch rejects"),
        answered: HashMap::new(),
    };
    tracing::info!(%broker, "aggregator running");
    let (mut events, pump) = mqtt::pump(events);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    // The link retries every second for as long as the broker is away: one line a minute.
    let broker_log = LogLimit::new("broker connection failures", 1, log_limit::WINDOW);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(event) = events.recv() => match event {
                Ok(event) => state.on_event(event).await,
                Err(e) => {
                    state.metrics.broker_connected.set(0);
                    if let Some(before) = broker_log.allow_counting("broker", Instant::now()) {
                        tracing::warn!(%broker, attempts_not_logged = before, "cannot use the broker: {}; retrying every second", mqtt::connection_error_text(&e));
                    }
                }
            },
            attempt = commit_ended(&mut state.committing) => state.on_committed(attempt).await,
            _ = tick.tick() => state.on_tick().await?,
            () = &mut shutdown => break,
        }
    }
    // Stopped before the last commit, which would start an evaluation the shutting-down
    // runtime cancels halfway (and logs as a failure).
    evaluations.abort();
    state.finish_commits().await;
    // The last acknowledgements reach the client while its events are taken (and dropped:
    // what arrives now is redelivered to the next session).
    let acknowledged = tokio::spawn(state.acks.finish(Duration::from_secs(2)));
    tokio::select! {
        _ = acknowledged => {}
        () = async { while events.recv().await.is_some() {} } => {}
    }
    let _ = state.client.try_disconnect();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        mqtt::flush_until_disconnect(&mut events),
    )
    .await;
    pump.abort();
    drop((http, embedded));
    Ok(())
}

/// Every labelled counter exists at 0 from the start, as Prometheus asks (a series that
/// appears only with its first event defeats `rate()` and absence alerts).
fn labelled_at_zero(metrics: &Metrics) {
    for reason in Reject::reasons() {
        metrics.rejects.with_label_values(&[reason]);
    }
    for what in crate::purge::PURGED {
        metrics.purged.with_label_values(&[what]);
    }
    for failure in crate::auth::Refusal::FAILURES {
        metrics.http_auth_failures.with_label_values(&[failure]);
    }
    for reason in crate::broker::DROP_REASONS {
        metrics.broker_dropped.with_label_values(&[reason]);
    }
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds the HTTP address and serves the API in a task of its own; refuses to start when
/// the HTTP and broker connection limits do not fit in the open-file limit together.
async fn serve_http<S: Store>(
    config: &Arc<AggregatorConfig>,
    store: &S,
    live: &LiveBoard,
    metrics: &Metrics,
) -> Result<tokio::task::JoinHandle<()>, ServiceError> {
    let broker = match config.broker.mode {
        BrokerMode::Embedded {
            max_connections, ..
        } => max_connections,
        BrokerMode::External { .. } => 0,
    };
    api::server::check_open_file_limit(config.http_limits.max_connections, broker)?;
    let addr = config.http_listen;
    let listener = api::bind(addr)
        .await
        .map_err(|source| ServiceError::Http { addr, source })?;
    tracing::info!(listen = %addr, "HTTP API listening");
    let state = AppState::new(config.clone(), store.clone(), live.clone(), metrics.clone());
    Ok(tokio::spawn(api::serve(listener, state).in_current_span()))
}

/// The salt protocol at start: the fingerprints in storage are accepted by `ingest`, and the
/// salts of the running epoch and (before a rotation) the next one, where recorded, are asked
/// back from the agents first.
async fn salt_protocol(
    config: &AggregatorConfig,
    store: &impl Store,
    ingest: &mut Validator,
    signing: Signing,
) -> Result<SaltProtocol, StoreError> {
    let now = Timestamp::now();
    let since = config.rotation.epoch_at(now - KNOWN_EPOCHS_BACK);
    let current = config.rotation.epoch_at(now);
    let mut wanted = Vec::new();
    for (epoch, fp) in store.known_epochs(since).await? {
        ingest.know(epoch, fp);
        // The running epoch's salt, and the next one's when it was drawn before the restart.
        if epoch >= current {
            wanted.push((epoch, fp));
        }
    }
    let started = Instant::now();
    let recover_for = Duration::from_secs(config.recover_for_s);
    let announce_every = Duration::from_secs(config.announce_every_s);
    // Replicas share only an external broker: with the embedded one there is no peer to
    // wait for.
    let listen_first = matches!(config.broker.mode, BrokerMode::External { .. });
    Ok(SaltProtocol::new(
        SaltAuthority::new(&config.authority_id, config.rotation.clone()),
        Leadership::new(&config.authority_id, announce_every, listen_first, started),
        Recovery::start(wanted, recover_for, started),
        announce_every,
        signing,
    ))
}

/// This replica's signing key (made on first start) and the peers it trusts; the public key
/// is logged at every start, since each agent must pin it.
fn signing(config: &AggregatorConfig) -> Result<Signing, ServiceError> {
    let path = &config.signing_key_file;
    let (key, origin) = key_file::load_or_create(path)?;
    let public = key.public_key();
    match origin {
        key_file::Origin::Created => tracing::info!(
            file = %path.display(),
            "created the salt signing key; pin its public key in every agent's [salt] trusted_keys: {public}"
        ),
        key_file::Origin::Loaded => tracing::info!(
            file = %path.display(),
            "salt announcements are signed by {public} (agents pin it in [salt] trusted_keys)"
        ),
    }
    Ok(Signing {
        key,
        trusted: config.trusted_keys.clone(),
    })
}

impl<S: Store> State<S> {
    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                for (filter, qos) in link::subscriptions(&self.config) {
                    if let Err(e) = self.client.try_subscribe(filter, qos) {
                        tracing::error!("cannot subscribe: {e}");
                    }
                }
                self.metrics.broker_connected.set(1);
                tracing::info!("aggregator connected to the broker");
            }
            Event::Incoming(Packet::Publish(p)) => self.on_publish(p).await,
            _ => {}
        }
    }

    async fn on_publish(&mut self, p: Publish) {
        // QoS 0 messages (salt topics) need no acknowledgement.
        match self.config.broker.topics.classify(&p.topic) {
            Some(TopicKind::Sketch) => self.on_sketch(p).await,
            Some(TopicKind::Salt) => {
                let actions = self
                    .salts
                    .on_announcement(&p.payload, p.retain, Instant::now());
                self.carry_out(actions).await;
            }
            Some(TopicKind::SaltReturn) => {
                let actions = self.salts.on_return(&p.topic, &p.payload);
                self.carry_out(actions).await;
            }
            Some(TopicKind::SaltRequest) => {
                self.salts.on_request();
                self.answer(&p.topic);
            }
            Some(TopicKind::Status | TopicKind::SaltRecover | TopicKind::SaltAnswer) | None => {}
        }
    }

    /// Validates a sketch message into the batch; commits the batch when full.
    async fn on_sketch(&mut self, p: Publish) {
        let now = Instant::now();
        match self.ingest.check(&p.topic, &p.payload, Timestamp::now()) {
            Ok(accepted) => self.batch.accept(accepted, p, now),
            Err(reject) => {
                let reason = reject.reason();
                if self.reject_log.allow(reason, now) {
                    tracing::warn!(topic = %p.topic, reason, "sketch rejected: {reject}");
                }
                let rejected = self
                    .ingest
                    .known_sensor(&p.topic)
                    .map(|sensor| Rejected { sensor, reason });
                self.batch.reject(rejected, p, now);
            }
        }
        if self.batch.is_full() {
            self.flush().await;
        }
    }

    /// Tells the sensor asking for the salt on `topic` whether this aggregator knows it: an
    /// unknown sensor gets the salt too, but its sketches are rejected, and `selfcheck` says so.
    fn answer(&mut self, topic: &str) {
        let topics = &self.config.broker.topics;
        let Ok(sensor) = topics.sensor_of(topic) else {
            return;
        };
        let now = Instant::now();
        if self
            .answered
            .get(&sensor)
            .is_some_and(|t| now.saturating_duration_since(*t) < ANSWER_EVERY)
        {
            return;
        }
        if self.answered.len() >= ANSWERED_MAX {
            self.answered.clear();
        }
        let listed = self.config.sensors.get(&sensor).map(|s| s.kinds.clone());
        let known = listed.is_some();
        // A reason of its own: these must not use up the lines of the sketch rejects, which
        // name the sensor's topic.
        if !known && self.reject_log.allow("unknown_sensor_salt_request", now) {
            tracing::warn!(
                sensor = %sensor,
                "a sensor this aggregator does not know asked for the salt: its sketches will be rejected until [[sensors]] lists it"
            );
        }
        let mut answer = SaltAnswer::new(
            sensor.clone(),
            known,
            &self.config.authority_id,
            Timestamp::now(),
        );
        if let Some(kinds) = listed {
            answer = answer.accepting(kinds);
        }
        let _ = self.client.try_publish(
            topics.salt_answer(&sensor),
            QoS::AtMostOnce,
            false,
            self.salts.sign_answer(&answer),
        );
        self.answered.insert(sensor, now);
    }

    /// Does what the salt protocol asks, in order.
    async fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Record(drawn) => self.record(drawn).await,
                Action::Announce(payload) => {
                    // QoS 0, never retained: no broker stores a salt.
                    let sent = self.client.try_publish(
                        self.config.broker.topics.salt(),
                        QoS::AtMostOnce,
                        false,
                        payload.to_vec(),
                    );
                    if sent.is_ok() {
                        self.salts.announced(Instant::now());
                    }
                }
                Action::AskRecovery { payload, .. } => {
                    let _ = self.client.try_publish(
                        self.config.broker.topics.salt_recover(),
                        QoS::AtMostOnce,
                        false,
                        payload,
                    );
                }
                Action::Lead(leads) => self.metrics.salt_leader.set(i64::from(leads)),
                Action::Refused { reason, why } => {
                    self.metrics.salt_refused.with_label_values(&[reason]).inc();
                    if self.reject_log.allow(reason, Instant::now()) {
                        tracing::warn!(reason, "ignoring {why}");
                    }
                }
            }
        }
    }

    /// Accepts sketches under a salt in use and records its fingerprint.
    async fn record(&mut self, d: Drawn) {
        self.ingest.know(d.epoch, d.fp);
        if let Err(e) = self
            .store
            .record_epoch(d.epoch, d.fp, &self.config.authority_id)
            .await
        {
            tracing::error!("cannot record the salt fingerprint of {}: {e}", d.epoch);
        }
        tracing::info!(epoch = %d.epoch, fp = %d.fp, "salt in use");
    }

    async fn on_tick(&mut self) -> Result<(), ServiceError> {
        let now = Instant::now();
        self.reject_log.flush(now);
        if self.batch.is_due(now) && self.committing.is_none() {
            self.flush().await;
        }
        if self.purge.take_due(now) {
            let purged = self.metrics.purged.clone();
            purge::spawn(self.store.clone(), self.config.retention, purged);
        }
        let actions = self.salts.tick(now, Timestamp::now())?;
        self.carry_out(actions).await;
        Ok(())
    }

    /// Starts committing the pending batch, after the commit under way has ended (one at a
    /// time: receiving and validating go on meanwhile, and batches are stored and acknowledged
    /// in arrival order).
    async fn flush(&mut self) {
        if let Some(previous) = self.committing.take() {
            match previous.await {
                Ok(attempt) => self.settle(attempt),
                Err(e) => tracing::error!("a commit task failed: {e}"),
            }
        }
        if self.batch.is_empty() {
            return;
        }
        let taken = self.batch.take();
        let store = self.store.clone();
        self.committing = Some(tokio::spawn(
            async move {
                let started = Instant::now();
                let result = taken.commit(&store).await;
                Attempt {
                    result,
                    taken,
                    started,
                }
            }
            .in_current_span(),
        ));
    }

    /// A commit ended: settles it, then commits what gathered meanwhile if it is due (after
    /// a failure the next tick retries, so a store that is down is not retried in a spin).
    async fn on_committed(&mut self, attempt: Attempt) {
        let stored = attempt.result.is_ok();
        self.settle(attempt);
        if stored && (self.batch.is_full() || self.batch.is_due(Instant::now())) {
            self.flush().await;
        }
    }

    /// Acknowledges a stored batch's messages and tells the live board; puts a failed one
    /// back for the next attempt.
    fn settle(&mut self, attempt: Attempt) {
        match attempt.result {
            Ok(()) => {
                self.metrics.committed(attempt.started.elapsed());
                let zones = attempt.taken.zones();
                for p in attempt.taken.messages {
                    self.acks.ack(p);
                }
                if !zones.is_empty() {
                    self.live.news(&zones);
                }
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::error!(
                    "storing {} sketches failed, will retry: {e}",
                    attempt.taken.messages.len()
                );
                self.batch.put_back(attempt.taken);
            }
        }
    }

    /// At shutdown: the commit under way, then what is pending (a failure stays
    /// unacknowledged, for the broker to redeliver).
    async fn finish_commits(&mut self) {
        self.flush().await;
        if let Some(last) = self.committing.take()
            && let Ok(attempt) = last.await
        {
            self.settle(attempt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counters_exist_at_zero_from_the_start() {
        let metrics = Metrics::default();
        labelled_at_zero(&metrics);
        let text = metrics.render();
        for line in [
            "crowdflow_ingest_rejects_total{reason=\"salt_mismatch\"} 0",
            "crowdflow_ingest_rejects_total{reason=\"bad_json\"} 0",
            "crowdflow_retention_purged_total{what=\"sketches\"} 0",
            "crowdflow_http_auth_failures_total{reason=\"unknown_token\"} 0",
            "crowdflow_broker_dropped_total{reason=\"queue_full\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
