//! `crowdflow-aggregator run`: the broker connection, the salt authority and ingest.
//!
//! Sketch messages are acknowledged to the broker only after the batch holding them is
//! committed to storage (persistent session, manual acks), so a crash between receive and
//! commit loses nothing: the broker redelivers, and merging is idempotent.
//!
//! Salt authority with several replicas: every replica listens to the salt topic. A replica
//! that has heard an announcement from a lower authority id within three announcement
//! intervals follows it (adopts its salts, announces nothing); otherwise it leads. So
//! exactly one salt per epoch reaches the agents, and when the leader dies the next-lowest
//! replica takes over with the same salts it adopted.
//!
//! A lone aggregator that restarts mid-epoch has lost the epoch's salt (salts never touch a
//! disk) but has its fingerprint in storage. Before drawing a new salt it asks the agents for
//! that one ([`SaltRecovery`], for up to `salt.recover_for_s`) and takes it back only if its
//! fingerprint is the recorded one, so a sensor cannot plant a salt. Counting then goes on
//! under the same salt, and no device is counted twice because of the restart.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use crowdflow_contract::epoch::EpochId;
use crowdflow_contract::mqtt;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::wire::{SaltAnnouncement, SaltRecovery};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};

use crate::api::{self, AppState};
use crate::broker::{BrokerError, BrokerSettings, EmbeddedBroker};
use crate::config::{AggregatorConfig, BrokerMode};
use crate::ingest::Validator;
use crate::live::LiveBoard;
use crate::metrics::Metrics;
use crate::salt::{Drawn, SaltAuthority};
use crate::store::{Batch, Rejected, Store, StoreError};

/// Largest message accepted from the broker.
const MAX_PACKET: usize = 1 << 20;
/// Messages stored per transaction at most. Brokers stop sending once their in-flight window
/// of unacknowledged messages is full (and we acknowledge only after commit), so batches
/// must stay well below that window: 1000 on the embedded broker; set Mosquitto's
/// `max_inflight_messages` accordingly (deploy/ does).
const MAX_BATCH: usize = 512;
/// Longest a received message waits before its batch is committed.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// How often expired data is purged (every replica purges; purging is idempotent).
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How long a new replica listens for a leader before it leads.
const LISTEN_FIRST: Duration = Duration::from_secs(3);
/// How often it repeats the request meanwhile (QoS 0: agents reconnecting may miss one).
const RECOVER_ASK_EVERY: Duration = Duration::from_secs(2);

/// A lost salt being asked back from the agents.
struct Recovery {
    epoch: EpochId,
    /// Fingerprints recorded for the epoch (one per salt it ever had).
    wanted: Vec<SaltFingerprint>,
    until: tokio::time::Instant,
    last_ask: Option<tokio::time::Instant>,
}

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
    #[error("cannot draw a salt: {0}")]
    Salt(#[from] crowdflow_contract::salt::SaltError),
}

struct State<S> {
    config: Arc<AggregatorConfig>,
    store: S,
    ingest: Validator,
    metrics: Metrics,
    authority: SaltAuthority,
    client: AsyncClient,
    /// What the received sketch messages add to storage.
    pending: Batch,
    /// Those messages in arrival order (acks must follow that order).
    unacked: Vec<Publish>,
    /// When the oldest pending message arrived.
    pending_since: Option<tokio::time::Instant>,
    /// When the purge job runs next.
    purge_due: tokio::time::Instant,
    /// Last run of the salt authority's housekeeping.
    last_authority_tick: Option<tokio::time::Instant>,
    peers: BTreeMap<String, tokio::time::Instant>,
    started: tokio::time::Instant,
    announce_due: bool,
    last_announce: Option<tokio::time::Instant>,
    recovery: Option<Recovery>,
    /// Told after each commit, to push the new numbers at once.
    live: LiveBoard,
}

