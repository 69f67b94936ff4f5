//! What the ingest benchmarks share: the messages of a load and how to tell they are stored.

use std::path::Path;
use std::sync::Mutex;

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
    Sqlite(Mutex<rusqlite::Connection>),
    /// A PostgreSQL database.
    Postgres(tokio_postgres::Client),
}

impl Stored {
    /// Counts in the SQLite database at `path` (already made by the store).
    pub fn sqlite(path: &Path) -> Stored {
        Stored::Sqlite(Mutex::new(
            rusqlite::Connection::open(path).expect("sqlite"),
        ))
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
    pub async fn count(&self) -> u64 {
        let n: i64 = match self {
            Stored::Sqlite(conn) => sqlite_count(conn),
            Stored::Postgres(client) => client.query_one(COUNT, &[]).await.expect("count").get(0),
        };
        u64::try_from(n).unwrap_or(0)
    }
}

const COUNT: &str = "SELECT count(*) FROM sensor_windows";

fn sqlite_count(conn: &Mutex<rusqlite::Connection>) -> i64 {
    conn.lock()
        .expect("lock")
        .query_row(COUNT, [], |r| r.get(0))
        .expect("count")
}
