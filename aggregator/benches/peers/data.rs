//! The generated week: the same device hashes for crowdflow's store and the peer's tables.

use std::sync::Arc;
use std::time::Instant;

use crowdflow_aggregator::store::{Accepted, Batch, SqliteStore, Store};
use crowdflow_aggregator::zone::ZoneId;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::wire::SensorId;
use jiff::{SignedDuration, Timestamp};
use tokio_postgres::Client;

use crate::{BATCH_MINUTES, DAYS, KIND, START, ZONES};

/// Devices in zone `z` at minute `m` of the day: 300 at 04:00, 3,000 at 16:00 (shifted by
/// 5 minutes per zone).
pub(crate) fn devices_at(z: u64, minute_of_day: i64) -> u64 {
    let phase = (minute_of_day - 240 - 5 * z as i64) as f64 / 1440.0 * std::f64::consts::TAU;
    (300.0 + 2700.0 * (0.5 - 0.5 * phase.cos())).round() as u64
}

/// The device ids heard in zone `z` at minute `m`: a window sliding 50 ids a minute (devices
/// stay about n/50 minutes), zones 997 ids apart (neighbours share devices: flows).
pub(crate) fn device_ids(z: u64, minute_of_day: i64) -> std::ops::Range<u64> {
    let first = minute_of_day as u64 * 50 + z * 997;
    first..first + devices_at(z, minute_of_day)
}

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A device's 16-byte hash under day `day`'s salt (a stand-in for the keyed BLAKE3 hash: as
/// uniform, and reproducible for both sides).
pub(crate) fn device_hash(day: i64, id: u64) -> [u8; 16] {
    let a = splitmix((day as u64) << 40 ^ id);
    let b = splitmix(a);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

pub(crate) fn epoch_of(day: i64) -> String {
    let t: Timestamp = START.parse().expect("start");
    (t + SignedDuration::from_hours(24 * day))
        .strftime("%Y-%m-%d")
        .to_string()
}

pub(crate) fn salt_fp_of(day: i64) -> String {
    format!("{:016x}", 0x00c0_ffee_0000_0000u64 + day as u64)
}

pub(crate) fn zone_id(z: u64) -> String {
    format!("z{z}")
}

/// One zone-minute of generated data: the hashes, as crowdflow's message and the peer's row.
pub(crate) struct ZoneMinute {
    zone: u64,
    day: i64,
    at: Timestamp,
    hashes: Vec<[u8; 16]>,
}

impl ZoneMinute {
    pub(crate) fn new(start: Timestamp, z: u64, minute: i64) -> ZoneMinute {
        let (day, minute_of_day) = (minute.div_euclid(1440), minute.rem_euclid(1440));
        ZoneMinute {
            zone: z,
            day,
            at: start + SignedDuration::from_mins(minute),
            hashes: device_ids(z, minute_of_day)
                .map(|id| device_hash(day, id))
                .collect(),
        }
    }

    pub(crate) fn accepted(&self) -> Accepted {
        let mut sketch = Sketch::new(Precision::DEFAULT);
        self.hashes.iter().for_each(|h| sketch.insert_bytes(h));
        Accepted {
            sensor: SensorId::new(&format!("s{}", self.zone)).expect("id"),
            zone: ZoneId::new(&zone_id(self.zone)).expect("id"),
            kind: KIND,
            window_start: self.at,
            window_s: 60,
            epoch: epoch_of(self.day).parse().expect("epoch"),
            salt_fp: salt_fp_of(self.day).parse().expect("fp"),
            frames: self.hashes.len() as u64 * 4,
            sketch,
        }
    }

    pub(crate) fn hashvals(&self) -> Vec<i64> {
        self.hashes
            .iter()
            .map(|h| i64::from_le_bytes(h[..8].try_into().expect("8 bytes")))
            .collect()
    }
}

/// Generates the week into whichever side lacks it.
pub(crate) async fn generate(
    start: Timestamp,
    store: Option<&SqliteStore>,
    peer: Option<Arc<Client>>,
) {
    let insert = match &peer {
        Some(p) => Some(
            p.prepare(
                "INSERT INTO minute SELECT $1, $2, $3, $4, $5, s, hll_cardinality(s) FROM \
                 (SELECT hll_add_agg(h::hll_hashval, 14, 5, -1, 1) AS s FROM unnest($6::bigint[]) h) t",
            )
            .await
            .expect("prepare"),
        ),
        None => None,
    };
    let began = Instant::now();
    let minutes = DAYS * 1440;
    let mut first = 0;
    while first < minutes {
        let rows: Vec<ZoneMinute> = (first..(first + BATCH_MINUTES).min(minutes))
            .flat_map(|m| (0..ZONES).map(move |z| ZoneMinute::new(start, z, m)))
            .collect();
        let peer_load = match (&peer, &insert) {
            (Some(p), Some(stmt)) => {
                let (p, stmt) = (p.clone(), stmt.clone());
                let params: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        (
                            zone_id(r.zone),
                            r.at.as_second(),
                            epoch_of(r.day),
                            salt_fp_of(r.day),
                            r.hashvals(),
                        )
                    })
                    .collect();
                Some(tokio::spawn(async move {
                    let (p, stmt) = (&p, &stmt);
                    let inserts = params
                        .iter()
                        .map(|(zone, bucket, epoch, fp, h)| async move {
                            let kind = KIND.as_str();
                            p.execute(stmt, &[zone, &kind, bucket, epoch, fp, h]).await
                        });
                    for r in futures_util::future::join_all(inserts).await {
                        r.expect("peer insert");
                    }
                }))
            }
            _ => None,
        };
        if let Some(store) = store {
            let accepted = rows.iter().map(ZoneMinute::accepted).collect();
            store
                .merge_batch(Batch {
                    accepted,
                    rejects: Vec::new(),
                })
                .await
                .expect("crowdflow ingest");
        }
        if let Some(load) = peer_load {
            load.await.expect("peer load");
        }
        first += BATCH_MINUTES;
        if first % 1440 == 0 {
            eprintln!(
                "generated day {} of {DAYS} ({:.0} s)",
                first / 1440,
                began.elapsed().as_secs_f64()
            );
        }
    }
}
