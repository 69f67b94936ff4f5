//! A throwaway database for tests and benchmarks (the `testing` feature).

use jiff::Timestamp;

use super::{connect_plain, db};
use crate::store::StoreError;

/// A throwaway database on a PostgreSQL server, for tests and benchmarks: created with a
/// unique name, dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin: tokio_postgres::Config,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates a database on the server that `admin_url` reaches.
    pub async fn create(admin_url: &str) -> Result<ScratchDatabase, StoreError> {
        let admin: tokio_postgres::Config = admin_url
            .parse()
            .map_err(|e| StoreError::Database(format!("{admin_url}: {e}")))?;
        let nanos = Timestamp::now().as_nanosecond();
        let name = format!("crowdflow_scratch_{}_{}", std::process::id(), nanos);
        let conn = connect_plain(&admin).await?;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(db)?;
        let url = scratch_url(&admin, &name);
        Ok(ScratchDatabase { admin, name, url })
    }

    /// The database's `postgres://` URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A `postgres://` URL (what the config file takes) for database `name` on `admin`'s server.
fn scratch_url(admin: &tokio_postgres::Config, name: &str) -> String {
    let escape = |s: &[u8]| -> String {
        s.iter()
            .map(|&b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let mut userinfo = admin
        .get_user()
        .map(|u| escape(u.as_bytes()))
        .unwrap_or_default();
    if let Some(password) = admin.get_password() {
        userinfo = format!("{userinfo}:{}", escape(password));
    }
    let at = if userinfo.is_empty() { "" } else { "@" };
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    match admin.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => {
            format!("postgres://{userinfo}{at}{host}:{port}/{name}")
        }
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => format!(
            "postgres://{userinfo}{at}/{name}?host={}&port={port}",
            escape(path.as_os_str().as_encoded_bytes())
        ),
        None => format!("postgres://{userinfo}{at}localhost:{port}/{name}"),
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside or outside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = connect_plain(&admin).await.ok()?;
                client.batch_execute(&sql).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop scratch database {}", self.name);
        }
    }
}