/// Runs the aggregator until `shutdown` completes.
pub async fn run<S: Store>(
    config: Arc<AggregatorConfig>,
    store: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let metrics = Metrics::default();
    let addr = config.http_listen;
    let listener = api::bind(addr)
        .await
        .map_err(|source| ServiceError::Http { addr, source })?;
    tracing::info!(listen = %addr, "HTTP API listening");
    let live = LiveBoard::default();
    let evaluations = tokio::spawn(live.clone().run(
        store.clone(),
        config.clone(),
        metrics.clone(),
    ));
    let state = AppState {
        config: config.clone(),
        store: store.clone(),
        live: live.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(async move {
        if let Err(e) = api::serve(listener, state).await {
            tracing::error!("HTTP API stopped: {e}");
        }
    });
    let mut own_account = config
        .broker
        .username
        .clone()
        .zip(config.broker.password.clone());
    let (host, port, tls) = match &config.broker.mode {
        BrokerMode::Embedded { listen } => {
            let mut credentials = config.broker_credentials();
            if let (Some(credentials), None) = (credentials.as_mut(), &own_account) {
                // Sensors need credentials, so the aggregator needs an account too: one with a
                // random password that lives in this process only.
                let account = (
                    config.broker.client_id.clone(),
                    crate::config::new_secret()?,
                );
                credentials.insert(account.0.clone(), account.1.clone());
                own_account = Some(account);
            }
            let settings = BrokerSettings {
                listen: *listen,
                credentials,
                max_payload: MAX_PACKET,
            };
            let broker = tokio::task::spawn_blocking(move || EmbeddedBroker::start(&settings))
                .await
                .map_err(|e| BrokerError::Thread(std::io::Error::other(e.to_string())))??;
            tracing::info!(listen = %broker.listen(), "embedded MQTT broker listening");
            let ip = match broker.listen().ip() {
                ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                ip => ip,
            };
            (ip.to_string(), broker.listen().port(), None)
        }
        BrokerMode::External { host, port, tls } => (host.clone(), *port, tls.clone()),
    };
    let mut ingest = Validator::new(config.clone(), metrics.clone());
    let since = config
        .rotation
        .epoch_at(Timestamp::now() - SignedDuration::from_hours(24 * 8));
    let current = config.rotation.epoch_at(Timestamp::now());
    let mut wanted = Vec::new();
    for (epoch, fp) in store.known_epochs(since).await? {
        ingest.know(epoch, fp);
        if epoch == current {
            wanted.push(fp);
        }
    }
    let recovery = (!wanted.is_empty() && config.recover_for_s > 0).then(|| Recovery {
        epoch: current,
        wanted,
        until: tokio::time::Instant::now() + Duration::from_secs(config.recover_for_s),
        last_ask: None,
    });
    let (client, events) = connect(&config, &host, port, tls, own_account);
    let mut state = State {
        authority: SaltAuthority::new(&config.authority_id, config.rotation.clone()),
        config,
        store,
        ingest,
        metrics,
        client,
        pending: Batch::default(),
        unacked: Vec::new(),
        pending_since: None,
        purge_due: tokio::time::Instant::now(),
        last_authority_tick: None,
        peers: BTreeMap::new(),
        started: tokio::time::Instant::now(),
        announce_due: true,
        last_announce: None,
        recovery,
        live: live.clone(),
    };
    tracing::info!(broker = %format!("{host}:{port}"), "aggregator running");
    let (mut events, pump) = mqtt::pump(events);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(event) = events.recv() => match event {
                Ok(event) => state.on_event(event).await,
                Err(e) => {
                    state.metrics.broker_connected.set(0);
                    tracing::warn!("broker connection: {e}");
                }
            },
            _ = tick.tick() => state.on_tick().await?,
            () = &mut shutdown => break,
        }
    }
    // Stopped before the last commit, which would start an evaluation the shutting-down
    // runtime cancels halfway (and logs as a failure).
    evaluations.abort();
    state.flush().await;
    let _ = state.client.try_disconnect();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        mqtt::flush_until_disconnect(&mut events),
    )
    .await;
    pump.abort();
    Ok(())
}

fn connect(
    config: &AggregatorConfig,
    host: &str,
    port: u16,
    tls: Option<crowdflow_contract::config_file::TlsFiles>,
    account: Option<(String, String)>,
) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(config.broker.client_id.clone(), host, port);
    options
        .set_keep_alive(Duration::from_secs(15))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(1000);
    if let Some((user, password)) = account {
        options.set_credentials(user, password);
    }
    if let Some(tls) = &tls {
        mqtt::use_tls(&mut options, tls);
    }
    AsyncClient::new(options, 1024)
}

