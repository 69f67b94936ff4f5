//! The live board: every zone's current occupancy, density, level of service, trend and
//! staleness (design §6), re-evaluated every two seconds from storage, with alerts raised
//! when a zone crosses a threshold or goes stale, pushed to the live stream.
//!
//! [`evaluation`] computes the numbers, [`alerts`] raises and stores alerts; this module
//! keeps the latest board and the stream of its changes.

pub mod alerts;
pub mod evaluation;
pub mod flow;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};

use crate::config::AggregatorConfig;
use crate::metrics::Metrics;
use crate::people::Floors;
use crate::store::{Alert, Store};
use crate::zone::ZoneId;

pub use alerts::RaisedLevels;
pub(crate) use evaluation::level_name;
pub use evaluation::{
    GateFlow, Level, TREND_MIN, Trend, TrendDirection, ZoneLive, evaluate, evaluate_zone, level,
    settled_end, silence_limit, zones_last_data,
};
pub use flow::ZoneFlow;

/// How often the board is re-evaluated without news (staleness, trends, other replicas'
/// commits).
pub const EVALUATE_EVERY: Duration = Duration::from_secs(2);
/// After a commit, how long the board waits for the other sensors' windows of the same
/// moment before it evaluates: one evaluation for all of them.
pub const GATHER: Duration = Duration::from_millis(250);

/// What the live stream carries.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LiveEvent {
    /// A zone's numbers changed.
    Zone(Box<ZoneLive>),
    /// An alert was raised.
    Alert(Alert),
}

#[derive(Debug, Default)]
struct Board {
    zones: Vec<ZoneLive>,
}

/// The shared live board: the latest evaluation and the stream of changes.
#[derive(Debug, Clone)]
pub struct LiveBoard {
    board: Arc<RwLock<Board>>,
    events: broadcast::Sender<LiveEvent>,
    /// Raised when new data was committed.
    news: Arc<Notify>,
    /// Learned people floors, shared with the API.
    floors: Floors,
    /// The alert state per zone: levels raised (hysteresis), silence announced, gates'
    /// stop-and-go signs.
    raised: Arc<std::sync::Mutex<RaisedLevels>>,
    /// When the first evaluation ran: silence is announced only a silence limit later.
    started: Arc<std::sync::OnceLock<Timestamp>>,
    /// When sketches of each zone last arrived (zone id -> arrival): sensors that deliver
    /// old windows (an outbox draining, history being written) are behind, not silent.
    arrived: Arc<std::sync::Mutex<BTreeMap<String, Timestamp>>>,
}

impl Default for LiveBoard {
    fn default() -> Self {
        LiveBoard {
            board: Arc::default(),
            events: broadcast::channel(1024).0,
            news: Arc::default(),
            floors: Floors::default(),
            raised: Arc::default(),
            started: Arc::default(),
            arrived: Arc::default(),
        }
    }
}

impl LiveBoard {
    /// The latest evaluation of every zone.
    pub fn zones(&self) -> Vec<ZoneLive> {
        self.board
            .read()
            .map(|b| b.zones.clone())
            .unwrap_or_default()
    }

    /// The zones' learned people floors (refreshed by the evaluations).
    pub fn floors(&self) -> &Floors {
        &self.floors
    }

    /// Sends `alert` (again) to the stream's subscribers: an acknowledgement reaches every
    /// screen.
    pub fn announce(&self, alert: Alert) {
        let _ = self.events.send(LiveEvent::Alert(alert));
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// Installs a new evaluation, raising and storing alerts; pushes what changed.
    pub async fn update(
        &self,
        store: &impl Store,
        config: &AggregatorConfig,
        metrics: &Metrics,
        zones: Vec<ZoneLive>,
    ) {
        let before = self.zones();
        // The first evaluation takes up where the stored alerts left off.
        if before.is_empty() {
            let since = Timestamp::now() - jiff::SignedDuration::from_hours(24);
            match store.alerts(since, 1000).await {
                Ok(stored) => {
                    if let Ok(mut raised) = self.raised.lock() {
                        raised.resume(&stored);
                    }
                }
                Err(e) => tracing::warn!("stored alerts not read, alert state starts afresh: {e}"),
            }
        }
        let now = zones.first().map_or_else(Timestamp::now, |z| z.updated_at);
        let started = *self.started.get_or_init(|| now);
        let limit = silence_limit(config);
        let settled = now >= started + limit;
        for z in &zones {
            let old = before.iter().find(|b| b.id == z.id);
            if let Some(zone) = config.zones.values().find(|c| c.id.as_str() == z.id) {
                let mut due = Vec::new();
                if let Ok(mut raised) = self.raised.lock() {
                    // Its sensors deliver, if old windows: behind, not silent.
                    let silent_for_real = settled && !self.delivering(&z.id, now, limit);
                    due.extend(raised.staleness(z, zone, silent_for_real, limit));
                    due.extend(raised.step(z, zone));
                    due.extend(raised.stop_and_go(z, zone));
                }
                for alert in alerts::record(store, due).await {
                    let _ = self.events.send(LiveEvent::Alert(alert));
                }
            }
            metrics.observe_zone(&z.gauges());
            let changed = old.is_none_or(|o| {
                let mut o = o.clone();
                o.updated_at = z.updated_at;
                o != *z
            });
            if changed {
                let _ = self.events.send(LiveEvent::Zone(Box::new(z.clone())));
            }
        }
        if let Ok(mut b) = self.board.write() {
            b.zones = zones;
        }
    }

    /// Says that sketches were committed: the board is re-evaluated shortly, not at its next
    /// tick, so a window's numbers reach the screens about [`GATHER`] after they are stored.
    pub fn news(&self, zones: &BTreeSet<ZoneId>) {
        if let Ok(mut arrived) = self.arrived.lock() {
            let now = Timestamp::now();
            for z in zones {
                arrived.insert(z.to_string(), now);
            }
        }
        self.news.notify_one();
    }

    /// Whether sketches of `zone` arrived within `limit` of `now`.
    fn delivering(&self, zone: &str, now: Timestamp, limit: SignedDuration) -> bool {
        self.arrived
            .lock()
            .is_ok_and(|a| a.get(zone).is_some_and(|t| *t + limit > now))
    }

    /// Re-evaluates after [`LiveBoard::news`] and every [`EVALUATE_EVERY`] until the task is
    /// dropped.
    pub async fn run(self, store: impl Store, config: Arc<AggregatorConfig>, metrics: Metrics) {
        let mut tick = tokio::time::interval(EVALUATE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.news.notified() => {
                    tokio::time::sleep(GATHER).await;
                    tick.reset();
                }
            }
            match evaluate(&store, &config, &self.floors, Timestamp::now()).await {
                Ok(zones) => self.update(&store, &config, &metrics, zones).await,
                Err(e) => tracing::error!("live evaluation failed: {e}"),
            }
        }
    }
}
