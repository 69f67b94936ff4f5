//! What the ingest benchmarks share: the messages of a load and how to tell they are stored.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::window::{Window, WindowLength};
use jiff::{SignedDuration, Timestamp};

/// `[salt]` rotation at the next UTC hour but one: the current epoch began about 23 hours
/// ago, so a load finds the ended windows it needs in it whatever the time of day (with the
/// default 04:00 Amsterdam rotation a bench started just after it looped forever).
pub fn rotation_in_an_hour() -> String {
    let hour = (Timestamp::now().as_second().div_euclid(3600) + 2).rem_euclid(24);
    format!("rotation = \"{hour:02}:00\"\ntime_zone = \"UTC\"\n")
}

/// A sketch of the `n` devices numbered from `first`.
pub fn sketch(first: u64, n: u64) -> Sketch {
    let mut s = Sketch::new(Precision::DEFAULT);
    (first..first + n).for_each(|k| s.insert_bytes(&k.to_le_bytes()));
    s
}

/// `count` ended 10 s windows of `epoch`, newest first, that lie in it whole.
pub fn windows(schedule: &RotationSchedule, epoch: EpochId, count: usize) -> Vec<Window> {
    let mut w = Window::containing(
        Timestamp::now() - SignedDuration::from_secs(20),
        WindowLength::new(10).expect("10 s"),
    );
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let spans = schedule.spans(&w);
        if spans.iter().all(|s| s.epoch == epoch) {
            out.push(w);
        } else {
            assert!(
                spans.iter().all(|s| s.epoch >= epoch),
                "fewer than {count} windows in epoch {epoch}"
            );
        }
        w = Window::containing(w.start() - SignedDuration::from_secs(1), w.length());
    }
    out
}

/// How many messages are stored, read with one cheap query on a connection of its own.
///
/// The benchmarks used to poll the API's sensor health, which groups the whole sensor-window
/// table: every 5-20 ms, beside an aggregator on two cores, it took CPU from what it measured.
pub enum Stored {
    /// An SQLite database (WAL: the count reads beside the writer).
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    /// A PostgreSQL database.
    Postgres(tokio_postgres::Client),
}

impl Stored {
    /// Counts in the SQLite database at `path` (already made by the store).
    pub fn sqlite(path: &Path) -> Stored {
        Stored::Sqlite(Arc::new(Mutex::new(
            rusqlite::Connection::open(path).expect("sqlite"),
        )))
    }

    /// Counts in the PostgreSQL database at `url`.
    pub async fn postgres(url: &str) -> Stored {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("postgres");
        tokio::spawn(connection);
        Stored::Postgres(client)
    }

    /// Sensor windows stored: one per message in the benchmarks' loads.
    ///
    /// A whole count walks an index of every row (2 ms at 80,000 rows); SQLite's runs on a
    /// blocking thread, not on a worker of the runtime the aggregator shares.
    pub async fn count(&self) -> u64 {
        self.query(COUNT, None).await
    }

    /// Sensor windows stored that started at or before `start` (UTC seconds): an index range,
    /// cheap when it holds a load's oldest windows only. A load that waits for its last
    /// messages polls this, and the whole [`Stored::count`] only once it is complete.
    pub async fn count_started_by(&self, start: i64) -> u64 {
        self.query(COUNT_STARTED_BY, Some(start)).await
    }

    async fn query(&self, sql: &'static str, start: Option<i64>) -> u64 {
        let n: i64 = match self {
            Stored::Sqlite(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || sqlite_count(&conn, sql, start))
                    .await
                    .expect("count task")
            }
            Stored::Postgres(client) => match start {
                Some(s) => client.query_one(sql, &[&s]).await,
                None => client.query_one(sql, &[]).await,
            }
            .expect("count")
            .get(0),
        };
        u64::try_from(n).unwrap_or(0)
    }
}

const COUNT: &str = "SELECT count(*) FROM sensor_windows";
const COUNT_STARTED_BY: &str = "SELECT count(*) FROM sensor_windows WHERE window_start <= $1";

fn sqlite_count(conn: &Mutex<rusqlite::Connection>, sql: &str, start: Option<i64>) -> i64 {
    let conn = conn.lock().expect("lock");
    match start {
        Some(s) => conn.query_row(sql, [s], |r| r.get(0)),
        None => conn.query_row(sql, [], |r| r.get(0)),
    }
    .expect("count")
}
