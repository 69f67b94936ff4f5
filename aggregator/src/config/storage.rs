//! `[storage]` and `[retention]`: where data is kept, and for how long.

use std::path::PathBuf;

use serde::Deserialize;

use crate::store::Retention;

use super::{FieldError, field};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    kind: String,
    path: Option<PathBuf>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    #[serde(default = "default_minute_days")]
    minute_sketch_days: u32,
    #[serde(default = "default_hour_days")]
    hour_sketch_days: u32,
    /// Absent: kept.
    day_sketch_days: Option<u32>,
    /// Absent: kept.
    number_days: Option<u32>,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            minute_sketch_days: default_minute_days(),
            hour_sketch_days: default_hour_days(),
            day_sketch_days: None,
            number_days: None,
        }
    }
}
fn default_minute_days() -> u32 {
    30
}
fn default_hour_days() -> u32 {
    365
}

/// Where data is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// One SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database (shared by replicas).
    Postgres {
        /// A libpq-style URL.
        url: String,
    },
}

pub(super) fn storage(raw: RawStorage) -> Result<StorageConfig, FieldError> {
    Ok(match raw.kind.as_str() {
        "sqlite" => StorageConfig::Sqlite {
            path: raw.path.ok_or_else(|| {
                field(
                    "storage.path",
                    "the SQLite database file is required for kind = \"sqlite\"",
                )
            })?,
        },
        "postgres" => StorageConfig::Postgres {
            url: raw
                .url
                .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
                .ok_or_else(|| {
                    field(
                        "storage.url",
                        "a postgres://USER@HOST:PORT/DB URL is required for kind = \"postgres\"",
                    )
                })?,
        },
        _ => return Err(field("storage.kind", "must be \"sqlite\" or \"postgres\"")),
    })
}

/// Coarser data must live at least as long as finer data (queries fall back to it).
pub(super) fn retention(raw: &RawRetention) -> Result<Retention, FieldError> {
    if raw.minute_sketch_days == 0 {
        return Err(field(
            "retention.minute_sketch_days",
            "keep minute sketches at least one day",
        ));
    }
    if raw.hour_sketch_days < raw.minute_sketch_days {
        return Err(field(
            "retention.hour_sketch_days",
            "keep hour sketches at least as long as minute sketches",
        ));
    }
    if raw
        .day_sketch_days
        .is_some_and(|d| d < raw.hour_sketch_days)
    {
        return Err(field(
            "retention.day_sketch_days",
            "keep day sketches at least as long as hour sketches (or omit it to keep them)",
        ));
    }
    let longest_sketch = raw.day_sketch_days.unwrap_or(u32::MAX);
    if raw.number_days.is_some_and(|d| d < longest_sketch) {
        return Err(field(
            "retention.number_days",
            "keep numbers at least as long as every sketch (or omit it to keep them)",
        ));
    }
    Ok(Retention {
        minute_sketch_days: raw.minute_sketch_days,
        hour_sketch_days: raw.hour_sketch_days,
        day_sketch_days: raw.day_sketch_days,
        number_days: raw.number_days,
    })
}