impl<S: Store> State<S> {
    fn topics(&self) -> &crowdflow_contract::wire::Topics {
        &self.config.broker.topics
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                let sketches = match self.config.broker.mode {
                    BrokerMode::External { .. } => format!(
                        "$share/{}/{}",
                        self.config.broker.shared_group,
                        self.topics().sketch_filter()
                    ),
                    BrokerMode::Embedded { .. } => self.topics().sketch_filter(),
                };
                for (filter, qos) in [
                    (sketches, QoS::AtLeastOnce),
                    (self.topics().salt_request_filter(), QoS::AtMostOnce),
                    (self.topics().salt(), QoS::AtMostOnce),
                    (self.topics().salt_return_filter(), QoS::AtMostOnce),
                ] {
                    if let Err(e) = self.client.try_subscribe(filter, qos) {
                        tracing::error!("cannot subscribe: {e}");
                    }
                }
                self.metrics.broker_connected.set(1);
                tracing::info!("connected to the broker");
            }
            Event::Incoming(Packet::Publish(p)) => self.on_publish(p).await,
            _ => {}
        }
    }

    async fn on_publish(&mut self, p: Publish) {
        let topic = p.topic.clone();
        // The level under the prefix says what it is; no topic string is built per message.
        let level = topic
            .strip_prefix(self.topics().prefix())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or_default();
        if level == "salt" {
            self.on_announcement(&p.payload).await;
        } else if level.starts_with("salt/return/") {
            self.on_salt_return(&topic, &p.payload).await;
        } else if level.starts_with("salt/request/") {
            self.announce_due = true;
        } else if level.starts_with("sketch/") {
            match self.ingest.check(&topic, &p.payload, Timestamp::now()) {
                Ok(accepted) => self.pending.accepted.push(accepted),
                Err(reject) => {
                    tracing::warn!(topic = %topic, reason = reject.reason(), "sketch rejected: {reject}");
                    if let Some(sensor) = self.ingest.known_sensor(&topic) {
                        let reason = reject.reason();
                        self.pending.rejects.push(Rejected { sensor, reason });
                    }
                }
            }
            self.pending_since
                .get_or_insert_with(tokio::time::Instant::now);
            self.unacked.push(p);
            if self.unacked.len() >= MAX_BATCH {
                self.flush().await;
            }
        }
        // QoS 0 messages (salt topics) need no acknowledgement.
    }

    async fn on_announcement(&mut self, payload: &[u8]) {
        let Ok(announcement) = SaltAnnouncement::decode(payload) else {
            tracing::warn!("ignoring an undecodable salt announcement");
            return;
        };
        if announcement.authority == self.config.authority_id {
            return; // our own
        }
        self.peers
            .insert(announcement.authority.clone(), tokio::time::Instant::now());
        if announcement.authority < self.config.authority_id {
            let adopted = self.authority.adopt(announcement);
            self.record(adopted).await;
        }
    }

    /// Takes back a salt an agent returned, if it is one this epoch had (by fingerprint).
    async fn on_salt_return(&mut self, topic: &str, payload: &[u8]) {
        let Some(recovery) = &self.recovery else {
            return; // not asked, or already recovered
        };
        let Ok(mut returned) = SaltAnnouncement::decode(payload) else {
            tracing::warn!(topic, "ignoring an undecodable returned salt");
            return;
        };
        let (epoch, wanted) = (recovery.epoch, recovery.wanted.clone());
        returned
            .salts
            .retain(|s| s.epoch == epoch && wanted.contains(&s.salt.fingerprint()));
        if returned.salts.is_empty() {
            tracing::warn!(
                topic,
                "ignoring a returned salt whose fingerprint was never recorded for the running epoch"
            );
            return;
        }
        let adopted = self.authority.adopt(returned);
        tracing::info!(%epoch, topic, "salt of the running epoch recovered from an agent: counting goes on under it");
        self.record(adopted).await;
        self.recovery = None;
        self.announce_due = true;
    }

    /// While a lost salt is being asked back: asks (again) and says so; `false` once the wait
    /// is over (recovered, adopted from a leader, or given up).
    fn recovering(&mut self) -> bool {
        let Some(recovery) = &mut self.recovery else {
            return false;
        };
        if self.authority.fingerprint(recovery.epoch).is_some() {
            self.recovery = None; // a leader's announcement brought it
            return false;
        }
        let now = tokio::time::Instant::now();
        if now >= recovery.until {
            tracing::warn!(epoch = %recovery.epoch, "no agent returned the running epoch's salt in time (salt.recover_for_s): drawing a new one (devices heard before and after the restart count once per salt)");
            self.recovery = None;
            return false;
        }
        if recovery
            .last_ask
            .is_none_or(|t| t.elapsed() >= RECOVER_ASK_EVERY)
        {
            for fp in &recovery.wanted {
                let request = SaltRecovery {
                    epoch: recovery.epoch,
                    fp: *fp,
                };
                let _ = self.client.try_publish(
                    self.config.broker.topics.salt_recover(),
                    QoS::AtMostOnce,
                    false,
                    request.encode(),
                );
            }
            if recovery.last_ask.is_none() {
                tracing::info!(epoch = %recovery.epoch, "restarted mid-epoch: asking the agents for the running epoch's salt");
            }
            recovery.last_ask = Some(now);
        }
        true
    }

    /// Whether a lower authority id announced recently.
    fn follows(&self) -> bool {
        let window = Duration::from_secs(self.config.announce_every_s * 3);
        self.peers
            .iter()
            .any(|(id, seen)| *id < self.config.authority_id && seen.elapsed() < window)
    }

    async fn record(&mut self, drawn: Vec<Drawn>) {
        for d in drawn {
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
    }

    async fn on_tick(&mut self) -> Result<(), ServiceError> {
        if self.pending_since.is_some_and(|t| t.elapsed() >= MAX_WAIT) {
            self.flush().await;
        }
        if tokio::time::Instant::now() >= self.purge_due {
            self.purge();
        }
        // Salt housekeeping once a second is plenty.
        if self
            .last_authority_tick
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            && !self.announce_due
        {
            return Ok(());
        }
        self.last_authority_tick = Some(tokio::time::Instant::now());
        // Replicas share only an external broker: with the embedded one there is no peer to
        // wait for.
        let listening = matches!(self.config.broker.mode, BrokerMode::External { .. })
            && self.started.elapsed() < LISTEN_FIRST;
        let leads = !listening && !self.follows();
        self.metrics.salt_leader.set(i64::from(leads));
        if !leads || self.recovering() {
            return Ok(());
        }
        let drawn = self.authority.tick(Timestamp::now())?;
        if !drawn.is_empty() {
            self.announce_due = true;
        }
        self.record(drawn).await;
        let interval = Duration::from_secs(self.config.announce_every_s);
        let recent = self
            .last_announce
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        let stale = self.last_announce.is_none_or(|t| t.elapsed() >= interval);
        if (self.announce_due && !recent) || stale {
            let payload = self.authority.announcement(Timestamp::now());
            // QoS 0, never retained: no broker stores a salt.
            if self
                .client
                .try_publish(
                    self.topics().salt(),
                    QoS::AtMostOnce,
                    false,
                    payload.to_vec(),
                )
                .is_ok()
            {
                self.announce_due = false;
                self.last_announce = Some(tokio::time::Instant::now());
            }
        }
        Ok(())
    }

    /// Stores the pending batch and then acknowledges its messages; on failure keeps them
    /// for the next attempt (unacknowledged, so a restart gets them redelivered).
    async fn flush(&mut self) {
        if self.unacked.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        match self.store.merge_batch(self.pending.clone()).await {
            Ok(()) => {
                self.metrics.committed(started.elapsed());
                for p in self.unacked.drain(..) {
                    let _ = self.client.try_ack(&p);
                }
                if !self.pending.accepted.is_empty() {
                    self.live.news();
                }
                self.pending = Batch::default();
                self.pending_since = None;
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::error!(
                    "storing {} sketches failed, will retry: {e}",
                    self.unacked.len()
                );
            }
        }
    }

    /// Enforces the retention policy beside ingest (a purge deletes in small transactions);
    /// a failure is retried at the next run.
    fn purge(&mut self) {
        self.purge_due = tokio::time::Instant::now() + PURGE_EVERY;
        let store = self.store.clone();
        let retention = self.config.retention;
        let purged = self.metrics.purged.clone();
        tokio::spawn(async move {
            match store.purge(retention, Timestamp::now()).await {
                Ok(report) => {
                    for (what, n) in [
                        ("sketches", report.sketches),
                        ("numbers", report.numbers),
                        ("sensor_windows", report.sensor_windows),
                    ] {
                        purged.with_label_values(&[what]).inc_by(n);
                    }
                    tracing::info!(
                        sketches = report.sketches,
                        numbers = report.numbers,
                        sensor_windows = report.sensor_windows,
                        "retention purge done"
                    );
                }
                Err(e) => tracing::error!("retention purge failed: {e}"),
            }
        });
    }
}
