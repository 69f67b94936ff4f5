//! Minute numbers packed by the hour: one row per zone, kind, hour and salt holds the
//! numbers of the hour's stored minutes. Ranges of minutes are what series, people, floors
//! and calibration read, and SQLite's cost per row (about 0.6 µs) made a day of one zone
//! (1,440 rows) cost more than the whole peer's answer (#19); packed, it is 24 rows.
//!
//! An entry is 25 bytes: the minute of the hour (0-59), then estimate, lower and upper
//! bound as little-endian f64; entries in minute order, one per minute.

use std::collections::BTreeMap;

use crowdflow_contract::sketch::Estimate;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{RowKeys, db, db_value, sql};
use crate::store::{BucketKey, Resolution, StoreError, ZoneNumber, timestamp};

/// Bytes per stored minute.
const ENTRY: usize = 25;

/// One stored minute of a packed hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Entry {
    /// Minute of the hour, 0-59.
    pub(super) minute: u8,
    /// Distinct devices in it.
    pub(super) devices: Estimate,
}

impl Entry {
    /// The entry of the minute starting at `bucket` (seconds).
    pub(super) fn at(bucket: i64, devices: Estimate) -> Entry {
        Entry {
            minute: (bucket.rem_euclid(3600) / 60) as u8,
            devices,
        }
    }
}

pub(super) fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY);
    for e in entries {
        out.push(e.minute);
        for v in [e.devices.estimate, e.devices.lower, e.devices.upper] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

pub(super) fn decode(bytes: &[u8]) -> Result<Vec<Entry>, StoreError> {
    if !bytes.len().is_multiple_of(ENTRY) {
        return Err(StoreError::Corrupt(format!(
            "packed minute numbers of {} bytes: not a whole number of {ENTRY}-byte entries",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(ENTRY)
        .map(|e| {
            let f = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&e[at..at + 8]);
                f64::from_le_bytes(b)
            };
            if e[0] >= 60 {
                return Err(StoreError::Corrupt(format!(
                    "packed minute numbers name minute {} of an hour",
                    e[0]
                )));
            }
            Ok(Entry {
                minute: e[0],
                devices: Estimate {
                    estimate: f(1),
                    lower: f(9),
                    upper: f(17),
                },
            })
        })
        .collect()
}

/// `stored` with `new` put in, in minute order: a minute written again takes its new
/// numbers (the merged sketch's, which include the old).
pub(super) fn put(stored: Vec<Entry>, new: &[Entry]) -> Vec<Entry> {
    let mut by_minute: BTreeMap<u8, Estimate> =
        stored.into_iter().map(|e| (e.minute, e.devices)).collect();
    for e in new {
        by_minute.insert(e.minute, e.devices);
    }
    by_minute
        .into_iter()
        .map(|(minute, devices)| Entry { minute, devices })
        .collect()
}

/// Puts each hour's new minute entries into its packed row. `hours` are keyed by the hour
/// bucket ([`BucketKey::at`]).
pub(super) fn write(
    tx: &Transaction<'_>,
    hours: BTreeMap<BucketKey, Vec<Entry>>,
) -> Result<(), StoreError> {
    let mut read = tx.prepare_cached(sql::SELECT_PACKED_HOUR).map_err(db)?;
    let mut write = tx.prepare_cached(sql::UPSERT_PACKED_HOUR).map_err(db)?;
    for (k, new) in hours {
        let key = params![k.zone, k.kind, k.bucket, k.epoch, k.salt_fp];
        let stored: Option<Vec<u8>> = read.query_row(key, |r| r.get(0)).optional().map_err(db)?;
        let stored = stored
            .as_deref()
            .map(decode)
            .transpose()?
            .unwrap_or_default();
        let packed = encode(&put(stored, &new));
        write
            .execute(params![
                k.zone, k.kind, k.bucket, k.epoch, k.salt_fp, packed
            ])
            .map_err(db)?;
    }
    Ok(())
}

/// The stored minutes of one zone and kind in `[from, to)`, in (minute, epoch, salt) order.
pub(super) fn read(
    conn: &rusqlite::Connection,
    zone: &str,
    kind: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<ZoneNumber>, StoreError> {
    let first_hour = Resolution::Hour.bucket(from);
    let (from, to) = (from.as_second(), to.as_second());
    let mut stmt = conn.prepare_cached(sql::SELECT_PACKED_HOURS).map_err(db)?;
    let mut rows = stmt
        .query(params![zone, kind, first_hour, to])
        .map_err(db)?;
    let mut keys = RowKeys::default();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        let (hour, epoch, salt_fp) = keys.read(r)?;
        let hour = hour.as_second();
        let packed = r.get_ref(3).map_err(db)?.as_blob().map_err(db_value)?;
        for e in decode(packed)? {
            let bucket = hour + 60 * i64::from(e.minute);
            if (from..to).contains(&bucket) {
                out.push(ZoneNumber {
                    bucket: timestamp(bucket)?,
                    epoch,
                    salt_fp,
                    devices: e.devices,
                });
            }
        }
    }
    // Two salts of one hour (a rotation) come one after the other: interleave them.
    out.sort_by_key(|n| (n.bucket, n.epoch, n.salt_fp));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(minute: u8, estimate: f64) -> Entry {
        Entry {
            minute,
            devices: Estimate {
                estimate,
                lower: estimate - 1.5,
                upper: estimate + 2.25,
            },
        }
    }

    #[test]
    fn entries_round_trip_and_a_minute_written_again_takes_its_new_numbers() {
        let stored = vec![entry(0, 10.0), entry(7, 70.0), entry(59, 590.0)];
        assert_eq!(decode(&encode(&stored)).expect("decode"), stored);
        let merged = put(stored, &[entry(7, 75.5), entry(3, 30.0)]);
        assert_eq!(
            merged,
            vec![
                entry(0, 10.0),
                entry(3, 30.0),
                entry(7, 75.5),
                entry(59, 590.0)
            ]
        );
    }

    #[test]
    fn a_damaged_row_is_refused_naming_what_is_wrong() {
        let mut bytes = encode(&[entry(1, 1.0)]);
        bytes.pop();
        assert!(
            decode(&bytes)
                .expect_err("short")
                .to_string()
                .contains("24 bytes")
        );
        let mut bytes = encode(&[entry(1, 1.0)]);
        bytes[0] = 60;
        assert!(
            decode(&bytes)
                .expect_err("minute")
                .to_string()
                .contains("minute 60")
        );
    }
}
